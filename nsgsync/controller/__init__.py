"""The in-cluster controller behind `nsgsync run` (see docs/controller.md)."""

from __future__ import annotations

from nsgsync.controller.leader import LeaseConfig
from nsgsync.controller.loop import Controller, Options, default_identity

__all__ = ["Controller", "LeaseConfig", "Options", "default_identity"]
