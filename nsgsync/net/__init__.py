"""Address and port arithmetic: exact sets, no cloud or Kubernetes knowledge."""

from __future__ import annotations

from nsgsync.net.addresses import AddressSet, cidr_order
from nsgsync.net.ports import PortSet

__all__ = ["AddressSet", "PortSet", "cidr_order"]
