"""leadloop: event-driven marketing automation engine.

Stages, in flow order: ingest → log → identity → scoring → journeys → policy → outbox →
channels → conversions; personalization and analytics beside them; storage and api below.
"""

from leadloop.clock import Clock, ManualClock, SystemClock
from leadloop.config import Settings
from leadloop.errors import ConfigError, LeadloopError, Overloaded, PlaybookError, StorageError

__all__ = [
    "Clock",
    "ConfigError",
    "LeadloopError",
    "ManualClock",
    "Overloaded",
    "PlaybookError",
    "Settings",
    "StorageError",
    "SystemClock",
    "__version__",
]
__version__ = "0.1.0"
