"""Why a state waits, through a real kernel: the live view under ``agent.start()`` names each wait
and its holder in turn (resources, then a lock, then a person), and draws a three-state deadlock
as a red cycle. The test reads the view's data back through the kernel and watches the graph's
widget updates arrive as a browser would."""

from __future__ import annotations

import json

import pytest

pytestmark = [pytest.mark.kernel, pytest.mark.timeout(120)]

SETUP = """
import asyncio, json
%load_ext fluffy_nb
from fluffy_nb import Agent, PrimitiveType, Priority, ResourcePool, ResourceRequirements, StateFailedError
from fluffy_nb.notebook._liveview import view_of

async def until(predicate, limit=20_000):
    for _ in range(limit):
        if predicate():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("never happened")

def wait_of(agent, state):
    return view_of(agent).why_data()["waits"].get(state)
"""

TURNS = """
hog_gate, writer_gate = asyncio.Event(), asyncio.Event()
turns = Agent("turns", resource_pool=ResourcePool(total_cpu=1))

async def start(ctx):
    return ["hog", "writer", "report"]

async def hog(ctx):
    await hog_gate.wait()

async def writer(ctx):
    await writer_gate.wait()

async def report(ctx):
    ctx.set_state("answer", await ctx.human_in_the_loop("Publish the report?"))

turns.add_state("start", start, next=["hog", "writer", "report"])
turns.add_state("hog", hog, resources=ResourceRequirements(cpu_units=1, priority=Priority.HIGH))
turns.add_state("writer", writer)
turns.add_state("report", report, resources=ResourceRequirements(cpu_units=1))
turns.add_state_coordination("writer", PrimitiveType.MUTEX, name="db")
turns.add_state_coordination("report", PrimitiveType.MUTEX, name="db")
handle = turns.start()
"""


def _read_wait(kernel, kind: str) -> dict:
    out = kernel.run(f'await until(lambda: (wait_of(turns, "report") or {{}}).get("kind") == "{kind}")\n'
                     'print(json.dumps(wait_of(turns, "report")))')
    return json.loads(out)


def _graph_update_with(kernel, *needles: str) -> dict:
    def match(m):
        if m["msg_type"] != "comm_msg" or m["content"]["data"].get("method") != "update":
            return False
        outputs = str(m["content"]["data"].get("state", {}).get("outputs", ""))
        return "application/vnd.plotly.v1+json" in outputs and all(n in outputs for n in needles)

    return kernel.wait_for(match, 30, f"a graph update showing {needles}")


def test_a_state_waits_for_resources_then_a_lock_then_a_person_and_the_view_names_each(kernel):
    kernel.run(SETUP)
    kernel.run(TURNS)
    kernel.wait_for(lambda m: m["msg_type"] == "display_data"
                    and "application/vnd.jupyter.widget-view+json" in m["content"]["data"], what="the live view")

    first = _read_wait(kernel, "resource")
    assert first["holders"] == ["hog"]
    assert "CPU 1 wanted, 0 free" in first["detail"]
    _graph_update_with(kernel, "waiting: resources", "waits for (resources)")  # the browser is sent it

    kernel.run("hog_gate.set()")
    second = _read_wait(kernel, "lock")
    assert second["holders"] == ["writer"]
    assert "mutex 'db' held by ['writer']" in second["detail"]
    _graph_update_with(kernel, "waiting: lock", "waits for (lock)")

    kernel.run("writer_gate.set()")
    third = _read_wait(kernel, "person")
    assert third["holders"] == []
    assert "Publish the report?" in third["detail"]
    _graph_update_with(kernel, "waiting: a person")

    out = kernel.run('turns.answer(turns.pending_requests()[0].request_id, "yes")\n'
                     "result = await handle\n"
                     'print(result["answer"], [(w.state, w.kind) for w in view_of(turns).tracker.wait_spans])')
    assert out.strip() == "yes [('report', 'resource'), ('report', 'lock'), ('report', 'person')]"
    timeline = kernel.run("from fluffy_nb.notebook import timeline_figure\n"
                          "print(sorted(t.name for t in timeline_figure(view_of(turns).tracker).data "
                          "if t.name.startswith('waiting')))")
    assert timeline.strip() == "['waiting for a person', 'waiting: lock', 'waiting: resources']"


RING = """
ring = Agent("ring")
names = ["alpha", "beta", "gamma"]
locks = {n: ring.add_coordination(f"lock_{n}", PrimitiveType.MUTEX) for n in names}
holds = {n: asyncio.Event() for n in names}

async def fan(ctx):
    return names

ring.add_state("fan", fan, next=names)
for i, name in enumerate(names):
    nxt = names[(i + 1) % 3]

    async def body(ctx, me=name, nxt=nxt):
        async with locks[me].hold(ctx):
            holds[me].set()
            await holds[nxt].wait()
            async with locks[nxt].hold(ctx):
                return None

    ring.add_state(name, body)
ring_handle = ring.start()
"""


def test_a_deadlock_of_three_states_shows_as_a_red_cycle_naming_all_three(kernel):
    kernel.run(SETUP)
    kernel.run(RING)
    out = kernel.run("try:\n    await ring_handle\nexcept StateFailedError as err:\n"
                     "    print(type(err.__cause__).__name__)\n"
                     'print(json.dumps(view_of(ring).why_data()["deadlocks"]))')
    name, data = out.strip().split("\n", 1)
    assert name == "DeadlockError"
    [deadlock] = json.loads(data)
    assert sorted(deadlock["cycle"]) == ["alpha", "beta", "gamma"]
    assert f"agent.cancel_state('{deadlock['victim']}')" in deadlock["advice"]
    update = _graph_update_with(kernel, "deadlock cycle", "in a deadlock")
    figure = update["content"]["data"]["state"]["outputs"][0]["data"]["application/vnd.plotly.v1+json"]
    ring_trace = next(t for t in figure["data"] if t.get("name") == "in a deadlock")
    assert sorted(ring_trace["text"]) == ["alpha", "beta", "gamma"]
    assert ring_trace["marker"]["color"] == "#d62728"
