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
# Every checkpoint of every run is listed by `agent.history()`: with the extension loaded it is a
# pandas DataFrame (one row per checkpoint: when, why it was taken, the status, how many states had
# completed, what was still pending). Filter it, plot it, and pick rows to restore or compare.

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
# ## Try this
#
# - Crash inside `outline` instead (`crash_in.add("outline")`) and resume. Which states run again?
# - Use `Agent(..., checkpoint_interval=0.1)` for periodic checkpoints of a long state, and look at the
#   `trigger` column.
# - Open `workdir / "workflow_state.json"` in the file browser: every field is readable JSON.
# - Next: [06 · Human in the loop](06_human_in_the_loop.ipynb).
