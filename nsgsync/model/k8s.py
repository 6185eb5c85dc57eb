"""Kubernetes objects as nsgsync reads them (networking.k8s.io/v1 NetworkPolicy, pods).

Policy specs forbid unknown fields, as the API server's strict validation does: a typo
such as `matchLabel` would otherwise turn into an empty selector that selects every pod,
and the cloud would then block what Kubernetes never blocked.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_STRICT = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)
_PORT_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"


class Protocol(StrEnum):
    TCP = "TCP"
    UDP = "UDP"
    SCTP = "SCTP"


class PolicyType(StrEnum):
    INGRESS = "Ingress"
    EGRESS = "Egress"


class Operator(StrEnum):
    IN = "In"
    NOT_IN = "NotIn"
    EXISTS = "Exists"
    DOES_NOT_EXIST = "DoesNotExist"


class Requirement(BaseModel):
    model_config = _STRICT

    key: str
    operator: Operator
    values: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _values_fit_operator(self) -> Requirement:
        if self.operator in (Operator.IN, Operator.NOT_IN) and not self.values:
            raise ValueError(f"operator {self.operator.value} needs at least one value")
        if self.operator in (Operator.EXISTS, Operator.DOES_NOT_EXIST) and self.values:
            raise ValueError(f"operator {self.operator.value} takes no values")
        return self

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        if self.operator is Operator.IN:
            return present and labels[self.key] in self.values
        if self.operator is Operator.NOT_IN:
            return not present or labels[self.key] not in self.values
        if self.operator is Operator.EXISTS:
            return present
        return not present


class LabelSelector(BaseModel):
    """A label selector; the empty selector selects everything."""

    model_config = _STRICT

    match_labels: dict[str, str] = Field(default_factory=dict, alias="matchLabels")
    match_expressions: tuple[Requirement, ...] = Field(default=(), alias="matchExpressions")

    @field_validator("match_labels", mode="before")
    @classmethod
    def _labels_are_strings(cls, value: Any) -> Any:
        if value is None:
            return {}
        if isinstance(value, dict):
            for k, v in value.items():
                if not isinstance(v, str):
                    raise ValueError(f"label {k!r} must have a string value, got {v!r}")
        return value

    @field_validator("match_expressions", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return () if value is None else value

    def requirements(self) -> tuple[Requirement, ...]:
        """matchLabels and matchExpressions as one conjunction of requirements."""
        from_labels = tuple(
            Requirement(key=k, operator=Operator.IN, values=(v,))
            for k, v in sorted(self.match_labels.items())
        )
        return from_labels + self.match_expressions

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(r.matches(labels) for r in self.requirements())

    def is_empty(self) -> bool:
        return not self.match_labels and not self.match_expressions

    def key(self) -> tuple[tuple[str, str, tuple[str, ...]], ...]:
        """A hashable canonical form, equal for selectors that say the same thing.

        (key, operator, sorted distinct values), sorted and deduplicated; built from the
        fields directly, since the compiler asks for it very often.
        """
        items: set[tuple[str, str, tuple[str, ...]]] = {
            (k, Operator.IN.value, (v,)) for k, v in self.match_labels.items()
        }
        items.update(
            (r.key, r.operator.value, tuple(sorted(set(r.values)))) for r in self.match_expressions
        )
        return tuple(sorted(items))

    def describe(self) -> str:
        if self.is_empty():
            return "{}"
        parts = [f"{k}={v}" for k, v in sorted(self.match_labels.items())]
        for r in self.match_expressions:
            vals = ",".join(r.values)
            parts.append(
                f"{r.key} {r.operator.value} ({vals})" if vals else f"{r.key} {r.operator.value}"
            )
        return ",".join(parts)


EVERYTHING = LabelSelector()


def _check_cidr(text: str) -> str:
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ValueError(f"{text!r} is not a valid CIDR (expected e.g. 10.0.0.0/16)") from None
    if "/" not in text:
        raise ValueError(f"{text!r} is not a CIDR: it has no prefix length (e.g. {text}/32)")
    return text


class IPBlock(BaseModel):
    model_config = _STRICT

    cidr: str
    except_: tuple[str, ...] = Field(default=(), alias="except")

    @field_validator("cidr")
    @classmethod
    def _cidr(cls, value: str) -> str:
        return _check_cidr(value)

    @field_validator("except_", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return () if value is None else value

    @model_validator(mode="after")
    def _except_inside(self) -> IPBlock:
        outer = ipaddress.ip_network(self.cidr, strict=False)
        for text in self.except_:
            _check_cidr(text)
            inner = ipaddress.ip_network(text, strict=False)
            if inner.version != outer.version or not (
                inner.subnet_of(outer) and inner.prefixlen > outer.prefixlen  # type: ignore[arg-type]
            ):
                raise ValueError(f"except {text!r} is not a strict subset of cidr {self.cidr!r}")
        return self


class Peer(BaseModel):
    model_config = _STRICT

    pod_selector: LabelSelector | None = Field(default=None, alias="podSelector")
    namespace_selector: LabelSelector | None = Field(default=None, alias="namespaceSelector")
    ip_block: IPBlock | None = Field(default=None, alias="ipBlock")

    @model_validator(mode="after")
    def _one_kind(self) -> Peer:
        if self.ip_block is not None and (self.pod_selector or self.namespace_selector):
            raise ValueError("ipBlock may not be combined with podSelector or namespaceSelector")
        if self.ip_block is None and self.pod_selector is None and self.namespace_selector is None:
            raise ValueError("a peer needs podSelector, namespaceSelector or ipBlock")
        return self


PortValue = Annotated[int | str, Field(union_mode="left_to_right")]


class PolicyPort(BaseModel):
    model_config = _STRICT

    protocol: Protocol = Protocol.TCP
    port: PortValue | None = None
    end_port: int | None = Field(default=None, alias="endPort")

    @field_validator("protocol", mode="before")
    @classmethod
    def _protocol(cls, value: Any) -> Any:
        if value is None:
            return Protocol.TCP
        if value not in {p.value for p in Protocol}:
            raise ValueError(f"unknown protocol {value!r}: use TCP, UDP or SCTP")
        return value

    @field_validator("port")
    @classmethod
    def _port(cls, value: int | str | None) -> int | str | None:
        if isinstance(value, bool):
            raise ValueError("port must be a number or a port name")
        if isinstance(value, int) and not 1 <= value <= 65535:
            raise ValueError(f"port {value} is outside 1-65535")
        if isinstance(value, str):
            if value.isdigit():
                raise ValueError(f"port {value!r} is a quoted number: write it unquoted ({value})")
            if len(value) > 15 or not _PORT_NAME.match(value) or not re.search("[a-z]", value):
                raise ValueError(
                    f"port name {value!r} is not a valid name (lowercase letters, digits and '-', "
                    "at most 15 characters, at least one letter)"
                )
        return value

    @model_validator(mode="after")
    def _end_port(self) -> PolicyPort:
        if self.end_port is None:
            return self
        if not isinstance(self.port, int):
            raise ValueError("endPort needs a numeric port (it cannot follow a named port)")
        if not 1 <= self.end_port <= 65535:
            raise ValueError(f"endPort {self.end_port} is outside 1-65535")
        if self.end_port < self.port:
            raise ValueError(f"endPort {self.end_port} is below port {self.port}")
        return self


class PolicyRule(BaseModel):
    """One ingress or egress rule; `peers` is `from` for ingress and `to` for egress.

    `peers` None means the field was omitted or empty: every peer.
    """

    model_config = _STRICT

    peers: tuple[Peer, ...] | None = None
    ports: tuple[PolicyPort, ...] = ()


class NetworkPolicy(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    namespace: str
    name: str
    pod_selector: LabelSelector
    policy_types: frozenset[PolicyType]
    ingress: tuple[PolicyRule, ...] = ()
    egress: tuple[PolicyRule, ...] = ()

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"

    def rules(self, direction: PolicyType) -> tuple[PolicyRule, ...]:
        return self.ingress if direction is PolicyType.INGRESS else self.egress


class ContainerPort(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str | None = None
    port: int
    protocol: Protocol = Protocol.TCP


class PodInfo(BaseModel):
    """A pod, or the pod template of a workload: what its labels and named ports are."""

    model_config = ConfigDict(frozen=True)

    namespace: str
    name: str
    kind: str = "Pod"
    labels: dict[str, str] = Field(default_factory=dict)
    ports: tuple[ContainerPort, ...] = ()
    host_network: bool = False
    ip: str | None = None

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"

    def port_numbers(self, name: str, protocol: Protocol) -> list[int]:
        return [p.port for p in self.ports if p.name == name and p.protocol is protocol]
