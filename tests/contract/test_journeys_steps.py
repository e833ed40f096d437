"""Journey steps through the real processor on a manual clock, on both backends: branches on
each kind of condition, waits until a local time or a date trait, wait_for with conditions,
webhook and audience steps, trait and tag updates, the goal from any step, and exit steps.
Each journey is built for the one behaviour it pins; instances, timers and outbox rows are
asserted exactly."""

from __future__ import annotations

from pathlib import Path

import pytest

from leadloop.journeys.queries import path_lines
from tests.contract.conftest import Harness
from tests.contract.journeys_helpers import (
    DAY,
    HOUR,
    START,
    flows,
    instances,
    outbox,
    people,
    person,
    pricing,
    templates,
    timers,
    track,
    utc,
)

pytestmark = pytest.mark.usefixtures("channels_env")

HELD = ("exited", "hit", "condition held")
NOT_HELD = ("exited", "miss", "condition did not hold")

CONDITIONS = {
    "trait": "{ trait: company.plan, op: equals, value: pro }",
    "score": "{ score: lead, op: gte, value: 10 }",
    "stage": "{ stage: lead, op: in, value: [lead, MQL] }",
    "event": (
        "{ event: Demo Watched, within: 1d, op: gte, value: 2,"
        " where: [{ field: properties.complete, op: equals, value: true }] }"
    ),
}


def _branch_on(kind: str, condition: str) -> str:
    return f"""
    - id: on_{kind}
      entry: {{ event: Check {kind} }}
      steps:
        - {{ id: check, type: branch, if: [{condition}], then: hit, else: miss }}
        - {{ id: hit, type: exit, reason: condition held }}
        - {{ id: miss, type: exit, reason: condition did not hold }}
"""


BRANCHES = "journeys:\n  flows:\n" + "".join(_branch_on(k, c) for k, c in CONDITIONS.items())


def test_a_branch_on_traits_scores_stages_and_events_in_a_window(
    backend_url: str, tmp_path: Path
) -> None:
    with flows(backend_url, tmp_path, BRANCHES) as h:
        yes = person(h, "yes", company={"plan": "pro"})
        no = person(h, "no", company={"plan": "free"})
        track(h, "no", "Demo Watched", complete=True)  # two days before the check: too old
        h.advance(2 * DAY)
        pricing(h, "yes")  # 10 points: stage lead
        h.send({"type": "page", "userId": "no", "properties": {"path": "/"}})  # 2: subscriber
        track(h, "yes", "Demo Watched", complete=True)
        track(h, "yes", "Demo Watched", complete=True)
        track(h, "no", "Demo Watched", complete=True)
        track(h, "no", "Demo Watched", complete=False)  # inside the window, fails `where`
        for kind in CONDITIONS:
            track(h, "yes", f"Check {kind}")
            track(h, "no", f"Check {kind}")
        for kind in CONDITIONS:
            assert (kind, instances(h, yes, f"on_{kind}")) == (kind, [HELD])
            assert (kind, instances(h, no, f"on_{kind}")) == (kind, [NOT_HELD])


ENGAGEMENT = """
journeys:
  templates:
    email: [note]
  flows:
    - id: engaged
      entry: { event: Engage }
      steps:
        - { id: note, type: send, channel: email, template: note, next: pause }
        - { id: pause, type: wait, duration: 1h, next: check }
        - id: check
          type: branch
          cases:
            - { if: [{ engaged: note, with: clicked }], then: clicked }
            - { if: [{ engaged: note, with: opened }], then: opened }
            - { if: [{ engaged: note, with: delivered }], then: delivered }
          else: ignored
        - { id: clicked, type: exit, reason: clicked }
        - { id: opened, type: exit, reason: opened }
        - { id: delivered, type: exit, reason: delivered }
        - { id: ignored, type: exit, reason: ignored }
"""


def test_a_branch_on_engagement_with_a_previous_steps_message(
    backend_url: str, tmp_path: Path
) -> None:
    receipts = {
        "clicker": "Email Link Clicked",
        "opener": "Email Opened",
        "receiver": "Message Delivered",
        "other": "Email Link Clicked",  # a click on some other message
        "silent": None,
    }
    with flows(backend_url, tmp_path, ENGAGEMENT) as h:
        pids = people(h, list(receipts))
        h.send(*({"type": "track", "userId": user, "event": "Engage"} for user in receipts))
        h.settle()
        for user, receipt in receipts.items():
            ((_dest, payload),) = outbox(h, "message", pids[user])
            assert instances(h, pids[user], "engaged") == [("waiting", "pause", "")]
            if receipt is not None:
                mid = "jm_someotherjourney" if user == "other" else payload["message_id"]
                track(h, user, receipt, message_id=mid)
        h.advance(HOUR)
        ends = {user: instances(h, pid, "engaged") for user, pid in pids.items()}
        assert ends == {
            "clicker": [("exited", "clicked", "clicked")],
            "opener": [("exited", "opened", "opened")],
            "receiver": [("exited", "delivered", "delivered")],
            "other": [("exited", "ignored", "ignored")],
            "silent": [("exited", "ignored", "ignored")],
        }


WAIT_UNTIL = """
journeys:
  templates:
    email: [morning, reminder]
  flows:
    - id: morning
      entry: { event: Plan Morning }
      reentry: always
      steps:
        - { id: nine, type: wait, until_time: "09:00", next: hello }
        - { id: hello, type: send, channel: email, template: morning }
    - id: renewal
      entry: { event: Plan Renewal }
      steps:
        - { id: eve, type: wait, until_trait: renewal_date, offset: -1d, next: remind }
        - { id: remind, type: send, channel: email, template: reminder }
"""


def test_wait_until_a_time_of_day_in_the_profiles_time_zone(
    backend_url: str, tmp_path: Path
) -> None:
    with flows(backend_url, tmp_path, WAIT_UNTIL) as h:
        # START is Friday 2027-01-15 08:00 UTC: 03:00 in New York, 17:00 in Tokyo.
        zones = {"ny": "America/New_York", "tokyo": "Asia/Tokyo", "utc": None}
        pids = {
            user: person(h, user, **({"timezone": tz} if tz else {})) for user, tz in zones.items()
        }
        for user in zones:
            track(h, user, "Plan Morning")
        due = {"utc": utc(2027, 1, 15, 9), "ny": utc(2027, 1, 15, 14), "tokyo": utc(2027, 1, 16)}
        for user, pid in pids.items():
            assert (user, timers(h, pid)) == (user, [due[user]])
            assert instances(h, pid, "morning") == [("waiting", "nine", "")]
        h.advance(due["ny"] - 1 - START)
        assert templates(h, pids["utc"]) == ["morning"] and templates(h, pids["ny"]) == []
        h.advance(1)
        assert templates(h, pids["ny"]) == ["morning"] and templates(h, pids["tokyo"]) == []
        h.advance(due["tokyo"] - due["ny"])
        assert templates(h, pids["tokyo"]) == ["morning"]
        for pid in pids.values():
            assert instances(h, pid, "morning") == [("completed", None, "reached the end")]
        # Across the start of daylight saving time in New York (Sunday 2027-03-14): noon EST
        # on the Saturday to 09:00 EDT on the Sunday is 20 hours, not 21.
        h.advance(utc(2027, 3, 13, 17) - h.engine.clock.now())
        track(h, "ny", "Plan Morning")
        assert timers(h, pids["ny"]) == [utc(2027, 3, 14, 13)]


def test_wait_until_a_date_trait_with_an_offset(backend_url: str, tmp_path: Path) -> None:
    with flows(backend_url, tmp_path, WAIT_UNTIL) as h:
        dates = {
            # A date is local midnight in the profile's zone: 2027-01-19 15:00 UTC in Tokyo.
            "date": {"renewal_date": "2027-01-20", "timezone": "Asia/Tokyo"},
            "instant": {"renewal_date": "2027-01-20T12:00:00Z"},
            "past": {"renewal_date": "2027-01-10"},
            "missing": {},
        }
        pids = {user: person(h, user, **traits) for user, traits in dates.items()}
        for user in dates:
            track(h, user, "Plan Renewal")
        assert timers(h, pids["date"]) == [utc(2027, 1, 18, 15)]
        assert timers(h, pids["instant"]) == [utc(2027, 1, 19, 12)]
        for user in ("date", "instant"):
            assert instances(h, pids[user], "renewal") == [("waiting", "eve", "")]
            assert templates(h, pids[user]) == []
        # A date already past, or no date at all: no wait, the reminder goes now.
        for user in ("past", "missing"):
            assert timers(h, pids[user]) == []
            assert templates(h, pids[user]) == ["reminder"]
            assert instances(h, pids[user], "renewal") == [("completed", None, "reached the end")]
        assert _path_details(h, pids["missing"])[1] == (
            "eve",
            "wait",
            "trait renewal_date missing or not a date: no wait",
        )
        h.advance(utc(2027, 1, 18, 15) - START - 1)
        assert templates(h, pids["date"]) == []
        h.advance(1)
        assert templates(h, pids["date"]) == ["reminder"]
        assert templates(h, pids["instant"]) == []
        h.advance(utc(2027, 1, 19, 12) - utc(2027, 1, 18, 15))
        assert templates(h, pids["instant"]) == ["reminder"]


def _path_details(h: Harness, pid: str) -> list[tuple[str | None, str, str]]:
    rows = h.sql(
        "SELECT at, step, kind, detail, more_lines FROM journey_path WHERE profile_id = ? "
        "ORDER BY id",
        pid,
    )
    return [(step, kind, detail) for _at, step, kind, detail in path_lines(rows)]


WAIT_FOR = """
journeys:
  flows:
    - id: demo
      entry: { event: Asked For Demo }
      steps:
        - id: form
          type: wait_for
          event: Form Submitted
          where: [{ field: properties.form, op: equals, value: demo }]
          timeout: 24h
          happened: booked
          timed_out: lapsed
        - { id: booked, type: exit, outcome: converted, reason: booked a demo }
        - { id: lapsed, type: exit, reason: no demo form }
"""


def test_wait_for_releases_only_on_an_event_meeting_its_conditions(
    backend_url: str, tmp_path: Path
) -> None:
    with flows(backend_url, tmp_path, WAIT_FOR) as h:
        booker, lapser = person(h, "booker"), person(h, "lapser")
        for user in ("booker", "lapser"):
            track(h, user, "Asked For Demo")
            track(h, user, "Form Submitted", form="newsletter")  # the wrong form
            track(h, user, "Demo Form Viewed", form="demo")  # the wrong event
        for pid in (booker, lapser):
            assert instances(h, pid, "demo") == [("waiting", "form", "")]
            assert timers(h, pid) == [START + 24 * HOUR]
        h.advance(23 * HOUR)
        track(h, "booker", "Form Submitted", form="demo")
        assert instances(h, booker, "demo") == [("converted", "booked", "booked a demo")]
        assert timers(h, booker) == []
        h.advance(HOUR)
        assert instances(h, lapser, "demo") == [("exited", "lapsed", "no demo form")]
        assert [kind for _s, kind, _d in _path_details(h, lapser)] == [
            "entered",
            "wait_for",
            "timed_out",
            "exited",
        ]
        assert instances(h, booker, "demo") == [("converted", "booked", "booked a demo")]


HANDOVER = """
journeys:
  flows:
    - id: handover
      entry: { event: Hand Over }
      steps:
        - { id: notify, type: webhook, webhook: sales, next: update }
        - id: update
          type: update_profile
          traits: { plan: pro, owner: sales }
          add_tags: [vip]
          remove_tags: [trial]
          next: add
        - { id: add, type: audience, add: hot_leads, next: pause }
        - { id: pause, type: wait, duration: 1d, next: remove }
        - { id: remove, type: audience, remove: hot_leads, next: done }
        - { id: done, type: exit, outcome: completed, reason: handed over }
"""


def test_webhook_profile_update_and_audience_steps(backend_url: str, tmp_path: Path) -> None:
    with flows(backend_url, tmp_path, HANDOVER) as h:
        pid = person(h, "h", plan="trial", tags=["trial", "beta"])
        track(h, "h", "Hand Over")
        ((iid, version),) = h.sql(
            "SELECT id, version FROM journey_instances WHERE profile_id = ?", pid
        )
        # The webhook carries the profile as it was when the step ran (before the update).
        assert outbox(h, "webhook", pid) == [
            (
                "sales",
                {
                    "body": {
                        "type": "journey.webhook",
                        "journey": "handover",
                        "version": version,
                        "step": "notify",
                        "instance": iid,
                        "profile_id": pid,
                        "traits": {
                            "email": "h@x.test",
                            "plan": "trial",
                            "tags": ["trial", "beta"],
                        },
                    }
                },
            )
        ]
        prof = h.profile("user_id", "h")
        assert prof is not None
        assert prof["traits"] == {
            "email": "h@x.test",
            "plan": "pro",
            "owner": "sales",
            "tags": ["beta", "vip"],
        }

        def audience(action: str, step: str) -> tuple[str, dict[str, str]]:
            return (
                "hot_leads",
                {
                    "audience": "hot_leads",
                    "action": action,
                    "profile_id": pid,
                    "journey": "handover",
                    "step": step,
                    "instance": iid,
                },
            )

        assert outbox(h, "audience", pid) == [audience("add", "add")]
        assert instances(h, pid, "handover") == [("waiting", "pause", "")]
        h.advance(DAY)
        assert outbox(h, "audience", pid) == [audience("add", "add"), audience("remove", "remove")]
        assert instances(h, pid, "handover") == [("completed", "done", "handed over")]
        assert len(outbox(h, "webhook", pid)) == 1


GOAL = """
journeys:
  templates:
    email: [one, two, three]
  flows:
    - id: buy
      entry: { event: Start Buying }
      goal:
        event: Order Completed
        where: [{ field: properties.total, op: gte, value: 100 }]
      steps:
        - { id: first, type: send, channel: email, template: one, next: pause }
        - { id: pause, type: wait, duration: 2d, next: second }
        - { id: second, type: send, channel: email, template: two, next: listen }
        - { id: listen, type: wait_for, event: Never Happens, timeout: 3d, timed_out: third }
        - { id: third, type: send, channel: email, template: three }
"""


def test_the_goal_event_converts_from_any_step(backend_url: str, tmp_path: Path) -> None:
    converted = "goal reached by Order Completed"
    with flows(backend_url, tmp_path, GOAL) as h:
        early, late = person(h, "early"), person(h, "late")
        for user in ("early", "late"):
            track(h, user, "Start Buying")
        h.advance(HOUR)
        track(h, "early", "Order Completed", total=150)  # during the wait
        track(h, "late", "Order Completed", total=20)  # below the goal's condition
        assert instances(h, early, "buy") == [("converted", "pause", converted)]
        assert timers(h, early) == []
        assert instances(h, late, "buy") == [("waiting", "pause", "")]
        h.advance(2 * DAY)
        assert instances(h, late, "buy") == [("waiting", "listen", "")]
        track(h, "late", "Order Completed", total=100)  # during the wait_for
        assert instances(h, late, "buy") == [("converted", "listen", converted)]
        assert timers(h, late) == []
        h.advance(10 * DAY)
        assert templates(h, early) == ["one"]
        assert templates(h, late) == ["one", "two"]
