"""Event records: frozen, comparable, and usable with the dataclasses functions subscribers call."""

from __future__ import annotations

import copy
import dataclasses
import pickle

import pytest

from fluffy_nb import Agent, StateFailedError
from fluffy_nb.engine import _events
from fluffy_nb.engine._events import Event, RunStarted, StateFailed, StateFinished

EVENT_CLASSES = [c for c in vars(_events).values() if isinstance(c, type) and issubclass(c, Event)]


async def _events_of_a_run() -> list[Event]:
    async def first(ctx):
        return "second"

    async def second(ctx):
        raise ValueError("boom")

    agent = Agent("records")
    agent.add_state("first", first)
    agent.add_state("second", second)
    seen: list[Event] = []
    agent.events.subscribe(seen.append)
    with pytest.raises(StateFailedError):
        await agent.run()
    return seen


async def test_events_a_subscriber_receives_work_with_the_dataclasses_functions():
    seen = await _events_of_a_run()
    finished = next(e for e in seen if isinstance(e, StateFinished))
    assert dataclasses.is_dataclass(finished)
    assert dataclasses.asdict(finished) == {
        "agent": "records", "run_id": finished.run_id, "time": finished.time, "state": "first", "attempt": 1,
        "duration": finished.duration, "next_states": ("second",)}
    renamed = dataclasses.replace(finished, state="parent/first")
    assert (type(renamed), renamed.state, renamed.next_states) == (StateFinished, "parent/first", ("second",))
    assert renamed != finished
    assert [f.name for f in dataclasses.fields(StateFinished)] == list(StateFinished.__match_args__)


async def test_events_are_frozen_hashable_values_that_survive_pickle_and_copy():
    seen = await _events_of_a_run()
    for event in seen:
        with pytest.raises(dataclasses.FrozenInstanceError, match="agent"):
            event.agent = "other"  # type: ignore[misc]
        with pytest.raises(AttributeError):
            event.extra = 1  # type: ignore[attr-defined]
        assert pickle.loads(pickle.dumps(event)) == event
        assert copy.deepcopy(event) == event
        assert hash(copy.copy(event)) == hash(event)
    assert len(set(seen)) == len({repr(e) for e in seen})


async def test_a_failure_event_carries_its_exception_outside_equality_and_repr():
    failed = next(e for e in await _events_of_a_run() if isinstance(e, StateFailed))
    assert isinstance(failed.exception, ValueError)
    assert failed == dataclasses.replace(failed, exception=None)
    assert "exception" not in repr(failed)
    assert "error='boom'" in repr(failed)
    field = next(f for f in dataclasses.fields(failed) if f.name == "exception")
    assert (field.compare, field.repr) == (False, False)


def test_event_repr_and_equality_read_like_a_dataclass():
    event = RunStarted("a", "r1", 0.5, ("start",))
    assert repr(event) == "RunStarted(agent='a', run_id='r1', time=0.5, states=('start',))"
    assert event == RunStarted(agent="a", run_id="r1", time=0.5, states=("start",))
    assert event != RunStarted("a", "r1", 0.5)
    assert event != ("a", "r1", 0.5, ("start",))
    match event:
        case RunStarted(agent, _, _, states):
            assert (agent, states) == ("a", ("start",))


@pytest.mark.parametrize("cls", EVENT_CLASSES, ids=lambda c: c.__name__)
def test_every_event_lists_its_init_arguments_as_fields_with_their_defaults(cls: type[Event]) -> None:
    fields = dataclasses.fields(cls)
    defaults = cls.__init__.__defaults__ or ()
    assert [f.name for f in fields] == list(cls.__match_args__)
    assert [f.default for f in fields[len(fields) - len(defaults):]] == list(defaults)
    event = cls("a", "r", 1.0)
    assert dataclasses.asdict(event) == {f.name: getattr(event, f.name) for f in fields}


def test_an_event_whose_slots_do_not_match_its_init_is_refused_at_definition():
    with pytest.raises(TypeError, match=r"Mismatched.__init__ takes .*'state'.* but its slots are"):
        class Mismatched(Event):
            __slots__ = ("stat",)

            def __init__(self, agent: str, run_id: str, time: float, state: str = "") -> None:
                super().__init__(agent, run_id, time)


def test_a_users_own_event_can_subclass_one_as_a_frozen_dataclass():
    @dataclasses.dataclass(frozen=True)
    class Noted(StateFinished):
        note: str = ""

    seen: list[Event] = []
    bus = _events.EventBus()
    bus.subscribe(seen.append)
    bus.publish(Noted("a", "r1", 0.5, "s", note="hi"))
    assert seen == [Noted("a", "r1", 0.5, "s", 1, 0.0, (), "hi")]
    assert dataclasses.asdict(seen[0])["note"] == "hi"
    assert "<locals>.Noted(agent='a', run_id='r1'" in repr(seen[0])
    with pytest.raises(dataclasses.FrozenInstanceError):
        seen[0].note = "changed"  # type: ignore[misc]


def test_a_subscriber_naming_its_kinds_gets_only_those_in_the_common_order():
    from fluffy_nb import ConfigurationError
    from fluffy_nb.engine._events import StateAdded, StateStarted

    @dataclasses.dataclass(frozen=True)
    class Noted(StateFinished):
        note: str = ""

    bus = _events.EventBus()
    everything: list[Event] = []
    finished: list[Event] = []
    bus.subscribe(everything.append)
    leave = bus.subscribe(finished.append, types=[StateFinished])
    assert (bus.wants(StateFinished), bus.wants(Noted), bus.wants(StateStarted)) == (True, True, True)
    sent = [StateStarted("a", "r", 0.0, "s"), StateFinished("a", "r", 0.1, "s"), Noted("a", "r", 0.2, "t", note="n"),
            StateAdded("a", "r", 0.3, "u")]
    for event in sent:
        bus.publish(event)
    assert everything == sent
    assert finished == sent[1:3]  # a subclass of a kind named counts as that kind
    leave()
    bus.publish(StateFinished("a", "r", 0.4, "v"))
    assert (len(finished), len(everything)) == (2, 5)

    only = _events.EventBus()
    only.subscribe(finished.append, types=(StateFinished,))
    assert (only.active, only.wants(StateFinished), only.wants(StateStarted)) == (True, True, False)
    with pytest.raises(ConfigurationError, match=r"'StateFinished' is not an event class"):
        only.subscribe(finished.append, types=["StateFinished"])  # type: ignore[list-item]


async def test_a_child_runs_bus_wants_what_its_own_or_the_parents_subscribers_read():
    from fluffy_nb.engine._events import StateScheduled
    from fluffy_nb.engine._subflow import ChildBus

    async def only(ctx):
        return None

    parent = Agent("parent")
    parent.add_state("only", only)
    handle = parent.start()
    own = _events.EventBus()
    bus = ChildBus(own, handle.run, "research")
    assert (bus.wants(StateFinished), bus.wants(RunStarted)) == (False, False)
    parent.events.subscribe(lambda e: None, types=(StateFinished, RunStarted))
    assert bus.wants(StateFinished)  # renamed research/<state> on the parent's bus
    assert not bus.wants(RunStarted)  # a child's run-level events stay on its own bus
    assert not bus.wants(StateScheduled)
    own.subscribe(lambda e: None, types=(RunStarted,))
    assert bus.wants(RunStarted)
    await handle
