"""``python -m fluffy_nb``: the headless demo, a small content pipeline in the terminal.

It fans out research to three simulated sources, joins them, drafts with a flaky simulated
LLM (retried), asks a reviewer (answered by a script unless ``--ask`` lets you type), and
prints every engine event as it happens, then the result.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from fluffy_nb import Agent, Context, RetryPolicy, StateResult
from fluffy_nb.engine import _events as ev


def build_demo(flaky_failures: int = 1) -> Agent:
    """The demo workflow: plan -> 3 parallel research states -> draft (retried) -> review -> publish."""
    agent = Agent("content_pipeline", max_concurrent=4)
    failures = {"left": flaky_failures}

    async def plan(ctx: Context) -> StateResult:
        ctx.set_state("topic", "workflow engines in notebooks")
        return ["research_web", "research_papers", "research_notes"]

    async def _research(ctx: Context, source: str) -> StateResult:
        await asyncio.sleep(0.05)
        ctx.set_state(f"facts_{source}", [f"{source} fact {i}" for i in range(2)])
        return "draft"

    async def research_web(ctx: Context) -> StateResult:
        return await _research(ctx, "web")

    async def research_papers(ctx: Context) -> StateResult:
        return await _research(ctx, "papers")

    async def research_notes(ctx: Context) -> StateResult:
        return await _research(ctx, "notes")

    async def draft(ctx: Context) -> StateResult:
        if failures["left"] > 0:
            failures["left"] -= 1
            raise ConnectionError("simulated LLM rate limit")
        facts = [f for k in ctx.keys() if k.startswith("facts_") for f in ctx.get_state(k)]
        ctx.set_state("draft", f"An article on {ctx.get_state('topic')} citing {len(facts)} facts.")
        return "review"

    async def review(ctx: Context) -> StateResult:
        verdict = await ctx.human_in_the_loop(
            f"Approve this draft? {ctx.get_state('draft')!r} (approve/reject)",
            choices=["approve", "reject"],
            timeout=600,
        )
        ctx.set_state("verdict", verdict)
        return "publish" if verdict == "approve" else None

    async def publish(ctx: Context) -> StateResult:
        ctx.set_state("published", True)
        return None

    for func in (plan, research_web, research_papers, research_notes, review, publish):
        agent.add_state(func.__name__, func)
    agent.add_state("draft", draft, retry_policy=RetryPolicy(max_retries=2, initial_delay=0.1, jitter=False))
    return agent


_T0: list[float] = []


def _printer(event: ev.Event) -> None:
    if not _T0:
        _T0.append(event.time)
    name = type(event).__name__
    detail: dict[str, Any] = {
        k: getattr(event, k)
        for k in ("state", "attempt", "next_states", "error", "delay", "status", "prompt", "value")
        if getattr(event, k, None) not in (None, "", ())
    }
    if isinstance(event, (ev.StateScheduled, ev.StateAdded)):
        return
    print(f"  {event.time - _T0[0]:7.3f}s  {name:<16} " + " ".join(f"{k}={v!r}" for k, v in detail.items()))


async def _main(ask: bool) -> int:
    from fluffy_nb.engine._hitl import ScriptedResponder

    agent = build_demo()
    if not ask:
        agent.responder = ScriptedResponder(["approve"])
    agent.events.subscribe(_printer)
    print(f"Running {agent.name!r}: {len(agent.states)} states\n")
    result = await agent.run(timeout=120)
    print(f"\n{result!r}\nverdict={result.get_state('verdict')!r} published={result.get_state('published')!r}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m fluffy_nb``."""
    parser = argparse.ArgumentParser(prog="python -m fluffy_nb", description=__doc__)
    parser.add_argument("--ask", action="store_true", help="ask you in the terminal instead of a script")
    args = parser.parse_args(argv)
    return asyncio.run(_main(args.ask))


if __name__ == "__main__":
    sys.exit(main())
