"""Which states a run starts with, and saying so when reading the code leaves it open.

The rule: ``run(start=...)`` when given; otherwise every state without dependencies that no
edge leads to (edges are the names states return, read from their code, plus ``next=``
hints), in ``add_state`` order. Two things the code reader cannot settle are decided here,
out loud:

* A name built at run time (``f"chunk_{i}"``) is a pattern. A state that no edge reaches but
  whose name fits another state's pattern is taken as that state's target, not a start,
  when the pattern's computed part is a number (``chunk_0``, ``chunk_1``). A state fitting
  it with another filler (``chunk_report``) still starts on its own, with a
  :class:`FluffyWarning` naming it and the fix.
* A state returning a name the reader cannot see (``return ctx.get_state("next")``) may lead
  to any state. When more than one state would start, a :class:`FluffyWarning` names them and
  the fix (``@state(next=[...])`` on the router, or ``run(start=...)``).
"""

from __future__ import annotations

import re
import warnings
from typing import TYPE_CHECKING

from ._errors import FluffyWarning, StateNotFoundError
from ._reader import OPAQUE, PLACEHOLDER, is_pattern

if TYPE_CHECKING:
    from ._agent import Agent


def start_states(agent: Agent, start: str | list[str] | None) -> list[str]:
    """The start states of a new run of ``agent`` (see the module docstring)."""
    states = agent.states
    if start is not None:
        names = [start] if isinstance(start, str) else list(start)
        for n in names:
            if n not in states:
                known = ", ".join(sorted(states)[:12])
                raise StateNotFoundError(
                    f"run(start={n!r}): agent {agent.name!r} has no state {n!r} (known: {known}); "
                    "pass the name of a state added with add_state"
                )
        return names
    from ._registration import definition_key

    key = definition_key(agent)
    cached = agent.definition_cache.get("starts")
    if cached is not None and cached[0] == key:
        return list(cached[1])  # found before for this definition, without a warning to repeat
    entered = agent.graph.entered  # states with an edge from another state
    candidates = [n for n, s in states.items() if n not in entered and not s.dependencies]
    candidates, warned = _drop_pattern_targets(agent, candidates)
    if len(candidates) > 1:
        warned = _warn_opaque(agent, candidates) or warned
    if not candidates and states:
        candidates = [next(iter(states))]
    if not warned:  # a warning is said at every run, so what needs one is found again
        agent.definition_cache["starts"] = (key, list(candidates))
    return candidates


def _drop_pattern_targets(agent: Agent, candidates: list[str]) -> tuple[list[str], bool]:
    """``candidates`` without the numbered targets of run-time names; whether it warned."""
    warned = False
    keep = list(candidates)
    for owner in agent.pattern_owners:
        strings = agent.code_names[owner]
        if agent.states[owner].next_hint:
            continue  # returns no name, or its author listed where it goes
        for pattern in strings:
            if not is_pattern(pattern) or pattern == OPAQUE:
                continue
            regex = re.compile("(.+?)".join(re.escape(part) for part in pattern.split(PLACEHOLDER)) + r"\Z")
            numbered: list[str] = []
            other: list[str] = []
            for name in keep:
                m = regex.match(name)
                if name != owner and m is not None:
                    (numbered if all(g.isdigit() for g in m.groups()) else other).append(name)
            keep = [n for n in keep if n not in numbered]
            if other:
                shown = pattern.replace(PLACEHOLDER, "{...}")
                warnings.warn(
                    f"agent {agent.name!r}: state(s) {other} fit the name f{shown!r} that state {owner!r} builds "
                    "at run time, and nothing else leads to them, so they start on their own. If they are "
                    f"{owner!r}'s targets, declare them with @state(next=[...]) on {owner!r}; if they are "
                    "independent, pass run(start=[...]) to say so",
                    FluffyWarning, stacklevel=4,
                )
                warned = True
    return keep, warned


def _warn_opaque(agent: Agent, candidates: list[str]) -> bool:
    routers = [n for n in agent.pattern_owners
               if OPAQUE in agent.code_names[n] and not agent.states[n].next_hint and n in agent.states]
    if not routers:
        return False
    warnings.warn(
        f"agent {agent.name!r}: state(s) {routers} return names that cannot be read from their code, so "
        f"the run cannot tell which of {candidates} are start states; all of them start. Declare where "
        f"{routers[0]!r} leads with @state(next=[...]) (or add_state(..., next=[...])), or pass "
        "run(start=[...])",
        FluffyWarning, stacklevel=4,
    )
    return True
