"""`quiet_engine_logs`: a scratch engine's info lines are hidden, its warnings are not, debug
output asked for is kept, and the level is put back."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from leadloop.scratch import ENGINE_LOGGER, quiet_engine_logs


@pytest.fixture
def engine_logger() -> Iterator[logging.Logger]:
    logger = logging.getLogger(ENGINE_LOGGER)
    saved = logger.level
    yield logger
    logger.setLevel(saved)


def logged(caplog: pytest.LogCaptureFixture) -> list[tuple[str, int]]:
    child = logging.getLogger(f"{ENGINE_LOGGER}.channels")
    with quiet_engine_logs():
        logging.getLogger(ENGINE_LOGGER).info("applied migration 0001_initial")
        child.info("playbook is live")
        child.warning("email is disabled")
        logging.getLogger(ENGINE_LOGGER).error("broken")
    return [(r.getMessage(), r.levelno) for r in caplog.records]


def test_info_is_hidden_and_warnings_are_shown(
    engine_logger: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    engine_logger.setLevel(logging.INFO)  # as `leadloop` configures it without --verbose
    assert logged(caplog) == [
        ("email is disabled", logging.WARNING),
        ("broken", logging.ERROR),
    ]
    assert engine_logger.level == logging.INFO


def test_debug_asked_for_shows_everything(
    engine_logger: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    engine_logger.setLevel(logging.DEBUG)  # `leadloop --verbose`
    assert [message for message, _ in logged(caplog)] == [
        "applied migration 0001_initial",
        "playbook is live",
        "email is disabled",
        "broken",
    ]
    assert engine_logger.level == logging.DEBUG


def test_a_quieter_level_is_kept_and_restored(
    engine_logger: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    engine_logger.setLevel(logging.ERROR)
    assert logged(caplog) == [("broken", logging.ERROR)]
    assert engine_logger.level == logging.ERROR
