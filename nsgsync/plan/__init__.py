"""Plans: a generic diff of desired against actual resources, keyed by stable identity.

Printing, applying and Terraform export all consume the same plan.
"""

from __future__ import annotations

from nsgsync.plan.model import (
    Body,
    Change,
    Ident,
    Op,
    Plan,
    Resource,
    Restore,
    Retiring,
    Role,
    diff,
    fingerprint,
    plan_from_dict,
)

__all__ = [
    "Body",
    "Change",
    "Ident",
    "Op",
    "Plan",
    "Resource",
    "Restore",
    "Retiring",
    "Role",
    "diff",
    "fingerprint",
    "plan_from_dict",
]
