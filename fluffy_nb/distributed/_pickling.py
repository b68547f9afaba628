"""Sending a state body and its context snapshot to a worker, with errors that say why not.

Bodies are pickled with cloudpickle, so functions and classes defined in a notebook
(``__main__``) or in closures travel by value. :func:`register_by_value` does the same for a
module only the notebook machine has (a helper ``.py`` beside the notebook).

When something cannot be pickled, the error names the state and the captured object (a
closure variable, a global the body reads, a default argument, the ``self`` of a bound
method) or, for the snapshot, the context key.
"""

from __future__ import annotations

import functools
import inspect
import types
from collections.abc import Iterator
from typing import Any

import cloudpickle

from ..engine._errors import FluffyError


class UnpicklableStateError(FluffyError, TypeError):
    """A state body (or its context snapshot) cannot be sent to a Dask worker.

    Attributes:
        state: The state's name.
        captured: What could not be pickled (``"lock"``, ``"self"``, ``"context key 'db'"``).
    """

    def __init__(self, message: str, state: str, captured: str) -> None:
        super().__init__(message)
        self.state = state
        self.captured = captured

    def __reduce__(self) -> tuple[Any, ...]:  # raised on workers too: must survive pickling
        return (type(self), (str(self), self.state, self.captured))


def register_by_value(module: types.ModuleType | str) -> None:
    """Pickle ``module``'s functions and classes by value (for modules workers cannot import).

    Example:
        >>> import colorsys  # stands in for my_helpers.py beside the notebook
        >>> register_by_value(colorsys)  # now pickled by value: workers need not import it
    """
    if isinstance(module, str):
        import importlib

        module = importlib.import_module(module)
    cloudpickle.register_pickle_by_value(module)


def dumps_body(state: str, func: Any) -> bytes:
    """cloudpickle ``func``; on failure raise :class:`UnpicklableStateError` naming the capture."""
    try:
        return cloudpickle.dumps(func)
    except Exception as exc:
        label, culprit, error = _find_culprit(func, exc)
        raise UnpicklableStateError(
            f"state {state!r} cannot run on Dask: its body captures {label} "
            f"({type(culprit).__name__}), which cannot be pickled ({type(error).__name__}: {error}). "
            f"Create it inside the function, pass plain data through the context, or keep the "
            f"state local (drop executor=/remote=)",
            state,
            label,
        ) from exc


def dumps_snapshot(state: str, shared: dict[str, Any], typed: dict[str, Any]) -> bytes:
    """cloudpickle the context snapshot; on failure name the key that cannot travel."""
    try:
        return cloudpickle.dumps((shared, typed))
    except Exception as exc:
        for kind, data in (("context key", shared), ("typed key", typed)):
            for key, value in data.items():
                error = _pickle_error(value)
                if error is not None:
                    raise UnpicklableStateError(
                        f"state {state!r} cannot run on Dask: {kind} {key!r} holds a "
                        f"{type(value).__name__}, which cannot be pickled ({type(error).__name__}: "
                        f"{error}). Store plain data in the context, or keep the state local",
                        state,
                        f"{kind} {key!r}",
                    ) from exc
        raise UnpicklableStateError(
            f"state {state!r} cannot run on Dask: its context cannot be pickled ({exc})", state, "context"
        ) from exc


def _pickle_error(obj: Any) -> Exception | None:
    try:
        cloudpickle.dumps(obj)
    except Exception as exc:
        return exc
    return None


def _find_culprit(func: Any, default_error: Exception, depth: int = 0) -> tuple[str, Any, Exception]:
    """(label, object, error) of the first capture of ``func`` that cannot be pickled."""
    for label, obj in _captures(func):
        error = _pickle_error(obj)
        if error is None:
            continue
        if depth < 3 and (inspect.isfunction(obj) or inspect.ismethod(obj) or isinstance(obj, functools.partial)):
            inner, culprit, inner_error = _find_culprit(obj, error, depth + 1)
            if culprit is not obj:
                return f"{label} -> {inner}", culprit, inner_error
        return label, obj, error
    return "the function itself", func, default_error


def _captures(func: Any) -> Iterator[tuple[str, Any]]:
    if inspect.ismethod(func):
        yield "the bound method's self", func.__self__
        func = func.__func__
    if isinstance(func, functools.partial):
        yield from ((f"partial argument {i}", a) for i, a in enumerate(func.args))
        yield from ((f"partial argument {k}", v) for k, v in func.keywords.items())
        func = func.func
    code = getattr(func, "__code__", None)
    if code is None:
        if not inspect.isroutine(func):
            yield from ((f"attribute {k}", v) for k, v in getattr(func, "__dict__", {}).items())
        return
    for name, cell in zip(code.co_freevars, func.__closure__ or (), strict=False):
        try:
            yield f"closure variable {name!r}", cell.cell_contents
        except ValueError:  # empty cell
            continue
    glb = getattr(func, "__globals__", {})
    for name in sorted(_global_names(code)):
        if name in glb:
            yield f"global {name!r}", glb[name]
    for i, value in enumerate(func.__defaults__ or ()):
        yield f"default argument {i}", value
    yield from ((f"default argument {k}", v) for k, v in (func.__kwdefaults__ or {}).items())


def _global_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _global_names(const)
    return names
