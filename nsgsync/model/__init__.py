"""Validated objects: what nsgsync reads from Kubernetes and from the topology."""

from __future__ import annotations

from nsgsync.model.inventory import Inventory
from nsgsync.model.k8s import (
    ContainerPort,
    IPBlock,
    LabelSelector,
    NetworkPolicy,
    Operator,
    Peer,
    PodInfo,
    PolicyPort,
    PolicyRule,
    PolicyType,
    Protocol,
    Requirement,
)
from nsgsync.model.kinds import Effect, ForeignPolicy
from nsgsync.model.topology import Segment, Topology

__all__ = [
    "ContainerPort",
    "Effect",
    "ForeignPolicy",
    "IPBlock",
    "Inventory",
    "LabelSelector",
    "NetworkPolicy",
    "Operator",
    "Peer",
    "PodInfo",
    "PolicyPort",
    "PolicyRule",
    "PolicyType",
    "Protocol",
    "Requirement",
    "Segment",
    "Topology",
]
