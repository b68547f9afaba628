"""``ResourceRequirements`` -> Dask worker resources, and whether any worker can meet them.

Mapping (override with ``DaskExecutor(resource_names=...)``):

==================  ============
ResourceRequirements  Dask resource
==================  ============
cpu_units           ``CPU``
gpu_units           ``GPU``
memory_mb           ``MEMORY_MB``
io_weight           ``IO``
network_weight      ``NETWORK``
priority            ``submit(priority=...)`` (higher runs first, as in the engine)
==================  ============

Only what a state *declares* is requested: an amount that differs from the
``ResourceRequirements`` default (``gpu_units=1`` asks for one GPU and no CPU), or every
amount of the types named in ``resource_types=`` when that is narrowed. Dask only meters
resources that workers declare (``dask worker --resources "GPU=1"``), so a declared resource
no worker declares is not requested, except ``GPU``: a GPU state waits for a GPU worker (an
adaptive cluster may start one) and fails with :class:`ResourceError` when none comes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import fields
from typing import Any

from ..engine._errors import ResourceError
from ..engine._requirements import ResourceRequirements, ResourceType

DEFAULT_RESOURCE_NAMES: dict[ResourceType, str] = {
    ResourceType.CPU: "CPU",
    ResourceType.GPU: "GPU",
    ResourceType.MEMORY: "MEMORY_MB",
    ResourceType.IO: "IO",
    ResourceType.NETWORK: "NETWORK",
}

#: Dask resource names that are always requested even when no worker declares them.
ALWAYS_REQUESTED = frozenset({"GPU"})

_FIELDS = {ResourceType.CPU: "cpu_units", ResourceType.MEMORY: "memory_mb", ResourceType.IO: "io_weight",
           ResourceType.NETWORK: "network_weight", ResourceType.GPU: "gpu_units"}
_DEFAULTS = {f.name: f.default for f in fields(ResourceRequirements)}


def requested(req: ResourceRequirements | None, names: Mapping[ResourceType, str]) -> dict[str, float]:
    """The Dask resources ``req`` declares (see the module docstring), before looking at the cluster."""
    if req is None:
        return {}
    narrowed = req.resource_types != ResourceType.ALL
    out: dict[str, float] = {}
    for rtype, amount in req.amounts().items():
        if rtype in names and (narrowed or amount != _DEFAULTS[_FIELDS[rtype]]):
            out[names[rtype]] = amount
    return out


def metered(wanted: Mapping[str, float], declared: Iterable[str]) -> dict[str, float]:
    """The part of ``wanted`` Dask can meter: resources some worker declares, and GPU."""
    known = set(declared) | ALWAYS_REQUESTED
    return {r: a for r, a in wanted.items() if r in known}


def fits(workers: Mapping[str, Mapping[str, float]], request: Mapping[str, float]) -> bool:
    """Whether one worker declares at least ``request`` (always, for an empty request)."""
    if not request:
        return True
    return any(all(res.get(r, 0.0) + 1e-9 >= a for r, a in request.items()) for res in workers.values())


def unmet(state: str, request: Mapping[str, float], workers: Mapping[str, Mapping[str, float]],
          waited: float | None = None) -> ResourceError:
    """The error for a request no connected worker can meet (after waiting ``waited`` s, if any)."""
    have = "; ".join(f"{addr}: {dict(res) or 'no resources'}" for addr, res in sorted(workers.items()))
    when = f"after waiting {waited:g}s for one, " if waited else ""
    return ResourceError(
        f"state {state!r} asks Dask for {_fmt(request)}, but no worker could ever provide that ({when}workers: "
        f"{have or 'none connected'}). Lower the request, or start workers with those resources, e.g. "
        f"DaskExecutor.local(resources={_fmt(request)}) or "
        f"`dask worker --resources \"{','.join(f'{r}={a:g}' for r, a in request.items())}\"`"
    )


def dask_resources(
    state: str,
    req: ResourceRequirements | None,
    workers: Mapping[str, Mapping[str, float]],
    names: Mapping[ResourceType, str] = DEFAULT_RESOURCE_NAMES,
) -> dict[str, float]:
    """The ``resources=`` to submit ``state`` with, given the workers' declared resources.

    Raises:
        ResourceError: no single worker could ever satisfy the request.
    """
    request = metered(requested(req, names), {r for res in workers.values() for r in res})
    if not fits(workers, request):
        raise unmet(state, request, workers)
    return request


def _fmt(amounts: Mapping[str, Any]) -> str:
    return "{" + ", ".join(f"{k!r}: {v:g}" for k, v in amounts.items()) + "}"
