"""fluffy_nb.distributed: run state bodies on a Dask cluster (``pip install fluffy_nb[dask]``).

The engine stays the orchestrator (graph, retries, timeouts, checkpoints, human in the loop,
live view); only the bodies of the states you choose run on Dask workers::

    executor = await DaskExecutor.local(n_workers=4)          # or DaskExecutor(client)
    agent = Agent("fanout", executor=executor)                # or DaskExecutor.from_address(addr)
    agent.add_state("chunk", crunch, remote=True)              # or executor="dask"
    await agent.run()

Modules: ``_executor`` (the executor, construction, statistics), ``_attempt`` (one attempt:
submit, start, timeout, apply), ``_watch`` (workers, start notices, the scheduler
connection), ``_data`` (large values scattered once), ``_remote`` (what runs on a worker),
``_resources`` (requests), ``_options`` (per-state Dask options), ``_connect`` (clients,
clusters, scheduler settings), ``_pickling``, ``_coordination``, ``_errors``.

Workers need fluffy_nb (and what the bodies import) installed, like any Dask dependency.
"""

from ..engine._executor import Executor, LocalExecutor
from ._coordination import ClusterSemaphore, ClusterSemaphoreStatistics
from ._data import DEFAULT_SCATTER_THRESHOLD
from ._errors import SchedulerLostError, SharedValueMutatedError, WorkerLostError
from ._executor import DaskExecutor, DaskExecutorStatistics
from ._pickling import UnpicklableStateError, register_by_value
from ._remote import RemoteContext, RemoteHumanInputError
from ._resources import DEFAULT_RESOURCE_NAMES, dask_resources

__all__ = [
    "ClusterSemaphore",
    "ClusterSemaphoreStatistics",
    "DEFAULT_RESOURCE_NAMES",
    "DEFAULT_SCATTER_THRESHOLD",
    "DaskExecutor",
    "DaskExecutorStatistics",
    "Executor",
    "LocalExecutor",
    "RemoteContext",
    "RemoteHumanInputError",
    "SchedulerLostError",
    "SharedValueMutatedError",
    "UnpicklableStateError",
    "WorkerLostError",
    "dask_resources",
    "register_by_value",
]
