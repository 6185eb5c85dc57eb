"""Attachments in the loop: the SecurityGroupPolicy objects nsgsync owns in the cluster.

They carry the labels `nsgsync.io/cluster` and `nsgsync.io/segment` (see the AWS
adapter's `attach` module). Stale ones (a removed segment, or a namespace no segment
takes any more) are deleted before the plan is applied, so that none points at a group
the apply deletes, except those of a segment whose group is retiring (network interfaces
still use it): they go after the apply, once the objects that replace them are applied, so
that pods starting from then on get the replacement and the old group drains. The others
are server-side applied after the apply, with the ids of the groups that exist then, and
only when they differ from the cluster's.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from nsgsync.errors import InputError
from nsgsync.provider import SEGMENT_TAG
from nsgsync.sources import apply_objects

log = logging.getLogger("nsgsync.controller")

GROUP, VERSION, PLURAL = "vpcresources.k8s.aws", "v1beta1", "securitygrouppolicies"
_RBAC_HINT = (
    "the controller needs get/list/create/patch/update/delete on securitygrouppolicies "
    "(vpcresources.k8s.aws) with --apply-attachments: see deploy/overlays/controller-aws/"
)


def _same(current: Mapping[str, Any], doc: Mapping[str, Any]) -> bool:
    cur_labels = (current.get("metadata") or {}).get("labels") or {}
    want_labels = doc["metadata"].get("labels") or {}
    return current.get("spec") == doc.get("spec") and all(
        cur_labels.get(k) == v for k, v in want_labels.items()
    )


class ClusterAttacher:
    def __init__(self, api_client: Any, cluster: str) -> None:
        self._api_client = api_client
        self.cluster = cluster
        self._current: dict[tuple[str, str], dict[str, Any]] = {}

    def _custom(self) -> Any:
        import kubernetes.client

        return kubernetes.client.CustomObjectsApi(self._api_client)

    def _errors(self, action: str, exc: Exception) -> InputError:
        import kubernetes.client

        if isinstance(exc, kubernetes.client.ApiException) and exc.status in (403, 404):
            hint = (
                _RBAC_HINT
                if exc.status == 403
                else (
                    "is the SecurityGroupPolicy CustomResourceDefinition installed? (EKS: "
                    "security groups for pods, ENABLE_POD_ENI=true on the VPC CNI)"
                )
            )
            return InputError(f"{action}: {exc.status} {exc.reason}", hint=hint)
        return InputError(f"{action}: {exc}", hint="the controller retries with backoff")

    def prune(self, keep: set[tuple[str, str]], retiring: frozenset[str] = frozenset()) -> None:
        import kubernetes.client
        import urllib3

        api = self._custom()
        try:
            listed = api.list_cluster_custom_object(
                GROUP,
                VERSION,
                PLURAL,
                label_selector=f"nsgsync.io/cluster={self.cluster}",
                _request_timeout=(10, 60),
            )
        except (kubernetes.client.ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise self._errors("cannot list the SecurityGroupPolicy objects", exc) from None
        current: dict[tuple[str, str], dict[str, Any]] = {}
        for item in listed.get("items") or []:
            meta = item.get("metadata") or {}
            current[(meta.get("namespace", ""), meta.get("name", ""))] = item
        for namespace, name in sorted(set(current) - keep):
            labels = (current[(namespace, name)].get("metadata") or {}).get("labels") or {}
            if labels.get(SEGMENT_TAG) in retiring:
                continue  # its group retires: kept until the group is unused and deleted
            try:
                api.delete_namespaced_custom_object(
                    GROUP, VERSION, namespace, PLURAL, name, _request_timeout=(10, 60)
                )
            except kubernetes.client.ApiException as exc:
                if exc.status != 404:  # already gone: what was wanted
                    raise self._errors(
                        f"cannot delete SecurityGroupPolicy {namespace}/{name}", exc
                    ) from None
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                raise self._errors(
                    f"cannot delete SecurityGroupPolicy {namespace}/{name}", exc
                ) from None
            log.info("securitygrouppolicy.%s/%s deleted (namespace %s)", GROUP, name, namespace)
            del current[(namespace, name)]
        self._current = current

    def apply(self, docs: Sequence[Mapping[str, Any]]) -> None:
        changed = [
            doc
            for doc in docs
            if (key := (doc["metadata"]["namespace"], doc["metadata"]["name"])) not in self._current
            or not _same(self._current[key], doc)
        ]
        if changed:
            for line in apply_objects(self._api_client, changed):
                log.info("%s", line)
        for doc in changed:
            self._current[(doc["metadata"]["namespace"], doc["metadata"]["name"])] = dict(doc)
