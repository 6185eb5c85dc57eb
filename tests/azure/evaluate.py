"""Evaluate NSGs as Azure does, from what the ARM API returns.

Independent of nsgsync's own reading code: it lists the VNet's subnets and their NSGs
through the SDK and decides, for a connection, whether the source subnet's NSG lets it out
and the destination subnet's NSG lets it in. Per direction, rules in ascending priority,
Azure's default rules included; the first rule that matches decides.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from azure.mgmt.network import NetworkManagementClient

from tests.cycle import probe_addresses as probe_addresses  # the shared probes
from tests.oracle import Addrs

PROTOCOL = {"TCP": "Tcp", "UDP": "Udp"}
EPHEMERAL = 49152  # the source port of a probe connection


@dataclass(frozen=True)
class Subnet:
    name: str
    addresses: Addrs
    rules: tuple[dict[str, Any], ...]  # properties of every rule, defaults included
    has_nsg: bool


def _matches_address(value: str, ip: str, vnet: Addrs) -> bool:
    if value == "*":
        return True
    if value == "VirtualNetwork":
        return vnet.contains(ip)
    if value == "Internet":
        return not vnet.contains(ip)
    if value == "AzureLoadBalancer":
        return False  # the probes never come from Azure's health probe address
    addr = ipaddress.ip_address(ip)
    if "-" in value:
        first, last = (ipaddress.ip_address(v) for v in value.split("-"))
        return first.version == addr.version and first <= addr <= last  # type: ignore[operator]
    net = ipaddress.ip_network(value, strict=False)
    return net.version == addr.version and addr in net


def _matches_port(value: str, port: int) -> bool:
    if value == "*":
        return True
    lo, _, hi = value.partition("-")
    return int(lo) <= port <= int(hi or lo)


def _values(props: dict[str, Any], single: str, plural: str) -> list[str]:
    if props.get(single):
        return [props[single]]
    return list(props.get(plural) or [])


@dataclass(frozen=True)
class Nsgs:
    subnets: tuple[Subnet, ...]
    vnet: Addrs

    @classmethod
    def read(
        cls, client: NetworkManagementClient, resource_group: str, vnet: str, vnet_cidrs: list[str]
    ) -> Nsgs:
        subnets = []
        for item in client.subnets.list(resource_group, vnet):
            doc = item.as_dict()
            props = doc.get("properties") or {}
            prefixes = _values(props, "addressPrefix", "addressPrefixes")
            ref = (props.get("networkSecurityGroup") or {}).get("id")
            rules: list[dict[str, Any]] = []
            if ref:
                parts = ref.split("/")
                nsg = client.network_security_groups.get(parts[4], parts[-1]).as_dict()
                nsg_props = nsg.get("properties") or {}
                for r in [
                    *(nsg_props.get("securityRules") or []),
                    *(nsg_props.get("defaultSecurityRules") or []),
                ]:
                    rules.append({"name": r["name"], **r["properties"]})
            subnets.append(Subnet(doc["name"], Addrs.of(prefixes), tuple(rules), bool(ref)))
        return cls(tuple(subnets), Addrs.of(vnet_cidrs))

    def subnet_of(self, ip: str) -> Subnet | None:
        return next((s for s in self.subnets if s.addresses.contains(ip)), None)

    def _decide(
        self, subnet: Subnet, direction: str, src: str, dst: str, proto: str, port: int
    ) -> bool:
        rules = sorted(
            (r for r in subnet.rules if r["direction"] == direction), key=lambda r: r["priority"]
        )
        for r in rules:
            if r["protocol"] != "*" and r["protocol"] != PROTOCOL.get(proto):
                continue
            sources = _values(r, "sourceAddressPrefix", "sourceAddressPrefixes")
            destinations = _values(r, "destinationAddressPrefix", "destinationAddressPrefixes")
            if not any(_matches_address(v, src, self.vnet) for v in sources):
                continue
            if not any(_matches_address(v, dst, self.vnet) for v in destinations):
                continue
            if not any(
                _matches_port(v, EPHEMERAL)
                for v in _values(r, "sourcePortRange", "sourcePortRanges")
            ):
                continue
            if not any(
                _matches_port(v, port)
                for v in _values(r, "destinationPortRange", "destinationPortRanges")
            ):
                continue
            return bool(r["access"] == "Allow")
        raise AssertionError(f"no rule decided {direction} {src}->{dst} in {subnet.name}")

    def allows(self, src: str, dst: str, proto: str, port: int) -> bool:
        out_of = self.subnet_of(src)
        into = self.subnet_of(dst)
        if (
            out_of is not None
            and out_of.has_nsg
            and not self._decide(out_of, "Outbound", src, dst, proto, port)
        ):
            return False
        if into is not None and into.has_nsg:
            return self._decide(into, "Inbound", src, dst, proto, port)
        return True
