"""The live view's coordination panel: primitives, rate limiters and the resource pool, as they are now.

For each coordination primitive (mutex, semaphore, lease, barrier, quota): its state, holders,
waiters, capacity and ``statistics()``; for each rate limiter: tokens available, waiters, next
admission and its counters; for the resource pool: total, allocated, free and measured per
resource, who holds what, and the states waiting for it in the order they would be admitted
(priority first). Everything is read through the primitives' public inspection methods.

The panel is an ``ipywidgets.Accordion``, collapsed by default. It is filled only while open:
a closed panel costs nothing but a cheap title on the view's figure ticks.
"""

from __future__ import annotations

import html
import weakref
from typing import Any

import ipywidgets as widgets

_TH = 'style="text-align:left;padding:1px 8px 1px 0"'
_STYLE = "font-size:12px;border-collapse:collapse;margin-bottom:6px"


def _e(value: Any) -> str:
    return html.escape(str(value))


def _names(owners: Any, limit: int = 8) -> str:
    owners = list(owners or ())
    text = ", ".join(owners[:limit]) + (f" (+{len(owners) - limit})" if len(owners) > limit else "")
    return _e(text or "-")


def _table(title: str, head: list[str], rows: list[list[str]]) -> str:
    """An HTML table; ``rows`` cells are already escaped."""
    if not rows:
        return ""
    th = "".join(f"<th {_TH}>{_e(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f'<td style="padding:1px 8px 1px 0">{c}</td>' for c in r) + "</tr>"
                   for r in rows)
    return (f'<div><b>{_e(title)}</b><table style="{_STYLE}"><thead><tr>{th}</tr></thead>'
            f"<tbody>{body}</tbody></table></div>")


def coordinator_of(agent: Any) -> Any:
    """The agent's coordinator, or None when it has no primitives and no rate limiters."""
    coordinator = getattr(agent, "coordinator", None)
    if coordinator is None or not (coordinator.primitives or coordinator.rate_limiters):
        return None
    return coordinator


def _capacity(status: dict[str, Any]) -> str:
    kind = status.get("type")
    if kind == "barrier":
        return f"{status.get('arrived', 0)} of {status.get('max_count')} arrived"
    if kind == "quota":
        resets = status.get("resets_in")
        return (f"{status.get('remaining', 0):g} of {status.get('quota_limit')} left"
                + ("" if resets is None else f", resets in {resets:.1f}s"))
    return f"{len(status.get('owners', ()))} of {status.get('max_count', 1)} held"


def primitive_rows(coordinator: Any) -> list[list[str]]:
    """One row per primitive: name, kind, state, holders, waiters, capacity, statistics."""
    rows = []
    for name, prim in coordinator.primitives.items():
        status = prim.status()
        st = prim.statistics()
        stats = (f"{st.acquisitions} acquired, {st.contended} contended, peak {st.peak_holders} holding / "
                 f"{st.peak_waiting} waiting, max wait {st.max_wait_time:.2f}s, {st.timeouts} timeouts, "
                 f"{st.deadlocks} deadlocks")
        if st.consumed:
            stats += f", {st.consumed:g} consumed"
        rows.append([f"<b>{_e(name)}</b>", _e(status.get("type", "")), _e(status.get("state", "")),
                     _names(status.get("owners")), _names(status.get("waiters")), _e(_capacity(status)), _e(stats)])
    return rows


def limiter_rows(coordinator: Any) -> list[list[str]]:
    """One row per rate limiter: state, strategy, rate, tokens available, waiting, next admission, statistics."""
    rows = []
    for name, lim in coordinator.rate_limiters.items():
        status = lim.status()
        st = lim.statistics()
        burst = status.get("burst_size")
        rows.append([f"<b>{_e(name)}</b>", _e(st.strategy), _e(f"{st.max_rate:g}/s" + (f", burst {burst}" if burst
                                                                                       else "")),
                     _e(f"{status.get('available', 0):.2f}"), _e(st.waiting),
                     _e(f"{lim.next_admission_in():.2f}s"),
                     _e(f"{st.admitted} admitted ({st.admitted_at_once} at once), {st.delayed} delayed, "
                        f"max delay {st.max_delay:.2f}s")])
    return rows


def pool_rows(pool: Any, tracker: Any = None) -> list[list[str]]:
    """Per resource the pool has: total, allocated, free, peak, measured now, states waiting for it."""
    last = tracker.samples[-1] if tracker is not None and tracker.samples else None
    rows = []
    for rtype, u in pool.get_usage_stats().items():
        if not u.total and not u.current_usage:
            continue
        name = getattr(rtype, "name", str(rtype))
        measured = "-"
        if last is not None and name == "CPU":
            measured = f"{last.process_cpu / 100:.2f} cores (process)"
        elif last is not None and name == "MEMORY":
            measured = f"{last.process_memory_mb:.0f} MB (process)"
        bar = _bar(u.current_usage, u.total)
        rows.append([f"<b>{_e(name)}</b>", _e(f"{u.total:g}"), _e(f"{u.current_usage:g}") + bar,
                     _e(f"{u.available:g}"), _e(f"{u.peak_usage:g}"), _e(measured), _e(u.waiting)])
    return rows


def _bar(used: float, total: float) -> str:
    pct = 0.0 if not total else max(0.0, min(100.0, 100.0 * used / total))
    return (f'<div style="display:inline-block;margin-left:6px;width:80px;height:8px;background:#e0e0e0;'
            f'vertical-align:middle"><div style="width:{pct:.0f}%;height:8px;background:#e6a117"></div></div>')


def _owner_state(owner: str) -> str:
    return owner.split("#", 1)[0]


def _priority_name(prio: Any) -> str:
    try:
        from ..engine import Priority

        return f"{Priority(prio).name} ({int(prio)})"
    except (ImportError, ValueError, TypeError):
        return str(prio)


def queue_rows(pool: Any, agent: Any, limit: int = 25) -> list[list[str]]:
    """The states waiting for the pool, in the order they would be admitted (priority first)."""
    rows = []
    waiting = pool.get_waiting_states()
    for rank, owner in enumerate(waiting[:limit], 1):
        spec = agent.states.get(_owner_state(owner))
        prio = getattr(spec, "priority", None)
        res = getattr(spec, "resources", None)
        wants = ", ".join(f"{getattr(t, 'name', t)} {a:g}" for t, a in res.amounts().items()) if res else "-"
        rows.append([_e(rank), f"<b>{_e(owner)}</b>", _e(_priority_name(prio)), _e(wants)])
    if len(waiting) > limit:
        rows.append(["", _e(f"... {len(waiting) - limit} more"), "", ""])
    return rows


def allocation_rows(pool: Any, limit: int = 25) -> list[list[str]]:
    """Who holds what from the pool now."""
    allocs = pool.get_state_allocations()
    rows = [[f"<b>{_e(owner)}</b>", _e(", ".join(f"{getattr(t, 'name', t)} {a:g}" for t, a in held.items()))]
            for owner, held in list(allocs.items())[:limit]]
    if len(allocs) > limit:
        rows.append([_e(f"... {len(allocs) - limit} more"), ""])
    return rows


def coordination_html(agent: Any, tracker: Any = None) -> str:
    """The panel's content: escaped HTML tables (empty when the agent coordinates nothing)."""
    parts = []
    coordinator = coordinator_of(agent)
    if coordinator is not None:
        parts.append(_table("coordination primitives", ["name", "kind", "state", "holders", "waiters", "capacity",
                                                         "statistics()"], primitive_rows(coordinator)))
        parts.append(_table("rate limiters", ["state", "strategy", "rate", "tokens now", "waiting",
                                              "next admission", "statistics()"], limiter_rows(coordinator)))
        det = coordinator.deadlock_detector.statistics()
        if det.cycle_count:
            cycle = " -> ".join([*det.last_cycle, *det.last_cycle[:1]])
            parts.append(f'<div style="color:#d62728"><b>deadlocks detected: {det.cycle_count}</b>; last: '
                         f"{_e(cycle)}</div>")
    pool = getattr(agent, "active_resource_pool", None)  # never makes the default pool
    if pool is not None:
        st = pool.statistics()
        parts.append(_table(f"resource pool ({st.running} holding, {st.waiting} waiting, {st.admitted} admitted, "
                            f"{st.waited} had to wait, max wait {st.max_wait_time:.2f}s)",
                            ["resource", "total", "allocated", "free", "peak", "measured", "waiting for it"],
                            pool_rows(pool, tracker)))
        parts.append(_table("held now", ["holder", "holds"], allocation_rows(pool)))
        parts.append(_table("waiting queue (admission order: priority first)", ["#", "state", "priority", "wants"],
                            queue_rows(pool, agent)))
    body = "".join(p for p in parts if p)
    return f'<div style="font-family:sans-serif">{body}</div>' if body else ""


def panel_title(agent: Any) -> str:
    """One line for the closed panel: what there is to see."""
    parts = []
    coordinator = coordinator_of(agent)
    if coordinator is not None:
        if coordinator.primitives:
            parts.append(f"{len(coordinator.primitives)} primitive(s)")
        if coordinator.rate_limiters:
            parts.append(f"{len(coordinator.rate_limiters)} rate limiter(s)")
        deadlocks = coordinator.deadlock_detector.statistics().cycle_count
        if deadlocks:
            parts.append(f"{deadlocks} deadlock(s)")
    pool = getattr(agent, "active_resource_pool", None)  # never makes the default pool
    if pool is not None:
        st = pool.statistics()
        parts.append(f"resource pool: {st.running} holding, {st.waiting} waiting")
    return "coordination - " + ", ".join(parts) if parts else ""


class CoordinationPanel:
    """A collapsed accordion in the live view; its tables are built only while it is open.

    Args:
        agent: The agent whose coordinator and resource pool are shown.
        tracker: The view's :class:`RunTracker` (for measured usage).
    """

    def __init__(self, agent: Any, tracker: Any = None) -> None:
        self.agent = agent
        self.tracker = tracker
        self.content = widgets.HTML()
        self.widget = widgets.Accordion(children=[self.content], selected_index=None)
        self.renders = 0  # times the tables were built (stays 0 while nobody opens the panel)
        self.updates = 0
        self._title = ""
        # the widget outlives the view in ipywidgets' registry until closed: observe through a weak
        # reference, so an open widget never keeps the panel (and its agent) alive
        ref = weakref.ref(self)

        def opened(change: dict[str, Any]) -> None:
            panel = ref()
            if panel is not None and change.get("new") == 0:
                panel.refresh()

        self.widget.observe(opened, "selected_index")
        self.refresh()

    @property
    def is_open(self) -> bool:
        """Whether someone opened the panel."""
        return self.widget.selected_index == 0

    def refresh(self) -> None:
        """Update the title (cheap) and, when open, the tables."""
        title = panel_title(self.agent)
        if title != self._title:
            self._title = title
            self.widget.set_title(0, title or "coordination")
            self.widget.layout.display = "" if title else "none"
            self.updates += 1
        if not self.is_open:
            return
        self.renders += 1
        value = coordination_html(self.agent, self.tracker)
        if value != self.content.value:
            self.content.value = value
            self.updates += 1

    def close(self) -> None:
        """Close the widgets."""
        self.content.close()
        self.widget.close()
