"""Status enumerations for agents and states."""

from __future__ import annotations

from enum import Enum


class AgentStatus(str, Enum):
    """Lifecycle of an agent run."""

    IDLE = "idle"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class StateStatus(str, Enum):
    """Lifecycle of one state within a run."""

    PENDING = "pending"
    READY = "ready"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    BLOCKED = "blocked"
    CANCELLED = "cancelled"
    TIMEOUT = "timeout"
    RETRYING = "retrying"
    WAITING_FOR_HUMAN = "waiting_for_human"


class Priority(int, Enum):
    """Scheduling priority: higher values are admitted first."""

    LOW = 0
    NORMAL = 1
    HIGH = 2
    CRITICAL = 3
