"""The run explorer: one run's checkpoints under the cell, and going again from any of them.

:func:`explore` (and ``%fluffy explore NAME [RUN]``) shows an :class:`Explorer`: a slider and
step buttons over the run's checkpoints; for the selected one, the state graph coloured as it
was then, the context with the keys changed since the previous checkpoint highlighted, the
answers people had given, the error if it recorded one, and timing. From there: "fork from
here" (a new run, its parent recorded, started in the background with its live view below),
"resume from here" (when that checkpoint still had states in flight) and "edit and fork" (a
form with one field per shared context key; a value that parses as JSON is used as that JSON,
any other text as a string; typed values are shown, not edited).

Everything is read from the agent's store, so a run another kernel recorded explores the same.
The buttons call plain methods (:meth:`Explorer.select`, :meth:`Explorer.fork`,
:meth:`Explorer.resume`) that scripts and tests call too. Without a widget frontend (nbval,
exported HTML) the explorer displays as a static table of the checkpoints and the SVG graph
of the last one. Every user value shown as HTML is escaped.
"""

from __future__ import annotations

import html
import json
import time
from typing import Any

import ipywidgets as widgets

from ..engine._checkpoint import Checkpoint
from ..engine._decode import decode_value
from ._graphview import graph_svg, graph_text
from ._layout import status_color
from ._runs import find_run_id

_MARK = {"added": "#c8e6c9", "changed": "#fff59d", "removed": "#ffcdd2"}
_VALUE_CHARS = 300
_STATIC_ROWS = 25  # the static table shows this many checkpoints at each end of a long run


class CheckpointStatuses:
    """The statuses of one checkpoint in the shape the graph drawers read (``.status``)."""

    def __init__(self, cp: Checkpoint) -> None:
        self.status = {name: st.value for name, st in cp.state_status.items()}
        self.where: dict[str, str] = {}
        self.state_metadata: dict[str, Any] = {}


def data_of(cp: Checkpoint) -> dict[str, Any]:
    """The context of ``cp``: shared values, and typed values as their stored data."""
    return {**cp.shared_state, **{k: v.get("data") for k, v in cp.typed_data.items()}}


def changed_keys(cp: Checkpoint, prev: Checkpoint | None) -> dict[str, str]:
    """``{key: added|changed|removed}`` for context keys that differ from ``prev``."""
    now, before = data_of(cp), ({} if prev is None else data_of(prev))
    out = {k: "added" for k in now if k not in before}
    out.update({k: "changed" for k in now if k in before and now[k] != before[k]})
    out.update({k: "removed" for k in before if k not in now})
    return out


def parse_value(text: str) -> Any:
    """A form field's text as JSON when it parses (``3``, ``true``, ``[1]``), else the text."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= _VALUE_CHARS else text[:_VALUE_CHARS] + " ..."


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d} UTC"


class Explorer:
    """A widget over one stored run's checkpoints (see the module docstring).

    Args:
        agent: The agent (the definition: its graph, its store).
        run_id: The run to explore, its id or a prefix (default: the latest stored run).

    Attributes:
        index: The selected checkpoint's position (0 = the run's first checkpoint).
        handles: The RunHandles of the runs started from here (forks, resumes), oldest first.

    Example:
        >>> # ex = explore(agent); ex.select(2); handle = ex.fork(edits={"answer": "42"})
    """

    def __init__(self, agent: Any, run_id: str | None = None) -> None:
        self.agent = agent
        self.run_id = find_run_id(agent, run_id)
        self.rows = list(agent.store.list(agent_name=agent.name, run_id=self.run_id))
        self._cache: dict[str, Checkpoint] = {}
        self.handles: list[Any] = []
        self.index = len(self.rows) - 1
        self.header = widgets.HTML(self._header_html())
        self.slider = widgets.IntSlider(value=self.index, min=0, max=max(0, len(self.rows) - 1),
                                        description="checkpoint", continuous_update=False,
                                        layout=widgets.Layout(width="60%"))
        self.prev_button = widgets.Button(description="prev", icon="step-backward", layout={"width": "80px"})
        self.next_button = widgets.Button(description="next", icon="step-forward", layout={"width": "80px"})
        self.reload_button = widgets.Button(description="reload", icon="refresh", layout={"width": "auto"},
                                            tooltip="read the run's checkpoints again (a live run adds more)")
        self.graph = widgets.HTML(_dom_classes=("fluffy-explorer-graph",))
        self.details = widgets.HTML(_dom_classes=("fluffy-explorer-details",))
        self.fork_button = widgets.Button(description="fork from here", icon="code-branch", button_style="primary",
                                          layout={"width": "auto"})
        self.resume_button = widgets.Button(description="resume from here", icon="play", layout={"width": "auto"})
        self.edit_button = widgets.Button(description="edit and fork", icon="edit", layout={"width": "auto"})
        self.edit_box = widgets.VBox([])
        self.fields: dict[str, widgets.Text] = {}
        self.message = widgets.HTML(_dom_classes=("fluffy-explorer-message",))
        self.started = widgets.VBox([])
        self.slider.observe(lambda change: self.select(change["new"]), names="value")
        self.prev_button.on_click(lambda _b: self.step(-1))
        self.next_button.on_click(lambda _b: self.step(1))
        self.reload_button.on_click(lambda _b: self._act(self.reload))
        self.fork_button.on_click(lambda _b: self._act(self.fork))
        self.resume_button.on_click(lambda _b: self._act(self.resume))
        self.edit_button.on_click(lambda _b: self.open_form())
        self.widget = widgets.VBox([
            self.header, widgets.HBox([self.prev_button, self.slider, self.next_button, self.reload_button]),
            widgets.HBox([self.graph, self.details]),
            widgets.HBox([self.fork_button, self.resume_button, self.edit_button]),
            self.edit_box, self.message, self.started,
        ])
        self.select(self.index)

    # -- reading -------------------------------------------------------------------------------
    def checkpoint(self, index: int | None = None) -> Checkpoint:
        """The stored checkpoint at ``index`` (default: the selected one)."""
        row = self.rows[self.index if index is None else index]
        cp = self._cache.get(row.checkpoint_id)
        if cp is None:
            cp = self._cache[row.checkpoint_id] = self.agent.store.get(row.checkpoint_id)
        return cp

    @property
    def previous(self) -> Checkpoint | None:
        """The checkpoint before the selected one in this run (None for the first)."""
        return self.checkpoint(self.index - 1) if self.index > 0 else None

    @property
    def statuses(self) -> dict[str, str]:
        """State -> status at the selected checkpoint (states not listed were pending)."""
        return CheckpointStatuses(self.checkpoint()).status

    @property
    def changed(self) -> dict[str, str]:
        """Context keys changed since the previous checkpoint: ``{key: added|changed|removed}``."""
        return changed_keys(self.checkpoint(), self.previous)

    def refresh(self) -> None:
        """Re-read the run's checkpoints from the store (a live run adds more)."""
        self.rows = list(self.agent.store.list(agent_name=self.agent.name, run_id=self.run_id))
        self.slider.max = max(0, len(self.rows) - 1)

    def reload(self) -> None:
        """Re-read the checkpoints and show the newest one."""
        self.refresh()
        self.header.value = self._header_html()
        self.select(len(self.rows) - 1)

    # -- moving --------------------------------------------------------------------------------
    def select(self, index: int) -> Checkpoint:
        """Show checkpoint ``index`` (negative counts from the end); moves the slider too."""
        if not -len(self.rows) <= index < len(self.rows):
            raise IndexError(f"run {self.run_id[:8]} has {len(self.rows)} checkpoints (0..{len(self.rows) - 1}); "
                             f"there is no checkpoint {index}")
        self.index = index % len(self.rows)
        if self.slider.value != self.index:
            self.slider.value = self.index  # observed: calls select again, which then draws
            return self.checkpoint()
        cp = self.checkpoint()
        self.graph.value = graph_svg(self.agent, CheckpointStatuses(cp), width=520)
        self.details.value = self.details_html()
        self.prev_button.disabled = self.index == 0
        self.next_button.disabled = self.index == len(self.rows) - 1
        self.resume_button.disabled = not cp.pending
        self.resume_button.tooltip = ("continue this run from here" if cp.pending
                                      else "nothing was in flight at this checkpoint")
        if self.fields:
            self.open_form()
        return cp

    def step(self, delta: int) -> None:
        """Move the selection by ``delta`` checkpoints (clamped to the run)."""
        self.select(min(max(self.index + delta, 0), len(self.rows) - 1))

    # -- going again ----------------------------------------------------------------------------
    def fork(self, index: int | None = None, edits: dict[str, Any] | None = None, *, live: bool = True) -> Any:
        """Fork a NEW run from checkpoint ``index`` (default: the selected one) and start it.

        Args:
            index: The checkpoint to fork from.
            edits: Context values to set on the fork before it starts (the correction).
            live: Show the fork's live view below the explorer.

        Returns:
            The fork's RunHandle (``await`` it for the RunResult).
        """
        cp = self.checkpoint(index)
        run = self.agent.fork(cp)
        # a form shows tagged values as checkpoints store them ({"$fluffy": "datetime", ...}): rebuild them
        run.shared.update({k: decode_value(k, v) for k, v in (edits or {}).items()})
        return self._start(f"fork {run.run_id[:8]} of checkpoint {self._position(index)}", live, edits)

    def resume(self, index: int | None = None, *, live: bool = True) -> Any:
        """Continue this run (same id) from checkpoint ``index``; it must have had states in flight."""
        cp = self.checkpoint(index)
        if not cp.pending:
            raise ValueError(f"checkpoint {cp.sequence} of run {self.run_id[:8]} had no state in flight; "
                             "there is nothing to resume from it (fork from it instead)")
        self.agent.restore(cp)
        return self._start(f"resume of {self.run_id[:8]} from checkpoint {self._position(index)}", live, None)

    def _position(self, index: int | None) -> int:
        return self.index if index is None else index % len(self.rows)

    def _start(self, what: str, live: bool, edits: dict[str, Any] | None) -> Any:
        from . import _hooks_impl
        from ._liveview import LiveView

        view = LiveView(self.agent) if live else None
        with _hooks_impl.managed(self.agent):
            handle = self.agent.start()
        if view is not None:
            self.started.children = (view.widget,)  # the newest run's view; older ones ended or run on
            view.attach(handle)
        self.handles.append(handle)
        note = "" if not edits else " with " + ", ".join(f"{k} = {_short(v)}" for k, v in edits.items())
        self.message.value = f"<b>started</b> {html.escape(what + note)}"
        handle.add_done_callback(lambda h: self._ended(h, what + note))
        return handle

    def _ended(self, handle: Any, what: str) -> None:
        if self.handles and self.handles[-1] is handle:
            colour = status_color(handle.status)
            self.message.value = (f'<b style="color:{colour}">{html.escape(handle.status)}</b> '
                                  f"{html.escape(what)} &middot; explore it: <code>%fluffy explore "
                                  f"{html.escape(self.agent.name)} {html.escape(handle.run.run_id[:8])}</code>")

    def _act(self, action: Any, *args: Any) -> None:
        try:
            action(*args)
        except Exception as exc:  # a button shows what went wrong; it has nowhere to raise to
            self.message.value = (f'<span style="color:{status_color("failed")}">'
                                  f"{html.escape(type(exc).__name__)}: {html.escape(str(exc))}</span>")

    def open_form(self) -> None:
        """Show the edit form: one field per context key of the selected checkpoint."""
        cp = self.checkpoint()
        self.fields = {k: widgets.Text(value=json.dumps(v, ensure_ascii=False), description=k,
                                       layout=widgets.Layout(width="70%"), continuous_update=False)
                       for k, v in cp.shared_state.items()}
        submit = widgets.Button(description="fork with these values", icon="code-branch", button_style="warning")
        cancel = widgets.Button(description="cancel")
        submit.on_click(lambda _b: self._act(self.fork_with_form))
        cancel.on_click(lambda _b: self.close_form())
        note = widgets.HTML(f"<i>edit values for a fork of checkpoint {cp.sequence} (JSON, or plain text)</i>")
        self.edit_box.children = (note, *self.fields.values(), widgets.HBox([submit, cancel]))

    def close_form(self) -> None:
        """Hide the edit form."""
        self.fields = {}
        self.edit_box.children = ()

    def form_edits(self) -> dict[str, Any]:
        """The form's values that differ from the selected checkpoint's (parsed as JSON when they parse)."""
        shared = self.checkpoint().shared_state
        values = {k: parse_value(f.value) for k, f in self.fields.items()}
        return {k: v for k, v in values.items() if shared.get(k, ...) != v}

    def fork_with_form(self, *, live: bool = True) -> Any:
        """Fork from the selected checkpoint with the form's edits; closes the form."""
        edits = self.form_edits()
        self.close_form()
        return self.fork(edits=edits, live=live)

    # -- drawing --------------------------------------------------------------------------------
    def _header_html(self) -> str:
        from ._runs import parent_of

        parent = parent_of(self.agent, self.run_id)
        fork = f" &middot; forked from run <code>{html.escape(parent[:12])}</code>" if parent else ""
        last = self.rows[-1].agent_status if self.rows else "?"
        return (f"<b>{html.escape(self.agent.name)}</b> run <code>{html.escape(self.run_id[:12])}</code> "
                f'&middot; <b style="color:{status_color(last)}">{html.escape(last)}</b> '
                f"&middot; {len(self.rows)} checkpoints{fork}")

    def details_html(self) -> str:
        """The selected checkpoint as HTML: timing, status, error, context (changes marked), answers."""
        cp, prev = self.checkpoint(), self.previous
        t0 = self.checkpoint(0).timestamp
        gap = "" if prev is None else f", +{cp.timestamp - prev.timestamp:.3f}s after the previous"
        parts = [f"<div><b>checkpoint {self.index}</b> (seq {cp.sequence}, {html.escape(cp.trigger)}) "
                 f"&middot; agent <b>{html.escape(cp.agent_status.value)}</b><br>"
                 f"{html.escape(_when(cp.timestamp))} &middot; {cp.timestamp - t0:.3f}s into the run{gap}<br>"
                 f"{self._finished_html(cp, prev)}"
                 f"completed: {html.escape(', '.join(cp.completed_states) or '-')}<br>"
                 f"in flight: {html.escape(', '.join(cp.pending) or '-')}</div>"]
        if cp.error:
            parts.append(f'<pre style="color:{status_color("failed")};white-space:pre-wrap">'
                         f"{html.escape(cp.error)}</pre>")
        parts.append(self._context_html(cp, prev))
        parts.append(self._answers_html(cp))
        return "".join(parts)

    def _finished_html(self, cp: Checkpoint, prev: Checkpoint | None) -> str:
        if prev is None:
            return ""
        done = [n for n in cp.completed_states if cp.completion_counts.get(n, 1) > prev.completion_counts.get(n, 0)]
        if not done:
            return ""
        took = f" (within {cp.timestamp - prev.timestamp:.3f}s)"
        return f"finished since the previous: <b>{html.escape(', '.join(done))}</b>{took}<br>"

    def _context_html(self, cp: Checkpoint, prev: Checkpoint | None) -> str:
        marks = changed_keys(cp, prev)
        now, before = data_of(cp), ({} if prev is None else data_of(prev))
        rows = []
        for key in dict.fromkeys([*now, *before]):
            mark = marks.get(key, "")
            style = f' style="background:{_MARK[mark]}"' if mark else ""
            value = "(removed)" if mark == "removed" else _short(now[key])
            typed = " <i>(typed)</i>" if key in cp.typed_data else ""
            rows.append(f"<tr{style}><td><code>{html.escape(key)}</code>{typed}</td>"
                        f"<td>{html.escape(value)}</td><td>{mark}</td></tr>")
        body = "".join(rows) or '<tr><td colspan="3">(empty)</td></tr>'
        return ('<table class="fluffy-context" style="border-collapse:collapse"><thead><tr>'
                '<th style="white-space:nowrap">key</th><th>value</th><th style="white-space:nowrap">'
                f"since previous</th></tr></thead><tbody>{body}</tbody></table>")

    def _answers_html(self, cp: Checkpoint) -> str:
        if not cp.human_answers:
            return "<div><i>no answers from people yet</i></div>"
        items = "".join(f"<li><code>{html.escape(a.state)}</code>: {html.escape(a.prompt[:120])} &rarr; "
                        f"<b>{html.escape(_short(a.value))}</b> ({html.escape(a.source)})</li>"
                        for a in cp.human_answers)
        return f"<div>answers so far:<ul>{items}</ul></div>"

    def static_html(self) -> str:
        """The explorer without widgets: a table of the checkpoints and the graph of the last one."""
        t0 = self.rows[0].timestamp if self.rows else 0.0
        shown: list[tuple[int, Any]] = list(enumerate(self.rows))
        if len(shown) > 2 * _STATIC_ROWS:  # a long run: its start and its end
            shown = [*shown[:_STATIC_ROWS], (-1, None), *shown[-_STATIC_ROWS:]]
        body = "".join(
            '<tr><td colspan="8">...</td></tr>' if r is None else
            f"<tr><td>{i}</td><td>{r.sequence}</td><td>{html.escape(r.trigger)}</td>"
            f"<td>{html.escape(r.agent_status)}</td><td>{r.timestamp - t0:.3f}</td><td>{r.completed_count}</td>"
            f"<td>{html.escape(', '.join(r.pending[:20]))}</td><td>{html.escape(r.error or '')}</td></tr>"
            for i, r in shown)
        table = ("<table><thead><tr><th>#</th><th>seq</th><th>trigger</th><th>status</th><th>t (s)</th>"
                 f"<th>completed</th><th>in flight</th><th>error</th></tr></thead><tbody>{body}</tbody></table>")
        graph = graph_svg(self.agent, CheckpointStatuses(self.checkpoint(-1))) if self.rows else ""
        return f"<div>{self._header_html()}{table}{graph}</div>"

    def text_summary(self) -> str:
        """The explorer in plain text: the run, its checkpoints, the graph at the last one."""
        lines = [f"<Explorer {self.agent.name!r} run {self.run_id[:12]}: {len(self.rows)} checkpoints>"]
        lines += [f"  {i:>3}  seq {r.sequence:>3}  {r.trigger:10}  {r.agent_status:9}  done {r.completed_count}"
                  for i, r in enumerate(self.rows)]
        if self.rows:
            lines.append(graph_text(self.agent, CheckpointStatuses(self.checkpoint(-1))))
        return "\n".join(lines)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        data = dict(self.widget._repr_mimebundle_() or {})
        data["text/plain"] = self.text_summary()
        data["text/html"] = self.static_html()
        return data

    def __repr__(self) -> str:
        return f"<Explorer {self.agent.name!r} run {self.run_id[:8]} checkpoint {self.index}/{len(self.rows)}>"


def explore(agent: Any, run_id: str | None = None) -> Explorer:
    """An :class:`Explorer` of one stored run of ``agent`` (default: its latest run).

    Args:
        agent: An agent with a checkpoint store (a durable one records every step).
        run_id: The run's id or a prefix of it, or ``"latest"``.

    Example:
        >>> # ex = explore(pipeline); ex.select(1); ex.changed
    """
    return Explorer(agent, run_id)
