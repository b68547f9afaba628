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
