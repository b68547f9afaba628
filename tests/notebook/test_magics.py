"""``%%fluffy`` and ``%fluffy`` through a real IPython ``InteractiveShell``."""

from __future__ import annotations

import re

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

from fluffy_nb import Agent, AgentStatus, Checkpoint, RunResult, StateFailedError
from fluffy_nb.notebook._history import restore_row
from fluffy_nb.notebook._magics import is_state_function

PIPELINE = '''%%fluffy pipeline{flags}
from fluffy_nb import state

async def fetch(ctx):
    ctx.set_state("rows", 3)
    return ["clean", "check"]

async def clean(ctx):
    return "report"

@state(max_retries=1)
async def check(ctx):
    if ctx.attempt < 2:
        raise ValueError("flaky")
    return "report"

async def report(ctx, verbose=False):
    ctx.set_state("done", await _helper())

async def _helper():
    return True

async def _private_state_like(ctx):
    return None

def plain(ctx):
    return None

async def two_args(ctx, other):
    return None
'''


@pytest.fixture(scope="module")
def ip():
    shell = InteractiveShell.instance()
    assert shell.run_cell("%load_ext fluffy_nb").success
    yield shell
    # leave the shared shell as we found it: with the extension loaded, a later test's
    # agent.start() gets a live view whose sampler sleeps on that test's ManualClock
    assert shell.run_cell("%unload_ext fluffy_nb").success


def run(ip, cell):
    """Run a cell; return (result value, exception raised in it)."""
    res = ip.run_cell(cell)
    return res.result, res.error_in_exec or res.error_before_exec


def test_cell_defines_agent_from_its_state_functions_only(ip):
    value, err = run(ip, PIPELINE.format(flags=""))
    assert err is None
    agent = ip.user_ns["pipeline"]
    assert value is None  # the cell displays the graph itself (with a display id each run's end redraws)
    assert isinstance(agent, Agent)
    assert list(agent.states) == ["fetch", "clean", "check", "report"]  # helpers excluded, cell order
    assert agent.states["check"].retry_policy.max_retries == 1  # @state options apply
    edges = {(s, d) for s, d, _ in agent.graph.edge_list()}
    assert {("fetch", "clean"), ("fetch", "check"), ("clean", "report"), ("check", "report")} <= edges
    assert agent.status is AgentStatus.IDLE  # defining does not run


def test_run_flag_waits_for_the_run_and_returns_its_result(ip):
    value, err = run(ip, PIPELINE.format(flags=" --run"))
    assert err is None
    assert isinstance(value, RunResult)
    assert value.status is AgentStatus.COMPLETED
    assert value["done"] is True
    assert ip.user_ns["pipeline"].state_metadata["check"].attempts == 2


def test_run_flag_raises_the_runs_error_in_the_cell(ip):
    _, err = run(ip, '%%fluffy failing --run\nasync def step(ctx):\n    raise KeyError("missing")\n')
    assert isinstance(err, StateFailedError)
    assert "missing" in str(err)


def test_background_without_running_loop_raises_usage_error(ip):
    _, err = run(ip, "%%fluffy later --background\nasync def step(ctx):\n    return None\n")
    assert isinstance(err, UsageError)
    assert "--run" in str(err)


@pytest.mark.parametrize(("line", "needle"), [
    ("%%fluffy", "name"),
    ("%%fluffy 9lives", "identifier"),
    ("%%fluffy ok --max-concurrent 0", "--max-concurrent"),
    ("%%fluffy ok --max-concurrent many", "invalid int"),
    ("%%fluffy ok --timeout -1", "--timeout"),
    ("%%fluffy ok --durable", "--store"),
    ("%%fluffy ok --bogus", "unrecognized"),
    ("%%fluffy ok --start nowhere", "nowhere"),
])
def test_bad_cell_arguments_raise_usage_error(ip, line, needle):
    _, err = run(ip, line + "\nasync def step(ctx):\n    return None\n")
    assert isinstance(err, UsageError)
    assert needle in str(err)


def test_cell_without_states_says_what_a_state_is(ip):
    _, err = run(ip, "%%fluffy empty\ndef helper(x):\n    return x\n")
    assert isinstance(err, UsageError)
    assert "async def" in str(err)


def test_exception_in_cell_code_shows_a_normal_traceback(ip, capsys):
    _, err = run(ip, '%%fluffy broken\nasync def step(ctx):\n    return None\nx = 1\nraise LookupError("bad line")\n')
    assert isinstance(err, LookupError)
    out = re.sub(r"\x1b\[[0-9;]*m", "", capsys.readouterr().out)  # no colours
    assert "LookupError" in out
    assert 'raise LookupError("bad line")' in out  # the cell's own source line is shown
    assert "_run_cell" not in out  # the magic's frames are hidden


@pytest.mark.parametrize(("line", "needle"), [
    ("%fluffy", "usage"),
    ("%fluffy draw pipeline", "invalid choice"),
    ("%fluffy graph nobody", "no agent named 'nobody'"),
    ("%fluffy history pipeline", "no checkpoint store"),
    ("%fluffy restore pipeline", "history row number"),
    ("%fluffy restore pipeline 0", "no checkpoint store"),
    ("%fluffy resume pipeline", "nothing to resume"),
])
def test_bad_line_magic_arguments_raise_usage_error(ip, line, needle):
    run(ip, PIPELINE.format(flags=""))
    _, err = run(ip, line)
    assert isinstance(err, UsageError)
    assert needle in str(err)


def test_line_magics_graph_status_history_restore(ip, tmp_path):
    db = tmp_path / "runs.db"
    _, err = run(ip, PIPELINE.format(flags=f" --run --store {db} --durable"))
    assert err is None
    graph, err = run(ip, "%fluffy graph pipeline")
    assert err is None
    bundle = graph._repr_mimebundle_()
    assert "flowchart LR" in bundle["text/vnd.mermaid"]
    assert "application/vnd.plotly.v1+json" in bundle
    runs, _ = run(ip, "%fluffy status pipeline")
    agent = ip.user_ns["pipeline"]
    assert list(runs["run_id"]) == [agent.run_id]
    assert list(runs["status"]) == ["completed"]
    status, _ = run(ip, f"%fluffy status pipeline {agent.run_id[:6]}")
    assert status.loc["check", "retries"] == 1
    assert status.loc["report", "status"] == "completed"
    latest, _ = run(ip, "%fluffy status pipeline latest")
    assert latest.equals(status)
    _, err = run(ip, "%fluffy status pipeline zzz")
    assert "no run whose id starts with 'zzz'" in str(err)
    history, _ = run(ip, "%fluffy history pipeline")
    assert list(history["trigger"])[-1] == "completion"
    assert history["completed"].is_monotonic_increasing
    assert list(history.columns[-3:]) == ["checkpoint_id", "parent_id", "run_id"]
    assert {len(i) for i in history["checkpoint_id"]} == {12}  # short ids, last (a person reads the rest first)
    cp, err = run(ip, "%fluffy restore pipeline 1")
    assert err is None
    assert isinstance(cp, Checkpoint)
    assert cp.checkpoint_id.startswith(history["checkpoint_id"].iloc[1])
    assert ip.user_ns["pipeline"].completed_states == cp.completed_states
    again, err = run(ip, f"%fluffy restore pipeline {history['checkpoint_id'].iloc[2]}")  # a short id, as shown
    assert err is None
    assert again.checkpoint_id.startswith(history["checkpoint_id"].iloc[2])
    assert restore_row(agent, history, 1).checkpoint_id == cp.checkpoint_id  # the shown frame knows its full ids


def test_state_rule_on_plain_functions():
    async def ctx_only(ctx):
        return None

    async def with_default(ctx, retries=3):
        return None

    async def no_args():
        return None

    async def star(*args):
        return None

    assert is_state_function("ctx_only", ctx_only)
    assert is_state_function("with_default", with_default)
    assert not is_state_function("_ctx_only", ctx_only)
    assert not is_state_function("no_args", no_args)
    assert not is_state_function("star", star)
    assert not is_state_function("len", len)


def test_agent_start_in_a_cell_gets_a_live_view(ip):
    from fluffy_nb.notebook._liveview import view_of

    run(ip, "%%fluffy starter\nasync def step(ctx):\n    ctx.set_state('x', 1)\n")
    value, err = run(ip, "handle = starter.start()\nr = await handle\nr['x']")
    assert err is None
    assert value == 1
    view = view_of(ip.user_ns["starter"])
    assert view is not None
    assert view.handle is ip.user_ns["handle"]
    assert view.tracker.run_status == "completed"


def test_failing_run_without_a_view_shows_its_error_under_the_cell(ip, capsys):
    from fluffy_nb.notebook._liveview import view_of

    run(ip, "%%fluffy crash\nasync def step(ctx):\n    raise ValueError('exploded')\n")
    agent = ip.user_ns["crash"]
    _, err = run(ip, "import asyncio\nh = crash.start()\n_ = await asyncio.wait({h.task})")
    assert err is None
    view = view_of(agent)
    assert view is not None
    [out] = view.result_out.outputs
    assert out["output_type"] == "error"
    assert "exploded" in out["evalue"]
    capsys.readouterr()
    from fluffy_nb.notebook._hooks_impl import managed

    with managed(agent):  # a run without a view (the agent's view shows an older run): under the cell
        _, err = run(ip, "h = crash.start()\n_ = await asyncio.wait({h.task})")
    assert err is None
    assert "background run of agent 'crash' failed" in capsys.readouterr().out


def test_monitor_and_resume_line_magics(ip, tmp_path):
    db = tmp_path / "resume.db"
    cell = (f"%%fluffy resumable --store {db} --durable --run\n"
            "FIXED = False\n"
            "async def first(ctx):\n    ctx.set_state('a', 1)\n    return 'second'\n"
            "async def second(ctx):\n    if not FIXED:\n        raise RuntimeError('not yet')\n")
    _, err = run(ip, cell)
    assert isinstance(err, StateFailedError)
    agent = ip.user_ns["resumable"]
    run(ip, "FIXED = True")  # the person fixes the cause, then resumes the stored run
    value, err = run(ip, "h = %fluffy resume resumable\nawait h")
    assert err is None
    assert value.status is AgentStatus.COMPLETED
    assert agent.state_metadata["first"].runs == 0  # completed before: not run again
    from fluffy_nb.notebook._liveview import view_of

    view = view_of(agent)
    assert view is not None
    assert view.handle is ip.user_ns["h"]
    assert view.tracker.status == {"first": "completed", "second": "completed"}  # first: done before the crash
    assert view.tracker.summary().startswith("resumable: completed · 2/2 states")
    _, err = run(ip, "%fluffy monitor resumable")
    assert err is None


def test_metrics_line_magic_returns_per_state_latency_percentiles(ip):
    _, err = run(ip, PIPELINE.format(flags=" --run"))
    assert err is None
    frame, err = run(ip, "%fluffy metrics pipeline")
    assert err is None
    assert sorted(frame.index) == ["check", "clean", "fetch", "report"]
    assert list(frame.columns) == ["runs", "attempts", "retries", "failures", "p50_ms", "p95_ms", "p99_ms",
                                   "mean_ms", "max_ms"]
    assert (frame.loc["check", "attempts"], frame.loc["check", "retries"], frame.loc["check", "runs"]) == (2, 1, 1)
    assert (frame["p50_ms"] <= frame["p95_ms"]).all()
    assert (frame["p95_ms"] <= frame["p99_ms"]).all()
    assert frame["p95_ms"].is_monotonic_decreasing  # slowest first


def test_why_says_what_a_waiting_state_waits_for(ip, capsys):
    ip.run_cell("import asyncio\nfrom fluffy_nb import Agent, DependencyType\ngate = asyncio.Event()")
    _, err = run(ip, """
agent = Agent("stuck")
async def slow(ctx):
    await gate.wait()
async def after(ctx):
    return None
agent.add_state("slow", slow)
agent.add_state("after", after, dependencies={"slow": DependencyType.REQUIRED})
""")
    assert err is None
    _, err = run(ip, "handle = agent.start()\nawait asyncio.sleep(0)\nwhy = %fluffy why agent after")
    assert err is None
    assert "after: waits for dependencies: slow has not completed (running)" in capsys.readouterr().out
    _, err = run(ip, "%fluffy why agent nope")
    assert "no state of that name" in str(err)
    ip.run_cell("gate.set(); await handle")


def test_unload_removes_the_agent_display_and_the_end_of_cell_resend_and_load_adds_them_once(ip):
    from fluffy_nb import Agent
    from fluffy_nb.notebook._display import show_agent
    from fluffy_nb.notebook._finals import resend

    printers = ip.display_formatter.ipython_display_formatter.type_printers
    assert ip.run_cell("%unload_ext fluffy_nb").success
    assert Agent not in printers
    assert resend not in ip.events.callbacks["post_run_cell"]
    assert ip.run_cell("%load_ext fluffy_nb").success  # as the module fixture left it
    assert printers[Agent] is show_agent
    assert ip.events.callbacks["post_run_cell"].count(resend) == 1
