"""The state graph the engine reads from code, and the fan-out/join bookkeeping.

Edges come from three places: the names a state function may return, read from its code
by ``_reader.state_targets`` (``return "next"``, ``return ["a", "b"]``), declared hints
(``@state(next=...)``) and dependencies, and edges observed while running. The notebook
draws the same graph.

Join rule. States returned together in a list form a *fan-out*; each becomes a branch.
When a branch names a next state X while other branches of the same fan-out are still
alive and could still reach X (X is that branch's state or reachable from it in the graph),
the branch waits at X. X starts once, when no other branch of the fan-out can reach it any
more; all branches waiting there continue as that one run of X. A state that is already
queued and not yet started absorbs a branch that names it. When a fan-out is down to one
branch, that branch carries on as the branch that fanned out, so joins nest.
The states named in one list all start at once, even if one can reach another (the rule
applies to where branches go next). Branches waiting only for each other (their join
targets reach one another in a loop, and no branch of the fan-out is running) all start.
The question "can a live branch still reach X?" (:meth:`Joins.can_still_reach`) is asked in
this one place: by fan-out joins about the branches of their fan-out, and by dependency
gates about the running and queued states. A state gated by dependencies that branches also
name (``merge_results`` depending on ``process_chunk`` while ``process_chunk_N`` return it)
is a join too: once its dependencies hold, it waits while a running or queued state can
still route to it, then runs once. "Reach" follows the edges a state can return along
(code, ``next=`` hints, observed); dependency edges are not routes.
A state added with ``join=True`` is a join whatever the graph says: a branch naming it waits
while any branch of its fan-out is still running. Names built at run time (f-strings) are
invisible to the reader: declare them with ``@state(next=[...])``, ``join=True`` or
dependencies if they are join targets (``_starts.py`` says how
start states are chosen, and warns where the code leaves it open).
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable, Collection, Iterable, KeysView
from typing import Any


class StateGraph:
    """Directed graph of states with cached reachability.

    Example:
        >>> g = StateGraph()
        >>> g.add_edge("a", "b"), g.add_edge("b", "c")
        (True, True)
        >>> g.reaches("a", "c")
        True
    """

    def __init__(self) -> None:
        self.nodes: dict[str, None] = {}
        self.edges: dict[str, dict[str, str]] = {}  # src -> {dst: kind}
        self.redges: dict[str, set[str]] = {}  # dst -> {src}
        self.entered: set[str] = set()  # states with an edge from another state (never start states)
        self._reach: dict[str, frozenset[str]] = {}
        self._ancestors: dict[str, frozenset[str]] = {}
        self._origins: dict[str, frozenset[str]] = {}  # kept across runs while the graph stays the same
        self.version = 0

    def add_node(self, name: str) -> None:
        """Add a state (no edges)."""
        if name not in self.nodes:
            self.nodes[name] = None
            self.edges.setdefault(name, {})
            self._changed()

    def add_edge(self, src: str, dst: str, kind: str = "code") -> bool:
        """Add ``src -> dst``; returns whether it was new."""
        out = self.edges.setdefault(src, {})
        if dst in out:
            return False
        out[dst] = kind
        self.redges.setdefault(dst, set()).add(src)
        if src != dst:
            self.entered.add(dst)
        self.nodes.setdefault(src, None)
        self.nodes.setdefault(dst, None)
        self._changed()
        return True

    def observe(self, src: str, names: Iterable[str]) -> None:
        """``src`` returned ``names``: add each edge ``src -> name`` the graph lacks, as observed
        while running (kind ``"runtime"``)."""
        out = self.edges.get(src)
        for n in names:
            if out is None or n not in out:
                self.add_edge(src, n, "runtime")
                out = self.edges[src]

    def _changed(self) -> None:
        if self._reach:
            self._reach.clear()
        if self._ancestors:
            self._ancestors.clear()
        if self._origins:
            self._origins.clear()
        self.version += 1

    def ancestors(self, name: str) -> frozenset[str]:
        """Every state from which ``name`` can be reached."""
        cached = self._ancestors.get(name)
        return cached if cached is not None else self._walk(name, self.redges, self._ancestors)

    def successors(self, name: str) -> list[str]:
        """Direct successors of ``name``."""
        return list(self.edges.get(name, ()))

    def descendants(self, name: str) -> frozenset[str]:
        """Every state reachable from ``name`` (not including it unless on a cycle)."""
        cached = self._reach.get(name)
        return cached if cached is not None else self._walk(name, self.edges, self._reach)

    @staticmethod
    def _walk(name: str, adjacency: Any, cache: dict[str, frozenset[str]]) -> frozenset[str]:
        """Everything reachable from ``name`` along ``adjacency`` (cached in ``cache``)."""
        seen: set[str] = set()
        stack = list(adjacency.get(name, ()))
        while stack:
            n = stack.pop()
            if n not in seen:
                seen.add(n)
                stack.extend(adjacency.get(n, ()))
        result = frozenset(seen)
        cache[name] = result
        return result

    def reaching(self, names: Iterable[str]) -> frozenset[str]:
        """``names`` and every state from which one of them can be reached: one walk, where the
        union of each one's :meth:`ancestors` is one walk per name (a 1,000-wide join's origins)."""
        seen = set(names)
        stack = list(seen)
        redges = self.redges
        while stack:
            for n in redges.get(stack.pop(), ()):
                if n not in seen:
                    seen.add(n)
                    stack.append(n)
        return frozenset(seen)

    def origins(self, target: str) -> frozenset[str]:
        """States from which a branch may still enter ``target`` by returning its name: the
        states with a code, declared or observed edge to it, and everything that reaches them.
        Cached until the graph changes, so every run of an agent shares one walk per join."""
        found = self._origins.get(target)
        if found is None:
            edges = self.edges
            found = self._origins[target] = self.reaching(
                src for src in self.redges.get(target, ()) if edges[src][target] != "dependency")
        return found

    def reaches(self, src: str, dst: str) -> bool:
        """Whether a branch now at ``src`` may still get to ``dst``."""
        return src == dst or dst in self.descendants(src)

    def edge_list(self) -> list[tuple[str, str, str]]:
        """All edges as ``(src, dst, kind)``."""
        return [(s, d, k) for s, outs in self.edges.items() for d, k in outs.items()]


class Group:
    """A fan-out: the branches started by one list return (or the run's start states)."""

    __slots__ = ("active", "forward", "id", "joins", "members", "parent", "seen")

    def __init__(self, gid: int, parent: Token | None) -> None:
        self.id = gid
        self.parent = parent
        # a state where a live branch was, last time the join question found one (Joins.arrive
        # asks it first), and which end of ``active`` the next search starts from
        self.seen: str | None = None
        self.forward = False
        # state -> live branches there (not waiting); a plain dict: Counter's missing-key and
        # delete methods are Python calls, and _enter/_leave run once per transition
        self.active: dict[str, int] = {}
        self.members: set[Token] = set()
        self.joins: dict[str, list[Token]] = {}

    def size(self) -> int:
        """Live branches: running/queued ones plus those waiting at joins."""
        return len(self.members) + sum(len(v) for v in self.joins.values())


class Token:
    """One branch of execution; ``state`` is where it is now."""

    __slots__ = ("group", "id", "state")

    def __init__(self, tid: int, group: Group, state: str) -> None:
        self.id = tid
        self.group = group
        self.state = state

    def __repr__(self) -> str:
        return f"Token({self.id}, {self.state!r}, group={self.group.id})"


Starter = Callable[[str, Token], None]
#: ``start_all(tokens, absorbed)``: start one run per branch, in order; ``absorbed(token)`` for each
#: branch whose state already has an unstarted run (that run absorbs it, as ``is_pending`` says)
StartAll = Callable[[list[Token], Callable[[Token], None]], None]


class Joins:
    """Moves branches along the graph and decides when a join state may start.

    ``start(state, token)`` is called for every state run that should begin;
    ``is_pending(state)`` tells whether an unstarted run of ``state`` exists. The engine
    calls :meth:`finished` when a run ends with the names it returned (a run that named one
    state may try :meth:`arrive` first, which :meth:`finished` would ask too).
    """

    def __init__(self, graph: StateGraph, start: Starter, is_pending: Callable[[str], bool],
                 is_join: Callable[[str], bool] | None = None, start_all: StartAll | None = None) -> None:
        self.graph = graph
        self._start = start
        self._start_all = start_all or self._start_each
        self._is_pending = is_pending
        self._is_join = is_join or (lambda _state: False)
        self._ids = itertools.count(1)
        self.root = Group(0, None)
        self.groups: dict[int, Group] = {}  # live nested fan-outs (for snapshots)

    # -- entering and leaving states --------------------------------------------------
    def _enter(self, token: Token, state: str) -> None:
        token.state = state
        active = token.group.active
        active[state] = active.get(state, 0) + 1
        token.group.members.add(token)

    def _leave(self, token: Token) -> None:
        group = token.group
        active = group.active
        n = active.get(token.state, 0) - 1
        if n > 0:
            active[token.state] = n
        else:
            active.pop(token.state, None)
        group.members.discard(token)

    # -- public moves -----------------------------------------------------------------
    def begin(self, states: Iterable[str]) -> list[Token]:
        """Start ``states`` as branches of the root fan-out."""
        tokens = [self.add_branch(s) for s in states]
        for t in tokens:
            self._start(t.state, t)
        return tokens

    def add_branch(self, state: str) -> Token:
        """A new live branch in the root fan-out, at ``state`` (caller starts it)."""
        t = Token(next(self._ids), self.root, state)
        self._enter(t, state)
        return t

    def finished(self, token: Token, names: tuple[str, ...]) -> None:
        """The run of ``token.state`` returned ``names``: route the branch onward."""
        group = token.group
        if len(names) == 1 and group.parent is None and not group.joins and len(group.members) == 1:
            # the branch of a chain, alone in the root fan-out, goes on to one state: no join can
            # wait for it and nothing can fold, so _route and changed() would only say so
            self._leave(token)
            target = names[0]
            if not self._is_pending(target):
                self._enter(token, target)
                self._start(target, token)
            return
        if len(names) > 1:
            # the branch stays alive, at its state, while its sub-fan-out runs
            sub = Group(next(self._ids), token)
            ids = self._ids
            children = [Token(next(ids), sub, n) for n in names]
            active = sub.active
            for n in names:  # each child enters its state (_enter, without a call per branch)
                active[n] = active.get(n, 0) + 1
            sub.members.update(children)
            # the states of a list return all start now ("run both in parallel"), even when one
            # can reach another (in a loop they would otherwise wait for each other); a branch
            # whose state has an unstarted run already is absorbed by it
            self._start_all(children, self._leave)
            self.groups[sub.id] = sub
            self.changed(sub)
            return
        if len(names) == 1 and self.arrive(token, names[0]):
            return
        self._leave(token)
        if names:
            self._route(token, names[0])
        self.changed(group)

    def _start_each(self, tokens: list[Token], absorbed: Callable[[Token], None]) -> None:
        """The default ``start_all``: ``start`` each branch in turn, or let a pending run absorb it."""
        for t in tokens:
            if self._is_pending(t.state):
                absorbed(t)
            else:
                self._start(t.state, t)

    def arrive(self, token: Token, target: str) -> bool:
        """A branch of a fan-out of 3+ live branches went to ``target``, the one join of its
        fan-out, where others already wait: it waits there too (or an unstarted run of ``target``
        absorbs it), and when the fan-out's other live branches can still reach ``target``
        nothing else changed, so ``changed()`` has nothing to do. This is every branch but the
        last of a fan-out and join, once per branch, so it is one call: ``_leave`` inline, and
        the join question answered from the cached origins when a live branch is at one of them
        (the usual answer) before :meth:`_may_reach` asks it in full. False (nothing done) when
        it is not such an arrival; :meth:`finished` then routes the branch."""
        group = token.group
        joins = group.joins
        if group.parent is None or len(joins) != 1 or target not in joins:
            return False
        members = group.members
        if len(members) < 3:
            return False
        active = group.active
        state = token.state
        n = active.get(state, 0) - 1
        if n > 0:
            active[state] = n
        else:
            active.pop(state, None)
        members.discard(token)
        if not self._is_pending(target):
            joins[target].append(token)
        if target in active:
            return True
        origins = self.graph._origins.get(target)
        if origins is not None:
            seen = group.seen
            if (seen in active and seen in origins) or self._live_at(group, origins):
                return True  # a live branch is where ``target`` can still be reached from
        if not self._may_reach(group, target):
            self.changed(group)
        return True

    @staticmethod
    def _live_at(group: Group, origins: frozenset[str]) -> bool:
        """Whether a live branch of ``group`` is at one of ``origins``; the state found is kept
        in ``group.seen`` for the next arrival. The search starts at the other end of ``active``
        each time: the dict keeps the slots of the states branches left until it grows again,
        so a scan from the end they leave from walks past all of them. Branches that finish in
        the order they started empty it from the front (the newest is found, and stays), those
        that finish last-first from the back (the oldest is found, and stays)."""
        active = group.active
        group.forward = forward = not group.forward
        seen = group.seen = next(filter(origins.__contains__, iter(active) if forward else reversed(active)), None)
        return seen is not None

    def fan_out(self, token: Token, names: tuple[str, ...], extra: list[str], start_extra: Callable[[Token, int], None],
                *, waiting: dict[str, int] | None = None) -> Group:
        """Fan ``token`` out to ``names`` (as a list return does) plus one branch per entry of
        ``extra``, states that run once per branch (payload fan-out, ``_map.py``): those are never
        absorbed by a pending run; ``start_extra(token, i)`` starts the i-th. ``waiting`` adds
        branches already waiting at join targets (a restored map). Returns the fan-out."""
        sub = Group(next(self._ids), token)
        children = [Token(next(self._ids), sub, n) for n in names]
        more = [Token(next(self._ids), sub, s) for s in extra]
        for child in (*children, *more):
            self._enter(child, child.state)
        for target, count in (waiting or {}).items():
            sub.joins[target] = [Token(next(self._ids), sub, target) for _ in range(count)]
        self.groups[sub.id] = sub
        self._start_all(children, self._leave)
        for i, t in enumerate(more):
            start_extra(t, i)
        self.changed(sub)
        return sub

    def move(self, token: Token, state: str) -> None:
        """Move a live branch to ``state`` without the join rule (the caller starts its run there)."""
        group = token.group
        self._leave(token)
        self._enter(token, state)
        self.changed(group)

    def ended(self, token: Token) -> None:
        """The branch ended without a result (cancelled or failed)."""
        group = token.group
        if token in group.members:
            self._leave(token)
        self.changed(group)

    # -- the join rule ----------------------------------------------------------------
    def origins(self, target: str) -> frozenset[str]:
        """States from which a branch may still enter ``target`` (:meth:`StateGraph.origins`)."""
        return self.graph.origins(target)

    def can_still_reach(self, target: str, at: Collection[str]) -> bool:
        """THE join question: can a live branch now at one of the states ``at`` still get to
        ``target``? Fan-out joins ask it about the branches of their fan-out; dependency gates
        ask it about the running and queued states (see the module docstring)."""
        origins = self.origins(target)
        if isinstance(at, dict):
            # live branches by state, newest first: a dict keeps the slots of the states its branches
            # left, oldest first, until it grows again; a scan from the oldest end walks past all of
            # them on every question, which made a 1,000-wide fan-out and join quadratic
            return not origins.isdisjoint(reversed(at))
        if isinstance(at, (set, frozenset, KeysView)):
            return not at.isdisjoint(origins)  # a C loop over the smaller side, once per completion
        return not origins.isdisjoint(at)

    def _may_reach(self, group: Group, target: str) -> bool:
        active = group.active
        if target in active:
            return True
        if not active and not group.joins:
            return False
        if active and self._is_join(target):
            return True  # @state(join=True): every live branch of the fan-out meets there
        if self.can_still_reach(target, active):
            return True
        origins = self.origins(target)
        return any(j != target and j in origins for j in group.joins)

    def _route(self, token: Token, target: str) -> None:
        group = token.group
        if self._is_pending(target):
            return  # an unstarted run of target absorbs this branch
        if target in group.joins or self._may_reach(group, target):
            group.joins.setdefault(target, []).append(token)
            return
        self._enter(token, target)
        self._start(target, token)

    def changed(self, group: Group) -> None:
        """Start the joins of ``group`` that no live branch can reach any more; fold ended fan-outs."""
        while True:
            for target in list(group.joins) if group.joins else ():  # (no list for a fan-out without joins)
                if self._may_reach(group, target):
                    continue
                carrier = group.joins.pop(target)[0]
                if not self._is_pending(target):
                    self._enter(carrier, target)
                    self._start(target, carrier)
            if group.joins and not group.active:
                # only waiting branches are left, at targets that reach each other (a loop):
                # nothing else can arrive, so each target starts now instead of never
                for target in list(group.joins):
                    carrier = group.joins.pop(target)[0]
                    if not self._is_pending(target):
                        self._enter(carrier, target)
                        self._start(target, carrier)
            parent = group.parent
            if parent is None or len(group.members) > 1:
                return  # the root, or a fan-out with two live branches or more: nothing folds
            size = group.size()
            if size == 0:
                # the whole fan-out ended, and with it the branch that made it
                group.parent = None
                self.groups.pop(group.id, None)
                group = parent.group
                self._leave(parent)
                continue
            if size == 1 and not group.joins:
                # one branch left: it carries on in place of the branch that fanned out
                (last,) = group.members
                group.parent = None
                self.groups.pop(group.id, None)
                pgroup = parent.group
                self._leave(parent)
                last.group = pgroup
                pgroup.active[last.state] = pgroup.active.get(last.state, 0) + 1
                pgroup.members.add(last)
                group = pgroup
                continue
            return

    def waiting(self) -> dict[str, set[str]]:
        """Join targets with branches waiting there, and the states of the live branches they wait for."""
        out: dict[str, set[str]] = {}
        for group in (self.root, *self.groups.values()):
            for target in group.joins:
                out.setdefault(target, set()).update(s for s in group.active if s != target)
        return out

    def snapshot(self) -> dict[str, Any]:
        """A JSON-safe summary of the live branches: root ``active`` states, and the
        branches waiting at each join target in any fan-out (nested ones included, so a
        branch that already reached a join is not lost when a checkpoint is restored)."""
        root = self.root
        joins: Counter[str] = Counter()
        for group in (root, *self.groups.values()):
            for target, waiting in group.joins.items():
                joins[target] += len(waiting)
        return {"active": dict(root.active), "joins": dict(joins)}
