"""Reading a state function's code for the names it may return (the graph's edges).

With the source at hand (files, notebook cells), the reader parses it and keeps only strings
that can reach a ``return``: literals, lists and tuples of them, both sides of ``x if c else
y``, and local variables assigned such values (also through ``.append``/``.extend`` and
``for`` loops), and what functions defined inside it return (helpers, or states it adds at
run time, as in the spec's chunk loop). A key such as ``ctx.set_state("draft", ...)`` is therefore not mistaken for
an edge to a state called ``draft``. An f-string becomes a *pattern*: its literal parts joined by
:data:`PLACEHOLDER` (``f"chunk_{i}"`` -> ``"chunk_\x00"``), so the start rule can tell that it
may lead to ``chunk_0``. A return the reader cannot resolve (a call, a subscript, a name bound
outside the function) contributes every string written inside that expression, plus
:data:`OPAQUE`: "this state may also return a name nobody can read here".

Without source (``exec``'d code, some lambdas), every string constant of the compiled code
counts: a superset, which is safe for joins. Functions wrapped by decorators or builders are
read through ``__wrapped__`` and their closures. Nothing is executed or imported.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from collections.abc import Callable, Iterator
from types import CodeType
from typing import Any

_CACHE: dict[CodeType, frozenset[str]] = {}
#: stands for the computed parts of an f-string in a pattern
PLACEHOLDER = "\x00"
#: in a state's targets: it may return a name the reader could not see
OPAQUE = PLACEHOLDER


_FREE = PLACEHOLDER + "="  # a name the function reads from outside: resolved per function object


def is_pattern(target: str) -> bool:
    """Whether ``target`` (one of :func:`state_targets`) is a pattern or :data:`OPAQUE`."""
    return PLACEHOLDER in target


def state_targets(func: Callable[..., Any]) -> set[str]:
    """Strings ``func`` may return as next-state names (see the module docstring)."""
    target = _unwrap(func)
    code = _code_of(target)
    if code is None:
        return set()
    found = _CACHE.get(code)
    if found is None:
        parsed = _from_source(target, code)
        found = frozenset(parsed if parsed is not None else _constants(code))
        _CACHE[code] = found
    result: set[str] = set()
    for item in found:
        if item.startswith(_FREE):
            result |= _resolve_free(target, item[len(_FREE):])
        else:
            result.add(item)
    for inner in _closure_functions(target):
        result |= state_targets(inner)
    return result


def _resolve_free(func: Any, name: str) -> set[str]:
    """What a name bound outside ``func`` holds: a closure cell, a parameter default, a global."""
    code = getattr(func, "__code__", None)
    found, value = False, None
    if code is not None and name in code.co_freevars and getattr(func, "__closure__", None):
        try:
            value, found = func.__closure__[code.co_freevars.index(name)].cell_contents, True
        except ValueError:  # an empty cell
            pass
    if not found:
        try:
            param = inspect.signature(func).parameters.get(name)
        except (TypeError, ValueError):
            param = None
        if param is not None and param.default is not param.empty:
            value, found = param.default, True
        elif param is None and name in getattr(func, "__globals__", {}):
            value, found = func.__globals__[name], True
    if found and value is None:
        return set()
    if found and isinstance(value, str):
        return {value}
    if found and isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return set(value)
    return {OPAQUE}


def code_mentions(func: Callable[..., Any], text: str) -> bool:
    """Whether the string constant ``text`` appears anywhere in ``func``'s code (or its closures')."""
    target = _unwrap(func)
    code = _code_of(target)
    if code is not None and text in _constants(code):
        return True
    return any(code_mentions(inner, text) for inner in _closure_functions(target))


def _unwrap(func: Any) -> Any:
    target = getattr(func, "__func__", func)
    return getattr(target, "__wrapped__", target)


def _code_of(target: Any) -> CodeType | None:
    code = getattr(target, "__code__", None)
    if code is None:
        call = getattr(type(target), "__call__", None)  # noqa: B004 - a callable object's method
        code = getattr(call, "__code__", None)
    return code


def _closure_functions(target: Any) -> Iterator[Any]:
    for cell in getattr(target, "__closure__", None) or ():
        try:
            inner = cell.cell_contents
        except ValueError:
            continue
        if callable(inner) and hasattr(inner, "__code__") and inner is not target:
            yield inner


def _constants(code: CodeType) -> set[str]:
    seen: set[str] = set()
    stack = [code]
    while stack:
        c = stack.pop()
        for const in c.co_consts:
            if isinstance(const, str):
                seen.add(const)
            elif isinstance(const, tuple):
                seen.update(x for x in const if isinstance(x, str))
            elif isinstance(const, CodeType):
                stack.append(const)
    return seen


def _from_source(target: Any, code: CodeType) -> set[str] | None:
    try:
        source = textwrap.dedent(inspect.getsource(code))
        tree = ast.parse(source)
    except (OSError, TypeError, SyntaxError, IndentationError, ValueError):
        return None
    node = next(
        (n for n in ast.walk(tree)
         if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == code.co_name),
        None,
    )
    if node is None:
        return None  # a lambda or something the parser cannot pin down: use the constants
    return _Returns(node).names()


class _Returns:
    """Collects what the returns of one function body can evaluate to."""

    def __init__(self, func: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.func = func
        self.assigned: dict[str, list[ast.expr]] = {}
        self.nested: dict[str, ast.FunctionDef | ast.AsyncFunctionDef] = {}
        self.returns: list[ast.expr] = []
        for node in self._own_nodes(func):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                self.nested[node.name] = node
            elif isinstance(node, ast.Return) and node.value is not None:
                self.returns.append(node.value)
            elif isinstance(node, ast.Assign):
                for t in node.targets:
                    self._bind(t, node.value)
            elif isinstance(node, (ast.AnnAssign, ast.AugAssign)) and node.value is not None:
                self._bind(node.target, node.value)
            elif isinstance(node, (ast.For, ast.AsyncFor)):
                self._bind(node.target, node.iter)
            elif isinstance(node, ast.NamedExpr):
                self._bind(node.target, node.value)
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("append", "extend", "add", "insert", "update")
                and isinstance(node.func.value, ast.Name)
            ):
                for arg in node.args:
                    self.assigned.setdefault(node.func.value.id, []).append(arg)

    def _own_nodes(self, func: ast.AST) -> Iterator[ast.AST]:
        """Nodes of this function's body, not of functions or classes nested in it."""
        stack = list(ast.iter_child_nodes(func))
        while stack:
            node = stack.pop()
            yield node
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
                stack.extend(ast.iter_child_nodes(node))

    def _bind(self, target: ast.expr, value: ast.expr) -> None:
        if isinstance(target, ast.Name):
            self.assigned.setdefault(target.id, []).append(value)
        elif isinstance(target, (ast.Tuple, ast.List)):
            for t in target.elts:
                self._bind(t, value)

    def names(self) -> set[str]:
        out: set[str] = set()
        seen: set[str] = set()
        for value in self.returns:
            self._collect(value, out, seen)
        for helper in self.nested.values():
            # functions defined in a state are often states it adds at run time (the spec's
            # chunk loop): where they lead is reachable from here
            out |= _Returns(helper).names()
        return out

    def _collect(self, expr: ast.AST, out: set[str], seen: set[str]) -> None:
        parts = self._parts(expr)
        if parts is not None:
            for part in parts:
                self._collect(part, out, seen)
        elif isinstance(expr, ast.Constant):
            if isinstance(expr.value, str):
                out.add(expr.value)
        elif isinstance(expr, ast.JoinedStr):
            out.add("".join(v.value if isinstance(v, ast.Constant) and isinstance(v.value, str) else PLACEHOLDER
                            for v in expr.values))
        elif isinstance(expr, ast.Name):
            self._collect_name(expr.id, out, seen)
        else:
            # a call, subscript, dict...: whatever strings are written inside may come back;
            # with none written there, it may return any name (OPAQUE)
            found: set[str] = set()
            for node in ast.walk(expr):
                if isinstance(node, ast.Name):
                    self._collect_name(node.id, found, seen)
                elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                    found.add(node.value)
            out |= found or {OPAQUE}

    @staticmethod
    def _parts(expr: ast.AST) -> list[ast.expr] | None:
        """The sub-expressions whose values ``expr`` may evaluate to (None: not a container)."""
        if isinstance(expr, (ast.List, ast.Tuple, ast.Set)):
            return list(expr.elts)
        if isinstance(expr, (ast.Starred, ast.Await)):
            return [expr.value]
        if isinstance(expr, ast.IfExp):
            return [expr.body, expr.orelse]
        if isinstance(expr, ast.BoolOp):
            return list(expr.values)
        if isinstance(expr, (ast.ListComp, ast.SetComp, ast.GeneratorExp)):
            bound = {g.target.id: g.iter for g in expr.generators if isinstance(g.target, ast.Name)}
            elt = expr.elt
            if isinstance(elt, ast.Name) and elt.id in bound:
                return [bound[elt.id]]  # [n for n in names]: the names
            return [elt]
        return None

    def _collect_name(self, name: str, out: set[str], seen: set[str]) -> None:
        if name in seen:
            return
        seen.add(name)
        values = self.assigned.get(name)
        if not values:
            out.add(_FREE + name)  # a parameter, closure variable or global
        for value in values or ():
            self._collect(value, out, seen)
