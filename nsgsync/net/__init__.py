"""Address and port arithmetic: exact sets, no cloud or Kubernetes knowledge."""

from __future__ import annotations

from nsgsync.net.addresses import AddressSet
from nsgsync.net.ports import PortSet

__all__ = ["AddressSet", "PortSet"]
