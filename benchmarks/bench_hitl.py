"""Human-in-the-loop latency: from an answer being submitted to the waiting state resuming.

Rows (medians over ``--rounds`` answers, ``--repeat`` times; median of the medians):
  asyncio future (this process)   raw baseline: ``fut.set_result`` -> the awaiting coroutine runs
  fluffy agent.answer (process)   ``agent.answer(id, v)`` -> the state's ``await human_in_the_loop`` returns
  kernel raw Button (kernel)      real ipykernel: the browser's click ``comm_msg`` is sent -> a plain
                                  ipywidgets Button handler sets a future -> the awaiting task runs
  fluffy form (kernel)            real ipykernel: the form's submit ``comm_msg`` (anywidget custom message)
                                  sent -> the form answers -> the state resumes (background run, choice)

Kernel times compare ``time.monotonic()`` taken in this process right before the message is
sent with ``time.monotonic()`` recorded by the resumed code in the kernel (CLOCK_MONOTONIC is
system-wide on Linux). The browser side follows the JupyterLab widget manager: one comm message
at a time, waiting for the kernel's idle status in between. Target: fluffy form < 50 ms.

Run: ``python benchmarks/bench_hitl.py [--rounds 30] [--repeat 3]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import pathlib
import statistics
import sys
import time

from fluffy_nb import Agent
from fluffy_nb.engine._hitl import ProgrammaticResponder

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests" / "kernel"))


def ms(values: list[float]) -> float:
    return statistics.median(values) * 1000.0


# -- in-process -------------------------------------------------------------------------------
async def raw_future(rounds: int) -> float:
    loop = asyncio.get_running_loop()
    out: list[float] = []
    for _ in range(rounds):
        fut = loop.create_future()
        resumed: list[float] = []

        async def waiter(fut: asyncio.Future[None] = fut, resumed: list[float] = resumed) -> None:
            await fut
            resumed.append(time.perf_counter())

        task = loop.create_task(waiter())
        await asyncio.sleep(0)
        t0 = time.perf_counter()
        fut.set_result(None)
        await task
        out.append(resumed[0] - t0)
    return ms(out)


async def fluffy_answer(rounds: int) -> float:
    responder = ProgrammaticResponder()
    agent = Agent("bench", responder=responder)
    resumed: list[float] = []

    async def ask(ctx):  # type: ignore[no-untyped-def]
        for i in range(rounds):
            await ctx.human_in_the_loop(f"Go {i}?")
            resumed.append(time.perf_counter())

    agent.add_state("ask", ask)
    handle = agent.start()
    sent: list[float] = []
    for _ in range(rounds):
        request = await responder.next_request()
        sent.append(time.perf_counter())
        agent.answer(request.request_id, "go")
    await handle
    return ms([r - s for r, s in zip(resumed, sent, strict=True)])


# -- through a real kernel ----------------------------------------------------------------------
KERNEL_SETUP = """
import asyncio, time
import ipywidgets as w
from fluffy_nb import Agent
from fluffy_nb.notebook._hitl_form import WidgetResponder
ROUNDS = {rounds}
raw_resumed, resumed = [], []
async def raw_loop():
    loop = asyncio.get_running_loop()
    for i in range(ROUNDS):
        fut = loop.create_future()
        button = w.Button(description=f"raw{{i}}")
        button.on_click(lambda _b, fut=fut: fut.done() or fut.set_result(None))
        await fut
        raw_resumed.append(time.monotonic())
agent = Agent("bench", responder=WidgetResponder(display=False))
async def ask(ctx):
    for i in range(ROUNDS):
        await ctx.human_in_the_loop(f"Go {{i}}?", choices=["go"])
        resumed.append(time.monotonic())
agent.add_state("ask", ask)
"""


def kernel_rows(rounds: int) -> tuple[float, float, float]:
    from conftest import start_kernel, stop_kernel

    kernel = start_kernel()
    try:
        kernel.run(KERNEL_SETUP.format(rounds=rounds))
        # raw ipywidgets button -> future, same transport
        kernel.run("raw_task = asyncio.get_running_loop().create_task(raw_loop())")
        raw_sent = []
        for i in range(rounds):
            button = kernel.wait_widget("ButtonModel", description=f"raw{i}")
            raw_sent.append(kernel.click(button)[1])
        kernel.run("await raw_task")
        raw_resumed = json.loads(kernel.run("import json; print(json.dumps(raw_resumed))"))
        # fluffy: background run, one choice button per question
        kernel.run("handle = agent.start()")
        sent, idle = [], []
        for i in range(rounds):
            kernel.wait_for(lambda m, i=i: len(kernel.widgets("AnyModel")) > i, what=f"form {i}")
            form = kernel.widgets("AnyModel")[i][0]
            _, t0 = kernel.send_custom(form, {"event": "submit", "choice": 0})  # the form's one message
            idle.append(time.monotonic() - t0)
            sent.append(t0)
        kernel.run("await handle")
        resumed = json.loads(kernel.run("print(json.dumps(resumed))"))
    finally:
        stop_kernel(kernel)
    return (
        ms([r - s for r, s in zip(raw_resumed, raw_sent, strict=True)]),
        ms([r - s for r, s in zip(resumed, sent, strict=True)]),
        ms(idle),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=30, help="answers per measurement")
    parser.add_argument("--repeat", type=int, default=3, help="measurements (median of medians)")
    parser.add_argument("--no-kernel", action="store_true", help="skip the real-kernel rows")
    args = parser.parse_args()
    rows: dict[str, list[float]] = {"asyncio future": [], "fluffy agent.answer": [],
                                    "kernel raw Button": [], "fluffy form (kernel)": [],
                                    "  click -> kernel idle": []}
    for _ in range(args.repeat):
        rows["asyncio future"].append(asyncio.run(raw_future(args.rounds)))
        rows["fluffy agent.answer"].append(asyncio.run(fluffy_answer(args.rounds)))
        if not args.no_kernel:
            raw, fluffy, idle = kernel_rows(args.rounds)
            rows["kernel raw Button"].append(raw)
            rows["fluffy form (kernel)"].append(fluffy)
            rows["  click -> kernel idle"].append(idle)
    base = statistics.median(rows["asyncio future"])
    kbase = statistics.median(rows["kernel raw Button"]) if rows["kernel raw Button"] else None
    print(f"HITL submit -> state resumes; median of {args.repeat} medians over {args.rounds} answers")
    print(f"{'measurement':<26}{'median ms':>11}{'x asyncio':>11}{'x raw Button':>14}")
    for name, values in rows.items():
        if not values:
            continue
        med = statistics.median(values)
        vs_kernel = f"{med / kbase:>14.2f}" if kbase and name.startswith(("kernel", "fluffy form")) else ""
        print(f"{name:<26}{med:>11.3f}{med / base:>11.1f}{vs_kernel}")
    if rows["fluffy form (kernel)"]:
        verdict = "OK" if statistics.median(rows["fluffy form (kernel)"]) < 50 else "OVER"
        print(f"target: fluffy form through a real kernel < 50 ms -> {verdict}")


if __name__ == "__main__":
    main()
