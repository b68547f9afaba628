# %% [markdown]
# # 07 · Resources, rate limits and coordination
#
# Running everything in parallel is easy. Running *as much as the machine, the budget and the API
# allow* is the real job:
#
# - a GPU box has 4 GPUs, not 40: training jobs must **wait their turn** (resources),
# - the LLM provider allows 10 requests per second: calls must be **paced** (rate limits),
# - the database takes 2 writers at a time, a report needs *all* shards first: states must
#   **coordinate** (semaphores, mutexes, barriers, leases, quotas).
#
# You declare the limits next to the states; the engine enforces them. A waiting state is shown as
# `BLOCKED`, never silently queued, and every limiter can tell you what it is doing (`statistics()`).

# %%
import asyncio
import time

from fluffy_nb import (
    Agent,
    Context,
    PrimitiveType,
    Priority,
    ResourceError,
    ResourcePool,
    ResourceRequirements,
    StateResult,
)

%load_ext fluffy_nb


class Gauge:
    """Counts how many states are inside a block right now, and the most ever at once."""

    def __init__(self):
        self.now = self.peak = 0

    def __enter__(self):
        self.now += 1
        self.peak = max(self.peak, self.now)

    def __exit__(self, *exc):
        self.now -= 1

# %% [markdown]
# ## Resources: states wait until their request fits
#
# The pool has 4 CPUs. Each training job asks for 2 (`ResourceRequirements(cpu_units=2)`), so at most
# two run at once; the others are `BLOCKED` until a holder finishes. The jobs themselves measure how
# many of them are inside at the same moment.

# %%
pool = ResourcePool(total_cpu=4, total_memory=8192)
training = Agent("training", resource_pool=pool)
inside = Gauge()
jobs = [f"train_{i}" for i in range(6)]
job_seconds = 0.1


async def plan(context: Context) -> StateResult:
    return jobs


training.add_state("plan", plan, next=jobs)
for job in jobs:

    async def train(context: Context) -> StateResult:
        with inside:
            await asyncio.sleep(job_seconds)
        return None

    training.add_state(job, train, resources=ResourceRequirements(cpu_units=2, memory_mb=1024))

# %%
# NBVAL_CHECK_OUTPUT
await training.run()
print("most jobs running at once:", inside.peak)
stats = pool.statistics()
print("admitted:", stats.admitted, "| had to wait:", stats.waited, "| waiting now:", stats.waiting)

# %% [markdown]
# A request that can **never** fit (more CPUs than the pool has) would wait forever, so it fails at
# once with a clear `ResourceError` instead, before anything runs.

# %%
# NBVAL_CHECK_OUTPUT
greedy = Agent("greedy", resource_pool=ResourcePool(total_cpu=4))


async def huge_job(context: Context) -> StateResult:
    return None


greedy.add_state("huge_job", huge_job, resources=ResourceRequirements(cpu_units=16))
try:
    await greedy.run()
except ResourceError as err:
    print("ResourceError:", err)

# %% [markdown]
# ## Priority: urgent work goes first
#
# When several states wait for the same pool, the higher `Priority` is admitted first. Below, the pool
# fits one job at a time; five background jobs and one urgent job all want in. The urgent one runs
# as soon as the first slot frees up, ahead of the background jobs that were queued before it.

# %%
# NBVAL_CHECK_OUTPUT
single = ResourcePool(total_cpu=1)
queue = Agent("priorities", resource_pool=single)
order = []
names = [f"background_{i}" for i in range(5)] + ["urgent"]


async def fan_out(context: Context) -> StateResult:
    return names


queue.add_state("fan_out", fan_out, next=names)
for name in names:

    async def job(context: Context) -> StateResult:
        order.append(context.state_name)
        await asyncio.sleep(0.02)
        return None

    prio = Priority.CRITICAL if name == "urgent" else Priority.LOW
    queue.add_state(name, job, resources=ResourceRequirements(cpu_units=1, priority=prio))

await queue.run()
print("urgent ran as job number", order.index("urgent") + 1, "of", len(order))

# %% [markdown]
# ## Rate limits: pace the calls to an API
#
# `add_state_rate_limit(state, max_rate=10, burst_size=2)` admits at most 10 runs of `call_api` per
# second (a *token bucket*: up to 2 at once after a quiet period, then one every 0.1 s). Here the state
# loops 12 times, like a crawler fetching pages. Twelve calls at 10 per second with a burst of 2 cannot
# finish in less than about one second, however fast each call is. Other strategies: `SLIDING_WINDOW`,
# `LEAKY_BUCKET`, `FIXED_WINDOW`.

# %%
crawler = Agent("crawler")


async def call_api(context: Context) -> StateResult:
    context.set_state("pages", context.get_state("pages", 0) + 1)
    return "call_api" if context.get_state("pages") < 12 else None


crawler.add_state("call_api", call_api)
limiter = crawler.add_state_rate_limit("call_api", max_rate=10, burst_size=2)

# %%
# NBVAL_CHECK_OUTPUT
t0 = time.perf_counter()
r = await crawler.run()
elapsed = time.perf_counter() - t0
print("pages:", r.get_state("pages"), "| paced to about 1 s:", elapsed >= 0.9)
print("limiter admitted:", limiter.statistics().admitted)

# %% [markdown]
# ## Coordination: a semaphore around a shared database
#
# Five writers run in parallel, but the database accepts only two connections. Giving the five states
# one shared `SEMAPHORE` (same `name=`, `max_count=2`) guarantees that no more than two are ever inside,
# measured here by the writers themselves. `MUTEX` is the one-at-a-time case; `BARRIER` releases a group
# together once all have arrived; `LEASE` is a lock that expires (its holder may have crashed);
# `QUOTA` is a budget per time window.

# %%
# NBVAL_CHECK_OUTPUT
etl = Agent("etl")
writers = [f"write_{i}" for i in range(5)]
connections = Gauge()


async def extract(context: Context) -> StateResult:
    return writers


etl.add_state("extract", extract, next=writers)
for w in writers:

    async def write_rows(context: Context) -> StateResult:
        with connections:
            await asyncio.sleep(0.05)
        return None

    etl.add_state(w, write_rows)
    etl.add_state_coordination(w, PrimitiveType.SEMAPHORE, max_count=2, name="database")

await etl.run()
print("most writers inside the database at once:", connections.peak)
stats = etl.coordination("database").statistics()
print("the semaphore agrees: peak holders", stats.peak_holders, "| acquisitions", stats.acquisitions)

# %% [markdown]
# Every primitive is inspectable. `get_coordination_status()` gives one overview of an agent's
# limiters and primitives (what the live view's coordination panel shows):

# %%
import pprint

pprint.pprint(await etl.get_coordination_status(), width=110, sort_dicts=False)

# %% [markdown]
# ## Watch it live
#
# The live view of a run with a resource pool shows the pool's declared capacity next to what the
# states asked for, and the process's measured CPU and memory (psutil). Run the training agent again
# and watch jobs wait (`BLOCKED`) and start as capacity frees up; the timeline shows them in pairs.

# %%
inside = Gauge()
job_seconds = 0.6  # longer jobs, so the resource sampler (every 0.5 s) has something to show
training_run = training.start()

# %%
# NBVAL_CHECK_OUTPUT
await training_run
print("most jobs running at once:", inside.peak)

# %% [markdown]
# `%fluffy status NAME latest` sums the latest run up per state (runs, retries, durations) as a DataFrame:

# %%
%fluffy status training latest

# %% [markdown]
# ## Why is this state not running? Make a deadlock and a starving state on purpose
#
# A stuck workflow raises one question first: *what is this state waiting for, and who holds it?* The
# live view answers it under the cell: a waiting state gets a small badge (its colour and shape name the
# reason: resources, rate limit, lock, dependency, a person...), hovering it tells the details, a dashed
# **waits for** edge points at the state holding what it needs, and the timeline shows each wait as a
# hatched bar coloured by its reason. `%fluffy why NAME [STATE]` prints the same answer as text
# (`run.why(state)` in a script), and the collapsed **coordination** panel under the view lists every
# lock, limiter and the resource pool's waiting queue.
#
# ### A deadlock of three
#
# Three bank transfers each lock their own account, then the payee's: alice pays bob, bob pays carol,
# carol pays alice. Once each holds its own lock, each waits for the next one's: a cycle nobody can leave.
# The engine's deadlock detector notices the moment the cycle closes and fails one of them
# (`DeadlockError`) so the others can go on. The view draws the cycle in **red** and says which state to
# cancel and which locks to take in one order.

# %%
from fluffy_nb import StateFailedError
from fluffy_nb.notebook import view_of

bank = Agent("bank")
people = ["alice", "bob", "carol"]
accounts = {p: bank.add_coordination(f"{p}_account", PrimitiveType.MUTEX) for p in people}
locked_own = {p: asyncio.Event() for p in people}


async def open_books(context: Context) -> StateResult:
    return people


bank.add_state("open_books", open_books, next=people)
for i, person in enumerate(people):
    payee = people[(i + 1) % len(people)]

    async def transfer(context: Context, me: str = person, payee: str = payee) -> StateResult:
        async with accounts[me].hold(context):  # my account first...
            locked_own[me].set()
            await locked_own[payee].wait()  # (by now everyone holds their own)
            async with accounts[payee].hold(context):  # ...then the payee's: a cycle of three
                return None

    bank.add_state(person, transfer)

transfers = bank.start()  # the live view appears under this cell: watch the red cycle

# %%
# NBVAL_CHECK_OUTPUT
try:
    await transfers
except StateFailedError as err:
    print("the run failed with", type(err.__cause__).__name__)
[deadlock] = view_of(bank).why_data()["deadlocks"]
print("the view's red cycle:", sorted(deadlock["cycle"]))
print("one of them was failed to break it:", deadlock["victim"] in deadlock["cycle"])

# %% [markdown]
# The view's advice, as text (the same sentence is under the graph):

# %%
print(deadlock["advice"])

# %% [markdown]
# ### A starving low-priority state
#
# One CPU, a `stocktake` holding it, four urgent `HIGH`-priority orders and one `LOW`-priority
# `monthly_report` all waiting. Whenever the CPU frees up the pool admits the highest priority first,
# so the report goes last; if orders kept arriving it would **never** run: it starves. The view shows
# it waiting for resources with a dashed edge to `stocktake`, and the coordination panel (open it)
# lists the waiting queue in admission order with the report at the bottom.

# %%
one_cpu = ResourcePool(total_cpu=1)
shop = Agent("shop", resource_pool=one_cpu)
orders = [f"order_{i}" for i in range(4)]
shop_closes = asyncio.Event()
ran = []


async def open_shop(context: Context) -> StateResult:
    return ["stocktake", *orders, "monthly_report"]


async def stocktake(context: Context) -> StateResult:
    await shop_closes.wait()  # holds the only CPU until we let go
    return None


async def work(context: Context) -> StateResult:
    ran.append(context.state_name)
    return None


shop.add_state("open_shop", open_shop, next=["stocktake", *orders, "monthly_report"])
shop.add_state("stocktake", stocktake, resources=ResourceRequirements(cpu_units=1, priority=Priority.CRITICAL))
for name in orders:
    shop.add_state(name, work, resources=ResourceRequirements(cpu_units=1, priority=Priority.HIGH))
shop.add_state("monthly_report", work, resources=ResourceRequirements(cpu_units=1, priority=Priority.LOW))
day = shop.start()
for _ in range(500):  # until all five wait for the CPU (bounded: never hangs)
    if len(one_cpu.get_waiting_states()) == 5:
        break
    await asyncio.sleep(0.01)

# %%
# NBVAL_CHECK_OUTPUT
%fluffy why shop monthly_report
print("admission order:", one_cpu.get_waiting_states())
report = view_of(shop).why_data()["waits"]["monthly_report"]
print("the view says:", report["kind"], "held by", report["holders"])

# %% [markdown]
# Let the stocktake finish: the orders go first, the report last.

# %%
# NBVAL_CHECK_OUTPUT
shop_closes.set()
await day
print("ran in this order:", ran)

# %% [markdown]
# The cure for starvation is **aging**: `ResourcePool(total_cpu=1, aging_interval=0.5)` raises a waiting
# state's priority by one level for every half second it waits, so a `LOW` state eventually overtakes
# new `HIGH` arrivals. For the deadlock: take locks in the same order everywhere (alice's account before
# bob's before carol's), or give the mutex a `ttl`.

# %% [markdown]
# ## Try this
#
# - Raise the pool to `total_cpu=6`. How many jobs run at once now?
# - Change the crawler to `RateLimitStrategy.FIXED_WINDOW` (import it from `fluffy_nb`). Does it take longer?
# - Make the bank transfers lock the two accounts in alphabetical order. Does the red cycle go away?
# - Give the shop's pool `aging_interval=0.01` and add more orders. When does `monthly_report` run now?
# - Next: [08 · Monitoring and metrics](08_monitoring_metrics.ipynb).
