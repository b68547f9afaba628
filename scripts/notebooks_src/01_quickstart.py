# %% [markdown]
# # 01 · Quickstart: your first workflow
#
# A **workflow** is a handful of steps with decisions between them: fetch the data, check it,
# and either publish it or send it back. Most code hides those decisions inside one long function.
# fluffy_nb asks you to write each step as its own small function, called a **state**, and to let
# each state say which state comes next. That is the whole model:
#
# - a state is an `async def` that receives a `context` (the run's shared data),
# - it returns the **name of the next state**, a **list of names** to run in parallel, or `None` to stop,
# - an `Agent` holds the states and runs them.
#
# Why bother? Because once the steps are named, the engine can draw them, run independent ones at
# the same time, retry the flaky ones, save progress, and ask a person when it must. You keep writing
# plain Python. Everything in this notebook runs offline in a few seconds.

# %%
from fluffy_nb import Agent, Context, StateResult

# %% [markdown]
# ## Two states and a hand-off
#
# The first state stores a value in the context and names the next state. The second reads it and
# returns `None`: this branch of work is done. `add_state` registers each function under a name.

# %%
agent = Agent("quickstart")


async def process_data(context: Context) -> StateResult:
    context.set_state("data", "processed")
    return "format_data"  # hand over to the state called "format_data"


async def format_data(context: Context) -> StateResult:
    data = context.get_state("data")
    context.set_state("result", data.upper())
    return None  # nothing follows: the workflow ends here


agent.add_state("process_data", process_data)
agent.add_state("format_data", format_data);

# %% [markdown]
# `await agent.run()` runs the states until nothing is left to do and gives back a `RunResult`:
# the final data, which states completed, and how long it took. (Notebooks allow `await` at the top
# level of a cell; in a script use `asyncio.run(agent.run())` or `agent.run_sync()`.)

# %%
# NBVAL_CHECK_OUTPUT
result = await agent.run()
print(result.get_state("result"))
print(result.completed_states)
print(result.status)

# %% [markdown]
# ## Decisions are just return values
#
# A state can look at the data and pick where to go. Here a tiny order workflow routes large orders
# to a manual check. Notice that nothing new is needed: `if` statements and `return "name"`.
# The engine reads the state names in each function's code, so it knows the shape of the workflow
# *before* it runs; the notebook uses that to draw the graph.

# %%
orders = Agent("orders")


async def receive(context: Context) -> StateResult:
    order = context.get_state("order")
    context.set_state("total", order["qty"] * order["price"])
    return "manual_check" if context.get_state("total") > 500 else "ship"


async def manual_check(context: Context) -> StateResult:
    context.set_state("checked_by", "the night shift")
    return "ship"


async def ship(context: Context) -> StateResult:
    context.set_state("shipped", True)
    return None


for fn in (receive, manual_check, ship):
    orders.add_state(fn.__name__, fn)

# %%
# NBVAL_CHECK_OUTPUT
small = await orders.run(initial_context={"order": {"qty": 2, "price": 20}})
big = await orders.run(initial_context={"order": {"qty": 30, "price": 20}})
print("small order:", small.completed_states, small.get_state("total"))
print("big order:  ", big.completed_states, big.get_state("total"), "checked by", big.get_state("checked_by"))

# %% [markdown]
# ## Watching it run
#
# In a notebook you usually want to *see* the workflow. Load the extension once. Displaying an agent
# shows its graph, drawn from the code before anything runs:

# %%
%load_ext fluffy_nb
orders

# %% [markdown]
# `agent.start()` runs the workflow in the background and shows the **live view** under the cell: the
# graph with each state coloured by what it is doing, a progress bar, and a timeline of which state ran
# when. The cell returns at once (the kernel stays free), and `await` on the handle gives the result.
# When there is no widget frontend (plain IPython, nbval in CI, an exported HTML page) the same view
# ends as a static picture plus a short text summary, so nothing breaks.

# %%
big_order = orders.start(initial_context={"order": {"qty": 30, "price": 20}})

# %%
# NBVAL_CHECK_OUTPUT
result = await big_order
print(result.completed_states)

# %% [markdown]
# ## The notebook way: `%%fluffy`
#
# Writing `Agent(...)` and `add_state(...)` is what you do in a script. In a notebook there is a
# shortcut: the `%%fluffy NAME` cell magic turns **every state function defined in the cell** into a
# state of agent `NAME` (and puts `NAME` into the notebook's namespace). `--run` runs it right away with
# the live view. The first function defined is where the workflow starts.

# %%
%%fluffy greeter --run
async def hello(ctx):
    ctx.set_state("greeting", "hello, fluffy")
    return "shout"


async def shout(ctx):
    ctx.set_state("greeting", ctx.get_state("greeting").upper() + "!")
    return None

# %%
# NBVAL_CHECK_OUTPUT
print(greeter.get_state("greeting"))  # noqa: F821 - `%%fluffy greeter` defined it

# %% [markdown]
# ## Statuses you can trust
#
# The agent and each state have a status at every moment. After a run the agent is `COMPLETED`
# (or `FAILED`), and every state that ran says so:

# %%
# NBVAL_CHECK_OUTPUT
print(orders.status)
for name, meta in orders.state_metadata.items():
    print(f"{name:13} {meta.status}")

# %% [markdown]
# ## Try this
#
# - Add a `notify` state that runs after `ship`, and print `completed_states` again.
# - Make `receive` return a name that does not exist (`"shipp"`). Read the error: it names the state,
#   the bad value, and the states that do exist.
# - Return `42` from a state. Which error do you get, and what does it tell you to do?
# - Next: [02 · Branching and parallel fan-out](02_branching_parallel.ipynb).
