"""Address and port arithmetic: exact sets, no cloud or Kubernetes knowledge."""

from __future__ import annotations

from nsgsync.net.addresses import AddressSet, cidr_order, prefix_count
from nsgsync.net.intervals import Interval, subtract
from nsgsync.net.ports import PortSet

__all__ = ["AddressSet", "Interval", "PortSet", "cidr_order", "prefix_count", "subtract"]
