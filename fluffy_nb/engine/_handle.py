"""Background runs: ``Agent.start()`` returns a handle; ``run_sync()`` for scripts.

(Filled in by issue 4.)
"""


class BackgroundMixin:
    """Background-run half of :class:`Agent`."""
