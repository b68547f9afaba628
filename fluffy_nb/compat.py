"""Seed spellings: ``import fluffy_nb.compat`` makes the spec's imports work.

The spec documents say ``from agent import Agent``, ``from agent.coordination import ...``,
``from agent_monitor import agent_monitor`` and ``from fluffy_agent import Agent``. Importing
this module installs a meta-path finder that answers exactly those names with fluffy_nb's
own modules; nothing is installed as a top-level package, so other ``agent`` packages on the
path are only shadowed after you opt in.

Example:
    >>> import fluffy_nb.compat
    >>> from agent import Agent  # the same class as fluffy_nb.Agent
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from types import ModuleType
from typing import Any

ALIASES = {
    "agent": "fluffy_nb",
    "agent.coordination": "fluffy_nb.engine.coordination",
    "agent_monitor": "fluffy_nb.engine.monitoring",
    "fluffy_agent": "fluffy_nb",
    "fluffy_agent.coordination": "fluffy_nb.engine.coordination",
}


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: Any) -> ModuleType:
        return importlib.import_module(self.target)

    def exec_module(self, module: ModuleType) -> None:
        """The target module is already executed."""


class AliasFinder(importlib.abc.MetaPathFinder):
    """Resolves the seed module names to fluffy_nb modules."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        """A spec for an aliased name, else None."""
        real = ALIASES.get(fullname)
        if real is None:
            return None
        return importlib.util.spec_from_loader(fullname, _AliasLoader(real), is_package=True)


def install() -> None:
    """Install the alias finder (idempotent)."""
    if not any(isinstance(f, AliasFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, AliasFinder())


install()
