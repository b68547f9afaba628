"""Rich displays of engine objects: Agent, RunResult, Checkpoint and RunHandle.

The engine's ``_repr_mimebundle_`` methods look up ``engine._hooks.renderers``;
:func:`register` fills it when the notebook layer is imported. Every bundle has a useful
``text/plain``; the Agent adds its graph as mermaid (``text/vnd.mermaid``), inline SVG
(``text/html``, works in exported HTML) and, for graphs small enough, plotly JSON.
User text shown as HTML is escaped.
"""

from __future__ import annotations

import html
import json
from typing import Any

from ..engine import _hooks
from ..engine._agent import Agent
from ..engine._checkpoint import Checkpoint
from ..engine._handle import RunHandle
from ..engine._history import CheckpointDiff, CheckpointHistory
from ..engine._result import RunResult
from ._graphview import PLOTLY_REPR_LIMIT, graph_figure, graph_mermaid, graph_svg, graph_text
from ._layout import graph_layout, status_color


def _filter(bundle: dict[str, Any], include: Any, exclude: Any) -> dict[str, Any]:
    if include:
        bundle = {k: v for k, v in bundle.items() if k in include}
    if exclude:
        bundle = {k: v for k, v in bundle.items() if k not in exclude}
    return bundle


def _short(value: Any, limit: int = 120) -> str:
    try:
        text = json.dumps(value, default=repr)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def agent_bundle(agent: Agent, include: Any = None, exclude: Any = None, *, tracker: Any = None) -> dict[str, Any]:
    """An Agent: summary and graph (text, mermaid, SVG, and plotly when small).

    With a ``tracker`` (a finished run's), the graph is coloured as that run ended.
    """
    from ._figures import to_bundle

    head = f"{len(agent.states)} states, status {agent.status.value}"
    if tracker is not None:
        head = f"latest run: {tracker.summary()} (its live view is under the cell that ran it)"
    bundle: dict[str, Any] = {
        "text/plain": f"{agent!r}\n{head}\n{graph_text(agent, tracker)}",
        "text/vnd.mermaid": graph_mermaid(agent, tracker),
        "text/html": (f'<div style="font-family:sans-serif"><b>{html.escape(agent.name)}</b>: '
                      f"{html.escape(head)}</div>" + graph_svg(agent, tracker)),
    }
    wanted = include is None or "application/vnd.plotly.v1+json" in include
    if wanted and agent.states and len(graph_layout(agent.graph).nodes) <= PLOTLY_REPR_LIMIT:
        fig = graph_figure(agent, tracker)
        bundle["application/vnd.plotly.v1+json"] = to_bundle(fig)["application/vnd.plotly.v1+json"]
    return _filter(bundle, include, exclude)


#: where an agent keeps the display of the cell that defined it (``%%fluffy NAME``)
_DEFINITION_ATTR = "_fluffy_definition_display"


class AgentPicture:
    """An agent's graph as a display object; with a finished run's tracker, as that run ended."""

    def __init__(self, agent: Agent, tracker: Any = None) -> None:
        self.agent = agent
        self.tracker = tracker

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        return agent_bundle(self.agent, include, exclude, tracker=self.tracker)


def show_definition(agent: Agent) -> None:
    """Draw ``agent``'s graph under the defining cell, and remember where: each run's end redraws it."""
    from IPython.display import display

    handle = display(AgentPicture(agent), display_id=True)
    if handle is not None:
        setattr(agent, _DEFINITION_ATTR, handle)


def show_agent(agent: Agent) -> bool:
    """IPython's display of an Agent after ``%load_ext fluffy_nb`` (a cell ending in ``agent``,
    ``display(agent)``): its graph, drawn with a display id like ``%%fluffy NAME``'s, so the end of
    each run redraws it as that run ended instead of leaving every state "pending"."""
    show_definition(agent)
    return True


def update_definition(agent: Agent, tracker: Any) -> None:
    """Redraw the defining cell's graph as ``tracker``'s run ended (nothing if none was shown)."""
    handle = agent.__dict__.get(_DEFINITION_ATTR)
    if handle is not None:
        from ._finals import update_final

        update_final(handle, AgentPicture(agent, tracker))


def _table(rows: list[tuple[str, str]]) -> str:
    body = "".join(f"<tr><th style='text-align:left'>{html.escape(k)}</th><td style='text-align:left'>{v}</td></tr>"
                   for k, v in rows)
    return f"<table>{body}</table>"


def result_bundle(result: RunResult, include: Any = None, exclude: Any = None) -> dict[str, Any]:
    """A RunResult: status, duration, states, and the final shared data (escaped, shortened)."""
    status = result.status.value
    colour = status_color("completed" if status == "completed" else "failed")
    rows = [("status", f'<b style="color:{colour}">{html.escape(status)}</b>'),
            ("duration", f"{result.duration:.3f} s"),
            ("states completed", f"{len(result.completed_states)} ({result.steps} runs)")]
    for key in list(result.shared_state)[:20]:
        rows.append((key, f"<code>{html.escape(_short(result.shared_state[key]))}</code>"))
    if len(result.shared_state) > 20:
        rows.append(("…", f"{len(result.shared_state) - 20} more keys"))
    head = f"<div style='font-family:sans-serif'><b>RunResult of {html.escape(result.agent_name)}</b></div>"
    return _filter({"text/plain": repr(result), "text/html": head + _table(rows)}, include, exclude)


def checkpoint_bundle(cp: Checkpoint, include: Any = None, exclude: Any = None) -> dict[str, Any]:
    """A Checkpoint: what it holds, in a small table."""
    rows = [("agent", html.escape(cp.agent_name)), ("run", html.escape(cp.run_id[:12])),
            ("sequence", str(cp.sequence)), ("trigger", html.escape(cp.trigger)),
            ("status", html.escape(cp.agent_status.value)),
            ("completed", html.escape(", ".join(cp.completed_states[:12]))
             + (f" … ({len(cp.completed_states)})" if len(cp.completed_states) > 12 else "")),
            ("pending", html.escape(", ".join(cp.pending[:12]) or "-")),
            ("keys", html.escape(", ".join(list(cp.shared_state)[:20]) or "-"))]
    if cp.error:
        rows.append(("error", f'<span style="color:{status_color("failed")}">{html.escape(cp.error)}</span>'))
    return _filter({"text/plain": repr(cp), "text/html": _table(rows)}, include, exclude)


def _user_names(obj: Any) -> list[str]:
    """Names the notebook's namespace binds to ``obj`` (none outside IPython)."""
    from IPython import get_ipython

    shell = get_ipython()
    if shell is None:
        return []
    return [k for k, v in list(shell.user_ns.items()) if v is obj and not k.startswith("_")]


def handle_bundle(handle: RunHandle, include: Any = None, exclude: Any = None) -> dict[str, Any]:
    """A RunHandle: its status, and how to get the result while it runs (the live view shows the rest).

    The hint names a variable only when the notebook's namespace really holds the handle or
    its agent under it (the agent's name need not be a variable: ``survivor = Agent("article")``).
    """
    text = repr(handle)
    if not handle.done():
        name = handle.agent.name
        handles, agents = _user_names(handle), _user_names(handle.agent)
        if handles:
            how = f"`await {handles[0]}` gives the result (or raises its error), `{handles[0]}.cancel()` stops it"
        elif agents:
            var = agents[0]
            how = f"`await {var}.handle` gives the result (or raises its error), `{var}.handle.cancel()` stops it"
        else:
            how = (f"`await <agent>.handle` gives the result (or raises its error), `<agent>.handle.cancel()` "
                   f"stops it, <agent> being your variable for agent {name!r}")
        text = f"<RunHandle {name!r}: started in the background; {how}>"
    return _filter({"text/plain": text}, include, exclude)


def history_bundle(history: CheckpointHistory, include: Any = None, exclude: Any = None) -> dict[str, Any]:
    """A CheckpointHistory: its text listing, and the history DataFrame's HTML table."""
    from ._history import history_frame

    frame = history_frame(history)
    shown = frame.drop(columns=["parent_id"]).assign(checkpoint_id=frame["checkpoint_id"].str[:8],
                                                      run_id=frame["run_id"].str[:8])
    return _filter({"text/plain": repr(history), "text/html": shown.to_html(max_rows=40)}, include, exclude)


def diff_bundle(diff: CheckpointDiff, include: Any = None, exclude: Any = None) -> dict[str, Any]:
    """A CheckpointDiff: its text form, and a small table of what changed."""
    rows = [(label, html.escape(", ".join(keys))) for label, keys in (
        ("added", diff.added), ("removed", diff.removed), ("changed", diff.changed),
        ("completed +", diff.completed_added), ("completed -", diff.completed_removed)) if keys]
    rows += [(f"status {s}", html.escape(f"{old} -> {new}")) for s, (old, new) in diff.status_changes.items()]
    return _filter({"text/plain": repr(diff), "text/html": _table(rows or [("", "no changes")])}, include, exclude)


def register() -> None:
    """Install the renderers in ``engine._hooks`` (idempotent)."""
    _hooks.renderers[Agent] = agent_bundle
    _hooks.renderers[RunResult] = result_bundle
    _hooks.renderers[Checkpoint] = checkpoint_bundle
    _hooks.renderers[RunHandle] = handle_bundle
    _hooks.renderers[CheckpointHistory] = history_bundle
    _hooks.renderers[CheckpointDiff] = diff_bundle
