"""The ``%%fluffy`` cell magic and the ``%fluffy`` line magics (thin: parse, then delegate).

Which functions of a ``%%fluffy NAME`` cell become states (the rule, exactly):

1. The cell runs in the user namespace like any cell. Then every name the cell bound to a
   function *defined in this cell* is looked at, in the order the functions appear.
2. A function decorated with ``@state`` / ``@state(...)`` is a state (sync or async), named
   after the function or ``@state(name=...)``; the decorator's options apply.
3. An undecorated ``async def`` whose name does not start with ``_`` and that takes exactly
   one required positional parameter (the context) is a state too.
4. Everything else is a helper: names starting with ``_``, plain ``def`` functions, async
   functions with another signature, and anything imported or defined in other cells.

Running: ``--background`` starts the run as a task on the kernel's loop and returns its
:class:`~fluffy_nb.engine._handle.RunHandle` at once (the kernel stays idle, so widget
messages and human-in-the-loop forms flow); ``--run`` blocks the cell until the run ends
and shows its RunResult. A magic cannot ``await``, so ``--run`` works through an input
transformer: a ``%%fluffy ... --run`` cell becomes ``await get_ipython().run_cell_magic(...)``
and the magic returns a :class:`BlockingRun` for IPython's autoawait to wait on: unlike
``await handle``, Stop on that cell cancels the run (with ``%autoawait off`` ``--run``
returns the handle, like ``--background``). Without either flag the cell only defines the
agent (bound to NAME) and draws its graph; when a run of it ends, that graph is redrawn as the
run ended (statuses, skipped states) and says the run's live view is under the cell that ran it.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import keyword
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

from ..engine._agent import Agent
from ..engine._handle import RunHandle
from ..engine._state import state_options

COMMANDS = ("graph", "status", "metrics", "history", "restore", "resume", "monitor", "why", "explore", "runs")


def is_state_function(name: str, func: Any) -> bool:
    """Whether ``func`` (bound to ``name`` in a ``%%fluffy`` cell) is a state by the rule above."""
    if not inspect.isfunction(func):
        return False
    if state_options(func) is not None:
        return True
    if name.startswith("_") or not inspect.iscoroutinefunction(func):
        return False
    params = list(inspect.signature(func).parameters.values())
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = [p for p in params if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    return len(positional) >= 1 and len(required) == 1 and required[0] is positional[0]


def _open_store(path: str) -> Any:
    from ..store import MemoryStore, SQLiteStore

    return MemoryStore() if path == ":memory:" else SQLiteStore(path)


@magics_class
class FluffyMagics(Magics):
    """``%%fluffy NAME [options]`` and ``%fluffy COMMAND NAME``."""

    @property
    def _ip(self) -> Any:
        """The shell (always set once the magics are registered)."""
        assert self.shell is not None
        return self.shell

    @magic_arguments()
    @argument("name", help="Name of the agent; it is put into the notebook's namespace under this name.")
    @argument("--run", action="store_true", help="Run it and wait in this cell; shows the RunResult.")
    @argument("--background", action="store_true",
              help="Run it in the background and return its RunHandle at once (`await` it later).")
    @argument("--store", metavar="PATH", help="Checkpoint to this SQLite file (':memory:' keeps them in memory).")
    @argument("--durable", action="store_true", help="Checkpoint after every state (needs --store).")
    @argument("--max-concurrent", type=int, metavar="N", help="At most N states run at once.")
    @argument("--timeout", type=float, metavar="S", help="Fail the run after S seconds.")
    @argument("--start", metavar="STATE", action="append", help="Start here instead of the graph's start states.")
    @argument("--no-live", action="store_true", help="No live view under the cell.")
    @cell_magic("fluffy")  # type: ignore[arg-type]
    def fluffy_cell(self, line: str, cell: str) -> Any:
        """Turn the state functions of this cell into agent NAME (see the module docstring for the rule).

        Without ``--run`` or ``--background`` the cell only defines the agent and draws its graph;
        nothing runs until ``--run`` (wait here), ``--background`` (a handle at once), ``NAME.start()``
        or ``await NAME.run()``.
        """
        __tracebackhide__ = True
        args = parse_argstring(self.fluffy_cell, line)  # type: ignore[arg-type]
        name = args.name
        _check_cell_args(args)
        old = self._ip.user_ns.get(name)
        if isinstance(old, Agent) and old.live_runs_count():
            raise UsageError(f"agent {name!r} is still running; `{name}.handle.cancel()` it or wait for it "
                             "before redefining it")
        states = self._run_cell(cell)
        if not states:
            raise UsageError(
                f"%%fluffy {name}: the cell defines no state functions. A state is an `async def` taking one "
                "context argument (e.g. `async def fetch(ctx): return 'parse'`) or a function decorated "
                "with @state; names starting with _ are helpers"
            )
        store = _open_store(args.store) if args.store else None
        agent = Agent(name, max_concurrent=args.max_concurrent, store=store, durable=args.durable)
        for fname, func in states:
            agent.add_state((state_options(func) or {}).get("name") or fname, func)
        for s in args.start or ():
            if s not in agent.states:
                raise UsageError(f"%%fluffy {name} --start {s}: no such state; the cell defines "
                                 f"{', '.join(agent.states)}")
        self._ip.user_ns[name] = agent
        if not (args.run or args.background):
            from ._display import show_definition

            show_definition(agent)  # drawn with a display id: each run's end redraws it as the run ended
            return None
        kwargs: dict[str, Any] = {"timeout": args.timeout}
        if args.start:
            kwargs["start"] = args.start if len(args.start) > 1 else args.start[0]
        blocking = args.run and not args.background and getattr(self._ip, "autoawait", False)
        # a blocking cell shows the RunResult as its output: the live view does not repeat it
        handle = start_run(agent, live=not args.no_live, show_result=not blocking, **kwargs)
        if blocking:
            return BlockingRun(handle)  # the input transformer made the cell await this
        return handle

    def _run_cell(self, cell: str) -> list[tuple[str, Any]]:
        """Execute the cell in the user namespace; return the state functions it defined."""
        __tracebackhide__ = True
        shell = self._ip
        source = shell.transform_cell(cell)
        filename = shell.compile.cache(source, shell.execution_count, raw_code=cell)
        code = compile(source, filename, "exec", flags=shell.compile.flags, dont_inherit=True)
        ns = shell.user_ns
        try:
            exec(code, shell.user_global_ns, ns)
        except Exception as exc:
            # show the cell's own frames, like a normal cell's traceback
            tb = exc.__traceback__
            while tb is not None and tb.tb_frame.f_code.co_filename != filename:
                tb = tb.tb_next
            raise exc.with_traceback(tb or exc.__traceback__) from exc.__cause__
        found = []
        for fname, value in list(ns.items()):
            code_obj = getattr(value, "__code__", None)
            if code_obj is not None and code_obj.co_filename == filename and is_state_function(fname, value):
                found.append((code_obj.co_firstlineno, fname, value))
        found.sort(key=lambda t: t[0])
        return [(fname, value) for _, fname, value in found]

    @magic_arguments()
    @argument("command", choices=COMMANDS,
              help="graph: draw it; status: its runs (with a run id or 'latest': that run's per-state "
                   "metrics); metrics: per-state latency p50/p95/p99 (ms) as a DataFrame, slowest first; "
                   "history: checkpoints as a DataFrame; why: what each waiting state (or STATE) waits for; "
                   "restore: load a checkpoint (row number or id); resume: continue a restored/paused run "
                   "or the latest stored one; monitor: a live view of its current run; explore: step through a "
                   "stored run's checkpoints, fork or resume from one; runs: every run in the store.")
    @argument("name", help="The agent's name in the notebook.")
    @argument("target", nargs="?", help="restore: the history row number or checkpoint id; status: a run id "
              "(a prefix is enough) or 'latest'; why: a state name; explore: a stored run's id (or prefix; "
              "default: the latest).")
    @argument("--run-id", metavar="ID", help="history: only this run.")
    @argument("--store", metavar="PATH", help="resume: continue the latest run stored in this SQLite file.")
    @argument("--compare", nargs=2, metavar=("RUN_A", "RUN_B"),
              help="runs: compare these two stored runs (ids or prefixes) side by side.")
    @argument("--mermaid", action="store_true", help="graph: mermaid Markdown instead of the figure.")
    @argument("--expand", nargs="*", metavar="STATE",
              help="graph: draw these sub-workflow states (agents used as states) open, as clusters of their "
                   "child's states ('research', or 'research/verify' for a nested one); with no STATE, all.")
    @argument("--no-live", action="store_true", help="resume: no live view.")
    @line_magic("fluffy")  # type: ignore[arg-type]
    def fluffy_line(self, line: str) -> Any:
        """``%fluffy graph|status|metrics|history|restore|resume|monitor NAME``."""
        if not line.strip():
            raise UsageError("usage: %fluffy {" + "|".join(COMMANDS) + "} NAME; %%fluffy NAME defines an agent")
        args = parse_argstring(self.fluffy_line, line)  # type: ignore[arg-type]
        agent = self._agent(args.name)
        command = {"graph": _graph, "status": _status, "metrics": _metrics, "history": _history_of,
                   "restore": _restore, "resume": self._resume, "monitor": _monitor, "why": _why,
                   "explore": _explore, "runs": _runs}[args.command]
        return command(agent, args)

    def _agent(self, name: str) -> Agent:
        agent = self._ip.user_ns.get(name)
        if not isinstance(agent, Agent):
            known = [k for k, v in self._ip.user_ns.items() if isinstance(v, Agent) and not k.startswith("_")]
            hint = f" (agents here: {', '.join(known)})" if known else ""
            raise UsageError(f"no agent named {name!r} in this notebook{hint}; define one with %%fluffy {name}")
        return agent

    def _resume(self, agent: Agent, args: Any) -> Any:
        latest = agent.latest_run
        if latest is not None and latest.active:
            if not latest.paused:
                raise UsageError(f"agent {agent.name!r} is running, not paused; nothing to resume")
            latest.resume()
            return agent.handle
        if agent.prepared_run is not None:
            return start_run(agent, live=not args.no_live)
        store = _open_store(args.store) if args.store else agent.store
        if store is None:
            raise UsageError(f"agent {agent.name!r} has nothing to resume: restore a checkpoint first "
                             f"(%fluffy restore {agent.name} ROW) or give --store PATH")
        return start_run(agent, live=not args.no_live, coro=agent.resume_latest(store))


class BlockingRun:
    """What a ``%%fluffy NAME --run`` cell awaits: the run itself, so Stop cancels it.

    (``await handle`` is shielded: stopping a cell that only waits for a background run stops
    the waiting, not the run.)
    """

    __slots__ = ("handle",)

    def __init__(self, handle: RunHandle) -> None:
        self.handle = handle

    def __await__(self) -> Any:
        return self.wait().__await__()

    async def wait(self) -> Any:
        """The run's result; cancelling this wait (Stop on the cell) cancels the run.

        The live view draws the end before the cell does, so the notebook saves the final picture.
        """
        try:
            return await self.handle.task
        finally:
            from ._liveview import view_of

            view = view_of(self.handle.agent)
            if view is not None and view.handle is self.handle and self.handle.task.done():
                view.finish_from(self.handle)

    def __repr__(self) -> str:
        return repr(self.handle)


class _AgentGraph:
    """What ``%fluffy graph`` returns: the agent's graph bundle (plotly, mermaid, SVG, text), its
    sub-workflows drawn open as ``expand`` says (in the plotly figure and the mermaid text)."""

    def __init__(self, agent: Agent, expand: bool | list[str] = False) -> None:
        self.agent = agent
        self.expand = expand

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        from ._display import agent_bundle

        bundle = agent_bundle(self.agent, include, exclude)
        if self.expand:
            from ._figures import to_bundle
            from ._graphview import graph_figure, graph_mermaid

            if "text/vnd.mermaid" in bundle:
                bundle["text/vnd.mermaid"] = graph_mermaid(self.agent, expand=self.expand)
            if "application/vnd.plotly.v1+json" in bundle:
                fig = graph_figure(self.agent, expand=self.expand)
                bundle["application/vnd.plotly.v1+json"] = to_bundle(fig)["application/vnd.plotly.v1+json"]
        return bundle


def _spawn(coro: Any) -> asyncio.Task[Any]:
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        coro.close()
        raise UsageError("this needs a running event loop (a Jupyter kernel); in plain IPython use "
                         "`await agent.run()`") from None
    return loop.create_task(coro)


def start_run(agent: Agent, *, live: bool = True, coro: Any = None, show_result: bool = True,
              **run_kwargs: Any) -> RunHandle:
    """Start ``agent`` in the background (with a live view under the cell) and return its handle.

    Args:
        agent: The agent to run.
        live: Show a :class:`LiveView` of the run.
        coro: Run this coroutine (e.g. ``agent.resume_latest(store)``) instead of ``agent.run()``.
        show_result: The live view shows the result at the end (off when the cell shows it).
        **run_kwargs: Passed to ``agent.start()`` (``timeout``, ``start``...).

    Raises:
        UsageError: no event loop is running (plain IPython between cells).
    """
    from . import _hooks_impl
    from ._liveview import LiveView

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        if coro is not None:
            coro.close()
        raise UsageError(
            f"agent {agent.name!r}: a background run needs a running event loop (a Jupyter kernel); "
            "in plain IPython use --run (IPython's autoawait waits for it) or `await agent.run()`"
        ) from None
    view = LiveView(agent, show_result=show_result).display() if live else None
    with _hooks_impl.managed(agent):
        if coro is None:
            handle = agent.start(**{k: v for k, v in run_kwargs.items() if v is not None})
        else:
            handle = RunHandle(agent, asyncio.get_running_loop().create_task(coro, name=f"fluffy:{agent.name}"))
            agent.handle = handle
    if view is not None:
        view.attach(handle)
    return handle


def _check_cell_args(args: Any) -> None:
    """UsageError for ``%%fluffy`` arguments that cannot work."""
    name = args.name
    if not name.isidentifier() or keyword.iskeyword(name):
        raise UsageError(f"%%fluffy {name!r}: the agent's name must be a Python identifier, e.g. %%fluffy pipeline")
    if args.max_concurrent is not None and args.max_concurrent < 1:
        raise UsageError(f"%%fluffy {name} --max-concurrent {args.max_concurrent}: must be 1 or more")
    if args.timeout is not None and args.timeout <= 0:
        raise UsageError(f"%%fluffy {name} --timeout {args.timeout}: must be a number of seconds > 0")
    if args.durable and not args.store:
        raise UsageError(f"%%fluffy {name} --durable: needs --store PATH to checkpoint to")


def _graph(agent: Agent, args: Any) -> Any:
    from IPython.display import Markdown

    from ._graphview import graph_markdown

    expand = _expand_arg(agent, args.expand)
    return Markdown(graph_markdown(agent, expand=expand)) if args.mermaid else _AgentGraph(agent, expand)


def _expand_arg(agent: Agent, names: list[str] | None) -> bool | list[str]:
    """``--expand [STATE ...]`` as ``graph_figure``'s ``expand``: False when not given, True alone."""
    if names is None:
        return False
    if not names:
        return True
    from ._clusters import cluster_paths

    paths = cluster_paths(agent)
    for name in names:
        if name not in paths:
            has = f"its sub-workflow states: {', '.join(paths[:20])}" if paths else "it has no sub-workflow states"
            raise UsageError(f"%fluffy graph {agent.name} --expand {name}: {name!r} is not a state of "
                             f"{agent.name!r} that is an agent ({has})")
    return list(names)


def _status(agent: Agent, args: Any) -> Any:
    from . import _history

    if args.target is None:
        return _history.runs_frame(agent)
    return _history.state_metrics_frame(_find_run(agent, args.target))


def _metrics(agent: Agent, args: Any) -> Any:
    from ._latency import metrics_frame

    return metrics_frame(agent)


def _history_of(agent: Agent, args: Any) -> Any:
    from . import _history

    if agent.store is None:
        raise UsageError(f"agent {args.name!r} has no checkpoint store; define it with "
                         f"%%fluffy {args.name} --store runs.db")
    return _history.with_short_ids(_history.history_frame(agent, run_id=args.run_id))


def _restore(agent: Agent, args: Any) -> Any:
    from . import _history

    if args.target is None:
        raise UsageError(f"%fluffy restore {args.name} ROW: give a history row number or a checkpoint id")
    if agent.store is None:
        raise UsageError(f"agent {args.name!r} has no checkpoint store to restore from")
    if args.target.lstrip("-").isdigit():
        frame = _history.history_frame(agent)
        return _history.restore_row(agent, frame, int(args.target))
    return agent.restore(_full_checkpoint_id(agent, args.target))


def _full_checkpoint_id(agent: Agent, given: str) -> str:
    """The checkpoint id ``given`` starts (a short id from ``%fluffy history``), else ``given``."""
    found = [info.checkpoint_id for info in agent.store.list(agent.name) if info.checkpoint_id.startswith(given)]
    if len(found) > 1 and given not in found:
        raise UsageError(f"{len(found)} checkpoints of {agent.name!r} have ids starting with {given!r}: give more "
                         f"of the id (e.g. {', '.join(f[:16] for f in found[:3])})")
    return found[0] if len(found) == 1 else given


def _monitor(agent: Agent, args: Any) -> None:
    from ._liveview import LiveView

    view = LiveView(agent)
    view.display()
    handle = agent.handle
    if handle is not None and not handle.done():
        view.attach(handle)
    else:
        view.finish(None)


def _why(agent: Agent, args: Any) -> None:
    run = agent.latest_run
    if run is None:
        raise UsageError(f"agent {agent.name!r} has not run yet, so nothing waits; start it first")
    if args.target is not None and args.target not in agent.states:
        raise UsageError(f"%fluffy why {agent.name} {args.target}: no state of that name "
                         f"(states: {', '.join(list(agent.states)[:12])})")
    print(run.why(args.target))


def _explore(agent: Agent, args: Any) -> Any:
    from ._explorer import explore

    if agent.store is None:
        raise UsageError(f"agent {agent.name!r} has no checkpoint store to explore; define it with "
                         f"%%fluffy {agent.name} --store runs.db --durable")
    return explore(agent, args.target)


def _runs(agent: Agent, args: Any) -> Any:
    from ._runs import RunsBrowser, compare_runs

    if args.compare:
        return compare_runs(agent, *args.compare)
    return RunsBrowser(agent)


def _find_run(agent: Agent, target: str) -> Any:
    """The run of ``agent`` whose id starts with ``target`` ('latest': the latest run)."""
    if target == "latest":
        run = agent.latest_run
        if run is None:
            raise UsageError(f"agent {agent.name!r} has not run yet; run it first")
        return run
    found = [r for r in agent.runs if r.run_id.startswith(target)]
    if len(found) != 1:
        known = ", ".join(r.run_id[:8] for r in agent.runs) or "none yet"
        what = "no run" if not found else f"{len(found)} runs"
        raise UsageError(f"agent {agent.name!r} has {what} whose id starts with {target!r} (runs: {known}); "
                         "give more of the id, or 'latest'")
    return found[0]


def await_blocking_runs(lines: list[str]) -> list[str]:
    """IPython input transformer: ``%%fluffy NAME --run`` cells await the run they start."""
    if not lines or not lines[0].startswith("get_ipython().run_cell_magic('fluffy',"):
        return lines
    try:
        call = ast.parse("".join(lines)).body[0].value  # type: ignore[attr-defined]
        line = ast.literal_eval(call.args[1])
        args = parse_argstring(FluffyMagics.fluffy_cell, line)
    except Exception:  # let the magic itself report bad arguments
        return lines
    from IPython import get_ipython

    shell = get_ipython()
    if not args.run or args.background or shell is None or not getattr(shell, "autoawait", False):
        return lines
    return ["await " + lines[0], *lines[1:]]
