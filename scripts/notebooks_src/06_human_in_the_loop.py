# %% [markdown]
# # 06 · Human in the loop: approval forms
#
# Some decisions should not be automated: publishing to customers, spending money, deleting data.
# The workflow should **stop at that point, ask a person, and carry on with the answer**, while any
# other work that does not depend on the answer keeps going.
#
# Inside a state that is one line:
#
# ```python
# answer = await context.human_in_the_loop("Approve this draft?")
# ```
#
# In JupyterLab the question appears as a **form under the cell**. The run goes on in the background
# (`agent.start()` returns at once), so the kernel stays free to receive your click. A later cell can
# `await` the run's handle to get the result.
#
# **Who answers is pluggable** (a *responder*): the widget form in a notebook, the terminal in a script,
# a scripted list of answers in tests, or your own service calling `agent.answer(request_id, value)`.

# %%
import os

from _fakellm import FakeLLM

from fluffy_nb import Agent, Context, ProgrammaticResponder, ScriptedResponder, StateResult

%load_ext fluffy_nb

# %% [markdown]
# ### Headless runs answer from a script
#
# When this notebook runs in CI (nbval) there is no browser and nobody to click. The test runner sets
# `FLUFFY_NB_AUTOANSWER=1`, and then every agent below gets a `ScriptedResponder` with the answers a
# person might give. Without the variable (you, in JupyterLab) `responder` is `None`, which means
# "choose for the environment": the widget form. The switch is explicit on purpose: a workflow must
# never quietly approve itself.

# %%
AUTOANSWER = os.environ.get("FLUFFY_NB_AUTOANSWER") == "1"


def responder(script):
    """The scripted answers when headless; None (the form under the cell) when a person is here."""
    return ScriptedResponder(script) if AUTOANSWER else None


print("answers come from:", "a script (FLUFFY_NB_AUTOANSWER=1)" if AUTOANSWER else "you, in the forms below")

# %% [markdown]
# ## An approval step with a validator
#
# The writer drafts, a person reviews. A `validator` checks each answer: returning `False` (or `None`, as `re.fullmatch` does) or raising
# an exception rejects it, the form shows the message and asks again. The state then routes on the answer: `approve`
# publishes, anything else is taken as an instruction and the draft goes back for revision.

# %%
llm = FakeLLM(latency=0.2)


def at_least_three_characters(text: str) -> bool:
    if len(text.strip()) < 3:
        raise ValueError("please write at least 3 characters")
    return True


review = Agent("review", responder=responder(["approve"]))


async def draft(context: Context) -> StateResult:
    context.set_state("text", await llm.complete("Write a short note about human review"))
    return "human_review"


async def human_review(context: Context) -> StateResult:
    feedback = await context.human_in_the_loop(
        prompt=f"Review this draft:\n\n{context.get_state('text')}\n\nType 'approve', or say what to change.",
        validator=at_least_three_characters,
    )
    context.set_state("feedback", feedback)
    return "publish" if "approve" in feedback.lower() else "revise"


async def revise(context: Context) -> StateResult:
    context.set_state("text", context.get_state("text") + f" [revised: {context.get_state('feedback')}]")
    return "publish"


async def publish(context: Context) -> StateResult:
    context.set_state("published", True)
    return None


for fn in (draft, human_review, revise, publish):
    review.add_state(fn.__name__, fn)

# %% [markdown]
# Start it. The live view appears below; when the run reaches `human_review` the node turns purple
# ("waiting for a person") and the form appears. **Type your answer and press Submit.**

# %%
# NBVAL_CHECK_OUTPUT
review_run = review.start()

# %% [markdown]
# This cell waits for the run to finish: it completes as soon as the form above is answered.

# %%
result = await review_run
print("feedback:", result.get_state("feedback"))
print("path taken:", " -> ".join(result.completed_states))
print("published:", result.get_state("published"))

# %% [markdown]
# ## Choices become buttons
#
# When the answer must be one of a few options, pass `choices`. The form shows one button per choice
# and refuses anything else.

# %%
triage = Agent("triage", responder=responder(["billing"]))


async def classify(context: Context) -> StateResult:
    team = await context.human_in_the_loop(
        "A customer writes: 'I was charged twice this month.' Which team should handle it?",
        choices=["billing", "technical", "sales"],
    )
    context.set_state("team", team)
    return None


triage.add_state("classify", classify)
triage_run = triage.start()

# %%
# NBVAL_CHECK_OUTPUT
triaged = await triage_run
print("routed to:", triaged.get_state("team"))

# %% [markdown]
# ## Structured answers from a pydantic model
#
# Pass `schema=` a pydantic model and the form has one field per model field, validated by pydantic.
# The state receives a model instance, not a string to parse.

# %%
from pydantic import BaseModel, Field


class Refund(BaseModel):
    amount: float = Field(ge=0, le=500, description="refund in EUR (at most 500)")
    reason: str = Field(min_length=3)


refunds = Agent("refunds", responder=responder([Refund(amount=19.99, reason="double charge")]))


async def decide_refund(context: Context) -> StateResult:
    refund = await context.human_in_the_loop("How much should we refund, and why?", schema=Refund)
    context.set_state("refund", refund.model_dump())
    return None


refunds.add_state("decide_refund", decide_refund)
refund_run = refunds.start()

# %%
refunded = await refund_run
print("refund:", refunded.get_state("refund"))

# %% [markdown]
# ## Nobody answers: timeouts and defaults
#
# People go to lunch. With `timeout=` the form counts down; when it runs out the `default` is used (or
# `HumanTimeoutError` is raised if there is none), so an unattended workflow still finishes. Here
# *nobody* answers on purpose, in the browser too: we give this agent a `ProgrammaticResponder`, which
# only answers when code calls `agent.answer(...)`.

# %%
# NBVAL_CHECK_OUTPUT
unattended = Agent("unattended", responder=ProgrammaticResponder())


async def ask_and_wait(context: Context) -> StateResult:
    choice = await context.human_in_the_loop("Ship the nightly build?", timeout=0.5, default="ship it")
    context.set_state("choice", choice)
    return None


unattended.add_state("ask_and_wait", ask_and_wait)
r = await unattended.run()
print("decision after nobody answered:", r.get_state("choice"))

# %% [markdown]
# ## Answers are part of the record
#
# Every accepted answer is recorded (what, from whom, when, after how long) and saved in checkpoints.
# A run restored from a checkpoint replays recorded answers instead of asking the same question again.

# %%
# NBVAL_CHECK_OUTPUT
checkpoint = triage.create_checkpoint()
for record in checkpoint.human_answers:
    print(record.state, "->", record.value)

# %% [markdown]
# ## Try this
#
# - Answer the first form with "no" (two letters). What does the form say?
# - Add a second `human_in_the_loop` to `revise`, asking whether the revision is good enough, and loop
#   back to `revise` until it is.
# - Start two agents that both ask at once: two forms appear, and each can be answered in any order.
# - Next: [07 · Resources, rate limits and coordination](07_resources_coordination.ipynb).
