"""What the engine reads from a state function's code: the names it may return."""

from __future__ import annotations

from typing import Any

from fluffy_nb import Agent
from fluffy_nb.engine._reader import OPAQUE, PLACEHOLDER, state_targets


def test_context_keys_are_not_edges() -> None:
    async def write(ctx: Any) -> str:
        ctx.set_state("draft", "text")  # a key that happens to be a state's name
        return "review"

    assert state_targets(write) == {"review"}


def test_conditional_returns_variables_and_appended_lists_are_read() -> None:
    async def route(ctx: Any) -> Any:
        size = len(ctx.get_state("data", []))
        nxt = "big" if size > 10 else "small"
        if size == 0:
            return None
        branches = []
        for name in ("left", "right"):
            branches.append(name)
        if size == 1:
            return branches
        return nxt

    assert state_targets(route) == {"big", "small", "left", "right"}


def test_an_fstring_becomes_a_pattern_for_the_start_rule() -> None:
    async def fan(ctx: Any) -> list[str]:
        return [f"chunk_{i}" for i in range(3)]

    assert state_targets(fan) == {"chunk_" + PLACEHOLDER}


def test_names_from_closures_and_defaults_are_read_per_function() -> None:
    def make(target: Any) -> Any:
        async def step(ctx: Any) -> Any:
            return target

        return step

    async def with_default(ctx: Any, nxt: str = "after") -> str:
        return nxt

    assert state_targets(make("b")) == {"b"}
    assert state_targets(make(["c", "d"])) == {"c", "d"}
    assert state_targets(make(None)) == set()
    assert state_targets(with_default) == {"after"}


def test_a_return_nobody_can_read_is_marked_opaque() -> None:
    async def router(ctx: Any) -> Any:
        return ctx.route

    async def keyed(ctx: Any) -> Any:
        return ctx.get_state("next")

    assert state_targets(router) == {OPAQUE}
    assert state_targets(keyed) == {"next", OPAQUE}  # a key it reads, and whatever that holds


def test_code_without_source_falls_back_to_every_constant() -> None:
    namespace: dict[str, Any] = {}
    exec("async def hidden(ctx):\n    ctx.set_state('k', 1)\n    return 'next'\n", namespace)
    assert {"k", "next"} <= state_targets(namespace["hidden"])


async def test_a_state_named_only_as_a_context_key_is_still_a_start_state() -> None:
    agent = Agent("keys")
    order: list[str] = []

    async def draft(ctx: Any) -> str:
        order.append("draft")
        ctx.set_state("draft", "v1")
        return "review"

    async def review(ctx: Any) -> None:
        order.append("review")
        ctx.set_state("publish", ctx.get_state("draft"))  # a key, not a route

    async def publish(ctx: Any) -> None:  # reached by nothing: a start state of its own
        order.append("publish")

    for f in (draft, review, publish):
        agent.add_state(f.__name__, f)
    await agent.run()
    assert sorted(order) == ["draft", "publish", "review"]
    assert ("review", "publish") not in {(s, d) for s, d, _ in agent.graph.edge_list()}
