"""Sources: where policies, namespaces and pods come from (files, or the live cluster)."""

from __future__ import annotations

from nsgsync.sources.files import load_manifests, load_topology

__all__ = ["load_manifests", "load_topology"]
