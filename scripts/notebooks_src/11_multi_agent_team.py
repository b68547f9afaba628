# %% [markdown]
# # 11 · A team of agents: sub-workflows, a person in the loop, a recovery ladder
#
# Real workflows are built from smaller ones: a *planner* splits the work, *researchers* dig, a
# *reviewer* (with a person) signs off. Each of those is a workflow of its own, worth testing and
# reusing on its own. In fluffy_nb **an agent can be a state of another agent**:
#
# ```python
# team.add_state("research_a", researcher, inputs={"topic_a": "topic"}, outputs={"notes": "notes_a"})
# ```
#
# The child runs as its own run, *nested* in the parent's run:
#
# | what | how it behaves |
# |---|---|
# | data | the child has its own context; `inputs` are copied in before it starts, `outputs` back after it completed (a list keeps names, a dict maps `{from: to}`) |
# | reuse | the same child agent can be a state of several parents, or twice in one parent, at once |
# | checkpoints | the child's checkpoints go to the parent's store; a resumed parent resumes *inside* the child |
# | people | a question asked in a child shows in the parent's live view and `pending_requests()` |
# | control | pausing or cancelling the parent pauses or cancels the child |
# | failure | a child failure fails the parent's state, so retries and `on_error` apply |
# | views | the graph shows the child as a cluster; events and metrics name child states by path (`research_a/search`) |

# %%
import os

from _fakellm import FakeLLM
from IPython.display import Markdown

from fluffy_nb import Agent, Context, MemoryStore, PrimitiveType, ScriptedResponder, StateResult
from fluffy_nb.notebook import graph_figure, graph_markdown, view_of

%load_ext fluffy_nb

AUTOANSWER = os.environ.get("FLUFFY_NB_AUTOANSWER") == "1"


def responder(script):
    """Scripted answers when headless (CI sets FLUFFY_NB_AUTOANSWER=1); None: the form under the cell."""
    return ScriptedResponder(script) if AUTOANSWER else None


llm = FakeLLM(latency=0.2)

# %% [markdown]
# ## The researcher: a small agent of its own
#
# Two states: search, then summarise. It reads `topic` and writes `notes`, and knows nothing about
# who uses it. You can run it alone (that is how you would test it).

# %%
researcher = Agent("researcher")


async def search(context: Context) -> StateResult:
    topic = context.get_state("topic")
    context.set_state("hits", [await llm.complete(f"Find sources about {topic}")])
    return "summarise"


async def summarise(context: Context) -> StateResult:
    context.set_state("notes", await llm.complete(f"Summarise {context.get_state('hits')[0]}"))
    return None


researcher.add_state("search", search)
researcher.add_state("summarise", summarise)

# NBVAL_CHECK_OUTPUT
alone = await researcher.run(initial_context={"topic": "owls"})
print(alone.completed_states)

# %% [markdown]
# ## The reviewer: a person signs off
#
# Also its own agent: it asks a person to approve the draft. The question is asked *through the
# parent*: the parent's responder shows it (the form under the cell in JupyterLab; a script in CI).

# %%
reviewer = Agent("reviewer")


async def ask_person(context: Context) -> StateResult:
    verdict = await context.human_in_the_loop(
        f"Approve this draft?\n\n{context.get_state('draft')}", choices=["approve", "reject"])
    context.set_state("verdict", verdict)
    return None


reviewer.add_state("ask_person", ask_person)

# %% [markdown]
# ## The team: the researcher used twice, in parallel
#
# The planner picks two topics and sends both branches on; each branch is the *same* researcher
# agent with different inputs. `next=` says where the parent goes after a child completed; the
# writer is a join (`join=True`), so it runs once both researchers are done.

# %%
store = MemoryStore()
team = Agent("team", store=store, durable=True, responder=responder(["approve"]))


async def plan(context: Context) -> StateResult:
    context.set_state("topic_a", "owl migration")
    context.set_state("topic_b", "owl diets")
    return ["research_a", "research_b"]


async def write(context: Context) -> StateResult:
    context.set_state("draft", f"{context.get_state('notes_a')} {context.get_state('notes_b')}")
    return "review"


async def publish(context: Context) -> StateResult:
    context.set_state("published", context.get_state("verdict") == "approve")
    return None


team.add_state("plan", plan)
team.add_state("research_a", researcher, inputs={"topic_a": "topic"}, outputs={"notes": "notes_a"}, next="write")
team.add_state("research_b", researcher, inputs={"topic_b": "topic"}, outputs={"notes": "notes_b"}, next="write")
team.add_state("write", write, join=True)
team.add_state("review", reviewer, inputs=["draft"], outputs=["verdict"], next="publish")
team.add_state("publish", publish)

# %% [markdown]
# The graph draws each child as **one node** (a double box) by default, its label counting the
# child's states by status. `expand=True` (or a list of state names) opens them into clusters, in
# mermaid (a `subgraph`) and in plotly; `%fluffy graph team --expand review` does the same in a cell,
# and the live view has an **open sub-workflows** button above its graph:

# %%
Markdown(graph_markdown(team, expand=["review"]))

# %% [markdown]
# Start it. The live view shows the children's states by path while they run (`research_a/search`),
# and when the reviewer asks, the question appears here, in the **parent's** view (the collapsed
# `review` node turns the colour of "waiting for a person").

# %%
team_run = team.start()

# %%
# NBVAL_CHECK_OUTPUT
result = await team_run
print("completed:", sorted(result.completed_states))  # the researchers finish in either order
print("verdict:", result.get_state("verdict"), "| published:", result.get_state("published"))
print("the children's own keys stay theirs:", "hits" in result.shared_state)

# %% [markdown]
# After the run, the expanded graph shows every child's states coloured by how they ended:

# %%
graph_figure(team, expand=True)

# %% [markdown]
# ### The children's checkpoints live in the parent's store
#
# Each child run checkpoints into the team's store under its path (`team/research_a`), linked to the
# team's run. If the kernel died while `research_b` was summarising, `team.resume_latest()` would
# continue *inside* `research_b`: its search would not run again.

# %%
# NBVAL_CHECK_OUTPUT
for path in ("team/research_a", "team/research_b", "team/review"):
    last = store.latest(path)
    print(f"{path:17} -> {last.agent_status.value}, completed {last.completed_states}, "
          f"child of state {last.parent_state!r}")

# %% [markdown]
# ## A map over a batch
#
# The team works on two topics; a batch job has 200 documents to score. Registering 200 states
# would be absurd, and a list repeating `"score"` runs it once (the join rule). Instead a state
# **maps** one state over the items: `return ctx.map("score", docs)` (the same as
# `[Send("score", doc) for doc in docs]`). Each item becomes its own *branch*:
#
# - the branch reads its item as `ctx.payload` and records its result with `ctx.set_result(...)`;
# - it is its own execution: its own attempts, retries, timeout and `on_error` route;
# - where the branches meet (here `report`, the state they all return), `ctx.results("score")`
#   gives every result **in item order**, whatever order the branches finished in.
#
# Two limits apply to the branches, at two levels:
#
# - `Agent(..., max_concurrent=20)`: at most 20 branches in flight; the other 180 wait in a queue
#   (in item order), with no task of their own until their turn;
# - `add_state_coordination("score", PrimitiveType.SEMAPHORE, max_count=5)`: the spec's per-state
#   semaphore, "allow 5 concurrent executions" of `score`, say because the scoring API allows 5
#   parallel calls. A plain state never runs beside itself, so this semaphore only limits
#   something once the state is mapped; here it admits 5 of the 20 at a time.

# %%
docs = [f"doc-{i:03d}" for i in range(200)]
scoring_llm = FakeLLM(latency=0.01)
inside = {"now": 0, "peak": 0}  # how many branches are inside score's body right now / at most
batch = Agent("batch", max_concurrent=20)


async def split(context: Context) -> StateResult:
    return context.map("score", context.get_state("docs"))


async def score(context: Context) -> StateResult:
    inside["now"] += 1
    inside["peak"] = max(inside["peak"], inside["now"])
    verdict = await scoring_llm.complete(f"Rate {context.payload} from 0 to 9")
    inside["now"] -= 1
    context.set_result(sum(map(ord, verdict)) % 10)  # this branch's result: the item's score
    return "report"


async def report(context: Context) -> StateResult:
    scores = context.results("score")  # one per doc, in the order of docs
    context.set_state("scores", scores)
    context.set_state("best", max(zip(scores, docs))[1])
    return None


batch.add_state("split", split)
batch.add_state("score", score)
batch.add_state("report", report)
batch.add_state_coordination("score", PrimitiveType.SEMAPHORE, max_count=5)

# %% [markdown]
# Start it and watch the live view: `score` is **one node** however many items it runs, and its
# label counts the branches (`score · 85/200 done, 5 running`). Notice that *running* never
# passes 5: the 15 other branches in flight are waiting at the semaphore, and the rest are queued.

# %%
batch_run = batch.start(initial_context={"docs": docs})

# %%
# NBVAL_CHECK_OUTPUT
scored = await batch_run
counts = batch.latest_run.snapshot().maps["score"]
print(f"score ran {scored.state_runs['score']} times; report ran {scored.state_runs['report']} time")
print(f"branches: {counts.done}/{counts.total} done, {counts.failed} failed")
print("at most 5 inside score at once:", inside["peak"] <= 5)
print("first scores, in doc order:", scored.get_state("scores")[:8])
print("best doc:", scored.get_state("best"))

# %% [markdown]
# The live view's graph, drawn once more after the run: the map is still one node, with its final
# count (`score · 200/200 done`).

# %%
Markdown(graph_markdown(batch, view_of(batch).tracker))  # the live view's tracker: what it saw

# %% [markdown]
# What to notice:
#
# - `report` ran **once**, after all 200 branches: a map is a fan-out, and its branches join like
#   any other branches.
# - The results are in the order of `docs`, although branches finished in any order: a reader of
#   `ctx.results` never sorts.
# - A branch that fails for good takes the state's `on_error` route *for its item* (whatever the
#   route's state `set_result`s fills that slot); without a route it fails the run, as any state
#   does. With a durable store, a resumed run re-runs only the items without a result.
# - Mapping into a child agent (`ctx.map("research_a", topics)`) is refused with a
#   `ConfigurationError`: map to a local state and let it do the per-item work.

# %% [markdown]
# ## A recovery ladder
#
# The best model is slow and sometimes hangs; a cheaper one is flaky; a cached answer always
# works. Each rung is a state; `on_timeout=` and `on_error=` send the branch down the ladder once a
# rung has given up (after its retries), and `context.last_error` tells the next rung why.
# Rungs can be agents too: here the premium rung is a child agent. With a store, each route is a
# row of the run's history (trigger `route`), so you can see afterwards what failed and where it went.

# %%
hanging_llm = FakeLLM(latency=0.1, hang_on="premium")
premium = Agent("premium_model")


async def premium_answer(context: Context) -> StateResult:
    context.set_state("answer", await hanging_llm.complete(f"premium answer about {context.get_state('q')}"))
    return None


premium.add_state("premium_answer", premium_answer)

flaky_llm = FakeLLM(latency=0.05, flaky=5)
ladder = Agent("ladder", store=MemoryStore())


async def ask(context: Context) -> StateResult:
    context.set_state("q", "owls at night")
    return "premium"


async def cheap(context: Context) -> StateResult:
    context.set_state("tried", [f"premium: {type(context.last_error).__name__}"])
    context.set_state("answer", await flaky_llm.complete(f"cheap answer about {context.get_state('q')}"))
    return None


async def cached(context: Context) -> StateResult:
    tried = context.get_state("tried") + [f"cheap: {type(context.last_error).__name__}"]
    context.set_state("tried", tried)
    context.set_state("answer", "from the cache: owls hunt at night")
    return None


ladder.add_state("ask", ask)
ladder.add_state("premium", premium, inputs=["q"], outputs=["answer"], timeout=0.5, on_timeout="cheap")
ladder.add_state("cheap", cheap, max_retries=2, on_error="cached")
ladder.add_state("cached", cached)
ladder_run = ladder.start()

# %%
# NBVAL_CHECK_OUTPUT
done = await ladder_run
print("completed:", " -> ".join(done.completed_states))  # premium timed out, cheap failed: neither completed
print("tried:", done.get_state("tried"))
print("answer:", done.get_state("answer"))

# %% [markdown]
# The history says which rung failed, how, and where the run went next:

# %%
# NBVAL_CHECK_OUTPUT
routes = ladder.history().to_pandas().query("trigger == 'route'")
for error, checkpoint_id in zip(routes["error"], routes["checkpoint_id"]):
    route = ladder.store.get(checkpoint_id).metadata["route"]
    print(f"{route['state']} -> {route['to']} after {route['attempts']} attempt(s): {error}")

