# %% [markdown]
# # 04 · Retries, timeouts and failure handling
#
# Anything that talks to the outside world fails sometimes: an API answers *429 Too Many Requests*, a
# call hangs, a record is malformed. A workflow engine earns its keep here. The question is not *if* a
# step fails but *what should happen then*:
#
# | failure | usual answer | in fluffy_nb |
# |---|---|---|
# | transient (rate limit, blip) | try again, waiting longer each time | `retry_policy=RetryPolicy(...)` |
# | hangs | give up after a while (maybe retry) | `timeout=` per state, `run(timeout=)` per run |
# | permanent, but there is a plan B | route to a fallback state | `try/except` + `return "fallback"` |
# | permanent, no plan B | stop the run, keep the cause | `StateFailedError` with the original error chained |
#
# Our "LLM" here is `FakeLLM` from `_fakellm.py`: deterministic, offline, and able to misbehave on demand.

# %%
from _fakellm import FakeLLM, RateLimitError

from fluffy_nb import Agent, Context, RetryPolicy, StateFailedError, StateResult

# %% [markdown]
# ## Retries with exponential backoff
#
# This LLM fails the first two calls for every prompt. With `RetryPolicy(max_retries=3, ...)` the
# state is tried again after `initial_delay`, then twice that, and so on (`exponential_base`), capped
# at `max_delay`. `jitter=True` randomises the waits so a hundred clients do not retry in lock-step;
# we switch it off here to keep the demo reproducible. `retry_on` limits retries to errors worth
# retrying: a bug in your code should fail at once, not three times.

# %%
flaky_llm = FakeLLM(latency=0.01, flaky=2)
agent = Agent("retries")


async def call_api(context: Context) -> StateResult:
    context.set_state("answer", await flaky_llm.complete("Summarise a note about retries"))
    context.set_state("succeeded_on_attempt", context.attempt)  # context.attempt counts tries
    return None


agent.add_state(
    "call_api",
    call_api,
    retry_policy=RetryPolicy(max_retries=3, initial_delay=0.05, exponential_base=2.0, jitter=False,
                             retry_on=(RateLimitError,)),
);

# %%
# NBVAL_CHECK_OUTPUT
result = await agent.run()
meta = agent.state_metadata["call_api"]
print("succeeded on attempt", result.get_state("succeeded_on_attempt"))
print("retries:", meta.retries, "| last error seen:", meta.last_error)
print("waits between tries:", [RetryPolicy(initial_delay=0.05, jitter=False).delay(n) for n in (1, 2, 3)])

# %% [markdown]
# ## When retries run out, the run fails loudly
#
# If every attempt fails the run stops with `StateFailedError`. It names the state and how many
# attempts were made, and the original exception is chained (`__cause__`), so the traceback still
# shows what really went wrong. The run never hangs and never "completes" quietly with a missing step.

# %%
# NBVAL_CHECK_OUTPUT
hopeless = Agent("hopeless")
always_busy = FakeLLM(latency=0.0, flaky=100)


async def call_busy_api(context: Context) -> StateResult:
    await always_busy.complete("anything")
    return None


hopeless.add_state("call_busy_api", call_busy_api, max_retries=2)  # shorthand: 2 immediate retries

try:
    await hopeless.run()
except StateFailedError as err:
    print("StateFailedError:", err)
    print("cause:", repr(err.__cause__))
print("agent status:", hopeless.status, "| state status:", hopeless.state_metadata["call_busy_api"].status)

# %% [markdown]
# ## Timeouts: never wait forever
#
# A call that hangs is worse than one that fails: nothing happens and nobody notices. Give states that
# wait on the outside world a `timeout=` in seconds. A timed-out attempt raises `StateTimeoutError`,
# which a retry policy can retry like any other error.
#
# Here the LLM hangs whenever the prompt mentions "the meaning of life".

# %%
# NBVAL_CHECK_OUTPUT
hanging_llm = FakeLLM(latency=0.01, hang_on="meaning of life")
slow = Agent("timeouts")


async def ask(context: Context) -> StateResult:
    await hanging_llm.complete("Tell me about the meaning of life")
    return None


slow.add_state("ask", ask, timeout=0.2, max_retries=1)

try:
    await slow.run()
except StateFailedError as err:
    print(type(err.__cause__).__name__, "-", err.__cause__)
print("state status:", slow.state_metadata["ask"].status, "| attempts:", slow.state_metadata["ask"].attempts)

# %% [markdown]
# ## Plan B: route around the failure
#
# Retrying is not always right. When the main model is down you may prefer a cheaper model, a cached
# answer, or a person. Catch the error in the state and **return a different next state**. The
# failure handling is now part of the workflow's graph, visible and testable, instead of buried.

# %%
# NBVAL_CHECK_OUTPUT
main_llm = FakeLLM(latency=0.0, flaky=100)  # down today
backup_llm = FakeLLM(latency=0.0)
graceful = Agent("graceful")


async def generate(context: Context) -> StateResult:
    try:
        context.set_state("text", await main_llm.complete("Write about graceful degradation"))
        return "publish"
    except RateLimitError as err:
        context.set_state("degraded_because", str(err))
        return "fallback"


async def fallback(context: Context) -> StateResult:
    context.set_state("text", await backup_llm.complete("Write about graceful degradation"))
    return "publish"


async def publish(context: Context) -> StateResult:
    context.set_state("published", True)
    return None


for fn in (generate, fallback, publish):
    graceful.add_state(fn.__name__, fn)

r = await graceful.run()
print(r.completed_states)
print("degraded because:", r.get_state("degraded_because"))

# %% [markdown]
# ## A deadline for the whole run
#
# `run(timeout=...)` bounds the whole workflow. When it expires, running states are cancelled (they
# get `cleanup_timeout` seconds to tidy up in `finally:` blocks) and `RunTimeoutError` says which
# states were still running.

# %%
# NBVAL_CHECK_OUTPUT
from fluffy_nb import RunTimeoutError

deadline = Agent("deadline")


async def endless(context: Context) -> StateResult:
    try:
        await hanging_llm.complete("the meaning of life, again")
    finally:
        context.set_state("cleaned_up", True)  # runs on cancellation too
    return None


deadline.add_state("endless", endless)
try:
    await deadline.run(timeout=0.2, cleanup_timeout=1.0)
except RunTimeoutError as err:
    print("RunTimeoutError:", str(err).split(";")[0])
print("cleanup ran:", deadline.get_state("cleaned_up"))

# %% [markdown]
# ## Watch retries happen
#
# In the live view a retrying state turns amber and the timeline shows each attempt as its own bar,
# with the pause between them. Run the flaky agent again with the view attached:

# %%
%load_ext fluffy_nb
flaky_llm = FakeLLM(latency=0.05, flaky=2)  # a fresh flaky LLM: the first two calls fail again
retry_run = agent.start()

# %%
# NBVAL_CHECK_OUTPUT
r = await retry_run
print("attempts:", agent.state_metadata["call_api"].attempts)

# %% [markdown]
# ## Try this
#
# - Remove `retry_on=(RateLimitError,)` and make `call_api` raise `KeyError`. How many attempts now?
#   Put it back: which behaviour do you want for bugs?
# - Give `ask` a `RetryPolicy(max_retries=3, initial_delay=0.1)` instead of `max_retries=1`. How long
#   does the run take before it fails? Check `state_metadata["ask"].durations`.
# - Make `fallback` fail too. What would you want to happen? Add a `notify_human` state.
# - Next: [05 · Checkpoints, crash and resume](05_checkpoints_resume.ipynb).
