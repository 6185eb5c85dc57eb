"""The moto EC2 server of tests/aws, for the import tests; and `terraform`, where it exists."""

from __future__ import annotations

from tests.aws.conftest import ec2, moto_endpoint

__all__ = ["ec2", "moto_endpoint"]
