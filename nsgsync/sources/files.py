"""Manifests and topology from YAML or JSON files and folders.

Bad input stops here, with file, object and field named; unknown kinds are skipped.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from nsgsync.errors import InputError, TopologyError, excerpt
from nsgsync.model import (
    ContainerPort,
    ForeignPolicy,
    Inventory,
    LabelSelector,
    NetworkPolicy,
    Peer,
    PodInfo,
    PolicyPort,
    PolicyRule,
    PolicyType,
    Protocol,
    Topology,
)
from nsgsync.model.kinds import NETWORK_POLICY_V1, classify, group_of

_SUFFIXES = {".yaml", ".yml", ".json"}
_TEMPLATE_KINDS = {
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "ReplicaSet",
    "ReplicationController",
    "Job",
}


@dataclass(frozen=True)
class Document:
    file: str
    line: int
    body: dict[str, Any]


def _format_loc(loc: Iterable[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


def _first_error(exc: ValidationError, prefix: str) -> tuple[str, str]:
    err = exc.errors()[0]
    loc = [p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
    field = _format_loc([prefix, *loc]) if prefix else _format_loc(loc)
    msg = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = "unknown field (not part of the API; check its spelling)"
    if err["type"] == "literal_error" or err["type"] == "enum":
        msg = f"{msg} (got {err.get('input')!r})"
    return field, msg


def iter_files(paths: Iterable[str | Path]) -> Iterator[Path]:
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                rel = child.relative_to(path).parts
                if (
                    child.is_file()
                    and child.suffix in _SUFFIXES
                    and not any(p.startswith(".") for p in rel)
                ):
                    yield child
        elif path.is_file():
            yield path
        else:
            raise InputError("no such file or folder", file=str(path))


def read_documents(path: Path) -> Iterator[Document]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read file: {exc}", file=str(path)) from None
    loader = yaml.SafeLoader(text)
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            line = node.start_mark.line + 1
            body = loader.construct_document(node)
            if body is None:
                continue
            if not isinstance(body, dict):
                raise InputError(
                    "a document must be a mapping (a Kubernetes object)", file=str(path), line=line
                )
            yield from _flatten(Document(str(path), line, body))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise InputError(f"malformed YAML: {problem}", file=str(path), line=line) from None
    finally:
        loader.dispose()


def _flatten(doc: Document) -> Iterator[Document]:
    kind = doc.body.get("kind")
    if isinstance(kind, str) and kind.endswith("List") and isinstance(doc.body.get("items"), list):
        for i, item in enumerate(doc.body["items"]):
            if not isinstance(item, dict):
                raise InputError(
                    "a list item must be a mapping",
                    file=doc.file,
                    line=doc.line,
                    field=f"items[{i}]",
                )
            yield from _flatten(Document(doc.file, doc.line, item))
    else:
        yield doc


# --- NetworkPolicy, in the shape of its YAML so that errors name the user's fields ---


class _StrictModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class _Ingress(_StrictModel):
    from_: list[Peer] | None = Field(default=None, alias="from")
    ports: list[PolicyPort] | None = None


class _Egress(_StrictModel):
    to: list[Peer] | None = None
    ports: list[PolicyPort] | None = None


class _Spec(_StrictModel):
    pod_selector: LabelSelector = Field(alias="podSelector")
    policy_types: list[PolicyType] | None = Field(default=None, alias="policyTypes")
    ingress: list[_Ingress] | None = None
    egress: list[_Egress] | None = None

    @field_validator("pod_selector", mode="before")
    @classmethod
    def _null_selector(cls, value: Any) -> Any:
        return {} if value is None else value


def _metadata(doc: Document) -> tuple[str, str]:
    meta = doc.body.get("metadata") or {}
    kind = doc.body.get("kind")
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str) or not meta["name"]:
        raise InputError(
            f"{kind} without metadata.name", file=doc.file, line=doc.line, field="metadata.name"
        )
    namespace = meta.get("namespace") or "default"
    if not isinstance(namespace, str):
        raise InputError(
            "metadata.namespace must be a string",
            file=doc.file,
            line=doc.line,
            obj=f"{kind} {meta['name']}",
            field="metadata.namespace",
        )
    return namespace, meta["name"]


def parse_policy(doc: Document) -> NetworkPolicy:
    namespace, name = _metadata(doc)
    obj = f"NetworkPolicy {namespace}/{name}"
    spec = doc.body.get("spec")
    if not isinstance(spec, dict):
        raise InputError(
            "spec is missing or not a mapping", file=doc.file, line=doc.line, obj=obj, field="spec"
        )
    try:
        parsed = _Spec.model_validate(spec)
    except ValidationError as exc:
        field, msg = _first_error(exc, "spec")
        raise InputError(msg, file=doc.file, line=doc.line, obj=obj, field=field) from None
    ingress = tuple(
        PolicyRule(peers=tuple(r.from_) if r.from_ else None, ports=tuple(r.ports or ()))
        for r in parsed.ingress or ()
    )
    egress = tuple(
        PolicyRule(peers=tuple(r.to) if r.to else None, ports=tuple(r.ports or ()))
        for r in parsed.egress or ()
    )
    if parsed.policy_types is None:
        # Kubernetes' defaulting: Ingress always, Egress only when egress rules exist.
        types = {PolicyType.INGRESS} | ({PolicyType.EGRESS} if egress else set())
    else:
        types = set(parsed.policy_types)
    return NetworkPolicy(
        namespace=namespace,
        name=name,
        pod_selector=parsed.pod_selector,
        policy_types=frozenset(types),
        ingress=ingress,
        egress=egress,
    )


def _labels(value: Any, *, doc: Document, obj: str, field: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise InputError(
            'labels must map strings to strings (quote values like "true" or "1")',
            file=doc.file,
            line=doc.line,
            obj=obj,
            field=field,
        )
    return dict(value)


def _pod_from_spec(
    doc: Document, *, namespace: str, name: str, kind: str, template: Any, prefix: str
) -> PodInfo | None:
    obj = f"{kind} {namespace}/{name}"
    if not isinstance(template, dict):
        return None
    meta = template.get("metadata") or {}
    spec = template.get("spec") or {}
    if not isinstance(meta, dict) or not isinstance(spec, dict):
        return None
    labels = _labels(meta.get("labels"), doc=doc, obj=obj, field=f"{prefix}metadata.labels")
    ports: list[ContainerPort] = []
    for group in ("initContainers", "containers"):
        for ci, container in enumerate(spec.get(group) or []):
            if not isinstance(container, dict):
                continue
            for pi, port in enumerate(container.get("ports") or []):
                field = f"{prefix}spec.{group}[{ci}].ports[{pi}]"
                if not isinstance(port, dict):
                    raise InputError(
                        "a container port must be a mapping",
                        file=doc.file,
                        line=doc.line,
                        obj=obj,
                        field=field,
                    )
                number = port.get("containerPort")
                if (
                    isinstance(number, bool)
                    or not isinstance(number, int)
                    or not 1 <= number <= 65535
                ):
                    raise InputError(
                        f"containerPort {number!r} is not a port number 1-65535",
                        file=doc.file,
                        line=doc.line,
                        obj=obj,
                        field=f"{field}.containerPort",
                    )
                proto = port.get("protocol") or "TCP"
                if proto not in {p.value for p in Protocol}:
                    raise InputError(
                        f"unknown protocol {proto!r}: use TCP, UDP or SCTP",
                        file=doc.file,
                        line=doc.line,
                        obj=obj,
                        field=f"{field}.protocol",
                    )
                port_name = port.get("name")
                ports.append(
                    ContainerPort(
                        name=port_name if isinstance(port_name, str) else None,
                        port=number,
                        protocol=Protocol(proto),
                    )
                )
    status = doc.body.get("status") if kind == "Pod" else None
    ip = status.get("podIP") if isinstance(status, dict) else None
    return PodInfo(
        namespace=namespace,
        name=name,
        kind=kind,
        labels=labels,
        ports=tuple(ports),
        host_network=bool(spec.get("hostNetwork")),
        ip=ip if isinstance(ip, str) else None,
    )


def parse_pod(doc: Document) -> PodInfo | None:
    kind = str(doc.body.get("kind"))
    namespace, name = _metadata(doc)
    spec = doc.body.get("spec") or {}
    if kind == "Pod":
        return _pod_from_spec(
            doc,
            namespace=namespace,
            name=name,
            kind=kind,
            template={"metadata": doc.body.get("metadata"), "spec": spec},
            prefix="",
        )
    if not isinstance(spec, dict):
        return None
    if kind == "CronJob":
        job = spec.get("jobTemplate") or {}
        template = (job.get("spec") or {}).get("template") if isinstance(job, dict) else None
        return _pod_from_spec(
            doc,
            namespace=namespace,
            name=name,
            kind=kind,
            template=template,
            prefix="spec.jobTemplate.spec.template.",
        )
    return _pod_from_spec(
        doc,
        namespace=namespace,
        name=name,
        kind=kind,
        template=spec.get("template"),
        prefix="spec.template.",
    )


def load_manifests(paths: Iterable[str | Path]) -> Inventory:
    """Read every NetworkPolicy, Namespace and pod (or pod template) under `paths`."""
    policies: dict[str, tuple[NetworkPolicy, str]] = {}
    namespaces: dict[str, dict[str, str]] = {}
    pods: dict[tuple[str, str, str], PodInfo] = {}
    foreign: list[ForeignPolicy] = []
    for path in iter_files(paths):
        for doc in read_documents(path):
            kind = doc.body.get("kind")
            if (found := foreign_policy(doc, where=f"{doc.file}:{doc.line}")) is not None:
                foreign.append(found)
            elif kind == "NetworkPolicy":
                check_policy_api_version(doc)
                policy = parse_policy(doc)
                if policy.ref in policies:
                    raise InputError(
                        f"NetworkPolicy {policy.ref} is defined twice "
                        f"(also in {policies[policy.ref][1]})",
                        file=doc.file,
                        line=doc.line,
                        obj=f"NetworkPolicy {policy.ref}",
                    )
                policies[policy.ref] = (policy, doc.file)
            elif kind == "Namespace":
                meta = doc.body.get("metadata") or {}
                name = meta.get("name") if isinstance(meta, dict) else None
                if not isinstance(name, str) or not name:
                    raise InputError(
                        "Namespace without metadata.name",
                        file=doc.file,
                        line=doc.line,
                        field="metadata.name",
                    )
                namespaces[name] = _labels(
                    meta.get("labels"), doc=doc, obj=f"Namespace {name}", field="metadata.labels"
                )
            elif kind == "Pod" or kind == "CronJob" or kind in _TEMPLATE_KINDS:
                pod = parse_pod(doc)
                if pod is not None:
                    pods[(pod.namespace, pod.kind, pod.name)] = pod
    return Inventory.build(
        (p for p, _ in policies.values()), namespaces, pods.values(), foreign=foreign
    )


def foreign_policy(doc: Document, *, where: str) -> ForeignPolicy | None:
    """The document as a policy of a kind nsgsync does not compile, if it is one."""
    api_version, kind = doc.body.get("apiVersion"), doc.body.get("kind")
    if not isinstance(api_version, str) or not isinstance(kind, str):
        return None
    effect = classify(api_version, kind)
    if effect is None:
        return None
    meta = doc.body.get("metadata")
    meta = meta if isinstance(meta, dict) else {}
    name = meta.get("name") if isinstance(meta.get("name"), str) else "?"
    namespace = meta.get("namespace")
    ref = f"{namespace}/{name}" if isinstance(namespace, str) and namespace else str(name)
    return ForeignPolicy(kind, group_of(api_version), ref, where, effect)


def check_policy_api_version(doc: Document) -> None:
    """A NetworkPolicy of another API version is no v1 policy: refuse, never guess."""
    api_version = doc.body.get("apiVersion")
    if api_version is None or api_version == NETWORK_POLICY_V1:
        return
    raise InputError(
        f"apiVersion {excerpt(api_version)} is not one nsgsync reads for kind NetworkPolicy",
        file=doc.file,
        line=doc.line,
        field="apiVersion",
        hint=f"Kubernetes serves NetworkPolicy as {NETWORK_POLICY_V1}; for a CNI's own "
        "policy kinds see docs/semantics.md",
    )


def load_topology(path: str | Path) -> Topology:
    docs = list(read_documents(Path(path)))
    if len(docs) != 1:
        raise TopologyError(f"expected one Topology document, found {len(docs)}", file=str(path))
    doc = docs[0]
    try:
        return Topology.model_validate(doc.body)
    except ValidationError as exc:
        field, msg = _first_error(exc, "")
        raise TopologyError(
            msg, file=str(path), obj=f"Topology {doc.body.get('cluster', '?')}", field=field or None
        ) from None


def topology_from_mapping(body: Mapping[str, Any], *, where: str = "<topology>") -> Topology:
    try:
        return Topology.model_validate(dict(body))
    except ValidationError as exc:
        field, msg = _first_error(exc, "")
        raise TopologyError(msg, file=where, field=field or None) from None
