"""What nsgsync's firewall rules mean, without the SDK: what a rule lets through, whether
an update widens it, and which names are nsgsync's to use. An offline plan needs only
these, so it never imports google-cloud-compute (seconds of import at every run)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nsgsync.errors import ProviderError
from nsgsync.net import AddressSet
from nsgsync.plan import Resource
from nsgsync.provider import ALL_PORTS, Footprint, Spans, any_protocol
from nsgsync_gcp.render import firewall_resource

# Writes in flight at once (the engine's batch): compute runs them as operations in
# parallel, and a batch is waited for in full before the next begins.
IN_FLIGHT = 16


def denies(r: Resource) -> bool:
    return "denied" in r.body


def widens(old: Resource, new: Resource) -> bool:
    """Whether an update lets through at least what the rule let through before.

    A rule's identity fixes its direction, protocol and ports, so its ranges decide.
    """

    def ranges(body: Mapping[str, Any], key: str) -> AddressSet:
        try:
            return AddressSet.from_cidrs(body.get(key) or ["0.0.0.0/0", "::/0"])
        except ValueError:
            return AddressSet()

    return all(
        ranges(old.body, key).issubset(ranges(new.body, key))
        for key in ("sourceRanges", "destinationRanges")
    )


def footprint(r: Resource, network: str) -> Footprint | None:
    """What an allow rule lets through (denies are never paired)."""
    if denies(r) or "allowed" not in r.body:
        return None
    body = r.body
    ingress = body.get("direction") != "EGRESS"

    def ranges(key: str) -> AddressSet:
        try:
            return AddressSet.from_cidrs(body.get(key) or ["0.0.0.0/0", "::/0"])
        except ValueError:
            return AddressSet.everything()

    own, peers = (
        ("destinationRanges", "sourceRanges") if ingress else ("sourceRanges", "destinationRanges")
    )
    ports: list[tuple[str, Spans]] = []
    exact = True
    for entry in body.get("allowed") or []:
        proto = str(entry.get("IPProtocol", "")).lower()
        proto = {"6": "tcp", "17": "udp", "132": "sctp"}.get(proto, proto)
        spans: list[tuple[int, int]] = []
        for text in entry.get("ports") or []:
            lo, _, hi = str(text).partition("-")
            spans.append((int(lo), int(hi or lo)))
        if proto == "all":
            ports += any_protocol()
        elif proto in ("tcp", "udp", "sctp"):
            ports.append((proto, tuple(spans) or ALL_PORTS))
        else:
            ports.append(("other", ALL_PORTS))
            exact = False  # every portless protocol stands for this one
    return Footprint(
        scope=("firewall", network, "ingress" if ingress else "egress"),
        peers=ranges(peers),
        ports=tuple(ports),
        own=ranges(own),
        exact=exact,
    )


def adopt_names(desired: Sequence[Resource], actual: Sequence[Resource]) -> list[Resource]:
    """A desired rule whose content an owned rule of another name already holds (a pair
    wrote it there in place) takes that rule's name: the name is only an identity, and
    the next plan must find nothing to do."""
    wanted = {r.key for r in desired}
    free: dict[str, list[Resource]] = {}
    for r in actual:
        if r.key not in wanted:
            free.setdefault(_content(r.body), []).append(r)
    have = {r.key for r in actual}
    out = []
    for r in desired:
        spare = free.get(_content(r.body)) if r.key not in have else None
        if spare:
            name = str(spare.pop(0).body["name"])
            r = firewall_resource({**r.body, "name": name}, r.segment, sources=r.sources)
        out.append(r)
    return out


def _content(body: Mapping[str, Any]) -> str:
    return repr(sorted((k, repr(v)) for k, v in body.items() if k != "name"))


@dataclass(frozen=True)
class Foreign:
    """Names in nsgsync's prefix that it does not own, with why: never written."""

    names: tuple[tuple[str, str], ...] = ()

    def why(self, name: str) -> str | None:
        return dict(self.names).get(name)


def check_names(desired: Sequence[Resource], foreign: Foreign, project: str) -> None:
    """Refuse a name someone else holds (GCP names are ours to choose, else nothing binds)."""
    taken = sorted(r.key for r in desired if foreign.why(r.key) is not None)
    if taken:
        name = taken[0]
        more = f" (and {len(taken) - 1} more)" if len(taken) > 1 else ""
        raise ProviderError(
            f"firewall rule {name} in project {project} has the name nsgsync wants, "
            f"but nsgsync does not own it: {foreign.why(name)}{more}; nothing was applied",
            hint="nsgsync never changes a rule it does not own: delete or rename that rule "
            "by hand (or restore its description and priority), then plan again",
        )
