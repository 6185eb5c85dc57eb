"""Sources: where policies, namespaces and pods come from (files, or the live cluster)."""

from __future__ import annotations

from nsgsync.sources.cluster import (
    apply_objects,
    cluster_client,
    load_cluster,
    merge_inventories,
    prune_objects,
)
from nsgsync.sources.files import load_manifests, load_topology

__all__ = [
    "apply_objects",
    "cluster_client",
    "load_cluster",
    "load_manifests",
    "load_topology",
    "merge_inventories",
    "prune_objects",
]
