"""Generated GCP Terraform, read back with python-hcl2, as tests.gcp.evaluate.Firewalls.

Independent of the renderer: it reads the .tf text only, resolves `var.*` from the
variables' defaults, and builds for each `google_compute_firewall` the Firewall the compute
API would return for what `terraform apply` creates (REST JSON field names, `allow` blocks
as `allowed` entries, the network as `projects/P/global/networks/N`). The evaluator of
tests/gcp then decides traffic from those, as it does from what the API lists.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from nsgsync.model import Topology
from tests.gcp.evaluate import Firewalls
from tests.terraform.evaluate_hcl import Parsed, reference, unquote

FIREWALL = "google_compute_firewall"
# The provider's list arguments and the API fields they set.
LISTS = {
    "source_ranges": "sourceRanges",
    "destination_ranges": "destinationRanges",
    "source_tags": "sourceTags",
    "source_service_accounts": "sourceServiceAccounts",
    "target_tags": "targetTags",
    "target_service_accounts": "targetServiceAccounts",
}
_ARGUMENTS = {
    "name",
    "project",
    "network",
    "description",
    "direction",
    "priority",
    "disabled",
    "allow",
    "deny",
    *LISTS,
}
_API_PREFIX = re.compile(r"^https?://[^/]+/compute/v1/")


def scalar(value: Any, parsed: Parsed) -> Any:
    """A string, number or bool argument, `var.x` replaced by the variable's default."""
    if isinstance(value, str) and value.startswith("${"):
        ref = reference(value)
        kind, _, name = ref.partition(".")
        assert kind == "var", f"only variables are expected here, not {ref}"
        assert name in parsed.variables, f"var.{name} is not declared"
        return scalar(parsed.variables[name]["default"], parsed)
    if isinstance(value, str):
        return unquote(value)
    return value


def network_path(network: str, project: str) -> str:
    """What the provider makes of a network name, path or self link."""
    network = _API_PREFIX.sub("", network)
    return network if "/" in network else f"projects/{project}/global/networks/{network}"


def firewall_dict(attrs: Mapping[str, Any], parsed: Parsed) -> tuple[str, dict[str, Any]]:
    """(project, the Firewall as the API returns it) of one google_compute_firewall."""
    unknown = set(attrs) - _ARGUMENTS - {"__is_block__"}
    assert not unknown, f"arguments this reader does not know: {sorted(unknown)}"
    project = str(scalar(attrs["project"], parsed))
    body: dict[str, Any] = {
        "name": scalar(attrs["name"], parsed),
        "network": network_path(str(scalar(attrs["network"], parsed)), project),
        # The API's defaults where an argument is left out.
        "priority": int(scalar(attrs.get("priority", 1000), parsed)),
        "direction": scalar(attrs.get("direction", '"INGRESS"'), parsed),
        "description": scalar(attrs.get("description", '""'), parsed),
        "disabled": bool(scalar(attrs.get("disabled", False), parsed)),
    }
    for argument, field in LISTS.items():
        if argument in attrs:
            body[field] = [scalar(v, parsed) for v in attrs[argument]]
    blocks = {"allow": "allowed", "deny": "denied"}
    present = [b for b in blocks if b in attrs]
    assert len(present) == 1, f"a firewall needs allow or deny blocks, not {present}"
    entries = []
    for block in attrs[present[0]]:
        entry: dict[str, Any] = {"IPProtocol": scalar(block["protocol"], parsed)}
        if "ports" in block:
            entry["ports"] = [scalar(p, parsed) for p in block["ports"]]
        entries.append(entry)
    body[blocks[present[0]]] = entries
    return project, body


def firewalls_from_hcl(
    parsed: Parsed,
    topology: Topology,
    *,
    project: str,
    network: str,
    node_tags: Iterable[str] = (),
    node_accounts: Iterable[str] = (),
) -> Firewalls:
    """What the parsed files would create, as the evaluator's Firewalls.

    Every rule must land in `project` and `network`: one anywhere else would protect
    nothing of the cluster's, and the evaluator would not see it.
    """
    rules = []
    for address, attrs in parsed.of_type(FIREWALL):
        where, body = firewall_dict(attrs, parsed)
        assert where == project, (address, where)
        assert body["network"] == f"projects/{project}/global/networks/{network}", address
        rules.append(body)
    return Firewalls(topology, rules, frozenset(node_tags), frozenset(node_accounts))
