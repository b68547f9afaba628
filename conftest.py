"""Names the package's docstring examples use without importing them (pytest --doctest-modules)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import fluffy_nb


@pytest.fixture(autouse=True)
def _doctest_names(doctest_namespace: dict[str, Any]) -> None:
    doctest_namespace.update({name: getattr(fluffy_nb, name) for name in fluffy_nb.__all__})
    doctest_namespace["asyncio"] = asyncio
