"""Firewall decisions: the Intent's and each cloud's rendered rules, evaluated alike.

`explain --cloud` asks which rule decides one connection; `graph` asks what each segment
lets through to every other. Rendering goes through the provider (`rendered_rules`).
"""

from __future__ import annotations

from nsgsync.firewall.ports import ALL, NONE, PROTOCOLS, Ports
from nsgsync.firewall.rendered import rendered_rules
from nsgsync.firewall.sources import (
    Tables,
    cloud_tables,
    endpoints_for,
    group_of,
    intent_tables,
)
from nsgsync.firewall.tables import (
    Decision,
    Endpoint,
    Endpoints,
    Entry,
    Reach,
    Reached,
    Table,
    decide,
    reach,
)

__all__ = [
    "ALL",
    "NONE",
    "PROTOCOLS",
    "Decision",
    "Endpoint",
    "Endpoints",
    "Entry",
    "Ports",
    "Reach",
    "Reached",
    "Table",
    "Tables",
    "cloud_tables",
    "decide",
    "endpoints_for",
    "group_of",
    "intent_tables",
    "reach",
    "rendered_rules",
]
