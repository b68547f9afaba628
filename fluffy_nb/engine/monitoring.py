"""Monitoring: ``agent_monitor``, ``MetricType``, ``RealTimeMetrics``, ``MetricAggregation``.

(Filled in by issue 5.)
"""

__all__: list[str] = []
