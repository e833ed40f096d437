"""Settings, read once from the environment (and CLI flags, which override them)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from leadloop.errors import ConfigError


@dataclass(frozen=True)
class Settings:
    database_url: str = "sqlite:///./leadloop.db"
    host: str = "127.0.0.1"
    port: int = 8080
    playbook: str | None = None
    default_region: str | None = None
    """Region for phone numbers written without a country code (e.g. `US`); unset: such
    numbers are kept as traits but not used to link profiles."""
    public_url: str | None = None
    max_pending_events: int = 50_000
    gc_threshold: int = 50_000
    """Young-generation threshold of the cyclic GC (`leadloop.runtime`); 0 keeps Python's."""
    park_limit: int = 10
    """Senders with events parked within the last `park_window` of the log after which the
    processor holds at the next failing event instead of parking it (`log.breaker`); 0: it
    never parks."""
    park_window: int = 1000
    park_in_a_row: int = 5
    """Senders with events parked in a row with one error after which the next event failing
    so is held."""
    park_per_sender: int = 100
    """Events of one sender parked within the last `park_window` after which its next failing
    one is held."""
    extra: dict[str, str] = field(default_factory=dict)

    @staticmethod
    def from_env(env: dict[str, str] | None = None) -> Settings:
        e = dict(os.environ if env is None else env)
        return Settings(
            database_url=_database_url(e),
            # Empty counts as unset, as for the port: an `.env` line `LEADLOOP_HOST=` failed
            # as "cannot listen on :8080" instead of listening where the default says.
            host=e.get("LEADLOOP_HOST", "").strip() or "127.0.0.1",
            port=port_number(e.get("LEADLOOP_PORT", "").strip() or "8080", "LEADLOOP_PORT"),
            playbook=e.get("LEADLOOP_PLAYBOOK") or None,
            default_region=e.get("LEADLOOP_DEFAULT_REGION") or None,
            public_url=e.get("LEADLOOP_PUBLIC_URL") or None,
            max_pending_events=_count(e, "LEADLOOP_MAX_PENDING_EVENTS", 50_000),
            gc_threshold=_count(e, "LEADLOOP_GC_THRESHOLD", 50_000),
            park_limit=_count(e, "LEADLOOP_PARK_LIMIT", 10),
            park_window=_count(e, "LEADLOOP_PARK_WINDOW", 1000),
            park_in_a_row=_count(e, "LEADLOOP_PARK_IN_A_ROW", 5),
            park_per_sender=_count(e, "LEADLOOP_PARK_PER_SENDER", 100),
            extra={k: v for k, v in e.items() if k.startswith("LEADLOOP_")},
        )


def _database_url(env: dict[str, str]) -> str:
    """Unset means the default file. Set but empty stays empty: `require_database_url` refuses
    it by name unless a flag gives the URL (the parser's own message cannot say where an empty
    URL came from, and taking the default would silently write to ./leadloop.db)."""
    raw = env.get("LEADLOOP_DATABASE_URL")
    return "sqlite:///./leadloop.db" if raw is None else raw.strip()


def require_database_url(settings: Settings) -> None:
    if not settings.database_url:
        raise ConfigError(
            "LEADLOOP_DATABASE_URL is set but empty: unset it for the default "
            "sqlite:///./leadloop.db, or give sqlite:///path or postgresql://user@host/db"
        )


def whole_number(raw: str) -> bool:
    """ASCII digits only: `isdigit` is also true of "²" (which `int` raises on) and "٣" (which it
    reads as 3), and `int` alone takes " 3", "+3" and "1_0"."""
    return raw.isascii() and raw.isdigit()


def port_number(raw: str, name: str) -> int:
    """A TCP port to listen on, 1–65535: an out-of-range one used to be printed in the "serving
    on" line and then fail (or wrap around) in the server, and a word fell back to 8080."""
    if not whole_number(raw) or not 1 <= int(raw) <= 65535:
        raise ConfigError(f"{name} must be a port number from 1 to 65535, got {raw!r}")
    return int(raw)


def _count(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not whole_number(raw):
        raise ConfigError(f"{name} must be a whole number ≥ 0, got {raw!r}")
    return int(raw)
