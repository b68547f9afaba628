"""LiveView: one ipywidgets box per run, under the cell, redrawn from the agent's events.

What it shows, top to bottom: a header (status, progress, elapsed, what runs and waits), a
progress bar, the state graph coloured by status, a timeline of state attempts, measured
resource usage beside declared, the human-in-the-loop forms, and the result or the error.

Redraws are coalesced. Events only update the :class:`RunTracker` (a few dict writes); one
ticker task redraws at most every ``interval`` seconds (0.1 s: 10/s) and only what changed.
Figures are costlier, so they redraw at most every ``figure_interval`` seconds (1 s), stretched
to five times their own drawing cost (at most 5 s), so drawing takes at most ~20% of the loop;
what a person must see at once (a question for them, a failure, a retry) redraws them within
a few ticks. Resource samples alone redraw only the resources chart, at most every
``resource_interval`` (10 s), so a run that only waits for a person costs the kernel next to
nothing. The end of the run is drawn once, by ``finish()``.

Jupyter facts followed (DESIGN.md): plotly figures are re-displayed as static plotly JSON into
``Output`` widgets through ``outputs=`` (never ``with out:``, never a ``FigureWidget``: ~5 MB
of JavaScript per instance). Without a widget frontend (nbval, plain IPython, exported HTML)
the view's display carries a static snapshot (``text/html`` with an inline SVG graph, and a
``text/plain`` summary). When the run ends the display is *replaced* by that static picture of
the finished run (``_static``: SVG graph and timeline, usage, answers, result), so the saved
notebook shows the end in nbconvert's HTML, on GitHub and nbviewer, offline and without a CDN.
"""

from __future__ import annotations

import asyncio
import html
import logging
import time
import traceback
from typing import Any

import ipywidgets as widgets

from ._clusters import ExpandToggle, expand_toggle
from ._coordpanel import CoordinationPanel, coordination_html
from ._figures import resource_figure, steady_samples, timeline_bundle, to_bundle
from ._finals import update_final
from ._graphview import graph_bundle, graph_svg
from ._latency import latency_table_html
from ._layout import LIGHT_STATUSES, STATUS_STYLE, status_color, status_label
from ._static import forms_records_html, timeline_svg, usage_table_html
from ._tracker import RunTracker
from ._waitview import deadlock_advice, wait_sentence, waits_html

log = logging.getLogger("fluffy_nb")

#: where an agent keeps its newest live view (the background-error hook finds it there). On the
#: agent, not in a module-level map: the view holds its agent, so a map's value would keep every
#: agent (and view) alive; agent <-> view is a cycle the garbage collector frees.
_VIEW_ATTR = "_fluffy_live_view"


def view_of(agent: Any) -> LiveView | None:
    """The agent's newest live view, if it has one."""
    return getattr(agent, "__dict__", {}).get(_VIEW_ATTR)


def _forms_area(agent: Any) -> Any:
    """The agent's human-in-the-loop forms area (``_hitl_form.FormsArea``), or an empty slot."""
    try:
        from ._hitl_form import FormsArea
    except ImportError:  # SLOT: the HITL forms area goes here when _hitl_form is absent
        return widgets.VBox([])
    area = FormsArea.for_agent(agent)
    area.shown = True
    return area


class LiveView:
    """The live view of an agent's run (an ipywidgets ``VBox`` in ``.widget``).

    Args:
        agent: The agent to watch; create the view before the run starts, or attach to a
            running one.
        interval: Smallest time between two redraws (seconds).
        figure_interval: Smallest time between two figure redraws (seconds).
        sample_interval: Seconds between resource samples (psutil).
        graph: Show the state graph.
        show_result: Show the run's result at the end (off when the cell shows it itself).
        resource_interval: Smallest time between two redraws of the resources chart when only
            new samples arrived (a run that only waits for a person costs next to nothing).

    Attributes:
        expand: Sub-workflow states drawn open in the graph (True: all; a list of state paths,
            ``research/verify`` opening ``research`` too; False, the default: each is one node).
            Set it at any time; the next redraw uses it and the button shows it.
        expand_toggle: The "open sub-workflows" button above the graph (None when the agent
            has no state that is an agent): it sets ``expand`` (on: the list last given, else
            all) and redraws the graph at once.

    Example:
        >>> # view = LiveView(agent); view.display(); handle = agent.start(); view.attach(handle)
    """

    def __init__(self, agent: Any, *, interval: float = 0.1, figure_interval: float = 1.0,
                 sample_interval: float = 0.5, graph: bool = True, show_result: bool = True,
                 resource_interval: float = 10.0) -> None:
        self.agent = agent
        self._expand: Any = False
        self._toggle: ExpandToggle | None = None
        self.tracker = RunTracker(agent)
        self.interval = interval
        self.figure_interval = figure_interval
        self.sample_interval = sample_interval
        self.show_result = show_result
        self.resource_interval = resource_interval
        self._samples_drawn = -1
        self._res_at = 0.0
        self._unsubscribe: Any = None
        self._result_html = ""
        self.handle: Any = None
        self.redraws = 0
        self.updates = 0  # widget state changes sent (each is one comm message with a frontend)
        self.figure_redraws = 0
        self.figure_cost = 0.0
        self._drawn_version = -1
        self._fig_version = -1
        self._fig_at = 0.0
        self._fig_attention = 0
        self._header_at = 0.0
        self._graph_version = -1
        self._ticker: asyncio.Task[None] | None = None
        self._sampler: Any = None
        self._display: Any = None
        self._final = False
        self._resources_note = ""
        self.header = widgets.HTML()
        self.progress = widgets.IntProgress(value=0, min=0, max=max(1, len(agent.states)),
                                            layout=widgets.Layout(width="100%"))
        self.graph_out = widgets.Output(layout=widgets.Layout(display="" if graph else "none"))
        self.timeline_out = widgets.Output()
        self.resources_out = widgets.Output()
        self.usage = widgets.HTML()
        self.latency = widgets.HTML()
        self.forms = _forms_area(agent)
        self.result_out = widgets.Output()
        self.coordination = CoordinationPanel(agent, self.tracker)
        self._toggle = expand_toggle(self) if graph else None  # an agent with sub-workflow states
        #: the "open sub-workflows" button (None without a sub-workflow state)
        self.expand_toggle = None if self._toggle is None else self._toggle.button
        toggle = [] if self.expand_toggle is None else [self.expand_toggle]
        self.widget = widgets.VBox([self.header, self.progress, *toggle, self.graph_out, self.timeline_out,
                                    self.resources_out, self.usage, self.latency, self.coordination.widget,
                                    self.forms, self.result_out])
        setattr(agent, _VIEW_ATTR, self)
        self.redraw(force=True)

    # -- lifecycle ----------------------------------------------------------------------------
    def attach(self, handle: Any) -> LiveView:
        """Follow a run: redraw while it goes, show its result or error when it ends."""
        self.handle = handle
        known = getattr(handle, "known_run", None)
        run = known() if known is not None else None
        if run is not None:
            self.tracker.follow(run)  # one view per run, even when the agent runs several at once
        self._start_sampler()
        self._start_ticker()
        handle.add_done_callback(self._on_done)
        return self

    def follow_run(self, run: Any) -> LiveView:
        """Follow ``run`` when there is no handle (``await agent.run()`` in a cell): the end is drawn
        when its RunFinished event arrives, before the awaiting cell gets the result."""
        from ..engine._events import RunFinished

        self.tracker.follow(run)

        def on_event(event: Any) -> None:
            if isinstance(event, RunFinished) and event.run_id == run.run_id:
                self.finish(None)

        self._unsubscribe = self.agent.events.subscribe(on_event, types=(RunFinished,))
        self._start_sampler()
        self._start_ticker()
        return self

    def _start_ticker(self) -> None:
        if self._ticker is None or self._ticker.done():
            self._ticker = asyncio.get_running_loop().create_task(self._tick(), name="fluffy_nb live view")

    def _start_sampler(self) -> None:
        if self._sampler is not None:
            return
        try:
            from ..engine._sampler import acquire_shared
        except ImportError:
            return
        self._sampler = acquire_shared(self.agent, self.sample_interval)
        latest = getattr(self.agent, "latest_run", None)
        if latest is not None and latest.active and not self._sampler.running:
            self._sampler.start()

    def _last_sample(self) -> None:
        """Take the run's last resource sample for the final picture, handed to the tracker here:
        drawn from inside the RunFinished event (``await agent.run()``), the sample the sampler
        publishes would reach the bus after this view has drawn and left (``EventBus`` queues
        what its subscribers publish), and the usage table had none."""
        if self._sampler is None or not self._sampler.running:
            return  # (stopped at RunFinished before this view drew: its last sample came by the bus)
        try:
            last = self._sampler.stop()  # what it does at RunFinished, done here first
            if last is not None:
                self.tracker.on_event(last)
        except Exception:  # a broken probe must never break the picture
            log.debug("fluffy_nb live view: the last resource sample failed", exc_info=True)

    def _stop_sampler(self) -> None:
        if self._sampler is not None:
            from ..engine._sampler import release_shared

            self._sampler = None
            release_shared(self.agent)

    async def _tick(self) -> None:
        try:
            while not self._final:
                await asyncio.sleep(self.interval)
                self.redraw()
        except asyncio.CancelledError:
            pass
        except Exception:  # a view must never break a run
            log.exception("fluffy_nb live view redraw failed")

    def _on_done(self, handle: Any) -> None:
        # draw the end at the next loop step: ``await handle`` waits through ``asyncio.shield``,
        # whose waiter is woken after that, so a cell awaiting the handle resumes with the end
        # drawn and nbconvert saves the final picture with the cell (drawing it after the cell
        # ended would give the result ~15 ms sooner at 10,000 states, and lose the picture)
        try:
            asyncio.get_running_loop().call_soon(self._finish_from, handle)
        except RuntimeError:
            self._finish_from(handle)

    def finish_from(self, handle: Any) -> None:
        """Draw the end of ``handle``'s run now (its task is done): result, error or cancellation."""
        self._finish_from(handle)

    def _finish_from(self, handle: Any) -> None:
        task = getattr(handle, "task", handle)
        if task.cancelled():
            self.finish(None, cancelled=True)
        else:
            exc = task.exception()
            self.finish(exc, result=None if exc is not None else task.result())

    def finish(self, error: BaseException | None = None, *, result: Any = None, cancelled: bool = False) -> None:
        """Draw the final state: figures, and the result or the error (with its traceback)."""
        if self._final:
            if error is not None and self.tracker.exception is None:
                self._show_error(error)
            return
        self._final = True
        self._last_sample()
        self._stop_sampler()
        if self._unsubscribe is not None:
            self._unsubscribe()
        if self.tracker.run_status == "idle":  # no run seen (resume_latest of a run already done)
            self.tracker.sync_from_agent()
        if error is not None:
            self.tracker.exception = error
            self._show_error(error)
        elif cancelled:
            self.result_out.outputs = ({"output_type": "stream", "name": "stdout", "text": "run cancelled\n"},)
        elif result is not None and self.show_result:
            from ..engine import _hooks

            bundle = _hooks.mimebundle(result)
            self._result_html = bundle.get("text/html") or f"<pre>{html.escape(bundle['text/plain'])}</pre>"
            self.result_out.outputs = ({"output_type": "display_data", "metadata": {}, "data": bundle},)
        self.redraw(force=True)
        if self._ticker is not None and self._ticker is not asyncio.current_task():
            self._ticker.cancel()
        self.tracker.close()
        try:
            from ._display import update_definition

            update_definition(self.agent, self.tracker)
        except Exception:
            log.debug("fluffy_nb: redrawing the defining cell's graph failed", exc_info=True)
        if self._display is not None:
            try:  # the saved notebook keeps this static picture: no widget, no CDN, the run as it ended
                update_final(self._display, self.final_bundle(), raw=True)
            except Exception:
                log.debug("fluffy_nb: updating the live view's display failed", exc_info=True)

    def _show_error(self, error: BaseException) -> None:
        self.tracker.exception = error
        tb = traceback.format_exception(error)
        self.result_out.outputs = ({"output_type": "error", "ename": type(error).__name__,
                                    "evalue": str(error), "traceback": [line.rstrip("\n") for line in tb]},)

    # -- drawing ----------------------------------------------------------------------------------
    def redraw(self, *, force: bool = False) -> None:
        """Bring the widgets up to date with the tracker (cheap parts always, figures when due)."""
        tr = self.tracker
        now = time.perf_counter()
        resources_due = self._resources_due(now)
        if (not force and tr.version == self._drawn_version and not resources_due
                and not (self._running() and now - self._header_at >= 1.0)):
            return  # nothing new; only the elapsed time moves, shown once a second
        self.redraws += 1
        tr.refresh()  # the states scheduled but not started yet (no event says so)
        self._drawn_version = tr.version
        header = self._header_html()
        if header != self.header.value:
            self.header.value = header
            self._header_at = now
            self.updates += 1
        done, known = tr.progress()
        known = max(known, 1)
        if (done, known) != (self.progress.value, self.progress.max):
            with self.progress.hold_sync():
                self.progress.max = known
                self.progress.value = min(done, known)
                self.progress.bar_style = self._bar_style()
            self.updates += 1
        # stretch the interval to 5x what drawing costs (at most 5 s), so drawing stays under ~20%
        due = now - self._fig_at >= max(self.figure_interval, min(5 * self.figure_cost, 5.0))
        # a question to a person, a failure or a retry shows within a few ticks, not after the stretch
        urgent = tr.attention != self._fig_attention and now - self._fig_at >= 3 * self.interval
        if force or ((due or urgent) and tr.version != self._fig_version and not tr.finished):
            # (once the run has ended, finish() draws the final figures: once, not twice)
            self._fig_version = tr.version
            self._fig_attention = tr.attention
            self._draw_figures()
            cost = time.perf_counter() - now
            if self.figure_redraws > 1:  # the first draw pays plotly's warm-up: not a fair measure
                self.figure_cost = cost if not self.figure_cost else 0.5 * (self.figure_cost + cost)
            self._fig_at = time.perf_counter()
        elif resources_due and not tr.finished:
            self._draw_resources()

    def _resources_due(self, now: float) -> bool:
        """New samples, and the resources chart's own interval has passed (10 s once it is drawn:
        new samples alone, as while a run waits for a person, must not keep the kernel busy)."""
        tr = self.tracker
        if tr.samples_version == self._samples_drawn:
            return False
        if tr.waiting and not any(st in ("running", "retrying") for st in tr.status.values()):
            # only people are awaited: nothing moves but a flat line; the end draws it anyway
            return now - self._res_at >= max(self.resource_interval, 60.0)
        charted = self._resources_note == "chart"
        return now - self._res_at >= (self.resource_interval if charted else self.figure_interval)

    @property
    def finished(self) -> bool:
        """Whether the view has drawn its run's end."""
        return self._final

    def _running(self) -> bool:
        return self.tracker.run_status == "running"  # elapsed time keeps moving

    def _bar_style(self) -> str:
        return {"completed": "success", "failed": "danger", "cancelled": "warning"}.get(self.tracker.run_status, "info")

    @property
    def expand(self) -> Any:
        """Sub-workflow states drawn open in the graph (True: all; a list of paths; False: none).
        Setting it shows on the "open sub-workflows" button; the next redraw draws it."""
        return self._expand

    @expand.setter
    def expand(self, value: Any) -> None:
        self._expand = value
        if self._toggle is not None:
            self._toggle.follow(value)

    def redraw_graph(self) -> None:
        """Draw the graph now (the ``expand`` toggle calls this: clusters open or close at once)."""
        if self.graph_out.layout.display != "none":
            self.graph_out.outputs = (_display_data(graph_bundle(self.agent, self.tracker, expand=self.expand)),)
            self.updates += 1

    def _draw_figures(self) -> None:
        self.figure_redraws += 1
        tr = self.tracker
        self.redraw_graph()
        if tr.spans:
            self.timeline_out.outputs = (_display_data(timeline_bundle(tr)),)
            self.updates += 1
        if tr.samples_version != self._samples_drawn or tr.finished:
            self._draw_resources()
        else:
            self._draw_usage()
        slowest, finished = tr.slowest(11)  # the table's 10 and one more (it says how many it left out)
        latency = latency_table_html(slowest, finished=finished)
        if latency != self.latency.value:
            self.latency.value = latency
            self.updates += 1
        before = self.coordination.updates
        self.coordination.refresh()
        self.updates += self.coordination.updates - before

    def _draw_resources(self) -> None:
        """The resources chart (or a note until there are two samples) and the usage table."""
        tr = self.tracker
        self._samples_drawn = tr.samples_version
        self._res_at = time.perf_counter()
        if len(steady_samples(list(tr.samples))) >= 2:  # a line needs two points
            self.resources_out.outputs = (_display_data(to_bundle(resource_figure(tr))),)
            self._resources_note = "chart"
            self.updates += 1
        elif tr.run_status != "idle":
            note = self._no_chart_note()
            if note != self._resources_note:
                self._resources_note = note
                shown = f'<div style="color:#777;font-size:12px">{html.escape(note)}</div>'
                self.resources_out.outputs = (_display_data({"text/plain": note, "text/html": shown}),)
                self.updates += 1
        self._draw_usage()

    def _draw_usage(self) -> None:
        usage = usage_table_html(self.tracker)
        if usage != self.usage.value:
            self.usage.value = usage
            self.updates += 1

    def _no_chart_note(self) -> str:
        """What the resources area says until there are two samples to draw a line through."""
        tr = self.tracker
        every = f"one every {self.sample_interval:g} s"
        if not tr.finished:
            return f"resources: no samples yet ({every})"
        note = f"resources: the run was too short for a usage chart ({every})"
        if tr.samples:
            last = tr.samples[-1]
            note += (f"; at the end: process {last.process_cpu:.0f}% CPU, {last.process_memory_mb:.0f} MB, "
                     f"system {last.system_cpu:.0f}% CPU")
        return note

    def _header_html(self) -> str:
        tr = self.tracker
        colour = {"completed": status_color("completed"), "failed": status_color("failed"),
                  "running": status_color("running")}.get(tr.run_status, "#555")
        text = html.escape(tr.summary())
        err = ""
        if tr.error:
            err = f'<div style="color:{status_color("failed")}">{html.escape(tr.error[:500])}</div>'
        waiting = ""
        if tr.waiting:
            asks = "; ".join(html.escape(f"{e.state}: {e.prompt[:80]}") for e in list(tr.waiting.values())[:3])
            waiting = f'<div style="color:{status_color("waiting_for_human")}">waiting for a person - {asks}</div>'
        return (f'<div style="font-family:sans-serif"><b style="color:{colour}">&#9679;</b> '
                f"<b>{text}</b>{_dashboard_link(self.agent)}{err}{waiting}{self._waits_html()}</div>")

    def _waits_html(self) -> str:
        return waits_html(self.tracker, self.agent)

    def why_data(self) -> dict[str, Any]:
        """What the view shows about waits, as plain data: every waiting state's reason and holders,
        and the deadlocks detected (cycle, victim, advice)."""
        tr = self.tracker
        return {
            "waits": {s: {"kind": w.kind, "detail": w.detail, "holders": list(w.holders),
                          "text": wait_sentence(w)} for s, w in tr.current_waits().items()},
            "deadlocks": [{"cycle": list(d.cycle), "victim": d.victim, "edges": [list(e) for e in d.edges],
                           "advice": deadlock_advice(d, self.agent)} for d in tr.deadlocks],
        }

    # -- display -------------------------------------------------------------------------------
    def display(self) -> LiveView:
        """Display the view under the current cell (updated with a final snapshot at the end)."""
        from IPython.display import display

        self._display = display(self, display_id=True)
        return self

    def snapshot_html(self) -> str:
        """A static HTML picture of the run: header, progress, SVG graph and timeline, usage, the
        answers people gave, the result or the error (what the saved notebook keeps at the end)."""
        tr = self.tracker
        done, known = tr.progress()
        pct = 100.0 * done / max(known, 1)
        counts = tr.counts()
        chips = " ".join(
            f'<span style="background:{status_color(s)};padding:1px 6px;border-radius:8px;'
            f'color:{"#000" if s in LIGHT_STATUSES else "#fff"}'
            f'{";border:1px dashed #888" if s == "skipped" else ""}">'
            f"{counts[s]:,} {status_label(s)}</span>"
            for s in STATUS_STYLE if counts[s])
        err = ""
        if tr.exception is not None or tr.error:
            text = tr.error or f"{type(tr.exception).__name__}: {tr.exception}"
            err = f'<pre style="color:{status_color("failed")};white-space:pre-wrap">{html.escape(text)}</pre>'
        graph = graph_svg(self.agent, tr) if self.graph_out.layout.display != "none" else ""
        return (f'<div class="fluffy-run-picture" style="font-family:sans-serif">{self._header_html()}'
                f'<div style="background:#eee;width:100%;height:8px;margin:4px 0">'
                f'<div style="background:{status_color("completed")};width:{pct:.1f}%;height:8px"></div></div>'
                f"<div>{chips}</div><div>{graph}</div><div>{timeline_svg(tr)}</div>{usage_table_html(tr)}"
                f"{latency_table_html(tr.durations)}{self._coordination_details()}"
                f"{forms_records_html(self.agent)}{self._result_html}{err}</div>")

    def final_bundle(self) -> dict[str, Any]:
        """What the view's display becomes when the run ends: the static picture only (no widget),
        so an exported notebook shows the finished run without JavaScript or network."""
        return {"text/plain": self.text_summary(), "text/html": self.snapshot_html()}

    def _coordination_details(self) -> str:
        body = coordination_html(self.agent, self.tracker)
        if not body:
            return ""
        return f"<details><summary>coordination and resources</summary>{body}</details>"

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        data = dict(self.widget._repr_mimebundle_() or {})
        data["text/plain"] = self.text_summary()
        data["text/html"] = self.snapshot_html()
        return data

    def text_summary(self) -> str:
        """The run in plain text (the snapshot for terminals and text-only frontends)."""
        from ._graphview import graph_text

        tr = self.tracker
        lines = [tr.summary(), graph_text(self.agent, tr)]
        lines += [f"  {s} {wait_sentence(w)}" for s, w in list(tr.current_waits().items())[:20]]
        lines += [deadlock_advice(d, self.agent) for d in tr.deadlocks[-2:]]
        if tr.error:
            lines.append(f"error: {tr.error}")
        return "\n".join(lines)

    def statistics(self) -> dict[str, Any]:
        """How much drawing this view has done (redraws, figure redraws, last figure cost)."""
        return {"redraws": self.redraws, "figure_redraws": self.figure_redraws, "updates": self.updates,
                "figure_cost": self.figure_cost, "events": self.tracker.events_seen}

    def close(self) -> None:
        """Stop following the agent and close the widgets."""
        self._final = True
        if self._ticker is not None:
            self._ticker.cancel()
        self._stop_sampler()
        self.tracker.close()
        self.coordination.content.close()
        for child in self.widget.children:
            if child is not self.forms:  # the forms area is the agent's, shared with its responder
                child.close()
        self.widget.close()

    def __repr__(self) -> str:
        return f"<LiveView {self.tracker.summary()} redraws={self.redraws}>"


def _dashboard_link(agent: Any) -> str:
    """A link to the agent's executor's dashboard (a Dask cluster's), when it has one."""
    link = getattr(getattr(agent, "executor", None), "dashboard_link", None)
    if not isinstance(link, str) or not link.startswith(("http://", "https://")):
        return ""
    return f' <a href="{html.escape(link)}" target="_blank">Dask dashboard</a>'


def _display_data(bundle: dict[str, Any]) -> dict[str, Any]:
    return {"output_type": "display_data", "data": bundle, "metadata": {}}
