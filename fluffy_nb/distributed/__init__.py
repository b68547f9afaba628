"""fluffy_nb.distributed: run state bodies on a Dask cluster (``pip install fluffy_nb[dask]``).

The engine stays the orchestrator (graph, retries, timeouts, checkpoints, human in the loop,
live view); only the bodies of the states you choose run on Dask workers::

    executor = await DaskExecutor.local(n_workers=4)          # or DaskExecutor(client)
    agent = Agent("fanout", executor=executor)
    agent.add_state("chunk", crunch, remote=True)              # or executor="dask"
    await agent.run()

Workers need fluffy_nb (and what the bodies import) installed, like any Dask dependency.
"""

from ..engine._executor import Executor, LocalExecutor
from ._coordination import ClusterSemaphore, ClusterSemaphoreStatistics
from ._executor import DaskExecutor, DaskExecutorStatistics, WorkerLostError
from ._pickling import UnpicklableStateError, register_by_value
from ._remote import RemoteContext, RemoteHumanInputError
from ._resources import DEFAULT_RESOURCE_NAMES, dask_resources

__all__ = [
    "ClusterSemaphore",
    "ClusterSemaphoreStatistics",
    "DEFAULT_RESOURCE_NAMES",
    "DaskExecutor",
    "DaskExecutorStatistics",
    "Executor",
    "LocalExecutor",
    "RemoteContext",
    "RemoteHumanInputError",
    "UnpicklableStateError",
    "WorkerLostError",
    "dask_resources",
    "register_by_value",
]
