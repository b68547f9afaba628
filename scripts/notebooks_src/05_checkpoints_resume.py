# %% [markdown]
# # 05 · Checkpoints: crash, resume, history and time travel
#
# Long workflows meet the real world: the kernel dies, the laptop sleeps, someone restarts the server.
# Without checkpoints you start again from the top, paying again for every LLM call that had already
# succeeded. A **checkpoint** is a snapshot of a run: which states completed, which were in flight,
# the context data (typed values too) and the answers people gave. From a checkpoint, a run continues
# exactly where it stopped.
#
# Checkpoints are **JSON**, never pickle: you can read them, diff them, store them anywhere, and
# loading one can never execute code.
#
# This notebook goes from a manual snapshot, to a durable run that survives a crash, to browsing the
# history as a DataFrame and travelling back in time to try another branch.

# %%
import json
import tempfile
from collections import Counter
from pathlib import Path

from _fakellm import FakeLLM

from fluffy_nb import Agent, Checkpoint, Context, SQLiteStore, StateFailedError, StateResult

%load_ext fluffy_nb
workdir = Path(tempfile.mkdtemp(prefix="fluffy_nb_05_"))  # a scratch folder for this notebook's files

# %% [markdown]
# ## A workflow worth saving
#
# Three expensive steps. `calls` counts how often each one really runs, so we can check below that
# a resumed run does not redo finished work. `crash_in` lets us pull the plug inside a chosen state.

# %%
llm = FakeLLM(latency=0.05)
calls = Counter()
crash_in = set()


async def research(context: Context) -> StateResult:
    calls[context.state_name] += 1
    context.set_state("notes", await llm.complete(f"Summarise research about {context.get_state('topic')}"))
    return "outline"


async def outline(context: Context) -> StateResult:
    calls[context.state_name] += 1
    context.set_state("headings", ["intro", "why", "how", "wrap-up"])
    return "write"


async def write(context: Context) -> StateResult:
    calls[context.state_name] += 1
    if context.state_name in crash_in:
        raise ConnectionError("power cut!")
    topic = context.get_state("topic")
    sections = [await llm.complete(f"Write the {s} section about {topic}") for s in context.get_state("headings")]
    context.set_state("article", "\n".join(sections))
    return None


def make_agent(**kwargs) -> Agent:
    """The same states, in a fresh agent: what a new kernel would build."""
    agent = Agent("article", **kwargs)
    for fn in (research, outline, write):
        agent.add_state(fn.__name__, fn)
    return agent

# %% [markdown]
# ## 1. A snapshot by hand
#
# `create_checkpoint()` returns a `Checkpoint` (a pydantic model). `to_dict()` is plain JSON-able data;
# a *new* agent with the same states restores it with `restore_from_checkpoint` and carries on.

# %%
# NBVAL_CHECK_OUTPUT
agent = make_agent()
await agent.run(initial_context={"topic": "checkpoints"})

snapshot = agent.create_checkpoint()
path = workdir / "workflow_state.json"
path.write_text(json.dumps(snapshot.to_dict()))

restored = make_agent()
await restored.restore_from_checkpoint(Checkpoint.from_dict(json.loads(path.read_text())))
print("fields:", sorted(snapshot.to_dict())[:8], "...")
print("completed:", snapshot.completed_states)
print("restored topic:", restored.get_state("topic"), "| status:", snapshot.agent_status)

# %% [markdown]
# ## 2. Durable runs survive a crash
#
# Give the agent a **store** and `durable=True`, and it checkpoints after every finished state.
# `SQLiteStore` keeps them in one file (WAL mode, safe when several processes write). Now we crash
# inside `write`: `research` and `outline` have finished and are recorded; `write` has not.

# %%
# NBVAL_CHECK_OUTPUT
store = SQLiteStore(workdir / "runs.sqlite")
calls.clear()
crash_in.add("write")

doomed = make_agent(store=store, durable=True)
try:
    await doomed.run(initial_context={"topic": "durable runs"})
except StateFailedError as err:
    print("crashed:", err.__cause__)
print("calls so far:", dict(calls))

# %% [markdown]
# The power is back. A **new** agent (think: a new kernel after a restart, with the same cells run
# again) finds the latest run in the store and continues it. `research` and `outline` are not run
# again: their results come from the checkpoint. Only `write` runs.
#
# In a notebook, `%fluffy resume NAME` does this with the live view (in code: `await agent.resume_latest()`).
# To try the real thing: run the cell above, restart the kernel (*Kernel > Restart*), run the first
# cells again to define the states, then run only the two cells below.

# %%
crash_in.clear()
survivor = make_agent(store=store, durable=True)
%fluffy resume survivor

# %%
# NBVAL_CHECK_OUTPUT
result = await survivor.handle
print("status:", result.status)
print("calls in total:", dict(calls))  # research and outline: still 1
print(result.get_state("article").splitlines()[0])

# %% [markdown]
# ## 3. History as a DataFrame
#
# Every checkpoint of every run is listed by `agent.history()`, shown as a table in a notebook;
# `.to_pandas()` gives the DataFrame (one row per checkpoint: when, why it was taken, the status,
# how many states had completed, what was still pending). Filter it, plot it, and pick rows to
# restore or compare.

# %%
history = survivor.history()
history

# %% [markdown]
# The same rows as plain engine objects (handy in scripts and tests, no pandas needed). The crashed
# run's checkpoints show the story: a checkpoint after each finished state, one when `write` failed,
# then the resumed run finishing.

# %%
# NBVAL_CHECK_OUTPUT
for row in survivor.history_records():
    print(f"#{row.sequence}  {row.trigger:<12} {row.agent_status:<10} completed={row.completed_count}  "
          f"pending={list(row.pending)}")

# %% [markdown]
# ## 4. Time travel: fork from the past
#
# Suppose the outline was fine but we want the article written about a different angle. Instead of
# starting over, **fork** a new run from the checkpoint taken right after `outline`, change the data,
# and run only what follows. The original run's history is untouched; `diff` shows what differs.

# %%
# NBVAL_CHECK_OUTPUT
rows = survivor.history_records()
after_outline = next(r for r in rows if r.completed_count == 2 and r.trigger != "failure")

calls.clear()
explorer = make_agent(store=store, durable=True)
explorer.fork(after_outline)
explorer.set_state("topic", "time travel")
forked = await explorer.run()
print("ran again:", dict(calls))  # only write
print(forked.get_state("article").splitlines()[0])

# %%
# NBVAL_CHECK_OUTPUT
change = explorer.diff(after_outline, explorer.create_checkpoint())
print(change)

# %% [markdown]
# ## 5. Explore a run, fix a bad LLM answer, go again
#
# The everyday debugging loop: a run finished, but the result is wrong because one LLM step gave a bad
# answer. Below, a small support-ticket pipeline asks a (fake) LLM to label a ticket; the model is
# confidently wrong and labels a billing question as spam, so the customer's ticket is deleted.

# %%
async def label(context: Context) -> StateResult:
    ticket = context.get_state("ticket")
    context.set_state("model_note", await llm.complete(f"Label this support ticket: {ticket}"))
    context.set_state("label", "spam")  # the model's (bad) answer
    return "route"


async def route(context: Context) -> StateResult:
    queues = {"billing": "finance team", "bug": "engineering", "spam": "trash"}
    context.set_state("queue", queues.get(context.get_state("label"), "inbox"))
    return "reply"


async def reply(context: Context) -> StateResult:
    queue = context.get_state("queue")
    context.set_state("reply", "(deleted unread)" if queue == "trash" else f"Thanks! The {queue} will answer you.")
    return None


triage = Agent("triage", store=SQLiteStore(str(workdir / "triage.db")), durable=True)
for fn in (label, route, reply):
    triage.add_state(fn.__name__, fn)

# %%
# NBVAL_CHECK_OUTPUT
bad = await triage.run(initial_context={"ticket": "My invoice for March is charged twice"})
print(bad.get_state("label"), "->", bad.get_state("reply"))

# %% [markdown]
# `%fluffy explore triage` opens the **explorer** of the latest run stored for `triage` (`%fluffy explore
# triage RUN` picks another: an id or its first characters). Drag the slider (or use *prev*/*next*) to
# step through its checkpoints. For each one you see the state graph coloured as it was then, the context
# with the keys that changed since the previous checkpoint highlighted, the answers people had given,
# the error if there was one, and when it was taken.
#
# It reads everything from the store, so a run recorded yesterday by another kernel explores just the
# same. Without a widget frontend (this notebook under CI, an HTML export) it shows a table of the
# checkpoints and the graph of the last one.

# %%
from fluffy_nb.notebook import compare_runs, explore

ex = %fluffy explore triage
ex

# %% [markdown]
# Checkpoint 0 was taken right after `label`: that is where the run went wrong. In the explorer, move
# the slider to 0, click **edit and fork**, type `billing` into the `label` field and click **fork with
# these values**. The fork is a *new* run (its parent is recorded); it starts in the background with
# its live view below the explorer, and only `route` and `reply` run again.
#
# The buttons call plain methods, which is what we do here so the notebook also runs headless:

# %%
# NBVAL_CHECK_OUTPUT
ex.select(0)
print("statuses then:", ex.statuses)
print("changed since the start:", ex.changed)
print("label then:", ex.checkpoint().shared_state["label"])

# %%
# NBVAL_CHECK_OUTPUT
handle = ex.fork(edits={"label": "billing"})  # what "edit and fork" does with the form's values
fixed = await handle
print(fixed.get_state("label"), "->", fixed.get_state("reply"))
print("forked from the bad run:", handle.run.parent_run_id == ex.run_id)

# %% [markdown]
# `%fluffy runs triage` lists every run in the store (status, duration, parent) with buttons to
# explore one or compare two. `compare_runs` (or `%fluffy runs triage --compare RUN_A RUN_B`) puts two
# runs side by side: per-state durations, and the context keys whose final values differ.

# %%
%fluffy runs triage

# %%
# NBVAL_CHECK_OUTPUT
side_by_side = compare_runs(triage, ex.run_id, fixed.run_id)
print(side_by_side[side_by_side["kind"] == "context"].to_string(index=False))

# %% [markdown]
# ## Try this
#
# - Crash inside `outline` instead (`crash_in.add("outline")`) and resume. Which states run again?
# - Use `Agent(..., checkpoint_interval=0.1)` for periodic checkpoints of a long state, and look at the
#   `trigger` column.
# - Open `workdir / "workflow_state.json"` in the file browser: every field is readable JSON.
# - Explore the fork (`%fluffy explore triage`): its first checkpoint is the fork, and the next one shows
#   `label` as changed. Resume the bad run from checkpoint 0 instead (`ex.resume(0)`): same run id.
# - Next: [06 · Human in the loop](06_human_in_the_loop.ipynb).
