"""``ResourceRequirements`` -> Dask worker resources, and the "can this ever run?" check.

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

Dask only meters resources that workers declare (``dask worker --resources "GPU=1"``,
``LocalCluster(resources={"GPU": 1})``). A resource no worker declares is treated as
unmetered and not requested, because ``ResourceRequirements`` has non-zero defaults for
CPU, memory, I/O and network that users never asked for; the exception is ``GPU``: a state
asking for a GPU on a cluster without one can never run, so it fails at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..engine._errors import ResourceError
from ..engine._resources import ResourceRequirements, ResourceType

DEFAULT_RESOURCE_NAMES: dict[ResourceType, str] = {
    ResourceType.CPU: "CPU",
    ResourceType.GPU: "GPU",
    ResourceType.MEMORY: "MEMORY_MB",
    ResourceType.IO: "IO",
    ResourceType.NETWORK: "NETWORK",
}

#: Dask resource names that are always requested even when no worker declares them.
ALWAYS_REQUESTED = frozenset({"GPU"})


def requested(req: ResourceRequirements | None, names: Mapping[ResourceType, str]) -> dict[str, float]:
    """Every Dask resource ``req`` asks for, before looking at the cluster."""
    if req is None:
        return {}
    return {names[t]: amount for t, amount in req.amounts().items() if t in names}


def dask_resources(
    state: str,
    req: ResourceRequirements | None,
    workers: Mapping[str, Mapping[str, float]],
    names: Mapping[ResourceType, str] = DEFAULT_RESOURCE_NAMES,
) -> dict[str, float]:
    """The ``resources=`` to submit ``state`` with, given the workers' declared resources.

    Args:
        state: The state's name (for the error).
        req: Its requirements (None: nothing).
        workers: ``{worker address: {resource: amount}}`` as the scheduler reports them.
        names: ResourceType -> Dask resource name.

    Raises:
        ResourceError: no single worker could ever satisfy the request.
    """
    wanted = requested(req, names)
    if not wanted:
        return {}
    declared = {r for res in workers.values() for r in res}
    metered = {r: a for r, a in wanted.items() if r in declared or r in ALWAYS_REQUESTED}
    if not metered:
        return {}
    for res in workers.values():
        if all(res.get(r, 0.0) + 1e-9 >= a for r, a in metered.items()):
            return metered
    have = "; ".join(f"{addr}: {dict(res) or 'no resources'}" for addr, res in sorted(workers.items()))
    raise ResourceError(
        f"state {state!r} asks Dask for {_fmt(metered)}, but no worker could ever provide that "
        f"(workers: {have or 'none connected'}). Lower the request, or start workers with those "
        f"resources, e.g. DaskExecutor.local(resources={_fmt(metered)}) or "
        f"`dask worker --resources \"{','.join(f'{r}={a:g}' for r, a in metered.items())}\"`"
    )


def _fmt(amounts: Mapping[str, Any]) -> str:
    return "{" + ", ".join(f"{k!r}: {v:g}" for k, v in amounts.items()) + "}"
