"""The ``add_state`` options a Dask state may carry, and their checks.

``workers=`` (an address, name or list of them) and ``allow_other_workers=`` pass to
``client.submit``; ``annotations=`` (a dict) to ``dask.annotate`` around it. The engine
refuses any other unknown option at ``add_state``, so a misspelling never runs silently.
"""

from __future__ import annotations

from typing import Any

from ..engine._errors import ConfigurationError

STATE_OPTIONS = frozenset({"workers", "allow_other_workers", "annotations"})


def check_options(spec: Any) -> None:
    """Raise :class:`ConfigurationError` for a Dask option of the wrong type."""
    opts = spec.options
    workers = opts.get("workers")
    if workers is not None and not (isinstance(workers, str) or (
            isinstance(workers, (list, tuple, set, frozenset)) and all(isinstance(w, str) for w in workers))):
        raise ConfigurationError(f"add_state({spec.name!r}, workers={workers!r}): give a worker address or "
                                 "name, or a list of them")
    if opts.get("allow_other_workers") and workers is None:
        raise ConfigurationError(f"add_state({spec.name!r}, allow_other_workers=True) needs workers=[...]")
    annotations = opts.get("annotations")
    if annotations is not None and not (isinstance(annotations, dict)
                                        and all(isinstance(k, str) for k in annotations)):
        raise ConfigurationError(f"add_state({spec.name!r}, annotations={annotations!r}): give a dict, e.g. "
                                 "{'retries': 0} as for dask.annotate")
