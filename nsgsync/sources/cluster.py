"""Policies, namespaces and pods from the live cluster, through the official client.

Objects are fetched as raw JSON, camelCase as the API server sends them, and go through
the same parsers as manifests on disk (`files.parse_policy`, `files.parse_pod`): a policy
is validated, and a bad one reported, the same whichever source it came from. Raw JSON
also skips the client's model deserialisation, the slow part of listing a big cluster.

The `kubernetes` package is the optional extra `nsgsync[cluster]`, so it is imported only
when the cluster is actually used: `nsgsync compile -f ...` works without it.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import yaml

from nsgsync.errors import InputError, did_you_mean, excerpt
from nsgsync.intent import Code
from nsgsync.model import (
    ForeignPolicy,
    Inventory,
    NetworkPolicy,
    PodInfo,
    adminpolicy,
    calico,
    cilium,
)
from nsgsync.model.kinds import KNOWN_KINDS
from nsgsync.model.tiers import TPolicy
from nsgsync.sources.calico import CalicoReader
from nsgsync.sources.files import (
    Document,
    OrderedPolicies,
    parse_admin_policy,
    parse_labels,
    parse_pod,
    parse_policy,
)

if TYPE_CHECKING:
    import kubernetes.client  # for annotations; imported at run time only when used

PAGE_SIZE = 500
FIELD_MANAGER = "nsgsync"
APPLY_PATCH = "application/apply-patch+yaml"
# (connect, read) seconds: an unreachable API server must fail a CronJob run, not hang it.
REQUEST_TIMEOUT = (10, 60)
# A continue token expires after a few minutes (410 Gone). A fresh list from the start is
# the only way to get a consistent snapshot again, so restart that kind's list this often.
_LIST_RESTARTS = 2

READ_RBAC_HINT = (
    "nsgsync needs get/list/watch on networkpolicies (networking.k8s.io); namespaces, pods "
    "and replicationcontrollers (core); deployments, statefulsets, daemonsets and "
    "replicasets (apps); jobs and cronjobs (batch). deploy/base/rbac.yaml has a ClusterRole "
    "granting exactly that; check with: kubectl auth can-i list pods --all-namespaces "
    "--as system:serviceaccount:NAMESPACE:SERVICEACCOUNT"
)
_UNREACHABLE_HINT = (
    "check --kubeconfig and --context (or KUBECONFIG), that the API server is reachable "
    "from here, and that the cluster is up; nothing was changed"
)
_FIX_IN_CLUSTER_HINT = (
    "the object comes from the live cluster: fix it there (kubectl edit) and run again; "
    "nothing was changed"
)


@dataclass(frozen=True)
class Listed:
    """One kind nsgsync lists, and where the API serves it."""

    kind: str
    api_version: str  # list items carry no kind/apiVersion, so they are put back from here
    plural: str  # the REST path's last segment, as RBAC names it too

    def path(self, namespace: str | None) -> str:
        prefix = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        if namespace is None:
            return f"{prefix}/{self.plural}"
        return f"{prefix}/namespaces/{{namespace}}/{self.plural}"


NAMESPACES = Listed("Namespace", "v1", "namespaces")  # cluster-scoped: listed with no namespace
POLICIES = Listed("NetworkPolicy", "networking.k8s.io/v1", "networkpolicies")
PODS = Listed("Pod", "v1", "pods")
# Kinds whose pod template tells nsgsync about pods that exist, or will, and their ports.
WORKLOADS = (
    Listed("Deployment", "apps/v1", "deployments"),
    Listed("StatefulSet", "apps/v1", "statefulsets"),
    Listed("DaemonSet", "apps/v1", "daemonsets"),
    Listed("ReplicaSet", "apps/v1", "replicasets"),
    Listed("ReplicationController", "v1", "replicationcontrollers"),
    Listed("Job", "batch/v1", "jobs"),
    Listed("CronJob", "batch/v1", "cronjobs"),
)
# Finished pods hold no address and receive no traffic. The field selector saves moving
# them over the wire (clusters with busy CronJobs keep many); the phase check in
# `_read` is what nsgsync relies on.
FINISHED = frozenset({"Succeeded", "Failed"})
POD_FIELD_SELECTOR = "status.phase!=Succeeded,status.phase!=Failed"

_GENERATED_HINT = "the objects to apply are nsgsync's own output: please report this as a bug"
# The kinds nsgsync writes into a cluster: (group, kind) -> plural of the REST path.
_WRITABLE = {("vpcresources.k8s.aws", "SecurityGroupPolicy"): "securitygrouppolicies"}


class _Expired(Exception):
    """A continue token expired (410): the list must start again."""


class _NotServed(Exception):
    """The API server does not serve the path (404): a kind whose CRD is not installed."""


# The kinds of the other dialects nsgsync compiles, by (group, kind): the version it reads.
DIALECT_KINDS = {("cilium.io", kind): "v2" for kind in cilium.KINDS}

_FOREIGN_RBAC_HINT = (
    "nsgsync must see every policy kind that may allow traffic: grant get/list/watch on "
    "it to nsgsync's service account (deploy/base/rbac.yaml does), or pass --ignore-kind KIND "
    "if that kind allows nothing more than the NetworkPolicies"
)


def _kubernetes() -> Any:
    try:
        import kubernetes
    except ImportError as exc:
        raise InputError(
            "reading or writing the live cluster needs the kubernetes client",
            hint="install it with: pip install 'nsgsync[cluster]'",
        ) from exc
    return kubernetes


def cluster_client(
    kubeconfig: str | None = None, context: str | None = None
) -> kubernetes.client.ApiClient:
    """A `kubernetes.client.ApiClient` for the cluster, as `load_cluster` builds one."""
    return _connect(kubeconfig, context)[0]


def _connect(
    kubeconfig: str | None, context: str | None
) -> tuple[kubernetes.client.ApiClient, str]:
    """The client and the name errors call the cluster by (`cluster:<context>`)."""
    k8s = _kubernetes()
    # Explicit --kubeconfig/--context win over the pod's own service account: someone
    # running nsgsync inside a pod against another cluster said so on purpose.
    if kubeconfig is None and context is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        configuration = k8s.client.Configuration()
        try:
            k8s.config.load_incluster_config(client_configuration=configuration)
        except k8s.config.ConfigException as exc:
            raise InputError(
                f"cannot use the in-cluster service account: {exc}",
                file="cluster:in-cluster",
                hint="run in a pod with a mounted service account token, or pass --kubeconfig",
            ) from exc
        return k8s.client.ApiClient(configuration), "cluster:in-cluster"
    files = _kubeconfig_files(kubeconfig)
    context = _check_context(files, context)
    source = files[0][0] if len(files) == 1 else os.pathsep.join(name for name, _ in files)
    try:
        # persist_config=False: nsgsync never rewrites a user's kubeconfig. The paths are
        # given explicitly: the client reads $KUBECONFIG once, when it is imported.
        client = k8s.config.new_client_from_config(
            config_file=os.pathsep.join(os.path.expanduser(name) for name, _ in files),
            context=context,
            persist_config=False,
        )
    except (k8s.config.ConfigException, OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(
            f"cannot use context {excerpt(context)} of the kubeconfig: {_without_values(exc)}",
            file=source,
            hint="fix the kubeconfig (check it with `kubectl config view`), or pass another "
            "--kubeconfig or --context",
        ) from exc
    return client, f"cluster:{context}"


_KUBECONFIG_HINT = (
    "pass --kubeconfig PATH (and --context NAME), or set KUBECONFIG; "
    "`kubectl config view` shows what kubectl uses"
)
_KUBECONFIG_LISTS = {"clusters": "cluster", "contexts": "context", "users": "user"}


def _kubeconfig_files(kubeconfig: str | None) -> list[tuple[str, dict[str, Any]]]:
    """The kubeconfig files the client will merge, each as named and as parsed.

    Checked here, so that a missing, unreadable or malformed file is named in one line
    rather than surfacing as whatever the client trips over.
    """
    explicit = kubeconfig is not None
    given = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
    names = [n for n in given.split(os.pathsep) if n]
    if not names:
        raise InputError("no kubeconfig file named", file=given, hint=_KUBECONFIG_HINT)
    found = [n for n in names if os.path.exists(os.path.expanduser(n))]
    # Like kubectl, a $KUBECONFIG list skips files that do not exist; one the user named
    # with --kubeconfig must exist.
    missing = [n for n in names if n not in found] if explicit else ([] if found else names)
    if missing:
        what = "--kubeconfig" if explicit else ("KUBECONFIG" if "KUBECONFIG" in os.environ else "")
        raise InputError(
            "kubeconfig file not found" + (f" (named by {what})" if what else ""),
            file=", ".join(missing),
            hint=_KUBECONFIG_HINT,
        )
    return [(name, _read_kubeconfig(name)) for name in found]


def _read_kubeconfig(name: str) -> dict[str, Any]:
    path = os.path.expanduser(name)
    try:
        with open(path, encoding="utf-8") as f:
            doc = yaml.safe_load(f)
    except IsADirectoryError as exc:
        raise InputError(
            "is a folder, not a kubeconfig file", file=name, hint=_KUBECONFIG_HINT
        ) from exc
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise InputError(
            f"cannot read the kubeconfig: {why}", file=name, hint=_KUBECONFIG_HINT
        ) from exc
    except RecursionError as exc:  # the YAML parser recurses once per level of nesting
        raise InputError(
            "malformed kubeconfig: nested too deeply", file=name, hint=_KUBECONFIG_HINT
        ) from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise InputError(
            f"malformed kubeconfig: {problem}",
            file=name,
            line=mark.line + 1 if mark is not None else None,
            hint=_KUBECONFIG_HINT,
        ) from exc
    if doc is None:
        raise InputError("the kubeconfig file is empty", file=name, hint=_KUBECONFIG_HINT)
    if not isinstance(doc, dict):
        raise InputError(
            "malformed kubeconfig: not a mapping of clusters, contexts and users",
            file=name,
            hint=_KUBECONFIG_HINT,
        )
    for key, body in _KUBECONFIG_LISTS.items():
        items = doc.get(key)
        if items is None:
            continue
        if not isinstance(items, list):
            raise InputError(
                "malformed kubeconfig: must be a list", file=name, field=key, hint=_KUBECONFIG_HINT
            )
        for i, item in enumerate(items):
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                raise InputError(
                    "malformed kubeconfig: each entry needs a name",
                    file=name,
                    field=f"{key}[{i}].name",
                    hint=_KUBECONFIG_HINT,
                )
            if key != "users" and not isinstance(item.get(body), dict):
                raise InputError(
                    f"malformed kubeconfig: {item['name']!r} has no {body} mapping",
                    file=name,
                    field=f"{key}[{i}].{body}",
                    hint=_KUBECONFIG_HINT,
                )
    current = doc.get("current-context")
    if current is not None and not isinstance(current, str):
        raise InputError(
            "malformed kubeconfig: must be a context name",
            file=name,
            field="current-context",
            hint=_KUBECONFIG_HINT,
        )
    return doc


def _check_context(files: Sequence[tuple[str, dict[str, Any]]], context: str | None) -> str:
    """The context to use, checked against those the kubeconfig has (merged as the client does)."""
    names: list[str] = []
    current: str | None = None
    for _, doc in files:
        names += [c["name"] for c in doc.get("contexts") or () if c["name"] not in names]
        if "current-context" in doc:  # the client lets a later file's win
            current = doc["current-context"]
    where = ", ".join(name for name, _ in files)
    shown = ", ".join(names[:20]) + (f" (+{len(names) - 20} more)" if len(names) > 20 else "")
    has = f"it has: {shown}" if names else "it has no contexts"
    if context is None:
        if not current:
            raise InputError(
                f"the kubeconfig has no current context; {has}",
                file=where,
                hint="pass --context NAME (see `kubectl config get-contexts`)",
            )
        if current not in names:
            raise InputError(
                f"the kubeconfig's current-context {excerpt(current)} is not one of its "
                f"contexts; {has}",
                file=where,
                hint="pass --context NAME, or fix current-context (`kubectl config use-context`)",
            )
        return current
    if context not in names:
        raise InputError(
            f"no context {excerpt(context)} in the kubeconfig{did_you_mean(context, names)}; {has}",
            file=where,
            hint="pass one of them with --context (see `kubectl config get-contexts`)",
        )
    return context


def _without_values(exc: BaseException) -> str:
    """The client's message without the entries it quotes: they may hold tokens or keys."""
    return re.sub(r"\{.*\}", "{...}", str(exc).replace("\n", " "))


def load_cluster(
    api_client: kubernetes.client.ApiClient | None = None,
    *,
    kubeconfig: str | None = None,
    context: str | None = None,
    namespaces: Sequence[str] | None = None,
    page_size: int = PAGE_SIZE,
) -> Inventory:
    """Read every NetworkPolicy, Namespace, running pod and pod template of the cluster.

    Without `api_client`, connects with the in-cluster service account when running in a
    pod (and neither `kubeconfig` nor `context` is given), else with the kubeconfig.
    `namespaces` limits policies and pods to those namespaces; every namespace's labels are
    read regardless, since a namespaceSelector in a policy may pick any of them.
    """
    if page_size < 1:
        raise ValueError("page_size must be at least 1")
    client: Any  # most of the client's methods are untyped: keep that inside this module
    if api_client is None:
        client, where = _connect(kubeconfig, context)
    else:
        client, where = api_client, f"cluster:{context or api_client.configuration.host}"
    try:
        return _read(client, where, namespaces, page_size)
    finally:
        if api_client is None:  # made here, so closed here
            client.close()


def _read(
    api_client: Any, where: str, namespaces: Sequence[str] | None, page_size: int
) -> Inventory:
    scopes: list[str | None] = [None] if namespaces is None else list(dict.fromkeys(namespaces))
    labels: dict[str, dict[str, str]] = {}
    policies: list[NetworkPolicy] = []
    pods: list[PodInfo] = []
    try:
        for doc in _documents(api_client, NAMESPACES, None, page_size, where):
            meta = doc.body.get("metadata") or {}
            name = meta.get("name")
            if not isinstance(name, str) or not name:
                raise InputError(
                    "Namespace without metadata.name", file=where, field="metadata.name"
                )
            labels[name] = parse_labels(
                meta.get("labels"),
                doc=doc,
                obj=f"Namespace {name}",
                field="metadata.labels",
            )
        for scope in scopes:
            for doc in _documents(api_client, POLICIES, scope, page_size, where):
                policies.append(parse_policy(doc))
            for doc in _documents(api_client, PODS, scope, page_size, where):
                status = doc.body.get("status")
                if isinstance(status, dict) and status.get("phase") in FINISHED:
                    continue
                if (pod := parse_pod(doc)) is not None:
                    pods.append(pod)
            for listed in WORKLOADS:
                for doc in _documents(api_client, listed, scope, page_size, where):
                    if (pod := parse_pod(doc)) is not None:
                        pods.append(pod)
        served = _served(api_client, where)
        ordered = OrderedPolicies()
        foreign = _foreign(api_client, where, page_size, served, ordered)
        ordered.note_absent()
        admin = _admin_policies(api_client, where, page_size, served)
        admin += _calico(api_client, where, page_size, labels, served)
        if not any(served.get(group) for group in calico.GROUPS):
            ordered.notes.append(
                (
                    str(Code.CALICO_CRDS_ABSENT),
                    "",
                    f"the cluster serves neither of Calico's groups ({', '.join(calico.GROUPS)}):"
                    " its CustomResourceDefinitions are not installed, so there are no Calico "
                    "policies to compile",
                )
            )
    except InputError as exc:
        if exc.obj or exc.field:  # an object nsgsync cannot use, as opposed to an API error
            exc.hint = _FIX_IN_CLUSTER_HINT
        raise
    # Every namespace was listed, whatever `namespaces` limits: the list is complete.
    return Inventory.build(
        policies,
        labels,
        pods,
        namespaces_complete=True,
        foreign=foreign,
        ordered=[*ordered.policies(), *admin],
        notes=ordered.notes,
    )


def _calico(
    api_client: Any,
    where: str,
    page_size: int,
    labels: dict[str, dict[str, str]],
    served: Mapping[str, list[str]],
) -> list[TPolicy]:
    """Calico's tiers, network sets and policies, lowered (docs/calico.md#reading).

    Calico's API server (projectcalico.org/v3) serves the same objects as its CRDs
    (crd.projectcalico.org/v1), so the first group served is read, not both; a kind the
    group does not serve (Tier before Calico 3.28, say) is absent, not an error.
    """
    reader = CalicoReader()
    for group in calico.GROUPS:
        versions = served.get(group)
        if not versions:
            continue
        version = "v3" if "v3" in versions else versions[0]
        # Tiers and sets first: the policies' lowering reads them.
        for kind in (calico.TIER_KIND, *calico.SET_KINDS, *calico.POLICY_KINDS):
            try:
                docs = _policy_kind(api_client, kind, f"{group}/{version}", page_size, where)
            except _NotServed:
                continue
            for doc in docs:
                reader.add(doc)
        break
    return reader.lowered(labels)


def plural_of(kind: str) -> str:
    lower = kind.lower()
    return lower[:-1] + "ies" if lower.endswith("y") else lower + "s"


def _served(api_client: Any, where: str) -> dict[str, list[str]]:
    """The API groups the cluster serves, each with its versions (none without discovery)."""
    try:
        _, body = _send(
            api_client,
            "GET",
            "/apis",
            query=[],
            action="cannot discover the cluster's API groups",
            where=where,
            forbidden_hint=READ_RBAC_HINT,
            missing_hint=READ_RBAC_HINT,
            missing_ok=True,
        )
    except _NotServed:
        return {}  # an API server without discovery serves no custom resources either
    served: dict[str, list[str]] = {}
    for group in body.get("groups") or []:
        if isinstance(group, dict) and isinstance(group.get("name"), str):
            versions = [v.get("version") for v in group.get("versions") or []]
            served[group["name"]] = [v for v in versions if isinstance(v, str)]
    return served


def _admin_policies(
    api_client: Any, where: str, page_size: int, served: Mapping[str, list[str]]
) -> list[TPolicy]:
    """network-policy-api's kinds nsgsync compiles, in the versions it reads, where served."""
    found: list[TPolicy] = []
    for api_version, kinds in sorted(adminpolicy.KINDS.items()):
        group, _, version = api_version.rpartition("/")
        if version not in served.get(group, ()):
            continue
        for kind in sorted(kinds):
            try:
                docs = _policy_kind(api_client, kind, api_version, page_size, where)
            except _NotServed:
                continue
            found += [parse_admin_policy(doc) for doc in docs]
    return found


def _foreign(
    api_client: Any,
    where: str,
    page_size: int,
    served: Mapping[str, list[str]],
    ordered: OrderedPolicies,
) -> list[ForeignPolicy]:
    """Policy objects of the kinds nsgsync does not compile, where their CRDs exist; those
    of the dialects `ordered` reads go to it, which notes the CRDs that are absent."""
    found: list[ForeignPolicy] = []
    kinds = set(KNOWN_KINDS) | set(DIALECT_KINDS)
    for group, kind in sorted(kinds):
        effect = KNOWN_KINDS.get((group, kind))
        if any(adminpolicy.compiled(f"{group}/{v}", kind) for v in served.get(group, ())):
            continue  # read and compiled by _admin_policies
        versions = served.get(group, [])
        if (group, kind) in DIALECT_KINDS:
            # Only the version nsgsync reads: another one has other fields.
            wanted = DIALECT_KINDS[(group, kind)]
            versions = [v for v in versions if v == wanted]
            if not versions:
                ordered.absent.append(f"{kind}.{group}/{wanted}")
        # A kind is served under each version of its group that has it; the first is enough.
        for version in versions:
            try:
                docs = _policy_kind(api_client, kind, f"{group}/{version}", page_size, where)
            except _NotServed:
                if (group, kind) in DIALECT_KINDS:
                    ordered.absent.append(f"{kind}.{group}/{version}")
                continue
            for doc in docs:
                ordered.read(doc, kind)
                if effect is None:
                    continue
                meta = doc.body.get("metadata") or {}
                name = str(meta.get("name") or "?")
                ns = meta.get("namespace")
                ref = f"{ns}/{name}" if isinstance(ns, str) and ns else name
                found.append(ForeignPolicy(kind, group, ref, where, effect))
            break
    return found


def _policy_kind(
    api_client: Any, kind: str, api_version: str, page_size: int, where: str
) -> list[Document]:
    """Every object of a policy kind of another project, cluster-wide; raises _NotServed
    where its CRD is not installed (a 403 names the RBAC for these kinds)."""
    return _documents(
        api_client,
        Listed(kind, api_version, plural_of(kind)),
        None,
        page_size,
        where,
        forbidden_hint=_FOREIGN_RBAC_HINT,
        missing_ok=True,
    )


def _documents(
    api_client: Any,
    listed: Listed,
    namespace: str | None,
    page_size: int,
    where: str,
    *,
    forbidden_hint: str = READ_RBAC_HINT,
    missing_ok: bool = False,
) -> list[Document]:
    """Every object of one kind, page by page, each as a Document like a manifest's.

    With `missing_ok`, raises _NotServed when the API server does not serve the kind.
    """
    scope = f"in namespace {namespace}" if namespace else "in the cluster"
    action = f"cannot list {listed.plural} {scope}"
    for attempt in range(_LIST_RESTARTS + 1):
        docs: list[Document] = []
        token: str | None = None
        try:
            while True:
                query: list[tuple[str, object]] = [("limit", page_size)]
                if token:
                    query.append(("continue", token))
                if listed.kind == "Pod":
                    query.append(("fieldSelector", POD_FIELD_SELECTOR))
                _, body = _send(
                    api_client,
                    "GET",
                    listed.path(namespace),
                    path_params={"namespace": namespace} if namespace else None,
                    query=query,
                    action=action,
                    where=where,
                    forbidden_hint=forbidden_hint,
                    missing_hint="nsgsync needs Kubernetes 1.21 or later (batch/v1 CronJob)",
                    missing_ok=missing_ok,
                )
                for item in body.get("items") or []:
                    if isinstance(item, dict):
                        docs.append(Document(where, 0, with_kind(item, listed)))
                token = (body.get("metadata") or {}).get("continue") or None
                if token is None:
                    return docs
        except _Expired:
            if attempt == _LIST_RESTARTS:
                raise InputError(
                    f"{action}: the list kept expiring before it was read to the end",
                    file=where,
                    hint="the API server is slow or overloaded; run again, or raise page_size",
                ) from None
    raise AssertionError("unreachable")  # pragma: no cover


def with_kind(item: dict[str, Any], listed: Listed) -> dict[str, Any]:
    # The API server leaves kind and apiVersion off list items; the parsers need the kind,
    # and error messages name it.
    return {"apiVersion": listed.api_version, "kind": listed.kind, **item}


def _send(
    api_client: Any,
    method: str,
    path: str,
    *,
    path_params: dict[str, str] | None = None,
    query: list[tuple[str, object]],
    body: Mapping[str, Any] | None = None,
    content_type: str | None = None,
    action: str,
    where: str,
    forbidden_hint: str,
    missing_hint: str,
    missing_ok: bool = False,
) -> tuple[int, dict[str, Any]]:
    """One request through the client's own auth, TLS and proxy handling: (status, JSON).

    The raw response is decoded here rather than by the typed APIs (CoreV1Api, ...):
    objects keep the API's camelCase shape the parsers expect, and nsgsync skips both the
    model deserialisation and importing the hundreds of model classes those APIs pull in,
    which would cost seconds on every run.
    """
    k8s = _kubernetes()
    import urllib3  # present whenever kubernetes is: the client is built on it

    headers = {"Accept": "application/json"}
    if content_type:
        headers["Content-Type"] = content_type
    try:
        request = api_client.param_serialize(
            method=method,
            resource_path=path,
            path_params=path_params,
            query_params=query,
            header_params=headers,
            body=dict(body) if body is not None else None,
            auth_settings=["BearerToken"],  # also runs the kubeconfig's token refresh (exec)
        )
        response = api_client.call_api(*request, _request_timeout=REQUEST_TIMEOUT)
        try:
            data = response.read()
        finally:
            response.response.release_conn()
    except k8s.config.ConfigException as exc:  # an exec credential plugin failed
        raise InputError(
            f"{action}: cannot get credentials: {exc}",
            file=where,
            hint="check the kubeconfig's user (e.g. that `aws eks get-token` works here)",
        ) from None
    except k8s.client.ApiException as exc:  # the client's wrapping of a TLS failure
        raise _unreachable(api_client, where, exc.reason) from None
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise _unreachable(api_client, where, exc) from None
    status = int(response.status)
    if status == 410:
        raise _Expired
    if status == 404 and missing_ok:
        raise _NotServed
    if not 200 <= status <= 299:
        raise _api_error(status, response.reason, data, action, where, forbidden_hint, missing_hint)
    try:
        decoded = json.loads(data)
    except ValueError:
        decoded = None
    if not isinstance(decoded, dict):
        raise InputError(
            f"{action}: the API server answered something other than a JSON object",
            file=where,
            hint=_UNREACHABLE_HINT,
        )
    return status, decoded


def _unreachable(api_client: Any, where: str, why: object) -> InputError:
    host = api_client.configuration.host
    return InputError(
        f"cannot reach the Kubernetes API server at {host}: {why}",
        file=where,
        hint=_UNREACHABLE_HINT,
    )


def _api_error(
    status: int,
    reason: object,
    data: bytes,
    action: str,
    where: str,
    forbidden_hint: str,
    missing_hint: str,
) -> InputError:
    message = str(reason)
    try:
        status_body = json.loads(data)
        if isinstance(status_body, dict) and status_body.get("message"):
            message = str(status_body["message"])  # the API server's own words
    except ValueError:
        pass
    if status == 401:
        return InputError(
            f"{action}: the API server rejected the credentials (401 Unauthorized)",
            file=where,
            hint="the token or client certificate is missing, wrong or expired: log in "
            "again (e.g. aws eks update-kubeconfig) or check the service account",
        )
    if status == 403:
        return InputError(f"{action}: forbidden (403): {message}", file=where, hint=forbidden_hint)
    if status == 404:
        return InputError(f"{action}: not found (404): {message}", file=where, hint=missing_hint)
    return InputError(
        f"{action}: the API server answered {status}: {message}",
        file=where,
        hint="run again; if it persists, check the API server's health; nothing was changed",
    )


# --- writing: server-side apply of the objects nsgsync owns in the cluster ---


@dataclass(frozen=True)
class _Target:
    group: str
    version: str
    plural: str
    kind: str
    namespace: str
    name: str


def _target(doc: Mapping[str, Any]) -> _Target:
    api_version, kind = doc.get("apiVersion"), doc.get("kind")
    meta = doc.get("metadata")
    if not isinstance(meta, dict):
        meta = {}
    name, namespace = meta.get("name"), meta.get("namespace")
    obj = f"{kind} {namespace}/{name}"
    if not isinstance(api_version, str) or not isinstance(kind, str):
        raise InputError(
            "an object to apply needs kind and apiVersion", obj=obj, hint=_GENERATED_HINT
        )
    group, _, version = api_version.rpartition("/")
    plural = _WRITABLE.get((group, kind))
    if plural is None:
        known = ", ".join(f"{k} ({g})" for g, k in sorted(_WRITABLE))
        raise InputError(
            f"nsgsync does not apply {kind} ({api_version}) to a cluster",
            obj=obj,
            hint=f"it writes only: {known}",
        )
    for field, value in (("metadata.name", name), ("metadata.namespace", namespace)):
        if not isinstance(value, str) or not value:
            raise InputError(
                f"{field} is required to apply it", obj=obj, field=field, hint=_GENERATED_HINT
            )
    assert isinstance(name, str) and isinstance(namespace, str)
    return _Target(group, version, plural, kind, namespace, name)


def apply_objects(
    api_client: kubernetes.client.ApiClient, docs: Sequence[Mapping[str, Any]]
) -> list[str]:
    """Server-side apply each manifest (field manager "nsgsync", conflicts forced).

    Returns one kubectl-like line per object: `<kind>.<group>/<name> created|configured`.
    Forcing is right here: nsgsync owns these objects, and a hand edit is drift to revert.
    """
    client: Any = api_client  # its methods are untyped: keep that inside this module
    where = f"cluster:{client.configuration.host}"
    # Check every object before writing any, so a bad one does not leave half a batch.
    targets = [_target(doc) for doc in docs]
    lines: list[str] = []
    for doc, t in zip(docs, targets, strict=True):
        resource = f"{t.plural}.{t.group}"
        prefix = "/api" if not t.group else f"/apis/{t.group}"
        status, _ = _send(
            client,
            "PATCH",
            f"{prefix}/{t.version}/namespaces/{{namespace}}/{t.plural}/{{name}}",
            path_params={"namespace": t.namespace, "name": t.name},
            query=[("fieldManager", FIELD_MANAGER), ("force", True)],
            body=doc,
            content_type=APPLY_PATCH,
            action=f"cannot apply {t.kind} {t.namespace}/{t.name}",
            where=where,
            forbidden_hint=f"nsgsync needs get/list/create/patch on {resource} "
            "(see deploy/overlays/controller-aws/rbac.yaml)",
            missing_hint=f"the API server does not serve {resource}/{t.version}: is its "
            "CustomResourceDefinition installed? (EKS: security groups for pods, "
            "ENABLE_POD_ENI=true on the VPC CNI)",
        )
        verb = "created" if status == 201 else "configured"
        lines.append(f"{t.kind.lower()}.{t.group}/{t.name} {verb} (namespace {t.namespace})")
    return lines


def prune_objects(
    api_client: kubernetes.client.ApiClient,
    *,
    api_version: str,
    kind: str,
    labels: Mapping[str, str],
    stale: Callable[[Mapping[str, Any]], bool],
) -> list[str]:
    """Delete the objects of `kind`, in every namespace, that carry `labels` (nsgsync's
    ownership marks) and that `stale` says are no longer wanted.

    Returns one kubectl-like line per object deleted: `<kind>.<group>/<name> deleted`.
    """
    client: Any = api_client
    where = f"cluster:{client.configuration.host}"
    group, _, version = api_version.rpartition("/")
    plural = _WRITABLE[(group, kind)]
    resource = f"{plural}.{group}"
    forbidden = (
        f"nsgsync needs list/delete on {resource} (see deploy/overlays/controller-aws/rbac.yaml)"
    )
    missing = f"the API server does not serve {resource}/{version}"
    selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
    found: list[Mapping[str, Any]] = []
    token: str | None = None
    while True:
        query: list[tuple[str, object]] = [("labelSelector", selector), ("limit", 500)]
        if token:
            query.append(("continue", token))
        _, body = _send(
            client,
            "GET",
            f"/apis/{group}/{version}/{plural}",
            query=query,
            action=f"cannot list {resource}",
            where=where,
            forbidden_hint=forbidden,
            missing_hint=missing,
        )
        found += [i for i in body.get("items") or [] if isinstance(i, dict)]
        token = (body.get("metadata") or {}).get("continue") or None
        if token is None:
            break
    lines: list[str] = []
    for item in sorted(found, key=lambda i: (_meta(i, "namespace"), _meta(i, "name"))):
        if not stale(item):
            continue
        namespace, name = _meta(item, "namespace"), _meta(item, "name")
        _send(
            client,
            "DELETE",
            f"/apis/{group}/{version}/namespaces/{{namespace}}/{plural}/{{name}}",
            path_params={"namespace": namespace, "name": name},
            query=[],
            action=f"cannot delete {kind} {namespace}/{name}",
            where=where,
            forbidden_hint=forbidden,
            missing_hint=missing,
        )
        lines.append(f"{kind.lower()}.{group}/{name} deleted (namespace {namespace})")
    return lines


def _meta(item: Mapping[str, Any], key: str) -> str:
    meta = item.get("metadata")
    return str(meta.get(key, "")) if isinstance(meta, dict) else ""


def merge_inventories(files: Inventory, cluster: Inventory) -> Inventory:
    """Files and cluster read together.

    A policy in both is normal (manifests checked out from the repository the cluster is
    fed from), not the mistake a duplicate between two files is; the files' version wins,
    since files given beside the cluster are a change being previewed. Namespaces and pods
    are facts of the cluster, so the cluster's win.
    """
    policies = {p.ref: p for p in cluster.policies} | {p.ref: p for p in files.policies}
    namespaces = files.described_namespaces | cluster.described_namespaces
    pods = {(p.namespace, p.kind, p.name): p for p in (*files.pods, *cluster.pods)}
    # A policy of another dialect: (kind, namespace/name) before a `specs[i]` suffix.
    in_files = {(p.dialect, p.ref.split(" ")[0]) for p in files.ordered}
    ordered = [
        *files.ordered,
        *(p for p in cluster.ordered if (p.dialect, p.ref.split(" ")[0]) not in in_files),
    ]
    return Inventory.build(
        policies.values(),
        namespaces,
        pods.values(),
        namespaces_complete=files.namespaces_complete or cluster.namespaces_complete,
        foreign=(*files.foreign, *cluster.foreign),
        ordered=ordered,
        notes=(*files.notes, *cluster.notes),
    )
