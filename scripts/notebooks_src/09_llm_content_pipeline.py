# %% [markdown]
# # 09 · An LLM content pipeline, end to end
#
# Everything from the previous notebooks, in one workflow you could ship: a brief goes in, a reviewed
# article comes out.
#
# 1. **intake** validates the brief, **plan**: an LLM turns it into an outline (typed data, notebook 03),
# 2. **write** each section in parallel, retrying a flaky API politely (02, 04, 07),
# 3. **assemble** the sections once all are written (a join),
# 4. **check** quality automatically and **regenerate** when it is poor (a loop with a limit),
# 5. a **person reviews** and either approves or asks for changes (06),
# 6. **publish**, with every step checkpointed so a crash costs nothing (05) and metrics to show (08).
#
# The LLM is the offline `FakeLLM`: swap in a real client with the same `complete()` method.

# %%
import os
import tempfile
from pathlib import Path

from _fakellm import FakeLLM, RateLimitError
from pydantic import BaseModel, Field

from fluffy_nb import Agent, Context, RetryPolicy, ScriptedResponder, SQLiteStore, StateResult, TypedContextData

%load_ext fluffy_nb
AUTOANSWER = os.environ.get("FLUFFY_NB_AUTOANSWER") == "1"  # set by the test runner (see notebook 06)

# %% [markdown]
# ## The data: a brief and an article
#
# Two pydantic models describe what flows through the pipeline. Every state reads and writes these
# instead of loose keys, and checkpoints bring them back as the same types.

# %%
class Brief(BaseModel, TypedContextData):
    topic: str
    audience: str
    sections: int = Field(ge=1, le=6)


class Article(BaseModel, TypedContextData):
    title: str = ""
    outline: list[str] = Field(default_factory=list)
    sections: dict[str, str] = Field(default_factory=dict)
    quality: int = 0
    drafts: int = 0
    feedback: list[str] = Field(default_factory=list)

# %% [markdown]
# ## The states
#
# Section writers are created from the outline's length. Their names are built at run time, so we tell
# the engine where they lead with `next=`; that is how it knows `assemble` is a join.

# %%
llm = FakeLLM(latency=0.15, flaky=1)  # every distinct prompt fails once with 429, then works
MAX_SECTIONS = 3
writers = [f"write_section_{i}" for i in range(MAX_SECTIONS)]


async def intake(context: Context) -> StateResult:
    # validate the raw input once, at the door; every later state gets a real Brief
    context.set_typed("brief", Brief.model_validate(context.get_state("request")))
    return "plan"


async def plan(context: Context) -> StateResult:
    brief = context.get_typed("brief", Brief)
    title = await llm.complete(f"Write a title about {brief.topic}")
    outline = [f"Part {i + 1}: {brief.topic} for {brief.audience}" for i in range(brief.sections)]
    context.set_typed("article", Article(title=title.removeprefix("Title: "), outline=outline))
    return writers[: brief.sections]


async def write_section(context: Context) -> StateResult:
    i = int(context.state_name.rsplit("_", 1)[1])
    article = context.get_typed("article", Article)
    tone = " ".join(article.feedback[-1:])
    text = await llm.complete(f"Write section {i} draft {article.drafts} {tone} about {article.outline[i]}")
    context.set_state(f"section_{i}", text)  # each writer writes its own key: no lost updates
    return "assemble"


async def assemble(context: Context) -> StateResult:
    article = context.get_typed("article", Article)
    sections = {h: context.get_state(f"section_{i}") for i, h in enumerate(article.outline)}
    context.update_typed("article", sections=sections, drafts=article.drafts + 1)
    return "check_quality"


async def check_quality(context: Context) -> StateResult:
    article = context.get_typed("article", Article)
    score = int(await llm.complete(f"Rate draft {article.drafts} of {article.title}"))
    context.update_typed("article", quality=score)
    if score < 7 and article.drafts < 3:
        return "plan_rewrite"  # poor and we still have budget: regenerate
    return "human_review"


async def plan_rewrite(context: Context) -> StateResult:
    return writers[: len(context.get_typed("article", Article).outline)]


async def human_review(context: Context) -> StateResult:
    article = context.get_typed("article", Article)
    preview = "\n".join(f"- {h}: {t[:70]}..." for h, t in article.sections.items())
    verdict = await context.human_in_the_loop(
        f"{article.title} (draft {article.drafts}, quality {article.quality}/9)\n{preview}\n\n"
        "Approve, or ask for a change:",
        choices=["approve", "make it friendlier", "make it shorter"],
    )
    if verdict == "approve":
        return "publish"
    context.update_typed("article", feedback=[*article.feedback, verdict])
    return "plan_rewrite"


async def publish(context: Context) -> StateResult:
    article = context.get_typed("article", Article)
    context.set_state("published", f"{article.title} ({len(article.sections)} sections, draft {article.drafts})")
    return None

# %% [markdown]
# ## Assemble the agent
#
# Retries with backoff for the API-bound states, a durable SQLite store for checkpoints, and a
# responder: the review form when a person is here, a script (first ask for a friendlier tone, then
# approve) when run headless.

# %%
store = SQLiteStore(Path(tempfile.mkdtemp(prefix="fluffy_nb_09_")) / "pipeline.sqlite")
script = ScriptedResponder(["make it friendlier", "approve"]) if AUTOANSWER else None
pipeline = Agent("content_pipeline", store=store, durable=True, responder=script, max_steps=200)

api = RetryPolicy(max_retries=3, initial_delay=0.05, jitter=False, retry_on=(RateLimitError,))
pipeline.add_state("intake", intake)
pipeline.add_state("plan", plan, retry_policy=api, next=writers)
for name in writers:
    pipeline.add_state(name, write_section, retry_policy=api, next=["assemble"])
pipeline.add_state("assemble", assemble)
pipeline.add_state("check_quality", check_quality, retry_policy=api)
pipeline.add_state("plan_rewrite", plan_rewrite, next=writers)
pipeline.add_state("human_review", human_review)
pipeline.add_state("publish", publish)
pipeline

# %% [markdown]
# ## Run it
#
# The live view shows the fan-out of writers, the retries (amber), the quality loop, and the review
# form when the run reaches `human_review`. **Pick an answer in the form** to continue.

# %%
# NBVAL_CHECK_OUTPUT
run = pipeline.start(initial_context={"request": {"topic": "workflow engines", "audience": "data scientists",
                                                 "sections": 3}})

# %% [markdown]
# Wait for the outcome (this cell finishes once the article is approved):

# %%
# NBVAL_CHECK_OUTPUT
result = await run
article = result.get_typed("article", Article)
print(result.get_state("published"))
print("feedback given:", article.feedback)
print("state runs:", {k: v for k, v in result.state_runs.items() if v > 1})

# %% [markdown]
# ## Look back
#
# Every finished state left a checkpoint. The history shows the whole story, including the review
# round-trip, and any row can be restored or forked (notebook 05).

# %%
pipeline.history(run_id=result.run_id)

# %% [markdown]
# ## Try this
#
# - Set `flaky=3` on the LLM. The retry policy allows 3 retries: does the pipeline still finish?
# - Add a `translate` state after `publish` that fans out to three languages and joins again.
# - Add `pipeline.add_state_rate_limit("write_section_0", max_rate=2)` and watch the timeline.
# - Restart the kernel while the review form is open, then resume with `await pipeline.resume_latest()`
#   after re-running the definition cells: the sections are not written again.
