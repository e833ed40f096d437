"""`leadloop predict train` learns from the log, stores the model, and profiles are served
their probability with reasons; on every backend."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from leadloop.cli import main
from leadloop.storage import workspaces
from tests.contract.conftest import Harness, make_harness

PLAYBOOK = """\
version: 1
scoring:
  models:
    - id: lead
      fit:
        - {id: vp, field: title, op: matches, value: VP, points: 15}
      engagement:
        - {id: pricing, type: page, where: [{field: page.path, op: equals, value: /pricing}], \
points: 10}
      stages: [{name: lead}, {name: MQL, at: 50}]
      predict:
        outcome: {type: track, event: Deal Won}
        min_conversions: MIN
        post_outcome: [deal_size]
        features:
          - {trait: source}
          - {id: pricing_views, count: {type: page, where: [{field: page.path, op: equals, \
value: /pricing}]}}
          - {score: total}
"""


def write_playbook(tmp_path: Path, minimum: int = 20, name: str = "playbook.yaml") -> str:
    path = tmp_path / name
    path.write_text(PLAYBOOK.replace("MIN", str(minimum)))
    return str(path)


@pytest.fixture
def predict_harness(backend_url: str, tmp_path: Path) -> Iterator[Harness]:
    h = make_harness(backend_url, write_playbook(tmp_path))
    try:
        yield h
    finally:
        h.engine.stop()


def seed(h: Harness, n: int = 240) -> None:
    """Leads whose conversion the `source` trait drives, which the rules know nothing about;
    every winner is then tagged by sales, after the win."""
    rng = random.Random(11)
    messages: list[dict[str, Any]] = []
    for i in range(n):
        user = f"u{i}"
        source = ["ads", "referral", "organic"][i % 3]
        messages.append({"type": "identify", "userId": user, "traits": {"source": source}})
        for _ in range(rng.randint(0, 2)):
            messages.append({"type": "page", "userId": user, "properties": {"path": "/pricing"}})
        if rng.random() < (0.7 if source == "referral" else 0.1):
            messages.append({"type": "track", "userId": user, "event": "Deal Won"})
            messages.append({"type": "identify", "userId": user, "traits": {"source": "won"}})
    for start in range(0, len(messages), 200):
        h.send(*messages[start : start + 200])
    h.settle()


def predicted(h: Harness, user: str) -> dict[str, Any]:
    view = h.profile("user_id", user)
    assert view is not None
    decorated = h.engine.decorate_profile(view)
    result: dict[str, Any] = decorated["scores"]["lead"]["predicted"]
    return result


def train(h: Harness, *extra: str) -> int:
    return main(["predict", "train", "--database-url", h.engine.settings.database_url, *extra])


def test_trains_from_the_log_and_serves_probabilities_with_reasons(
    predict_harness: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    h = predict_harness
    seed(h)
    assert predicted(h, "u1")["status"] == "not trained"
    scores_before = h.sql("SELECT profile_id, model, state FROM scores ORDER BY 1, 2")

    assert train(h) == 0
    out = capsys.readouterr().out
    assert "lead: trained" in out and "AUC" in out and "the rules' score alone" in out
    assert "on the newest 20%: AUC" in out
    stored = h.sql("SELECT model_id, body FROM predictive_models")
    assert [row[0] for row in stored] == ["lead"]
    # Training reads; it changes no score.
    assert h.sql("SELECT profile_id, model, state FROM scores ORDER BY 1, 2") == scores_before

    # A new referral lead and a new ads lead, otherwise alike.
    h.send(
        {"type": "identify", "userId": "new-ref", "traits": {"source": "Referral"}},
        {"type": "identify", "userId": "new-ads", "traits": {"source": "ads"}},
    )
    h.settle()
    referral, ads = predicted(h, "new-ref"), predicted(h, "new-ads")
    assert referral["status"] == ads["status"] == "trained"
    assert referral["probability"] > ads["probability"] + 0.3
    assert referral["score"] == round(100 * referral["probability"])
    assert referral["reasons"][0]["feature"] == "source"
    assert referral["reasons"][0]["value"] == "referral"
    assert referral["reasons"][0]["log_odds"] > 0 > ads["reasons"][0]["log_odds"]


def test_what_sales_set_after_a_win_is_not_learned(
    predict_harness: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every winner's `source` is overwritten with "won" after its Deal Won. Observed at the
    moment before the win, no training row holds "won", so no column is made for it."""
    h = predict_harness
    seed(h)
    assert train(h) == 0
    capsys.readouterr()
    body = h.sql("SELECT body FROM predictive_models")[0][0]
    assert '"referral"' in body and '"won"' not in body


def test_too_few_conversions_train_nothing(
    backend_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    h = make_harness(backend_url, write_playbook(tmp_path, minimum=500))
    try:
        seed(h, 60)
        assert train(h) == 1
        # On stderr, as every failure's reason: `predict train > report.txt` said nothing.
        err = capsys.readouterr().err
        assert "lead: not trained:" in err and "500 are needed" in err
        assert h.sql("SELECT COUNT(*) FROM predictive_models") == [(0,)]
        assert predicted(h, "u1")["status"] == "not trained"
    finally:
        h.engine.stop()


def test_a_dry_run_stores_nothing_and_a_changed_spec_is_not_served(
    predict_harness: Harness, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    h = predict_harness
    seed(h)
    assert train(h, "--dry-run") == 0
    assert "dry run: not stored" in capsys.readouterr().out
    assert h.sql("SELECT COUNT(*) FROM predictive_models") == [(0,)]
    assert train(h) == 0
    assert predicted(h, "u1")["status"] == "trained"

    scores_before = h.sql("SELECT profile_id, model, state FROM scores ORDER BY 1, 2")
    changed = write_playbook(tmp_path, minimum=21, name="changed.yaml")
    url = h.engine.settings.database_url
    capsys.readouterr()
    assert main(["predict", "show", "--json", "--database-url", url]) == 0
    assert json.loads(capsys.readouterr().out)[0]["stale"] is None
    assert main(["playbook", "apply", changed, "--database-url", url]) == 0
    h.engine.refresh_playbooks()
    h.settle()
    view = predicted(h, "u1")
    assert view["status"] == "stale" and "leadloop predict train" in view["hint"]
    # The rules did not change, so the apply rescored nobody.
    assert h.sql("SELECT profile_id, model, state FROM scores ORDER BY 1, 2") == scores_before

    # Not served, so `show` must not present it as the model in use.
    assert main(["predict", "show", "--database-url", url]) == 0
    out = capsys.readouterr().out
    assert "lead: trained" in out and "stale:" in out and "leadloop predict train" in out
    assert main(["predict", "show", "--json", "--database-url", url]) == 0
    assert "predict train" in json.loads(capsys.readouterr().out)[0]["stale"]


def test_train_refuses_clearly_without_a_predict_section(
    scoring_harness: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    code = train(scoring_harness)
    assert code != 0
    assert "no model of the live playbook has a `predict` section" in capsys.readouterr().err
    code = main(
        [
            "predict",
            "train",
            "--model",
            "nope",
            "--database-url",
            scoring_harness.engine.settings.database_url,
        ]
    )
    assert code != 0


@pytest.mark.parametrize(
    "argv",
    [
        ["predict", "train", "--workspace", " padded "],
        ["predict", "train", "--model", "x" * 201],
        ["predict", "show", "--workspace", "bad\nline"],
        ["predict", "train", "--workspace", "nowhere"],
    ],
)
def test_bad_arguments_are_refused_and_change_nothing(
    predict_harness: Harness, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    url = predict_harness.engine.settings.database_url
    try:
        code = main([*argv, "--database-url", url])
    except SystemExit as exit:
        code = exit.code  # argparse refuses a malformed value with status 2
    assert code == 2
    assert capsys.readouterr().err.strip()
    assert predict_harness.sql("SELECT COUNT(*) FROM predictive_models") == [(0,)]


def test_a_stored_model_this_version_cannot_read_is_retrained_not_a_failure(
    predict_harness: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    """A model stored by another version of leadloop (here, without a field this one needs)
    must not make every profile's page fail: it is served as needing a new training."""
    h = predict_harness
    seed(h, 120)
    assert train(h) == 0
    capsys.readouterr()
    h.sql("UPDATE predictive_models SET body = ?", '{"model_id": "lead", "weights": [1.0]}')
    view = predicted(h, "u1")
    assert view["status"] == "stale" and "leadloop predict train" in view["hint"]
    url = h.engine.settings.database_url
    assert main(["predict", "show", "--database-url", url]) == 0
    assert "lead: stored by another version" in capsys.readouterr().out
    assert main(["predict", "show", "--json", "--database-url", url]) == 0
    assert '"unreadable": true' in capsys.readouterr().out
    assert train(h) == 0
    assert predicted(h, "u1")["status"] == "trained"


def test_a_profile_page_is_decorated_off_the_event_loop(predict_harness: Harness) -> None:
    """Serving a prediction replays the profile's history, which grows with its events: run on
    the event loop, one busy lead's page held up every other request, ingestion included."""
    h = predict_harness
    seed(h, 120)
    assert train(h) == 0
    on_loop: list[bool] = []

    def probe(conn: Any, view: dict[str, Any]) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            on_loop.append(False)
        else:
            on_loop.append(True)

    h.engine.profile_decorators.append(probe)
    pid = h.profile("user_id", "u1")["id"]  # type: ignore[index]
    token = h.engine.writer.submit(
        lambda c: workspaces.create_admin_token(c, "default", "t", h.engine.clock.now())
    ).result()
    on_loop.clear()
    with TestClient(h.engine.asgi()) as client:
        headers = {"Authorization": f"Bearer {token}"}
        by_id = client.get(f"/api/v1/profiles/{pid}", headers=headers)
        by_identity = client.get(
            "/api/v1/profiles/lookup", params={"type": "user_id", "value": "u1"}, headers=headers
        )
    assert by_id.status_code == by_identity.status_code == 200
    assert by_id.json()["scores"]["lead"]["predicted"]["status"] == "trained"
    assert by_identity.json()["scores"]["lead"]["predicted"]["status"] == "trained"
    assert on_loop == [False, False]


def test_training_again_replaces_the_model_and_a_long_history_is_not_served(
    predict_harness: Harness, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from leadloop.scoring.predictive import service

    h = predict_harness
    seed(h)
    assert train(h) == 0
    first = h.sql("SELECT trained_at FROM predictive_models")
    h.advance(60)  # training reads the log's clock: the newest event is a minute later
    h.send(*({"type": "page", "userId": "busy", "properties": {"path": "/"}} for _ in range(6)))
    h.settle()
    assert train(h) == 0
    second = h.sql("SELECT trained_at FROM predictive_models")
    assert len(second) == 1 and second[0][0] > first[0][0]

    monkeypatch.setattr(service, "MAX_SERVED_EVENTS", 5)
    view = predicted(h, "busy")
    assert view["status"] == "history too long" and "6 events" in view["hint"]
    assert predicted(h, "u1")["status"] == "trained"


def test_training_reads_one_snapshot_of_the_log(
    predict_harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What other connections commit while training reads (here every outcome event taken
    away after the first profile) is not seen: the log is read in chunks, and without one
    snapshot the later chunks would read a different log."""
    from leadloop.scoring import replay
    from leadloop.scoring.predictive import service

    h = predict_harness
    seed(h)
    model = h.engine.scoring_models("default")[0]
    now = h.engine.clock.now()
    undisturbed = h.engine.read_sync(lambda c: service.train(c, "default", model, now, store=False))
    assert isinstance(undisturbed, service.Stored)
    chunked = replay.histories
    monkeypatch.setattr(replay, "histories", lambda c, ws, **kw: chunked(c, ws, chunk=10, **kw))

    def meddle(stream: Any, total: int) -> Iterator[Any]:
        for number, item in enumerate(stream):
            if number == 1:
                h.engine.writer.submit(
                    lambda c: c.execute(
                        "UPDATE events SET event = 'Renamed' WHERE event = 'Deal Won'"
                    )
                ).result()
            yield item

    disturbed = h.engine.read_sync(
        lambda c: service.train(c, "default", model, now, meddle, store=False)
    )
    assert isinstance(disturbed, service.Stored)
    assert disturbed.report.conversions == undisturbed.report.conversions > 0


def test_a_history_too_long_to_serve_is_not_learned_from(
    predict_harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A scripted client's history is never served a prediction, so it must not shape the
    model either (nor be held in memory whole by training: millions of events). A customer
    busy after the win is learned from: only what preceded the outcome is observed, and
    dropping the most active customers would bias the model against them."""
    from leadloop.scoring import replay
    from leadloop.scoring.match import matches_filter
    from leadloop.scoring.predictive import service

    h = predict_harness
    seed(h)
    pages = [{"type": "page", "userId": "busy", "properties": {"path": "/"}}] * 9
    h.send(*pages)
    won = [
        {"type": "identify", "userId": "customer", "traits": {"source": "ads"}},
        {"type": "track", "userId": "customer", "event": "Deal Won"},
    ]
    h.send(*won, *({**page, "userId": "customer"} for page in pages))
    h.settle()
    model = h.engine.scoring_models("default")[0]
    now = h.engine.clock.now()
    everyone = h.engine.read_sync(lambda c: service.train(c, "default", model, now, store=False))
    assert isinstance(everyone, service.Stored)

    monkeypatch.setattr(service, "MAX_SERVED_EVENTS", 5)  # seed's leads have at most 5
    trimmed = h.engine.read_sync(lambda c: service.train(c, "default", model, now, store=False))
    assert isinstance(trimmed, service.Stored)
    assert trimmed.report.profiles == everyone.report.profiles - 1
    assert trimmed.report.conversions == everyone.report.conversions

    assert model.predict is not None
    outcome = model.predict.outcome

    def sizes(chunk: int) -> list[tuple[str, int]]:
        return h.engine.read_sync(
            lambda c: [
                (p, len(e))
                for p, e in replay.histories(
                    c, "default", chunk, longest=5, until=lambda e: matches_filter(e, outcome)
                )
            ]
        )

    # Read in chunks of two, a long history spans many, and a short one may start mid-chunk.
    assert sizes(2) == sizes(5000) and len(sizes(5000)) == trimmed.report.profiles


def test_at_most_max_profiles_are_learned_from(
    predict_harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sample beyond `MAX_PROFILES` is drawn by digest: its size varies around the cap,
    and the docs promise the cap."""
    from leadloop.scoring.predictive import service

    h = predict_harness
    seed(h)
    model = h.engine.scoring_models("default")[0]
    now = h.engine.clock.now()
    sizes: dict[int, int] = {}
    for cap in (60, 90, 120, 150, 180):
        monkeypatch.setattr(service, "MAX_PROFILES", cap)
        stored = h.engine.read_sync(lambda c: service.train(c, "default", model, now, store=False))
        assert isinstance(stored, service.Stored)
        sizes[cap] = stored.report.profiles
    assert all(size <= cap for cap, size in sizes.items()), sizes
    # Still a fixed sample: the same profiles on every run.
    again = h.engine.read_sync(lambda c: service.train(c, "default", model, now, store=False))
    assert isinstance(again, service.Stored) and again.report == stored.report


def test_one_event_dated_far_ahead_does_not_move_the_moment_observed(
    predict_harness: Harness,
) -> None:
    """Clients date their events: one dated the year 9000 (a device clock gone wrong) made
    training observe every lead that had not converted as of that year, its counts `within`
    a window empty and its engagement decayed away, unlike anything served now."""
    h = predict_harness
    seed(h)
    h.send({"type": "page", "userId": "u1", "timestamp": "9000-01-01T00:00:00Z"})
    h.settle()
    assert train(h) == 0
    assert h.sql("SELECT trained_at FROM predictive_models") == [(h.engine.clock.now(),)]


LEAKY = """\
version: 1
scoring:
  models:
    - id: lead
      fit:
        - {id: hot, field: quality, op: equals, value: hot, points: 30}
      engagement:
        - {id: pricing, type: page, points: 10}
      stages: [{name: lead}, {name: MQL, at: 50}]
      predict:
        outcome: {type: track, event: Deal Won}
        min_conversions: 20
        features:
          - {trait: quality}
          - {id: contracts, count: {type: track, event: Contract Sent}}
          - {score: fit}
"""


def test_each_kind_of_suspect_feature_is_told_the_fix_it_can_have(
    backend_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A feature that alone gives the outcome away was always told to go in `post_outcome`,
    which holds traits only: a `score` or `count` feature cannot be listed there."""
    path = tmp_path / "leaky.yaml"
    path.write_text(LEAKY)
    h = make_harness(backend_url, str(path))
    try:
        rng = random.Random(5)
        messages: list[dict[str, Any]] = []
        for i in range(200):
            user, won = f"u{i}", rng.random() < 0.3
            # Sales set `quality` and send the contract on the day they close: before the
            # outcome event, so nothing the log sees tells them apart from honest signals.
            messages.append({"type": "page", "userId": user, "properties": {"path": "/"}})
            messages.append(
                {
                    "type": "identify",
                    "userId": user,
                    "traits": {"quality": "hot" if won else "cold"},
                }
            )
            if won:
                messages.append({"type": "track", "userId": user, "event": "Contract Sent"})
                messages.append({"type": "track", "userId": user, "event": "Deal Won"})
        for start in range(0, len(messages), 200):
            h.send(*messages[start : start + 200])
        h.settle()
        assert train(h, "--dry-run") == 0
    finally:
        h.engine.stop()
    warnings = {
        line.split("'")[1]: line
        for line in capsys.readouterr().out.splitlines()
        if line.strip().startswith("warning:")
    }
    assert set(warnings) == {"quality", "contracts", "score.fit"}
    assert "`post_outcome`" in warnings["quality"]
    assert "`post_outcome`" not in warnings["contracts"]
    assert "`where`" in warnings["contracts"]
    assert "`post_outcome`" not in warnings["score.fit"]
    assert "rules" in warnings["score.fit"]


def test_show_says_why_staleness_is_unknown_in_a_shell_without_the_playbooks_variables(
    predict_harness: Harness,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`stale: null` read as "served" where this shell could not tell (the playbook needs a
    `${VAR}` it does not set): the JSON names the reason beside it, as `roas_unknown` does."""
    h = predict_harness
    seed(h, 120)
    assert train(h) == 0
    url = h.engine.settings.database_url
    capsys.readouterr()
    assert main(["predict", "show", "--json", "--database-url", url]) == 0
    shown = json.loads(capsys.readouterr().out)[0]
    assert (shown["stale"], shown["stale_unknown"]) == (None, None)

    path = tmp_path / "env.yaml"
    path.write_text(PLAYBOOK.replace("MIN", "20").replace("value: VP", "value: '${LL_VP_TITLE}'"))
    monkeypatch.setenv("LL_VP_TITLE", "VP")
    assert main(["playbook", "apply", str(path), "--database-url", url]) == 0
    monkeypatch.delenv("LL_VP_TITLE")
    capsys.readouterr()
    assert main(["predict", "show", "--json", "--database-url", url]) == 0
    shown = json.loads(capsys.readouterr().out)[0]
    assert shown["stale"] is None
    assert "cannot be built" in shown["stale_unknown"] and "LL_VP_TITLE" in shown["stale_unknown"]
    assert main(["predict", "show", "--database-url", url]) == 0
    assert "stale: unknown (the live playbook cannot be built" in capsys.readouterr().out
