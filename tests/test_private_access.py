"""No module reaches another object's private fields: views, monitors and magics use public reads.

A private name (``_x``) may be used on ``self``/``cls``, and on other objects only when the
same module defines it (a class and its small helpers living together). Anything else is a
module reaching into another's internals, which the Agent/Run split is meant to end.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "fluffy_nb"

#: private names of other libraries that have no public spelling
ALLOWED = {
    "_repr_mimebundle_", "_repr_html_", "_ipython_display_", "_render_traceback_",  # IPython protocols
    "_asdict", "_replace", "_fields",  # namedtuple's public API
    "_esm", "_css",  # anywidget's front-end fields
}


def _defined_here(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("_"):
            names.add(node.value)  # __slots__ entries
    return names


def _getattr_of_private(node: ast.AST, mine: set[str]) -> bool:
    """``getattr(obj, "_name")`` / ``hasattr(obj, "_name")`` of a private name defined elsewhere."""
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("getattr", "hasattr")):
        return False
    if len(node.args) < 2 or not isinstance(node.args[1], ast.Constant) or not isinstance(node.args[1].value, str):
        return False
    name = node.args[1].value
    return name.startswith("_") and not name.startswith("__") and name not in mine and name not in ALLOWED


def test_no_module_reads_another_objects_private_fields() -> None:
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        mine = _defined_here(tree)
        for node in ast.walk(tree):
            if _getattr_of_private(node, mine):
                offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno} getattr(..., private)")
            if not isinstance(node, ast.Attribute):
                continue
            attr = node.attr
            sunder = attr.endswith("_")  # Enum's documented _value_, _missing_, _value2member_map_
            if not attr.startswith("_") or attr.startswith("__") or sunder or attr in ALLOWED or attr in mine:
                continue
            if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                continue
            offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno} .{attr}")
    assert offenders == []
