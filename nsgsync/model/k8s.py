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
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    field_validator,
    model_validator,
)

from nsgsync.errors import excerpt

_STRICT = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"

# --- Kubernetes' name and label syntax (k8s.io/apimachinery/pkg/util/validation), with the
# API server's wording, so that a manifest nsgsync accepts is one the cluster accepts too.
# Always fullmatch: `$` would let a trailing newline through.

_QUALIFIED_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")

_QUALIFIED_NAME_MSG = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with "
    "an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for "
    "validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
)
_LABEL_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' "
    "or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or "
    "'my_value',  or '12345', regex used for validation is "
    "'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
)
_DNS1123_LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
    "and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', "
    "regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
_DNS1123_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' "
    "or '.', and must start and end with an alphanumeric character (e.g. 'example.com', "
    "regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)


_PORT_NAME_CHARS = re.compile(r"[-a-z0-9]*")


def _checked(
    value: str, limit: int, pattern: re.Pattern[str], message: str, *, part: str = ""
) -> list[str]:
    """The API server's two complaints about a name: its length, then its characters."""
    errors = []
    if len(value) > limit:
        errors.append(f"{part}must be no more than {limit} characters")
    if not pattern.fullmatch(value):
        errors.append(f"{part}{message}")
    return errors


def dns1123_label_errors(value: str) -> list[str]:
    """Why `value` is not a DNS-1123 label (a Namespace name), as the API server says it."""
    return _checked(value, 63, _DNS1123_LABEL, _DNS1123_LABEL_MSG)


def dns1123_subdomain_errors(value: str) -> list[str]:
    """Why `value` is not a DNS-1123 subdomain (a Pod or NetworkPolicy name)."""
    return _checked(value, 253, _DNS1123_SUBDOMAIN, _DNS1123_SUBDOMAIN_MSG)


def label_key_errors(key: str) -> list[str]:
    """Why `key` is not a label key: an optional DNS subdomain prefix and '/', then a name."""
    parts = key.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            return ["prefix part must be non-empty"]
        errors = [f"prefix part {e}" for e in dns1123_subdomain_errors(prefix)]
        if errors:
            return errors
    else:
        return [
            f"a qualified name {_QUALIFIED_NAME_MSG} with an optional DNS subdomain prefix "
            "and '/' (e.g. 'example.com/MyName')"
        ]
    if not name:
        return ["name part must be non-empty"]
    return _checked(name, 63, _QUALIFIED_NAME, _QUALIFIED_NAME_MSG, part="name part ")


def label_value_errors(value: str) -> list[str]:
    return _checked(value, 63, _LABEL_VALUE, _LABEL_VALUE_MSG)


def port_name_errors(value: str) -> list[str]:
    """Why `value` is not an IANA service name (a named port), as the API server says it."""
    errors = _checked(
        value,
        15,
        _PORT_NAME_CHARS,
        "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)",
    )
    if "--" in value:
        errors.append("must not contain consecutive hyphens (-)")
    if not re.search("[a-z]", value):
        errors.append("must contain at least one letter (a-z)")
    if value.startswith("-") or value.endswith("-"):
        errors.append("must not begin or end with a hyphen (-)")
    return errors


def invalid(value: object, errors: list[str]) -> str:
    """The API server's `Invalid value: "x": why` message, with the value cut short."""
    return f"Invalid value: {excerpt(value)}: {'; '.join(errors)}"


def check_labels(value: Mapping[str, str]) -> None:
    """Raise ValueError on the first label whose key or value Kubernetes would refuse."""
    for key, val in value.items():
        if errors := label_key_errors(key):
            raise ValueError(invalid(key, errors))
        if errors := label_value_errors(val):
            raise ValueError(invalid(val, errors))


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

    key: StrictStr
    operator: Operator
    values: tuple[StrictStr, ...] = ()

    @field_validator("key")
    @classmethod
    def _key(cls, value: str) -> str:
        if errors := label_key_errors(value):
            raise ValueError(invalid(value, errors))
        return value

    @field_validator("values", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return () if value is None else value

    @field_validator("values")
    @classmethod
    def _values(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            if errors := label_value_errors(item):
                raise ValueError(invalid(item, errors))
        return value

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

    match_labels: dict[StrictStr, StrictStr] = Field(default_factory=dict, alias="matchLabels")
    match_expressions: tuple[Requirement, ...] = Field(default=(), alias="matchExpressions")

    @field_validator("match_labels", mode="before")
    @classmethod
    def _labels_are_strings(cls, value: Any) -> Any:
        if value is None:
            return {}
        if isinstance(value, dict):
            for k, v in value.items():
                if not isinstance(k, str):
                    raise ValueError(f"label key {excerpt(k)} must be a string")
                if not isinstance(v, str):
                    raise ValueError(
                        f"label {excerpt(k)} must have a string value, got {excerpt(v)} "
                        '(quote values like "true" or "1")'
                    )
            check_labels(value)
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
        raise ValueError(
            f"{excerpt(text)} is not a valid CIDR (expected e.g. 10.0.0.0/16)"
        ) from None
    if "/" not in text:
        raise ValueError(
            f"{excerpt(text)} is not a CIDR: it has no prefix length "
            f"(e.g. {excerpt(text)[1:-1]}/32)"
        )
    return text


class IPBlock(BaseModel):
    model_config = _STRICT

    cidr: StrictStr
    except_: tuple[StrictStr, ...] = Field(default=(), alias="except")

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
                raise ValueError(
                    f"except {excerpt(text)} is not a strict subset of cidr {excerpt(self.cidr)}"
                )
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


def _port_number(value: int, what: str) -> int:
    if not 1 <= value <= 65535:
        raise ValueError(f"{what} {excerpt(value)} is outside 1-65535")
    return value


def check_port_name(value: str) -> str:
    if value.isdigit():
        raise ValueError(f"port {excerpt(value)} is a quoted number: write it unquoted ({value})")
    if errors := port_name_errors(value):
        raise ValueError(f"port name {invalid(value, errors)}")
    return value


class PolicyPort(BaseModel):
    model_config = _STRICT

    protocol: Protocol = Protocol.TCP
    port: int | str | None = None
    end_port: StrictInt | None = Field(default=None, alias="endPort")

    @field_validator("protocol", mode="before")
    @classmethod
    def _protocol(cls, value: Any) -> Any:
        if value is None:
            return Protocol.TCP
        if not isinstance(value, str) or value not in {p.value for p in Protocol}:
            raise ValueError(f"unknown protocol {excerpt(value)}: use TCP, UDP or SCTP")
        return value

    @field_validator("port", mode="plain")
    @classmethod
    def _port(cls, value: Any) -> int | str | None:
        # Kubernetes' IntOrString: an integer, or a string that is a port *name*. A plain
        # validator, so that pydantic's lax mode cannot turn `true` into 1 or "80" into 80.
        if value is None:
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            return _port_number(value, "port")
        if isinstance(value, str):
            return check_port_name(value)
        raise ValueError(f"port must be a number or a port name, got {excerpt(value)}")

    @model_validator(mode="after")
    def _end_port(self) -> PolicyPort:
        if self.end_port is None:
            return self
        if not isinstance(self.port, int):
            raise ValueError("endPort needs a numeric port (it cannot follow a named port)")
        _port_number(self.end_port, "endPort")
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
    # spec.serviceAccountName; Calico's selectors can name it (docs/calico.md).
    service_account: str = "default"

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"

    def port_numbers(self, name: str, protocol: Protocol) -> list[int]:
        return [p.port for p in self.ports if p.name == name and p.protocol is protocol]
