"""The run explorer and the store's run list, through a real IPython ``InteractiveShell``.

Real engine, real SQLite store; the widgets are driven the way their callbacks are (setting
the slider's value, clicking buttons) inside async cells, where the kernel's loop runs.
"""

from __future__ import annotations

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

from fluffy_nb import Agent
from fluffy_nb.notebook import Explorer, compare_runs, explore, store_runs_frame
from fluffy_nb.notebook._explorer import parse_value
from fluffy_nb.store import SQLiteStore

pytestmark = pytest.mark.timeout(60)

PIPELINE = '''%%fluffy {name} --store {path} --durable --run --no-live
async def ask(ctx):
    ctx.set_state("question", "Where is <Paris>?")
    ctx.set_state("answer", "Paris is in Germany")  # the fake LLM's bad answer
    return "check"

async def check(ctx):
    ctx.set_state("ok", "France" in ctx.get_state("answer"))
    return "report"

async def report(ctx):
    ctx.set_state("report", ("OK: " if ctx.get_state("ok") else "WRONG: ") + ctx.get_state("answer"))
'''


@pytest.fixture(scope="module")
def ip():
    shell = InteractiveShell.instance()
    assert shell.run_cell("%load_ext fluffy_nb").success
    yield shell
    # leave the shared shell as we found it: with the extension loaded, later tests' agent.start()
    # would get live views they do not expect (and that keep their agents alive)
    assert shell.run_cell("%unload_ext fluffy_nb").success
    for name in ("ex", "pipe", "nostore", "submit", "edits", "result", "dated", "pick", "show", "datetime"):
        shell.user_ns.pop(name, None)


def run(ip, cell):
    res = ip.run_cell(cell)
    err = res.error_in_exec or res.error_before_exec
    if err is not None:
        raise err
    return res.result


@pytest.fixture
def pipe(ip, tmp_path):
    """A durable pipeline run once, recorded in a SQLite file; returns its name and store path."""
    path = tmp_path / "runs.db"
    run(ip, PIPELINE.format(name="pipe", path=path))
    yield "pipe", path
    ip.user_ns["pipe"].store.close()


def test_moving_the_slider_shows_that_checkpoints_graph_and_changed_keys(ip, pipe):
    ex = run(ip, "ex = %fluffy explore pipe\nex")
    assert isinstance(ex, Explorer)
    assert len(ex.rows) == 4  # after ask, check, report; completion
    assert ex.index == 3
    assert ex.slider.value == 3

    ex.slider.value = 0  # what a browser's slider update does
    assert ex.index == 0
    assert ex.statuses["ask"] == "completed"
    assert "check" not in ex.statuses or ex.statuses["check"] != "completed"
    assert "<title>ask (done)</title>" in ex.graph.value
    assert "<title>report (pending)</title>" in ex.graph.value
    assert ex.changed == {"question": "added", "answer": "added"}
    assert ex.prev_button.disabled
    assert not ex.next_button.disabled
    assert not ex.resume_button.disabled  # check was in flight

    ex.next_button.click()
    assert ex.index == 1
    assert ex.slider.value == 1
    assert ex.changed == {"ok": "added"}
    assert "<title>check (done)</title>" in ex.graph.value
    assert "finished since the previous: <b>check</b>" in ex.details.value
    assert 'background:#c8e6c9"><td><code>ok</code>' in ex.details.value  # the new key is highlighted
    assert "&lt;Paris&gt;" in ex.details.value
    assert "<Paris>" not in ex.details.value

    ex.select(-1)
    assert ex.slider.value == 3
    assert ex.resume_button.disabled
    with pytest.raises(IndexError, match="4 checkpoints"):
        ex.select(7)


def test_edit_and_fork_from_checkpoint_k_reflects_the_edit_and_records_the_parent(ip, pipe):
    ex = run(ip, "ex = %fluffy explore pipe\nex")
    original = ex.run_id
    ex.slider.value = 0
    ex.edit_button.click()
    assert set(ex.fields) == {"question", "answer"}
    assert ex.fields["answer"].value == '"Paris is in Germany"'
    ex.fields["answer"].value = "Paris is in France"  # not JSON: kept as the string
    assert ex.form_edits() == {"answer": "Paris is in France"}
    submit = ex.edit_box.children[-1].children[0]
    assert submit.description == "fork with these values"
    ip.user_ns["submit"] = submit
    result = run(ip, "submit.click()\nresult = await ex.handles[-1]\nresult")
    assert result["report"] == "OK: Paris is in France"
    assert ex.fields == {}  # the form closed
    assert "completed</b> fork" in ex.message.value
    assert "of checkpoint 0 with answer" in ex.message.value
    assert "Paris is in France" in ex.message.value
    assert len(ex.started.children) == 1  # the fork's live view, below the explorer

    agent = ip.user_ns["pipe"]
    fork_id = result.run_id
    assert fork_id != original
    first = agent.history(fork_id)[0]
    assert first.trigger == "fork"
    assert agent.store.get(first.checkpoint_id).metadata["forked_from"] == ex.rows[0].checkpoint_id
    runs = store_runs_frame(agent).set_index("run_id")
    assert runs.loc[fork_id, "parent_run_id"] == original
    assert str(runs.loc[fork_id, "status"]) == "completed"

    fork_view = run(ip, f"%fluffy explore pipe {fork_id[:10]}")
    assert "forked from run" in fork_view.header.value
    fork_view.select(1)  # the edit shows as a change after the fork checkpoint
    assert fork_view.changed.get("answer") == "changed"


def test_fork_button_and_resume_from_a_checkpoint_with_states_in_flight(ip, pipe):
    ex = run(ip, "ex = %fluffy explore pipe\nex")
    ex.select(1)
    result = run(ip, "ex.fork_button.click()\nawait ex.handles[-1]")
    assert result["report"] == "WRONG: Paris is in Germany"  # no edit: the same answer
    ex.select(0)
    result = run(ip, "ex.resume_button.click()\nawait ex.handles[-1]")
    assert result.run_id == ex.run_id  # a resume continues the same run
    ex.reload_button.click()
    assert len(ex.rows) > 4
    assert ex.slider.max == len(ex.rows) - 1
    assert ex.index == len(ex.rows) - 1


def test_a_button_that_fails_says_why_in_the_explorer(ip, pipe):
    ex = run(ip, "ex = %fluffy explore pipe\nex")
    ex.select(-1)
    ex.resume_button.click()  # disabled in a browser; a click that gets through still only explains
    assert "had no state in flight" in ex.message.value


def test_forking_while_a_run_of_the_agent_is_live_says_so_and_starts_nothing(ip, pipe):
    ex = run(ip, "ex = %fluffy explore pipe\nex")
    agent = ip.user_ns["pipe"]
    run(ip, "import asyncio\ngate = asyncio.Event()\n"
            "async def wait_for_gate(ctx):\n    await gate.wait()\n"
            "pipe.add_state('wait_for_gate', wait_for_gate)\n"
            "live = pipe.start(start='wait_for_gate')\nawait asyncio.sleep(0)")
    try:
        assert agent.live_runs_count() == 1
        ex.fork_button.click()
        assert "AgentRunningError" in ex.message.value
        assert ex.handles == []
    finally:
        run(ip, "gate.set()\nawait live\npipe.remove_state('wait_for_gate')")


def test_a_long_run_shows_both_ends_in_the_static_table(ip, tmp_path):
    from fluffy_nb.store import MemoryStore

    agent = Agent("long", store=MemoryStore(), durable=True, max_steps=1000)

    async def tick(ctx):
        ctx.set_state("n", ctx.get_state("n", 0) + 1)
        return "tick" if ctx.get_state("n") < 80 else None

    agent.add_state("tick", tick)
    ip.user_ns["long"] = agent
    run(ip, "await long.run()")
    ex = explore(agent)
    assert len(ex.rows) == 81
    static = ex.static_html()
    assert static.count("<tr><td>") == 50
    assert '<td colspan="8">...</td>' in static
    assert "<tr><td>80</td>" in static
    ex.select(40)
    assert ex.changed == {"n": "changed"}
    ip.user_ns.pop("long")


def test_a_run_recorded_by_another_agent_object_explores_from_the_store_alone(ip, pipe):
    _, path = pipe
    original = ip.user_ns["pipe"]
    other = Agent("pipe", store=SQLiteStore(str(path)))  # another kernel: same name and states
    for name, spec in original.states.items():
        other.add_state(name, spec.func)
    try:
        assert other.runs == []
        ex = explore(other)
        assert ex.run_id == original.history()[-1].run_id
        ex.select(0)
        assert ex.statuses["ask"] == "completed"
        frame = store_runs_frame(other)
        assert list(frame["in_memory"]) == [False]
        assert frame["duration_s"].iloc[0] >= 0
        durations = compare_runs(other, "latest", "latest").set_index("key")
        # estimated from the durable run's checkpoints; the first state has none before it
        assert list(durations["a"].isna()) == [True, False, False]
    finally:
        other.store.close()


def test_runs_magic_lists_every_stored_run_and_compares_two(ip, pipe):
    ex = run(ip, "ex = %fluffy explore pipe\nex")
    ex.select(0)
    ip.user_ns["edits"] = {"answer": "Paris is in France"}
    fork = run(ip, "await ex.fork(edits=edits, live=False)")
    browser = run(ip, "%fluffy runs pipe")
    assert list(browser.frame["run_id"]) == [ex.run_id, fork.run_id]
    assert browser.frame["parent_run_id"].iloc[1] == ex.run_id
    bundle = browser._repr_mimebundle_()
    assert "<table" in bundle["text/html"]
    assert ex.run_id in bundle["text/plain"]

    frame = run(ip, f"%fluffy runs pipe --compare {ex.run_id[:8]} latest")
    assert frame.attrs["runs"] == (ex.run_id, fork.run_id)
    context = frame[frame["kind"] == "context"].set_index("key")
    assert context.loc["answer", "b"] == '"Paris is in France"'
    assert context.loc["ok", "a"] == "false"
    assert context.loc["ok", "b"] == "true"
    durations = frame[frame["kind"] == "duration_s"].set_index("key")
    assert set(durations.index) == {"ask", "check", "report"}
    assert durations["a"].notna().all()
    assert frame.equals(compare_runs(ip.user_ns["pipe"], ex.run_id, fork.run_id))

    second = run(ip, "await ex.fork(0, live=False)")
    browser.reload_button.click()
    assert list(browser.frame["run_id"]) == [ex.run_id, fork.run_id, second.run_id]
    assert browser.pick_a.value == second.run_id
    browser.pick_a.value = fork.run_id
    browser.explore_button.click()
    assert browser.explorer.run_id == fork.run_id
    browser.compare_button.click()
    assert browser.comparison is not None
    assert len(browser.out.children) == 1


def test_without_a_widget_frontend_it_is_a_table_of_checkpoints_and_the_last_graph(ip, pipe):
    ex = run(ip, "ex = %fluffy explore pipe\nex")
    bundle = ex._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    html = bundle["text/html"]
    assert html.count("<tr><td>") == 4
    assert "<svg" in html
    assert "<title>report (done)</title>" in html
    assert "4 checkpoints" in bundle["text/plain"]
    assert "report [done]" in bundle["text/plain"]


def test_explore_without_store_or_with_unknown_run_raises_usage_error(ip, pipe):
    with pytest.raises(UsageError, match="no run whose id starts with 'zzz'"):
        run(ip, "%fluffy explore pipe zzz")
    run(ip, "%%fluffy nostore\nasync def step(ctx):\n    return None\n")
    with pytest.raises(UsageError, match="no checkpoint store"):
        run(ip, "%fluffy explore nostore")
    with pytest.raises(UsageError, match="no checkpoint store"):
        run(ip, "%fluffy runs nostore")


@pytest.mark.parametrize(("text", "value"), [("3", 3), ("true", True), ('"x"', "x"), ("[1, 2]", [1, 2]),
                                             ("Paris", "Paris"), ("", "")])
def test_form_values_parse_as_json_when_they_can(text, value):
    assert parse_value(text) == value


DATED = '''%%fluffy dated --store {path} --durable --run --no-live
import datetime

async def pick(ctx):
    ctx.set_state("due", datetime.date(2026, 1, 1))
    return "show"

async def show(ctx):
    ctx.set_state("weekday", ctx.get_state("due").isoweekday())
'''


def test_editing_a_tagged_value_forks_with_the_value_rebuilt(ip, tmp_path):
    """A date is stored as tagged JSON; the form shows that JSON and the fork gets a date back."""
    run(ip, DATED.format(path=tmp_path / "dated.db"))
    ex = run(ip, "ex = %fluffy explore dated\nex")
    ex.slider.value = 0
    ex.edit_button.click()
    assert ex.fields["due"].value == '{"$fluffy": "date", "v": "2026-01-01"}'
    ex.fields["due"].value = '{"$fluffy": "date", "v": "2026-01-05"}'
    result = run(ip, "result = await ex.fork_with_form(live=False)\nresult")
    assert result["due"].isoformat() == "2026-01-05"
    assert result["weekday"] == 1
