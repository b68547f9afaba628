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
