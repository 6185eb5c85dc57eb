"""What a cloud adapter is, and how nsgsync finds one (entry-point group `nsgsync.providers`).

Adapters live in providers/ and are the only code that imports a cloud SDK. The core
hands them the Intent and gets resources back in the cloud API's own JSON shapes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from importlib.metadata import entry_points
from typing import Any, Protocol, runtime_checkable

from nsgsync.errors import ProviderError
from nsgsync.intent import Finding, Intent
from nsgsync.model import Topology
from nsgsync.plan import Plan, Resource

GROUP = "nsgsync.providers"

Progress = Callable[[str], None]


@runtime_checkable
class Connection(Protocol):
    """A live session with one cloud account, scoped to what one cluster owns."""

    def read(self) -> Sequence[Resource]:
        """Every resource nsgsync owns for this cluster, in the same shapes as render's."""
        ...

    def bind(self, desired: Sequence[Resource], actual: Sequence[Resource]) -> list[Resource]:
        """Fill in references the cloud decides (group ids) from what already exists."""
        ...

    def apply(self, plan: Plan, *, progress: Progress) -> None:
        """Carry out the plan's changes: add before remove, batched, retried."""
        ...


@runtime_checkable
class Provider(Protocol):
    name: str

    def validate(self, topology: Topology) -> None:
        """Check the topology's block for this provider; raise TopologyError if wrong."""
        ...

    def render(self, intent: Intent, topology: Topology) -> tuple[list[Resource], list[Finding]]:
        """The resources that realise the Intent (pure), and what rendering widened."""
        ...

    def check_limits(self, desired: Sequence[Resource], topology: Topology) -> None:
        """Raise LimitError when the desired resources do not fit the cloud's quotas."""
        ...

    def connect(self, topology: Topology, **clients: Any) -> Connection:
        """A session; tests pass clients or transports in, the CLI lets the SDK find them."""
        ...


@runtime_checkable
class Attaching(Protocol):
    """A provider whose resources reach pods through Kubernetes objects (AWS: SGPs)."""

    def attachments(
        self,
        topology: Topology,
        namespaces: Mapping[str, Mapping[str, str]],
        actual: Sequence[Resource],
    ) -> tuple[list[dict[str, Any]], list[Finding]]:
        """The Kubernetes manifests that attach the cloud resources to the pods."""
        ...


def installed() -> list[str]:
    return sorted(ep.name for ep in entry_points(group=GROUP))


def load_provider(name: str) -> Provider:
    found = [ep for ep in entry_points(group=GROUP) if ep.name == name]
    if not found:
        have = ", ".join(installed()) or "none"
        raise ProviderError(
            f"no provider named {name!r} is installed (installed: {have})",
            hint=f"pip install 'nsgsync[{name}]', or fix `provider:` in the topology",
        )
    try:
        provider = found[0].load()
    except ImportError as exc:
        raise ProviderError(
            f"provider {name!r} is registered but cannot be imported: {exc}",
            hint=f"install its SDK with: pip install 'nsgsync[{name}]'",
        ) from None
    if not isinstance(provider, Provider):
        raise ProviderError(f"entry point {name!r} in {GROUP} is not a provider")
    return provider
