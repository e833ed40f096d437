"""Scratch engines: ones a command starts for a moment on a throw-away database (`leadloop
simulate`, the benchmarks), whose own start-up is no news to the user.

Their info lines (the schema created for a database that is deleted a moment later, `playbook
... is live`) buried the command's result. Warnings and errors are still shown: a
disabled channel or a broken playbook changes what the simulation or benchmark means.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

ENGINE_LOGGER = "leadloop"
"""The parent of every engine logger (`leadloop.channels`, `leadloop.hooks`, ...)."""


@contextmanager
def quiet_engine_logs() -> Iterator[None]:
    """Within the block, the engine logs only warnings and errors, unless debug output was asked
    for (`leadloop --verbose`): then everything is shown, as the user asked. The level is put back
    on leaving, so the block should span the scratch engine's whole life (`Engine.stop`
    included), its threads' lines too."""
    logger = logging.getLogger(ENGINE_LOGGER)
    if logger.isEnabledFor(logging.DEBUG):
        yield
        return
    saved = logger.level
    logger.setLevel(max(logging.WARNING, logger.getEffectiveLevel()))
    try:
        yield
    finally:
        logger.setLevel(saved)
