"""The engine's process settings: GC thresholds from the environment, with clear errors."""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from leadloop.config import Settings
from leadloop.errors import ConfigError
from leadloop.runtime import (
    GC_OLDER,
    GC_THRESHOLD,
    SWITCH_INTERVAL,
    tune_gc,
    tune_switch_interval,
)


@pytest.fixture
def thresholds() -> Iterator[None]:
    saved = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    try:
        yield
    finally:
        gc.set_threshold(*saved)


def test_default_settings_raise_the_young_threshold(thresholds: None) -> None:
    tune_gc(Settings.from_env({}).gc_threshold)
    assert gc.get_threshold() == (GC_THRESHOLD, *GC_OLDER)


def test_zero_keeps_pythons_thresholds(thresholds: None) -> None:
    settings = Settings.from_env({"LEADLOOP_GC_THRESHOLD": "0"})
    tune_gc(settings.gc_threshold)
    assert gc.get_threshold() == (700, 10, 10)


def test_a_chosen_threshold_is_used(thresholds: None) -> None:
    tune_gc(Settings.from_env({"LEADLOOP_GC_THRESHOLD": "20000"}).gc_threshold)
    assert gc.get_threshold()[0] == 20_000


# "²" passed `isdigit` and then raised ValueError out of every command; "٣" was read as 3.
@pytest.mark.parametrize("raw", ["lots", "-5", "1e6", "12.5", "²", "٣"])
@pytest.mark.parametrize(
    "name",
    [
        "LEADLOOP_GC_THRESHOLD",
        "LEADLOOP_MAX_PENDING_EVENTS",
        "LEADLOOP_PARK_LIMIT",
        "LEADLOOP_PARK_WINDOW",
        "LEADLOOP_PARK_IN_A_ROW",
        "LEADLOOP_PARK_PER_SENDER",
    ],
)
def test_counts_that_are_not_whole_numbers_are_a_clear_error(name: str, raw: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: raw})


def test_the_cli_reports_a_bad_count_without_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from leadloop.cli import main

    monkeypatch.setenv("LEADLOOP_GC_THRESHOLD", "lots")
    code = main(["migrate"])
    assert code != 0
    err = capsys.readouterr().err
    assert "LEADLOOP_GC_THRESHOLD" in err and "Traceback" not in err


def test_the_engine_shortens_the_switch_interval() -> None:
    saved = sys.getswitchinterval()
    try:
        sys.setswitchinterval(0.005)  # Python's default
        tune_switch_interval()
        assert sys.getswitchinterval() == pytest.approx(SWITCH_INTERVAL)
        assert SWITCH_INTERVAL < 0.005
    finally:
        sys.setswitchinterval(saved)


@pytest.mark.parametrize("raw", ["abc", "0", "65536", "-1", "80.5", "²", "٨٠٨٠", "8_080", "+80"])
def test_a_port_that_cannot_be_listened_on_is_a_clear_error(raw: str) -> None:
    with pytest.raises(ConfigError, match="LEADLOOP_PORT must be a port number"):
        Settings.from_env({"LEADLOOP_PORT": raw})


def test_the_port_comes_from_the_environment_or_defaults_to_8080() -> None:
    assert Settings.from_env({"LEADLOOP_PORT": "18080"}).port == 18080
    assert Settings.from_env({}).port == 8080
    assert Settings.from_env({"LEADLOOP_PORT": " "}).port == 8080


def test_an_empty_host_is_the_default_host_as_an_empty_port_is_the_default_port() -> None:
    assert Settings.from_env({"LEADLOOP_HOST": ""}).host == "127.0.0.1"
    assert Settings.from_env({"LEADLOOP_HOST": " "}).host == "127.0.0.1"
    assert Settings.from_env({"LEADLOOP_HOST": "0.0.0.0"}).host == "0.0.0.0"


@pytest.mark.parametrize("raw", ["99999", "0", "http"])
def test_serve_refuses_a_port_before_saying_where_it_serves(
    raw: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from leadloop.cli import build_parser

    # The parser alone: with the check broken, `main` would start serving instead of failing.
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["serve", "--port", raw])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "--port must be a port number from 1 to 65535" in err and "serving on" not in err


def test_an_empty_database_url_is_refused_by_name_unless_a_flag_gives_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from leadloop.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LEADLOOP_DATABASE_URL", " ")
    assert main(["migrate"]) == 2
    assert "LEADLOOP_DATABASE_URL is set but empty" in capsys.readouterr().err
    assert not (tmp_path / "leadloop.db").exists()
    url = f"sqlite:///{tmp_path / 'given.db'}"
    assert main(["migrate", "--database-url", url]) == 0
    assert (tmp_path / "given.db").exists()
    monkeypatch.delenv("LEADLOOP_DATABASE_URL")
    assert Settings.from_env({}).database_url == "sqlite:///./leadloop.db"
