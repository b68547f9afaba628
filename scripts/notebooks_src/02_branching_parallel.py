# %% [markdown]
# # 02 · Branching, parallel fan-out and joins
#
# Real work is rarely a straight line. Some steps are independent (resize the images *and* translate
# the text), some must wait for several others (publish once *both* are done), and some repeat
# (draft, check, draft again). This notebook shows the three shapes and the one rule behind them.
#
# **Why it matters:** independent steps that run one after another waste time, and hand-written
# `asyncio.gather` code gets tangled as soon as branches branch again. Here you only return names;
# the engine runs what can run and waits where it must.

# %%
import asyncio
import time

from _fakellm import FakeLLM

from fluffy_nb import Agent, Context, StateResult

llm = FakeLLM(latency=0.3)  # every call takes 0.3 s, like a slow API

# %% [markdown]
# ## Fan-out: return a list
#
# Returning a **list** of state names starts all of them at once, as real concurrent asyncio tasks.
# Both branches below name `merge` as their next state. `merge` is a **join**: it runs **once**,
# after every branch that can still reach it has arrived.
#
# > **The join rule.** When a branch names a state X while other branches of the same fan-out could
# > still reach X, the branch waits at X. X starts once, when no other branch can reach it any more.

# %%
pipeline = Agent("fan_out")


async def start(context: Context) -> StateResult:
    context.set_state("topic", "joins")
    return ["write_summary", "write_title"]  # both start now


async def write_summary(context: Context) -> StateResult:
    context.set_state("summary", await llm.complete(f"Summarise a note about {context.get_state('topic')}"))
    return "merge"


async def write_title(context: Context) -> StateResult:
    context.set_state("title", await llm.complete(f"Write a title about {context.get_state('topic')}"))
    return "merge"


async def merge(context: Context) -> StateResult:
    context.set_state("page", f"{context.get_state('title')}\n{context.get_state('summary')}")
    return None


for fn in (start, write_summary, write_title, merge):
    pipeline.add_state(fn.__name__, fn)

# %% [markdown]
# Two LLM calls of 0.3 s each. One after the other they would take 0.6 s; as parallel branches they
# take about 0.3 s. `state_runs` shows that `merge` ran exactly once.

# %%
# NBVAL_CHECK_OUTPUT
t0 = time.perf_counter()
result = await pipeline.run()
elapsed = time.perf_counter() - t0
print("ran concurrently:", elapsed < 0.55)
print("runs per state:", result.state_runs)
print(result.get_state("page"))

# %% [markdown]
# ## Conditional routing
#
# A state can choose between one path, another, or several at once, depending on the data. This is
# the spec's `route_processing` example: big inputs fan out into chunks, medium ones go sequential,
# small ones take the simple path.

# %%
router = Agent("router")


async def route_processing(context: Context) -> StateResult:
    size = len(context.get_state("data", []))
    if size > 1000:
        return ["process_chunk_1", "process_chunk_2"]
    elif size > 100:
        return "sequential_process"
    return "simple_process"


async def process_chunk_1(context: Context) -> StateResult:
    context.set_state("chunk_1", "done")
    return None


async def process_chunk_2(context: Context) -> StateResult:
    context.set_state("chunk_2", "done")
    return None


async def sequential_process(context: Context) -> StateResult:
    return None


async def simple_process(context: Context) -> StateResult:
    return None


for fn in (route_processing, process_chunk_1, process_chunk_2, sequential_process, simple_process):
    router.add_state(fn.__name__, fn)

# %%
# NBVAL_CHECK_OUTPUT
for n in (10, 500, 5000):
    r = await router.run(initial_context={"data": list(range(n))})
    print(f"{n:5} items ->", r.completed_states[1:])

# %% [markdown]
# ## Loops: draft, check, draft again
#
# Cycles are allowed: a state that already finished can run again. Here `draft` writes and `check`
# sends it back until the text is long enough. A loop that never ends would be a bug, so every agent
# has a step guard (`Agent(max_steps=...)`) that stops a runaway loop with a clear
# `MaxStepsExceededError` instead of spinning forever.

# %%
loop = Agent("draft_loop", max_steps=50)


async def draft(context: Context) -> StateResult:
    n = context.get_state("attempts", 0) + 1
    context.set_state("attempts", n)
    context.set_state("text", "word " * (10 * n))
    return "check"


async def check(context: Context) -> StateResult:
    if len(context.get_state("text").split()) < 30:
        return "draft"  # not good enough: go round again
    return None


loop.add_state("draft", draft)
loop.add_state("check", check);

# %%
# NBVAL_CHECK_OUTPUT
r = await loop.run()
print("attempts:", r.get_state("attempts"), "| runs:", r.state_runs)

# %% [markdown]
# ## States made from data
#
# Sometimes the number of steps is only known at run time: one state per file, per customer, per
# chunk. Add states in a loop. When the next-state names are built with f-strings the engine cannot
# read them from the code, so declare the join with `next=` and it still knows where branches meet.

# %%
chunks = Agent("chunks")
data = list(range(12))
parts = [data[i : i + 4] for i in range(0, len(data), 4)]


async def split(context: Context) -> StateResult:
    return [f"square_{i}" for i in range(len(parts))]


chunks.add_state("split", split, next=[f"square_{i}" for i in range(len(parts))])

for i, part in enumerate(parts):

    async def square(context: Context, i=i, part=part) -> StateResult:
        await asyncio.sleep(0.05)
        context.set_state(f"result_{i}", [x * x for x in part])
        return "combine"

    chunks.add_state(f"square_{i}", square, next=["combine"])


async def combine(context: Context) -> StateResult:
    context.set_state("total", sum(sum(context.get_state(f"result_{i}")) for i in range(len(parts))))
    return None


chunks.add_state("combine", combine);

# %%
# NBVAL_CHECK_OUTPUT
r = await chunks.run()
print("sum of squares:", r.get_state("total"), "| combine ran", r.state_runs["combine"], "time")

# %% [markdown]
# ## See the shape
#
# Load the extension and start the last agent in the background: the live view shows the fan-out from
# `split`, the parallel `square_*` states and the join at `combine`. On the timeline the three squares
# run side by side, and `combine` starts only when the last of them has finished.

# %%
%load_ext fluffy_nb
chunks_run = chunks.start()

# %%
# NBVAL_CHECK_OUTPUT
r = await chunks_run
squares = sum(name.startswith("square") for name in r.state_runs)
print("combine ran", r.state_runs["combine"], "time, after", squares, "squares")

# %% [markdown]
# ## Try this
#
# - Make `write_title` return `"publish"` instead of `"merge"` (add a `publish` state). Does `merge`
#   still wait for it? Why not? (Hint: can the title branch still reach `merge`?)
# - Set `max_steps=5` on `draft_loop`. Read the error message.
# - Give `chunks` 100 parts. How long does it take? Now add `Agent("chunks", max_concurrent=4)`.
# - Next: [03 · Typed context](03_typed_context.ipynb).
