"""`leadloop spend import` on a real database: stored once however often it is run, and a bad
or hostile file changes nothing."""

from __future__ import annotations

from pathlib import Path

from leadloop.storage.db import DatabaseUrl, connect
from tests.integration.test_cli import cli

GOOD = (
    "date,source,campaign,currency,amount\n2026-11-01,Meta,a,usd,100\n2026-11-02,google,,USD,50\n"
)


def stored(db: str) -> list[tuple[object, ...]]:
    conn = connect(DatabaseUrl.parse(db))
    try:
        return [
            tuple(r)
            for r in conn.execute(
                "SELECT workspace_id, day, source, campaign, currency, amount FROM ad_spend "
                "ORDER BY day"
            )
        ]
    finally:
        conn.close()


def test_an_import_run_twice_stores_each_day_once(sqlite_url: str, tmp_path: Path) -> None:
    assert cli(sqlite_url, "migrate").returncode == 0
    export = tmp_path / "spend.csv"
    export.write_text(GOOD)
    for _ in range(2):
        out = cli(sqlite_url, "spend", "import", str(export))
        assert out.returncode == 0, out.stderr
        assert "imported 2 spend rows from 2026-11-01 to 2026-11-02" in out.stdout
    assert stored(sqlite_url) == [
        ("default", "2026-11-01", "meta", "a", "USD", 100.0),
        ("default", "2026-11-02", "google", "", "USD", 50.0),
    ]


def test_a_bad_file_or_place_imports_nothing(sqlite_url: str, tmp_path: Path) -> None:
    assert cli(sqlite_url, "migrate").returncode == 0
    bad = tmp_path / "bad.csv"
    bad.write_text(GOOD + "2026-11-03,meta,a,USD,-5\n")
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"date,source,amount,currency\n\xff\xfe\x00\x00")
    huge = tmp_path / "huge.csv"
    with huge.open("wb") as f:
        f.truncate(20 * 1024 * 1024 + 1)
    good = tmp_path / "good.csv"
    good.write_text(GOOD)
    for args, words in (
        (("spend", "import", str(bad)), "bad.csv:4: amount"),
        (("spend", "import", str(binary)), "cannot read"),
        (("spend", "import", str(huge)), "larger than the limit"),
        (("spend", "import", str(tmp_path / "missing.csv")), "cannot read"),
        (("spend", "import", str(tmp_path)), "cannot read"),
        (("spend", "import", str(good), "--workspace", "nope"), "workspace 'nope' does not exist"),
    ):
        out = cli(sqlite_url, *args)
        assert out.returncode == 2 and words in out.stderr, (args, out.stderr)
        assert "Traceback" not in out.stderr
    assert stored(sqlite_url) == []


def test_no_database_is_an_error_that_creates_none(tmp_path: Path) -> None:
    export = tmp_path / "spend.csv"
    export.write_text(GOOD)
    db = tmp_path / "none.db"
    out = cli(f"sqlite:///{db}", "spend", "import", str(export))
    assert out.returncode == 2 and "no database at" in out.stderr
    assert not db.exists()


def test_a_corrected_export_replaces_its_platforms_days_whole(
    sqlite_url: str, tmp_path: Path
) -> None:
    assert cli(sqlite_url, "migrate").returncode == 0
    first, fixed = tmp_path / "first.csv", tmp_path / "fixed.csv"
    first.write_text(GOOD + "2026-11-01,meta,Retargeting ,usd,30\n2026-11-01,google,,USD,7\n")
    # The platform's corrected export: a campaign renamed, another gone from the day.
    fixed.write_text("date,source,campaign,currency,amount\n2026-11-01,meta,retargeting,USD,35\n")
    for export in (first, fixed):
        out = cli(sqlite_url, "spend", "import", str(export))
        assert out.returncode == 0, out.stderr
    assert sorted(stored(sqlite_url)) == [  # other platforms' days are theirs
        ("default", "2026-11-01", "google", "", "USD", 7.0),
        ("default", "2026-11-01", "meta", "retargeting", "USD", 35.0),
        ("default", "2026-11-02", "google", "", "USD", 50.0),
    ]
