"""The engine and the stores never import Jupyter, plotting or dataframe libraries."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

FORBIDDEN = ("IPython", "ipywidgets", "ipykernel", "plotly", "pandas")
PACKAGE = Path(__file__).resolve().parents[1] / "fluffy_nb"


@pytest.mark.parametrize("module", ["fluffy_nb.engine", "fluffy_nb.store", "fluffy_nb"])
def test_importing_lower_layers_loads_no_notebook_libraries(module: str) -> None:
    code = (
        f"import sys, json; import {module}; "
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


@pytest.mark.parametrize("layer", ["engine", "store"])
def test_lower_layers_have_no_import_of_notebook_libraries_anywhere(layer: str) -> None:
    offenders = []
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.ImportFrom) and node.level and node.module:
                names = [f"fluffy_nb.{node.module}"] if node.level > 1 else []
            for name in names:
                root = name.split(".")[0]
                if root in FORBIDDEN or name.startswith(("fluffy_nb.notebook", "notebook")):
                    offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno} imports {name}")
    assert offenders == []


def test_importing_fluffy_nb_loads_no_observability_backend() -> None:
    """OpenTelemetry and prometheus_client are optional: only fluffy_nb.otel / .prometheus import them."""
    code = (
        "import sys, json; import fluffy_nb, fluffy_nb.engine.monitoring; "
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('opentelemetry', 'prometheus_client'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


@pytest.mark.parametrize("layer", ["engine", "store", "distributed"])
def test_only_the_integration_modules_import_observability_backends(layer: str) -> None:
    offenders = []
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else [])
            offenders += [f"{path.relative_to(PACKAGE)}:{node.lineno} imports {n}" for n in names
                          if n.split(".")[0] in ("opentelemetry", "prometheus_client")]
    assert offenders == []


HEAVY = ("pydantic", "pydantic_core", "networkx", "pandas")


def test_importing_the_engine_loads_neither_pydantic_nor_networkx_nor_pandas() -> None:
    """pydantic comes with the first checkpoint, networkx with the first deadlock check."""
    code = (
        "import sys, json; import fluffy_nb.engine; "
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})))"
    )
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True,
                         check=True)
    assert json.loads(out.stdout) == []
    imported = {line.rsplit("|", 1)[-1].strip() for line in out.stderr.splitlines() if "|" in line}
    assert "fluffy_nb.engine._agent" in imported  # the report is real: it lists the engine's modules
    assert sorted(m for m in imported if m.split(".")[0] in HEAVY) == []


def test_the_checkpoint_model_loads_on_first_use() -> None:
    """``fluffy_nb.Checkpoint`` still resolves, and a first checkpoint brings pydantic in."""
    code = (
        "import sys, json, fluffy_nb\n"
        "from fluffy_nb import Agent, StateResult\n"
        "async def only(ctx):\n    ctx.set_variable('n', 1)\n"
        "a = Agent('lazy'); a.add_state('only', only)\n"
        "before = 'pydantic' in sys.modules\n"
        "cp = a.create_checkpoint()\n"
        "print(json.dumps([before, 'pydantic' in sys.modules, type(cp) is fluffy_nb.Checkpoint,"
        " fluffy_nb.engine.FORMAT_VERSION == cp.format_version]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == [False, True, True, True]


#: loaded when first used, not with ``import fluffy_nb`` (or ``fluffy_nb.engine``)
LAZY = ("fluffy_nb.store", "fluffy_nb.engine.monitoring", "fluffy_nb.engine.reliability", "sqlite3", "datetime",
        "decimal", "uuid", "platform", "random", "json", "difflib", "fluffy_nb.engine.coordination",
        "fluffy_nb.engine._snapshot", "fluffy_nb.engine._why", "fluffy_nb.engine._history")


@pytest.mark.parametrize("module", ["fluffy_nb.engine", "fluffy_nb"])
def test_importing_the_package_loads_no_store_monitoring_or_codec_modules(module: str) -> None:
    """The stores, monitoring, reliability, coordination, snapshots (and their wait reasons), checkpoint
    history and diff, the codec's datetime/Decimal/UUID, and the run ids' uuid (with platform), retry
    jitter's random, checkpoint reading's json and the option hints' difflib come with their first use."""
    code = (f"import sys; import {module}; loaded = sorted(m for m in {LAZY!r} if m in sys.modules); "
            "import json; print(json.dumps(loaded))")  # json is on the list: imported after the look
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_lazy_names_resolve_and_match_their_modules() -> None:
    """``fluffy_nb.SQLiteStore`` and the like import their module on first use; the lazy name lists are
    exactly those modules' ``__all__``, and a star import still brings every public name."""
    code = (
        "import sys, json, fluffy_nb, importlib\n"
        "before = 'fluffy_nb.store' in sys.modules\n"
        "store = fluffy_nb.SQLiteStore\n"
        "ns = {}\n"
        "exec('from fluffy_nb import *', ns)\n"
        "lists = {m: sorted(n) == sorted(importlib.import_module(m).__all__)\n"
        "         for m, n in fluffy_nb.LAZY_MODULES.items()}\n"
        "print(json.dumps([before, store.__module__, lists, sorted(set(fluffy_nb.__all__) - set(ns)),"
        " 'agent_monitor' in dir(fluffy_nb)]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    before, module, lists, missing, listed = json.loads(out.stdout)
    assert (before, module, missing, listed) == (False, "fluffy_nb.store._sqlite", [], True)
    assert lists == {"fluffy_nb.engine.coordination": True, "fluffy_nb.engine.monitoring": True,
                     "fluffy_nb.engine.reliability": True, "fluffy_nb.store": True}


def test_a_checkpoint_interval_without_a_store_still_gets_a_memory_store() -> None:
    """The engine's memory-store hook imports the stores when an agent first needs one."""
    code = (
        "import sys, json, fluffy_nb\n"
        "a = fluffy_nb.Agent('interval', checkpoint_interval=5)\n"
        "print(json.dumps([type(a.store).__name__, 'fluffy_nb.store' in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == ["MemoryStore", True]


#: imported on its own in a fresh interpreter (the package ``__init__`` files skipped), each engine module
#: on the left loads none of the modules on the right: they cost import time and are needed only later
NOT_AT_IMPORT = {
    "fluffy_nb.engine._events": ("dataclasses", "inspect"),  # 18 event classes, no generated methods
}


@pytest.mark.parametrize("module", sorted(NOT_AT_IMPORT))
def test_engine_modules_leave_what_they_need_later_unimported(module: str) -> None:
    code = (
        "import importlib, json, sys, types\n"
        f"for name, path in (('fluffy_nb', {str(PACKAGE)!r}), ('fluffy_nb.engine', {str(PACKAGE / 'engine')!r})):\n"
        "    sys.modules[name] = package = types.ModuleType(name)\n"
        "    package.__path__ = [path]\n"
        f"importlib.import_module({module!r})\n"
        f"print(json.dumps([sorted(sys.modules), sorted(m for m in {NOT_AT_IMPORT[module]!r} if m in sys.modules)]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded, unwanted = json.loads(out.stdout)
    assert module in loaded
    assert "fluffy_nb.engine._agent" not in loaded  # the module alone, not the engine
    assert unwanted == []


def test_a_plain_run_loads_no_coordination_and_a_first_use_does() -> None:
    """Coordination and snapshots stay unloaded through a run that uses neither; each name of the lazy
    coordination package resolves to the class of its module."""
    code = (
        "import asyncio, sys, json, fluffy_nb\n"
        "async def first(ctx):\n    return 'second'\n"
        "async def second(ctx):\n    ctx.set_state('done', True)\n"
        "a = fluffy_nb.Agent('plain'); a.add_state('first', first); a.add_state('second', second)\n"
        "result = asyncio.run(a.run())\n"
        "loaded = lambda: sorted(m for m in sys.modules if m.startswith(('fluffy_nb.engine.coordination',"
        " 'fluffy_nb.engine._snapshot')))\n"
        "after_run = loaded()\n"
        "mutex = a.add_state_coordination('second', fluffy_nb.PrimitiveType.MUTEX)\n"
        "import fluffy_nb.engine.coordination as c\n"
        "wrong = [n for n in c.__all__ if not getattr(c, n).__module__.startswith(c.__name__ + '._')]\n"
        "print(json.dumps([result.get_state('done'), after_run, type(mutex).__name__, wrong,"
        " 'fluffy_nb.engine.coordination._primitives' in loaded(), sorted(dir(c)) == sorted({*dir(c), *c.__all__})]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == [True, [], "Mutex", [], True, True]
