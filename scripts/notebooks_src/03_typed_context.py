# %% [markdown]
# # 03 · Typed context: data with a shape
#
# States talk to each other through the **context**. `set_state("key", value)` and `get_state("key")`
# are quick and flexible, and for small values that is all you need. But as a workflow grows, a typo
# in a key or a dict with a missing field turns into an error three states later, far from its cause.
#
# **Typed context** stores dataclasses or pydantic models instead of loose dicts. You get:
#
# - one place that says what the data looks like,
# - `get_typed(key, Type)` that checks the type when you read it (a clear error, not a surprise later),
# - `update_typed(key, field=value)` that changes fields without mutating shared objects,
# - checkpoints that bring back the *same type*, not a dict (more in notebook 05).

# %%
from dataclasses import dataclass

from pydantic import BaseModel, Field

from fluffy_nb import Agent, Checkpoint, Context, StateResult, TypedContextData, TypedDataError

# %% [markdown]
# ## Declare the shape once
#
# Subclass `TypedContextData` and decorate with `@dataclass` (the spec's style). Subclassing also
# registers the class, so a checkpoint can turn the stored JSON back into a `UserProfile`, without
# ever importing a class path found inside the data.

# %%
@dataclass
class UserProfile(TypedContextData):
    name: str
    age: int
    scores: list[float]


profiles = Agent("profiles")


async def create_profile(context: Context) -> StateResult:
    context.set_typed("user", UserProfile(name="Alice", age=28, scores=[95.0, 87.5]))
    return "birthday"


async def birthday(context: Context) -> StateResult:
    user = context.get_typed("user", UserProfile)  # checked: it really is a UserProfile
    context.update_typed("user", age=user.age + 1)  # a new object with age changed
    return "report"


async def report(context: Context) -> StateResult:
    user = context.get_typed("user", UserProfile)
    context.set_state("summary", f"{user.name} is {user.age}, average score {sum(user.scores) / len(user.scores):.1f}")
    return None


for fn in (create_profile, birthday, report):
    profiles.add_state(fn.__name__, fn)

# %%
# NBVAL_CHECK_OUTPUT
result = await profiles.run()
print(result.get_state("summary"))
print(result.get_typed("user", UserProfile))

# %% [markdown]
# ## Mistakes fail early, with a message that helps
#
# Asking for the wrong type, or for a key nothing stored, raises `TypedDataError` naming the key, what
# was found and how to fix it. The error appears where the mistake is, not three states later.

# %%
# NBVAL_CHECK_OUTPUT
@dataclass
class Invoice(TypedContextData):
    number: str
    amount: float


ctx = result.context
for attempt in (lambda: ctx.get_typed("user", Invoice), lambda: ctx.get_typed("invoice", Invoice)):
    try:
        attempt()
    except TypedDataError as err:
        print("TypedDataError:", err)

# %% [markdown]
# ## Pydantic models validate on the way in
#
# With a pydantic model the data is validated when it is created, and `update_typed` re-validates the
# change: an article cannot silently get a negative word count (a `TypedDataError` naming the field,
# with pydantic's message). Mix dataclasses and models freely. Dataclass fields are type-checked the
# same way: `update_typed("user", age="many")` raises `TypedDataError` naming the field, the value and
# the expected type.

# %%
class Article(BaseModel, TypedContextData):
    title: str
    content: str
    keywords: list[str] = Field(default_factory=list)
    words: int = Field(ge=0, default=0)


writer = Agent("writer")


async def generate_content(context: Context) -> StateResult:
    text = "Workflows are easier to reason about when every step has a name. " * 3
    context.set_typed("article", Article(title="Named steps", content=text, keywords=["workflow"]))
    return "count_words"


async def count_words(context: Context) -> StateResult:
    article = context.get_typed("article", Article)
    context.update_typed("article", words=len(article.content.split()))
    return None


writer.add_state("generate_content", generate_content)
writer.add_state("count_words", count_words);

# %%
# NBVAL_CHECK_OUTPUT
r = await writer.run()
article = r.get_typed("article", Article)
print(article.title, "|", article.words, "words |", article.keywords)

try:
    r.context.update_typed("article", words=-5)
except TypedDataError as err:  # pydantic refuses: words must be >= 0
    print(type(err).__name__, "- the invalid update was refused:", err)

# %% [markdown]
# ## Typed data survives a checkpoint
#
# Checkpoints are JSON: safe to store, diff and read, and loading one can never run code. Typed values
# are written with the name of their registered class and come back as that class.

# %%
# NBVAL_CHECK_OUTPUT
import json

payload = json.dumps(writer.create_checkpoint().to_dict())  # plain JSON text
restored = Checkpoint.from_dict(json.loads(payload))

again = Agent("writer")
again.add_state("generate_content", generate_content)
again.add_state("count_words", count_words)
await again.restore_from_checkpoint(restored)
print(type(again.context.get_typed("article", Article)).__name__, again.context.get_typed("article", Article).words)

# %% [markdown]
# ## Plain values must be JSON too
#
# Common values (datetime, set, tuple, Decimal, UUID, bytes, Path, Enum, numpy arrays...) are stored as
# tagged JSON and come back as themselves. A value no checkpoint can hold (a socket, a lambda, an open file) is refused
# with an error that names the key, at checkpoint time rather than when you try to resume next week.
# Keep such things outside the context (a module-level client, for example) and store only data.

# %%
# NBVAL_CHECK_OUTPUT
from fluffy_nb import FluffyError

bad = Agent("bad_value")


async def keep_a_function(context: Context) -> StateResult:
    context.set_state("callback", print)
    return None


bad.add_state("keep_a_function", keep_a_function)
await bad.run()
try:
    bad.create_checkpoint()
except FluffyError as err:
    print(type(err).__name__, "names the key:", "'callback'" in str(err))

# %% [markdown]
# ## Typed data in the live view
#
# The live view shows the same graph and timeline for typed workflows; the final result lists the typed
# keys next to the plain ones.

# %%
%load_ext fluffy_nb
profiles_run = profiles.start()

# %%
# NBVAL_CHECK_OUTPUT
print((await profiles_run).get_state("summary"))

# %% [markdown]
# ## Try this
#
# - Add a field `email: str` to `UserProfile` without a default. What breaks, and where?
# - Store a `UserProfile` under `"user"` and read it back as `dict`. Read the message.
# - Replace the dataclass with a pydantic model and add `Field(ge=0)` to `age`.
# - Next: [04 · Retries, timeouts and failure](04_retries_timeouts.ipynb).
