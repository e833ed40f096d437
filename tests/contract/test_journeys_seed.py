"""The seed nurture journey on a manual clock, every branch, on both backends."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from leadloop.journeys.queries import path_lines
from leadloop.journeys.service import JourneyStage
from tests.contract.conftest import EXAMPLE_PLAYBOOK, Harness, make_harness

pytestmark = pytest.mark.usefixtures("channels_env")

HOUR = 3600.0
ROOT = Path(__file__).resolve().parents[2]
FRAGMENT = ROOT / "examples" / "journeys.yaml"


def playbook_with_journeys(tmp: Path, fragment: str | None = None, name: str = "pb.yaml") -> str:
    """The example playbook with its `journeys` section replaced by `fragment` (by default
    examples/journeys.yaml, the same seed journey the example playbook carries)."""
    kept: list[str] = []
    inside = False
    for line in Path(EXAMPLE_PLAYBOOK).read_text(encoding="utf-8").splitlines():
        if line.startswith("journeys:"):
            inside = True
            continue
        if inside and line and not line.startswith((" ", "#")):
            inside = False
        if not inside:
            kept.append(line)
    base = "\n".join(kept)
    text = base + "\n" + (fragment if fragment is not None else FRAGMENT.read_text("utf-8"))
    path = tmp / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def plug_journeys(h: Harness) -> None:
    """Add the journeys stage after the wired ones (until app.py wires it)."""
    stages = list(h.engine.processor._stages)
    if not any(getattr(s, "name", "") == "journeys" for s in stages):
        stages.append(JourneyStage(h.engine.playbooks.get))
        h.engine.processor.set_stages(stages)


def journey_harness(backend_url: str, playbook: str) -> Harness:
    h = make_harness(backend_url, playbook)
    plug_journeys(h)
    # Journey tests read the queued messages from the outbox; the engine's own message sender
    # would claim and try to deliver them meanwhile (a test that wants it hands it back).
    h.engine.dispatcher.senders.pop("message", None)
    return h


@pytest.fixture
def seed(backend_url: str, tmp_path: Path) -> Iterator[Harness]:
    h = journey_harness(backend_url, playbook_with_journeys(tmp_path))
    try:
        yield h
    finally:
        h.engine.stop()


def become_lead(h: Harness, user: str, **traits: Any) -> str:
    """An identified profile whose pricing visit makes it a lead (10 points)."""
    h.send({"type": "identify", "userId": user, "traits": {"email": f"{user}@acme.test", **traits}})
    h.send({"type": "page", "userId": user, "name": "Pricing", "properties": {"path": "/pricing"}})
    h.settle()
    prof = h.profile("user_id", user)
    assert prof is not None and prof["scores"]["lead"]["stage"] == "lead"
    return str(prof["id"])


def messages(h: Harness, pid: str) -> list[tuple[str, str, str]]:
    rows = h.sql(
        "SELECT destination, payload FROM outbox JOIN outbox_payloads USING (id) WHERE kind = 'message' AND profile_id = ? "
        "ORDER BY id",
        pid,
    )
    import json

    return [(r[0], json.loads(r[1])["template"], json.loads(r[1])["message_id"]) for r in rows]


def instance(h: Harness, pid: str) -> tuple[str, str | None, str]:
    rows = h.sql("SELECT status, step, reason FROM journey_instances WHERE profile_id = ?", pid)
    assert len(rows) == 1, rows
    return rows[0][0], rows[0][1], rows[0][2]


def click(h: Harness, user: str, message_id: str, event: str = "Email Link Clicked") -> None:
    h.send(
        {
            "type": "track",
            "userId": user,
            "event": event,
            "properties": {
                "message_id": message_id,
                "journey": "lead_nurture",
                "step": "send_guide",
            },
        }
    )
    h.settle()


def test_clicked_gets_the_case_study_48_hours_later(seed: Harness) -> None:
    h = seed
    pid = become_lead(h, "clicker")
    sent = messages(h, pid)
    assert [(c, t) for c, t, _ in sent] == [("email", "guide")]
    assert instance(h, pid)[:2] == ("waiting", "wait_click")
    h.advance(10 * HOUR)
    click(h, "clicker", sent[0][2], event="Email Opened")  # an open alone is not enough
    assert instance(h, pid)[:2] == ("waiting", "wait_click")
    click(h, "clicker", sent[0][2])
    assert instance(h, pid)[:2] == ("waiting", "wait_48h")
    h.advance(47 * HOUR)
    assert len(messages(h, pid)) == 1
    h.advance(1 * HOUR)
    assert [(c, t) for c, t, _ in messages(h, pid)] == [("email", "guide"), ("email", "case_study")]
    assert instance(h, pid)[0] == "completed"
    # Quiet: nothing more happens after the 72 h timeout would have fired.
    h.advance(100 * HOUR)
    assert len(messages(h, pid)) == 2


def test_not_clicked_switches_to_whatsapp(seed: Harness) -> None:
    h = seed
    pid = become_lead(h, "wa", phone="+14155550100", whatsapp_opt_in=True, instagram_id="ig1")
    h.advance(71 * HOUR)
    assert len(messages(h, pid)) == 1
    h.advance(1 * HOUR)
    assert [(c, t) for c, t, _ in messages(h, pid)] == [
        ("email", "guide"),
        ("whatsapp", "ugc_video"),
    ]
    assert instance(h, pid)[0] == "completed"


def test_no_phone_gets_an_instagram_dm(seed: Harness) -> None:
    h = seed
    pid = become_lead(h, "ig", instagram_id="1789")
    h.advance(72 * HOUR)
    assert [(c, t) for c, t, _ in messages(h, pid)][1:] == [("instagram", "ugc_video")]
    reasons = h.sql(
        "SELECT outcome, reason FROM sends WHERE profile_id = ? AND step = 'switch_channel'", pid
    )
    assert reasons[0][0] == "rerouted" and "whatsapp: no phone" in reasons[0][1]


def test_phone_without_whatsapp_consent_and_no_instagram_goes_to_the_audience(
    seed: Harness,
) -> None:
    h = seed
    pid = become_lead(h, "aud", phone="+14155550101")
    h.advance(72 * HOUR)
    assert len(messages(h, pid)) == 1
    rows = h.sql(
        "SELECT destination, payload FROM outbox JOIN outbox_payloads USING (id) WHERE kind = 'audience' AND profile_id = ?",
        pid,
    )
    assert [r[0] for r in rows] == ["ugc_retargeting"]
    suppressed = h.sql(
        "SELECT outcome, reason FROM sends WHERE profile_id = ? AND step = 'switch_channel'", pid
    )
    assert suppressed[0][0] == "suppressed"
    assert (
        "whatsapp: no consent" in suppressed[0][1]
        and "instagram: no instagram_id" in suppressed[0][1]
    )
    assert instance(h, pid)[0] == "completed"


def test_reaching_mql_mid_journey_ends_it_as_converted(seed: Harness) -> None:
    h = seed
    pid = become_lead(h, "mql")
    h.advance(5 * HOUR)
    h.send(
        {"type": "identify", "userId": "mql", "traits": {"title": "VP Sales", "company_size": 500}},
        {"type": "track", "userId": "mql", "event": "Lead Magnet Downloaded"},
    )
    h.settle()
    assert h.profile("user_id", "mql")["scores"]["lead"]["stage"] == "MQL"  # type: ignore[index]
    status, _step, reason = instance(h, pid)
    assert status == "converted" and "goal" in reason
    assert h.sql("SELECT COUNT(*) FROM timers WHERE key LIKE ?", "journey:%") == [(0,)]
    h.advance(200 * HOUR)
    assert len(messages(h, pid)) == 1


def test_entry_is_once_and_the_path_is_recorded(seed: Harness) -> None:
    h = seed
    pid = become_lead(h, "once")
    h.advance(80 * HOUR)
    # Falling back below `lead` and returning does not enter again (re-entry: once).
    h.send(
        {
            "type": "track",
            "userId": "once",
            "event": "CRM Stage Changed",
            "properties": {"stage": "subscriber"},
        }
    )
    h.send(
        {
            "type": "track",
            "userId": "once",
            "event": "CRM Stage Changed",
            "properties": {"stage": "lead"},
        }
    )
    h.settle()
    assert h.sql("SELECT COUNT(*) FROM journey_instances WHERE profile_id = ?", pid) == [(1,)]
    rows = h.sql(
        "SELECT at, step, kind, detail, more_lines FROM journey_path WHERE profile_id = ? "
        "ORDER BY id",
        pid,
    )
    kinds = [kind for _at, _step, kind, _detail in path_lines(rows)]
    assert kinds == [
        "entered",
        "send",
        "wait_for",
        "timed_out",
        "suppressed",
        "audience",
        "completed",
    ]


def test_the_recording_sender_gets_each_message_once(seed: Harness) -> None:
    from leadloop.outbox.service import Claimed, Outcome
    from leadloop.testing import eventually

    got: list[dict[str, Any]] = []

    class Recorder:
        def send(self, item: Claimed, now: float) -> Outcome:
            got.append(item.payload)
            return Outcome("delivered")

    h = seed
    h.engine.dispatcher.senders["message"] = Recorder()
    pid = become_lead(h, "rec")
    h.engine.dispatcher.wake()
    eventually(lambda: len(got) == 1)
    assert got[0]["template"] == "guide" and got[0]["profile_id"] == pid
    assert set(got[0]) >= {"channel", "template", "journey", "step", "instance", "message_id"}
