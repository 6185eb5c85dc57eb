"""nsgsync: Kubernetes NetworkPolicy, enforced a second time by the cloud's own firewalls."""

from __future__ import annotations

__version__ = "0.1.0"
