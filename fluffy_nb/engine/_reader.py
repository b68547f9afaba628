"""Reading a state function's code for the names it may return (the graph's edges).

With the source at hand (files, notebook cells), the reader parses it and keeps only strings
that can reach a ``return``: literals, lists and tuples of them, both sides of ``x if c else
y``, and local variables assigned such values (also through ``.append``/``.extend`` and
``for`` loops), and what functions defined inside it return (helpers, or states it adds at
run time, as in the spec's chunk loop). A key such as ``ctx.set_state("draft", ...)`` is therefore not mistaken for
an edge to a state called ``draft``. The literal parts of f-strings are kept, so the start
rule can tell that ``f"chunk_{i}"`` leads to ``chunk_0``. A return the reader cannot
resolve (a call, a subscript) contributes every string written inside that expression.

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
    result = set(found)
    for inner in _closure_functions(target):
        result |= state_targets(inner)
    return result


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
        if isinstance(expr, ast.Constant):
            if isinstance(expr.value, str):
                out.add(expr.value)
        elif isinstance(expr, (ast.List, ast.Tuple, ast.Set)):
            for e in expr.elts:
                self._collect(e, out, seen)
        elif isinstance(expr, ast.Starred):
            self._collect(expr.value, out, seen)
        elif isinstance(expr, ast.IfExp):
            self._collect(expr.body, out, seen)
            self._collect(expr.orelse, out, seen)
        elif isinstance(expr, ast.BoolOp):
            for v in expr.values:
                self._collect(v, out, seen)
        elif isinstance(expr, ast.JoinedStr):
            for v in expr.values:
                if isinstance(v, ast.Constant) and isinstance(v.value, str):
                    out.add(v.value)
        elif isinstance(expr, (ast.ListComp, ast.SetComp, ast.GeneratorExp)):
            self._collect(expr.elt, out, seen)
            for gen in expr.generators:
                self._collect(gen.iter, out, seen)
        elif isinstance(expr, ast.Await):
            self._collect(expr.value, out, seen)
        elif isinstance(expr, ast.Name):
            if expr.id not in seen:
                seen.add(expr.id)
                for value in self.assigned.get(expr.id, ()):
                    self._collect(value, out, seen)
        else:
            # a call, subscript, dict...: whatever strings are written inside may come back
            for node in ast.walk(expr):
                if node is expr:
                    continue
                if isinstance(node, ast.Name):
                    self._collect(node, out, seen)
                elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                    out.add(node.value)
