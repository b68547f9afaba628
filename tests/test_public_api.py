"""Every public name imports, has a docstring, and the seed spellings keep working."""

from __future__ import annotations

import importlib
import inspect

import fluffy_nb


def test_every_name_in_all_is_importable() -> None:
    missing = [name for name in fluffy_nb.__all__ if not hasattr(fluffy_nb, name)]
    assert missing == []


def test_public_classes_and_functions_have_docstrings() -> None:
    undocumented = []
    for name in fluffy_nb.__all__:
        obj = getattr(fluffy_nb, name)
        if (inspect.isclass(obj) or inspect.isfunction(obj)) and not (obj.__doc__ or "").strip():
            undocumented.append(name)
    assert undocumented == []


def test_seed_module_spellings_resolve_to_fluffy_nb() -> None:
    import fluffy_nb.compat  # installs the aliases

    agent_mod = importlib.import_module("agent")
    assert agent_mod.Agent is fluffy_nb.Agent
    assert importlib.import_module("fluffy_agent").Agent is fluffy_nb.Agent
    coordination = importlib.import_module("agent.coordination")
    assert coordination is importlib.import_module("fluffy_nb.engine.coordination")
    monitor = importlib.import_module("agent_monitor")
    assert monitor is importlib.import_module("fluffy_nb.engine.monitoring")
