"""Context: shared plain values, typed values (dataclasses, pydantic), attribute access."""

from __future__ import annotations

from dataclasses import dataclass

import pydantic
import pytest

from fluffy_nb import Agent, Context, TypedContextData, TypedDataError


@dataclass
class Point(TypedContextData):
    x: int
    y: int


class Order(pydantic.BaseModel):
    id: str
    qty: int


def test_plain_values_set_get_default_remove_has():
    ctx = Context()
    ctx.set_state("a", [1, 2])
    assert ctx.get_state("a") == [1, 2]
    assert ctx.get_state("missing") is None
    assert ctx.get_state("missing", default=0) == 0
    assert ctx.has_state("a")
    assert ctx.remove_state("a") is True
    assert ctx.remove_state("a") is False
    assert not ctx.has_state("a")


def test_attribute_access_reads_and_writes_shared_values():
    ctx = Context()
    ctx.result = 42
    assert ctx.get_state("result") == 42
    assert ctx.result == 42
    assert hasattr(ctx, "result")
    assert not hasattr(ctx, "input_data")
    del ctx.result
    assert not ctx.has_state("result")
    with pytest.raises(AttributeError):
        del ctx.result


def test_short_underscore_names_are_values_like_any_other():
    ctx = Context()
    for name in ("_c", "_shared", "_run", "_x"):
        setattr(ctx, name, name.upper())
        assert getattr(ctx, name) == name.upper()
        assert ctx.get_state(name) == name.upper()


def test_typed_dataclass_set_update_get():
    ctx = Context()
    ctx.set_typed("p", Point(1, 2))
    updated = ctx.update_typed("p", y=5)
    assert updated == Point(1, 5)
    assert ctx.get_typed("p", Point) == Point(1, 5)
    assert ctx.has_typed("p")


def test_get_typed_with_the_wrong_type_is_a_clear_typed_data_error():
    ctx = Context()
    ctx.set_typed("p", Point(1, 2))
    with pytest.raises(TypedDataError) as info:
        ctx.get_typed("p", Order)
    msg = str(info.value)
    assert "'p'" in msg
    assert "Point" in msg
    assert "Order" in msg


def test_get_typed_of_a_missing_key_says_how_to_store_one():
    with pytest.raises(TypedDataError, match="set_typed"):
        Context().get_typed("nothing", Point)


def test_set_typed_refuses_plain_values_and_classes():
    ctx = Context()
    with pytest.raises(TypedDataError, match="set_state"):
        ctx.set_typed("n", 3)
    with pytest.raises(TypedDataError):
        ctx.set_typed("cls", Point)


def test_update_typed_refuses_unknown_fields_and_missing_keys():
    ctx = Context()
    ctx.set_typed("p", Point(1, 2))
    with pytest.raises(TypedDataError, match="'z'"):
        ctx.update_typed("p", z=1)
    with pytest.raises(TypedDataError, match="'q'"):
        ctx.update_typed("q", x=1)


def test_pydantic_models_are_validated_on_update():
    ctx = Context()
    ctx.set_typed("o", Order(id="a", qty=1))
    assert ctx.update_typed("o", qty="7").qty == 7
    with pytest.raises(TypedDataError, match=r"field 'qty' of Order got 'many' \(str\)") as info:
        ctx.update_typed("o", qty="many")  # the same typed error as a dataclass, pydantic's as its cause
    assert isinstance(info.value.__cause__, pydantic.ValidationError)
    with pytest.raises(TypedDataError, match="'price'"):
        ctx.update_typed("o", price=3)
    assert ctx.get_typed("o", Order) == Order(id="a", qty=7)


async def test_parallel_states_share_one_context_and_see_each_others_writes():
    async def fan(ctx):
        ctx.set_state("shared", [])
        return ["a", "b"]

    async def a(ctx):
        ctx.get_state("shared").append("a")
        ctx.set_typed("from_a", Point(1, 1))
        return "join"

    async def b(ctx):
        ctx.get_state("shared").append("b")
        return "join"

    seen = {}

    async def join(ctx):
        seen["shared"] = sorted(ctx.get_state("shared"))
        seen["typed"] = ctx.get_typed("from_a", Point)
        seen["state_name"] = ctx.state_name
        return None

    agent = Agent("share")
    for f in (fan, a, b, join):
        agent.add_state(f.__name__, f)
    await agent.run()
    assert seen == {"shared": ["a", "b"], "typed": Point(1, 1), "state_name": "join"}


async def test_agent_set_state_before_run_is_an_input_and_context_shows_the_result():
    async def double(ctx):
        ctx.set_state("out", ctx.get_state("inp") * 2)
        return None

    agent = Agent("inputs")
    agent.set_state("inp", 21)
    agent.add_state("double", double)
    await agent.run()
    assert agent.context.get_state("out") == 42
    assert agent.get_state("out") == 42
    assert "out" in repr(agent.context)


def test_dataclass_typed_values_are_type_checked_like_pydantic_ones():
    """Spec: typed context data is shared 'with full type safety'; a dataclass field refuses a
    value of another type on set_typed and update_typed, as a pydantic model does."""
    ctx = Context()
    ctx.set_typed("p", Point(1, 2))
    with pytest.raises(TypedDataError, match=r"field 'x' of Point must be int, got 'many' \(str\)"):
        ctx.update_typed("p", x="many")
    assert ctx.update_typed("p", y="7").y == 7  # coerced, as pydantic does
    with pytest.raises(TypedDataError, match=r"set_typed\('q', \.\.\.\): field 'y' of Point must be int"):
        ctx.set_typed("q", Point(1, "2"))
    assert not ctx.has_typed("q")
    assert ctx.get_typed("p", Point) == Point(1, 7)
