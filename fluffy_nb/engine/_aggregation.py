"""Metric aggregations: one series of numbers as count, sum, avg, min, max, current, p50/p95/p99."""

from __future__ import annotations

import math
from collections import deque

_WINDOW = 10_000


class MetricAggregation:
    """Running statistics of one metric.

    ``count``, ``sum``, ``min`` and ``max`` cover every value ever added; percentiles are over
    the most recent 10,000 (linear interpolation between closest ranks). Empty: all zero.

    Example:
        >>> m = MetricAggregation()
        >>> for v in (10, 20, 30, 40):
        ...     m.add(v)
        >>> m.avg, m.p50, m.current
        (25.0, 25.0, 40.0)
    """

    __slots__ = ("_cached", "_recent", "_sorted", "count", "current", "max", "min", "sum")

    def __init__(self) -> None:
        self.count = 0
        self.sum = 0.0
        self.min = 0.0
        self.max = 0.0
        self.current = 0.0
        self._recent: deque[float] = deque(maxlen=_WINDOW)
        self._sorted: list[float] | None = None
        self._cached: dict[str, float] | None = None

    def add(self, value: float) -> None:
        """Record one value."""
        v = float(value)
        if v != v:  # NaN
            return
        if self.count == 0:
            self.min = self.max = v
        elif v < self.min:
            self.min = v
        elif v > self.max:
            self.max = v
        self.count += 1
        self.sum += v
        self.current = v
        self._recent.append(v)
        self._sorted = None
        self._cached = None

    @property
    def avg(self) -> float:
        """Mean of all values (0.0 when empty)."""
        return self.sum / self.count if self.count else 0.0

    def percentile(self, q: float) -> float:
        """The ``q``-th percentile (0-100) of the recent values."""
        recent = self._recent
        if len(recent) < 2:
            return recent[0] if recent else 0.0
        if self._sorted is None:
            self._sorted = sorted(self._recent)
        data = self._sorted
        pos = (len(data) - 1) * q / 100.0
        lo = math.floor(pos)
        hi = min(lo + 1, len(data) - 1)
        return data[lo] + (data[hi] - data[lo]) * (pos - lo)

    @property
    def p50(self) -> float:
        """Median."""
        return self.percentile(50)

    @property
    def p95(self) -> float:
        """95th percentile."""
        return self.percentile(95)

    @property
    def p99(self) -> float:
        """99th percentile."""
        return self.percentile(99)

    def merge(self, other: MetricAggregation) -> None:
        """Fold ``other``'s values into this one (exact for count/sum/min/max)."""
        if other.count == 0:
            return
        if self.count == 0:
            self.min, self.max = other.min, other.max
        else:
            self.min, self.max = min(self.min, other.min), max(self.max, other.max)
        self.count += other.count
        self.sum += other.sum
        self.current = other.current
        self._recent.extend(other._recent)
        self._sorted = None
        self._cached = None

    def to_dict(self) -> dict[str, float]:
        """``count, sum, avg, min, max, current, p50, p95, p99`` as a plain dict (a fresh copy)."""
        cached = self._cached
        if cached is None:
            cached = self._cached = {
                "count": self.count, "sum": self.sum, "avg": self.avg, "min": self.min, "max": self.max,
                "current": self.current, "p50": self.p50, "p95": self.p95, "p99": self.p99,
            }
        return dict(cached)

    def __repr__(self) -> str:
        return (f"MetricAggregation(count={self.count}, avg={self.avg:.4g}, min={self.min:.4g}, "
                f"max={self.max:.4g}, p95={self.p95:.4g})")


class Tally(MetricAggregation):
    """A :class:`MetricAggregation` of 0/1 values kept as two counts: counters and success rates.

    ``add(1)`` counts an occurrence, ``add(0)`` a non-occurrence; the statistics are exact.
    """

    __slots__ = ("ones", "zeros")

    def __init__(self) -> None:
        super().__init__()
        self.ones = 0
        self.zeros = 0

    def add(self, value: float) -> None:
        """Record a 1 (truthy) or a 0."""
        self._cached = None
        if value:
            self.ones += 1
            self.current = 1.0
        else:
            self.zeros += 1
            self.current = 0.0

    def _sync(self) -> None:
        self.count = self.ones + self.zeros
        self.sum = float(self.ones)
        self.min = 0.0 if self.zeros or not self.ones else 1.0
        self.max = 1.0 if self.ones else 0.0

    @property
    def avg(self) -> float:
        """Share of ones."""
        n = self.ones + self.zeros
        return self.ones / n if n else 0.0

    def percentile(self, q: float) -> float:
        """Exact percentile of ``zeros`` zeros followed by ``ones`` ones."""
        n = self.ones + self.zeros
        if n == 0:
            return 0.0
        pos = (n - 1) * q / 100.0
        lo = math.floor(pos)
        v_lo = 0.0 if lo < self.zeros else 1.0
        v_hi = 0.0 if min(lo + 1, n - 1) < self.zeros else 1.0
        return v_lo + (v_hi - v_lo) * (pos - lo)

    def merge(self, other: MetricAggregation) -> None:
        """Fold another tally in."""
        if isinstance(other, Tally):
            self._cached = None
            self.ones += other.ones
            self.zeros += other.zeros
            if other.ones + other.zeros:
                self.current = other.current
        else:
            raise TypeError("a Tally merges only with another Tally")

    def to_dict(self) -> dict[str, float]:
        """``count, sum, avg, min, max, current, p50, p95, p99`` as a plain dict."""
        self._sync()
        return super().to_dict()

    def __repr__(self) -> str:
        return f"Tally(ones={self.ones}, zeros={self.zeros})"
