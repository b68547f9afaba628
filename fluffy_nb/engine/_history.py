"""Checkpoint history as engine objects: the listing of a run, and the diff of two checkpoints.

The engine stays free of pandas: :class:`CheckpointHistory` is a plain list of the rows a
store returns (``CheckpointInfo``) with a readable repr. ``agent.history()`` returns it
everywhere; ``.to_pandas()`` builds the DataFrame with the notebook layer's ``history_frame``
(the top-level package wires that in, ``_hooks.to_pandas``), and in a notebook it displays as
that table.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._hooks import mimebundle

if TYPE_CHECKING:
    from ._checkpoint import Checkpoint


class CheckpointHistory(list):  # type: ignore[type-arg]
    """The checkpoints of an agent (or of one run), oldest first; a list of ``CheckpointInfo``.

    Index it like a list (``history[-1].checkpoint_id``) and hand rows or ids to
    ``agent.restore`` / ``agent.fork`` / ``agent.diff``.
    """

    def __init__(self, rows: Any = (), *, agent_name: str = "", run_id: str | None = None,
                 store: Any = None) -> None:
        super().__init__(rows)
        self.agent_name = agent_name
        self.run_id = run_id
        self.store = store

    def to_pandas(self) -> Any:
        """One row per checkpoint as a pandas DataFrame with typed columns (``history_frame``)."""
        from . import _hooks

        build = _hooks.to_pandas
        if build is None:
            from ._errors import ConfigurationError

            raise ConfigurationError("to_pandas() needs fluffy_nb's notebook layer: `import fluffy_nb` first")
        return build(self)

    @property
    def run_ids(self) -> list[str]:
        """The runs present, in order."""
        return list(dict.fromkeys(r.run_id for r in self))

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        return mimebundle(self, include, exclude)

    def __repr__(self) -> str:
        scope = f"run {self.run_id[:8]}" if self.run_id else f"{len(self.run_ids)} run(s)"
        head = f"<CheckpointHistory {self.agent_name!r}: {len(self)} checkpoint(s), {scope}>"
        if not self:
            return head
        lines = [head, f"  {'#':>3}  {'run':8}  {'seq':>4}  {'trigger':10}  {'status':9}  {'done':>5}  "
                       f"{'time':8}  id"]
        shown = list(enumerate(self))
        if len(shown) > 20:
            shown = [*shown[:10], (-1, None), *shown[-9:]]
        for i, r in shown:
            if r is None:
                lines.append("  ...")
                continue
            when = time.strftime("%H:%M:%S", time.localtime(r.timestamp))
            lines.append(f"  {i:>3}  {r.run_id[:8]:8}  {r.sequence:>4}  {r.trigger:10}  {r.agent_status:9}  "
                         f"{r.completed_count:>5}  {when:8}  {r.checkpoint_id[:12]}")
        return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class CheckpointDiff:
    """What changed from checkpoint ``a`` to checkpoint ``b``.

    Attributes:
        a_id: The earlier checkpoint's id.
        b_id: The later checkpoint's id.
        added: Data keys (shared or typed) present in ``b`` only.
        removed: Data keys present in ``a`` only.
        changed: Data keys present in both with different values.
        status_changes: ``{state: (status in a, status in b)}`` for states whose status differs.
        completed_added: States completed in ``b`` but not in ``a``.
        completed_removed: States completed in ``a`` but not in ``b`` (``b`` is older or a fork).
    """

    a_id: str
    b_id: str
    added: tuple[str, ...]
    removed: tuple[str, ...]
    changed: tuple[str, ...]
    status_changes: dict[str, tuple[str, str]]
    completed_added: tuple[str, ...]
    completed_removed: tuple[str, ...]

    @property
    def empty(self) -> bool:
        """True when nothing differs."""
        return not (self.added or self.removed or self.changed or self.status_changes
                    or self.completed_added or self.completed_removed)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        return mimebundle(self, include, exclude)

    def __repr__(self) -> str:
        head = f"<CheckpointDiff {self.a_id[:8]} -> {self.b_id[:8]}"
        if self.empty:
            return head + ": no changes>"
        lines = [head + ">"]
        for label, keys in (("added", self.added), ("removed", self.removed), ("changed", self.changed),
                            ("completed +", self.completed_added), ("completed -", self.completed_removed)):
            if keys:
                lines.append(f"  {label:12} {', '.join(keys)}")
        for state, (old, new) in self.status_changes.items():
            lines.append(f"  {'status':12} {state}: {old} -> {new}")
        return "\n".join(lines)


def diff_checkpoints(a: Checkpoint, b: Checkpoint) -> CheckpointDiff:
    """Compare two checkpoints: data keys added/removed/changed, state statuses, completions.

    Shared and typed data are compared as stored (JSON values); a typed key appears as
    ``key`` just like a shared one.

    Example:
        >>> # d = diff_checkpoints(history_cp_1, history_cp_2); d.changed
    """
    da = {**a.shared_state, **a.typed_data}
    db = {**b.shared_state, **b.typed_data}
    added = tuple(k for k in db if k not in da)
    removed = tuple(k for k in da if k not in db)
    changed = tuple(k for k in db if k in da and da[k] != db[k])
    status: dict[str, tuple[str, str]] = {}
    for name in dict.fromkeys([*a.state_status, *b.state_status]):
        old = a.state_status.get(name)
        new = b.state_status.get(name)
        if old != new:
            status[name] = (old.value if old else "pending", new.value if new else "pending")
    ca, cb = set(a.completed_states), set(b.completed_states)
    return CheckpointDiff(
        a_id=a.checkpoint_id,
        b_id=b.checkpoint_id,
        added=added,
        removed=removed,
        changed=changed,
        status_changes=status,
        completed_added=tuple(s for s in b.completed_states if s not in ca),
        completed_removed=tuple(s for s in a.completed_states if s not in cb),
    )
