"""`GET /api/v1/metrics` on both backends: messages, journeys with their holdout, the funnel
and revenue over a window, each counted from what the engine stored."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from httpx2 import Response
from starlette.testclient import TestClient

from leadloop.analytics import queries
from leadloop.analytics.spend import SpendRow
from leadloop.channels import records
from leadloop.storage import workspaces
from tests.contract.conftest import Harness
from tests.contract.journeys_helpers import DAY, flows, pricing
from tests.contract.test_journeys_holdout import HOLDOUT, signed_up

pytestmark = pytest.mark.usefixtures("channels_env")


def metrics(h: Harness, **params: str) -> tuple[int, dict[str, Any]]:
    r = metrics_response(h, **params)
    return r.status_code, r.json()


def metrics_response(h: Harness, **params: str) -> Response:
    now = h.engine.clock.now()
    token = h.engine.writer.submit(
        lambda c: workspaces.create_admin_token(c, "default", "metrics", now)
    ).result()
    with TestClient(h.engine.asgi()) as client:
        return client.get(
            "/api/v1/metrics", params=params, headers={"Authorization": f"Bearer {token}"}
        )


def message(h: Harness, mid: str, template: str, at: float, *statuses: str) -> None:
    """A message record as the sender leaves it, then its receipts in order."""

    def write(c: Any) -> None:
        record = records.create(
            c,
            records.MessageRecord(
                "default",
                mid,
                "p",
                "email",
                template,
                "offer",
                "offer",
                "a@x.test",
                None,
                "queued",
                "",
                None,
                at,
                at,
            ),
            at,
        )
        for status in statuses:
            record = records.transition(c, record, status, "", at)

    h.engine.writer.submit(write).result()


def test_messages_journeys_funnel_and_revenue_over_a_window(
    backend_url: str, tmp_path: Path
) -> None:
    with flows(backend_url, tmp_path, HOLDOUT) as h:
        _pids, held, treated = signed_up(h, "m", 20, 0.3)
        orders = [
            (held[0], {"revenue": 100, "currency": "usd"}),
            (treated[0], {"total": "40.50", "currency": "USD"}),
            (treated[0], {"value": 9.5}),  # no currency: kept apart
            (treated[1], {"revenue": 60, "currency": "EUR"}),
        ]
        h.send(
            *(
                {"type": "track", "userId": u, "event": "Order Completed", "properties": p}
                for u, p in orders
            )
        )
        h.settle()
        # A senior title, two pricing views and the lead magnet: 15 + 20 + 15, an MQL at 50.
        for user in treated[:2]:
            h.send({"type": "identify", "userId": user, "traits": {"title": "VP Sales"}})
            pricing(h, user)
            pricing(h, user)
            h.send({"type": "track", "userId": user, "event": "Lead Magnet Downloaded"})
            h.settle()
        at = h.engine.clock.now()
        message(h, "e1", "offer", at, "sent", "opened", "clicked")
        message(h, "e2", "offer", at, "sent", "clicked", "complained")  # a click is an open
        message(h, "e3", "offer", at, "sent", "bounced")
        message(h, "e4", "offer", at, "sent")
        message(h, "e5", "offer", at)  # still queued
        message(h, "old", "offer", at - 40 * DAY, "sent", "opened")  # before the window

        # The journey's own offers wait in the outbox (this harness has no sender): queued.
        queued = len(h.sql("SELECT DISTINCT message_id FROM sends"))
        assert queued == len(treated)

        status, body = metrics(h)
        assert status == 200, body
        assert body["until"] == h.engine.clock.now() and body["since"] == body["until"] - 30 * DAY
        (row,) = body["messages"]["by_template"]
        assert (row["channel"], row["template"], row["journey"]) == ("email", "offer", "offer")
        counts = {k: row[k] for k in ("messages", "sent", "delivered", "opened", "clicked")}
        assert counts == {
            "messages": 5 + queued,
            "sent": 4,
            "delivered": 3,
            "opened": 2,
            "clicked": 2,
        }
        assert (row["bounced"], row["complained"], row["failed"]) == (1, 1, 0)
        assert row["open_rate"] == 2 / 3 and row["click_rate"] == 2 / 3
        assert row["click_to_open"] == 1.0 and row["bounce_rate"] == 1 / 4
        assert body["messages"]["by_channel"] == [{**row, "template": None, "journey": None}]

        (journey,) = body["journeys"]
        assert journey["treated"]["entered"] == len(treated)
        assert journey["holdout"]["entered"] == len(held)
        assert journey["treated"]["converted"] == 2 and journey["holdout"]["converted"] == 1
        assert journey["lift"] == 2 / len(treated) - 1 / len(held)

        revenue = {r["currency"]: r for r in body["revenue"]}
        assert revenue["USD"] == {
            "currency": "USD",
            "orders": 2,
            "revenue": 140.5,
            "customers": 2,
            "revenue_per_customer": 70.25,
            "orders_per_customer": 1.0,
        }
        assert (revenue["EUR"]["revenue"], revenue["XXX"]["revenue"]) == (60.0, 9.5)

        (lead,) = [m for m in body["funnel"] if m["model"] == "lead"]
        reached = {s["stage"]: s["reached"] for s in lead["stages"]}
        assert reached["MQL"] == 2, lead

        # A window that ends before anything happened counts nothing.
        status, empty = metrics(h, since="2020-01-01", until="2020-02-01T00:00:00Z")
        assert status == 200, empty
        assert empty["messages"] == {"by_channel": [], "by_template": []}
        assert empty["journeys"] == [] and empty["revenue"] == []
        assert all(s["reached"] == 0 for m in empty["funnel"] for s in m["stages"])
        # The message sent 40 days ago is in a window that holds it.
        status, old = metrics(h, since=str(at - 41 * DAY), until=str(at - 39 * DAY))
        assert [r["opened"] for r in old["messages"]["by_template"]] == [1]


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"since": "yesterday"}, "expected a date"),
        ({"since": "2026-11-01T09:00:00"}, "needs a zone"),
        ({"until": "nan"}, "expected a date"),
        ({"until": "-5"}, "year 9999"),
        ({"since": "2026-11-02", "until": "2026-11-01"}, "not be after until"),
        ({"since": "2000-01-01", "until": "2026-11-01"}, "at most"),
        ({"from": "2026-11-01"}, "not a parameter"),
        ({"since": "2" * 41}, "at most 40"),
    ],
)
def test_a_bad_window_is_a_400_that_names_it(
    backend_url: str, tmp_path: Path, params: dict[str, str], words: str
) -> None:
    with flows(backend_url, tmp_path, HOLDOUT) as h:
        status, body = metrics(h, **params)
        assert status == 400 and words in body["message"], body


def test_cac_and_roas_from_imported_spend_and_first_orders(
    backend_url: str, tmp_path: Path
) -> None:
    with flows(backend_url, tmp_path, HOLDOUT) as h:
        now = h.engine.clock.now()

        def order(user: str, at: float, amount: float, code: str = "USD") -> dict[str, Any]:
            return {
                "type": "track",
                "userId": user,
                "event": "Order Completed",
                "timestamp": datetime.fromtimestamp(at, UTC).isoformat(),
                "properties": {"revenue": amount, "currency": code},
            }

        h.send(
            order("returning", now - 60 * DAY, 10.0),  # first order long before the window
            order("returning", now - DAY, 50.0),
            order("new1", now - 2 * DAY, 100.0),
            order("new2", now - 3 * DAY, 150.0),
            order("new2", now - DAY, 20.0, "EUR"),
        )
        h.settle()
        day = datetime.fromtimestamp(now, UTC).date()
        rows = [
            SpendRow((day - timedelta(days=5)).isoformat(), "meta", "a", "USD", 100.0),
            SpendRow((day - timedelta(days=5)).isoformat(), "google", "", "USD", 50.0),
            SpendRow((day - timedelta(days=90)).isoformat(), "meta", "a", "USD", 999.0),  # before
            SpendRow(day.isoformat(), "tiktok", "", "EUR", 40.0),
        ]
        stored = h.engine.writer.submit(
            lambda c: queries.import_spend(c, "default", rows, now)
        ).result()
        assert stored == 4
        status, body = metrics(h)
        assert status == 200, body
        assert body["acquisition"] == [
            {
                "currency": "EUR",
                "spend": 40.0,
                "new_customers": 2,
                "revenue": 20.0,
                "cac": 20.0,
                "roas": 0.5,
                "roas_unknown": None,
            },
            {
                "currency": "USD",
                "spend": 150.0,
                "new_customers": 2,
                "revenue": 300.0,
                "cac": 75.0,
                "roas": 2.0,
                "roas_unknown": None,
            },
        ]
        # Importing a corrected day replaces it: nothing is counted twice.
        fixed = [SpendRow(rows[0].day, "meta", "a", "USD", 250.0)]
        h.engine.writer.submit(lambda c: queries.import_spend(c, "default", fixed, now)).result()
        usd = metrics(h)[1]["acquisition"][1]
        assert (usd["spend"], usd["cac"], usd["roas"]) == (300.0, 150.0, 1.0)


def test_roas_over_orders_without_a_currency_is_unknown_with_the_reason(
    backend_url: str, tmp_path: Path
) -> None:
    """A shop whose orders name no currency, spending in USD: ROAS read 0.0 (the dashboard's
    `0.00×`), as if the ads sold nothing."""
    with flows(backend_url, tmp_path, HOLDOUT) as h:
        now = h.engine.clock.now()
        h.send(
            {
                "type": "track",
                "userId": "buyer",
                "event": "Order Completed",
                "timestamp": datetime.fromtimestamp(now - DAY, UTC).isoformat(),
                "properties": {"revenue": 300.0},
            }
        )
        h.settle()
        day = datetime.fromtimestamp(now - DAY, UTC).date().isoformat()
        rows = [SpendRow(day, "meta", "", "USD", 100.0)]
        h.engine.writer.submit(lambda c: queries.import_spend(c, "default", rows, now)).result()
        status, body = metrics(h)
        assert status == 200, body
        [usd] = body["acquisition"]
        assert (usd["currency"], usd["revenue"], usd["cac"], usd["roas"]) == (
            "USD",
            0.0,
            100.0,
            None,
        )
        assert "without a currency (XXX) hold 300.00" in usd["roas_unknown"]


def test_journey_conversions_count_within_the_journeys_window_as_the_journeys_api_does(
    backend_url: str, tmp_path: Path
) -> None:
    from tests.contract.journeys_helpers import admin_get, track
    from tests.contract.test_journeys_holdout import LONG

    with flows(backend_url, tmp_path, LONG) as h:
        _pids, _held, treated = signed_up(h, "l", 8, 0.5)
        track(h, treated[1], "Order Completed")  # within the 10-day window
        h.advance(12 * DAY)
        track(h, treated[0], "Order Completed")  # after it: counted in neither report
        status, body = metrics(h, since=str(h.engine.clock.now() - 20 * DAY))
        assert status == 200, body
        (journey,) = body["journeys"]
        assert journey["treated"] == {
            "entered": len(treated),
            "converted": 1,
            "conversion_rate": 1 / len(treated),
        }
        (overview,) = admin_get(h, "/api/v1/journeys")["journeys"]
        assert overview["treated"] == {"entered": len(treated), "converted": 1}
        assert journey["lift"] == overview["lift"]


def test_a_message_sent_again_after_a_failed_attempt_counts_as_sent_not_failed(
    backend_url: str, tmp_path: Path
) -> None:
    """A send that failed (a template fault, say) and was re-driven once fixed went out and was
    read: it counted as failed and undelivered, and its open made the open rate pass 100 %."""
    with flows(backend_url, tmp_path, HOLDOUT) as h:
        at = h.engine.clock.now()
        message(h, "again", "offer", at, "failed", "queued", "sent", "opened")
        message(h, "late", "offer", at, "sent", "failed")  # a failed receipt after sending
        message(h, "never", "offer", at, "failed")
        status, body = metrics(h)
        assert status == 200, body
        (row,) = body["messages"]["by_template"]
        counts = {k: row[k] for k in ("messages", "sent", "delivered", "opened", "failed")}
        assert counts == {"messages": 3, "sent": 2, "delivered": 1, "opened": 1, "failed": 2}
        assert row["open_rate"] == 1.0 and row["delivery_rate"] == 0.5


def test_an_unknown_stage_named_by_a_crm_is_no_move_in_the_funnel(
    backend_url: str, tmp_path: Path
) -> None:
    """The ledger notes a stage name the model does not have ("ignored"), under the stage the
    person already held: the funnel counted that line as a move, so an SQL of months ago
    reached SQL again in every window where the CRM sent a stage of its own."""
    from tests.contract.journeys_helpers import track

    with flows(backend_url, tmp_path, HOLDOUT) as h:
        track(h, "crm", "CRM Stage Changed", stage="SQL")
        h.advance(40 * DAY)
        track(h, "crm", "CRM Stage Changed", stage="Closed Lost")  # not a stage of `lead`
        ignored = h.sql("SELECT stage, reason FROM score_ledger WHERE kind = 'stage'")
        assert any("ignored" in str(reason) for _stage, reason in ignored), ignored
        status, body = metrics(h)
        assert status == 200, body
        (lead,) = [m for m in body["funnel"] if m["model"] == "lead"]
        assert all(s["reached"] == 0 for s in lead["stages"]), lead
        # The window of the real move holds it.
        status, body = metrics(h, since=str(h.engine.clock.now() - 41 * DAY))
        (lead,) = [m for m in body["funnel"] if m["model"] == "lead"]
        assert {s["stage"]: s["reached"] for s in lead["stages"]}["SQL"] == 1, lead


def test_one_date_bound_gives_thirty_whole_days_of_spend_not_thirty_one(
    backend_url: str, tmp_path: Path
) -> None:
    """`since=2026-12-01` alone ran to midnight of the 31st day, and `until=2026-12-30` alone
    started on the last instant of the day before the 30: each window touched a 31st day,
    whose whole spend was counted against a millisecond of its orders (CAC and ROAS a day off)."""
    with flows(backend_url, tmp_path, HOLDOUT) as h:
        rows = [
            SpendRow(day, "meta", "", "USD", amount)
            for day, amount in (("2026-11-30", 1000.0), ("2026-12-01", 10.0), ("2026-12-30", 20.0))
        ] + [SpendRow("2026-12-31", "meta", "", "USD", 3000.0)]
        now = h.engine.clock.now()
        h.engine.writer.submit(lambda c: queries.import_spend(c, "default", rows, now)).result()
        for params in ({"since": "2026-12-01"}, {"until": "2026-12-30"}):
            status, body = metrics(h, **params)
            assert status == 200, body
            assert [a["spend"] for a in body["acquisition"]] == [30.0], (params, body)
            assert body["until"] - body["since"] < 30 * DAY, (params, body)


def test_a_window_within_days_counts_their_spend_for_the_part_it_covers(
    backend_url: str, tmp_path: Path
) -> None:
    """Spend is imported per UTC day; a window from noon to noon counted both days whole (48
    hours of spend against 24 of orders), and the default window, the 30 days up to now, read
    31 days of spend. A day the window covers in part counts in proportion."""
    with flows(backend_url, tmp_path, HOLDOUT) as h:
        rows = [
            SpendRow(day, "meta", "", "USD", amount)
            for day, amount in (("2026-11-01", 100.0), ("2026-11-02", 200.0), ("2026-11-03", 1e6))
        ]
        now = h.engine.clock.now()
        h.engine.writer.submit(lambda c: queries.import_spend(c, "default", rows, now)).result()
        for params, spent in (
            ({"since": "2026-11-01T12:00:00Z", "until": "2026-11-02T11:59:59.999Z"}, 150.0),
            ({"since": "2026-11-01T18:00:00Z", "until": "2026-11-01T23:59:59.999Z"}, 25.0),
            ({"since": "2026-11-01", "until": "2026-11-02"}, 300.0),  # whole days: all of it
            ({"since": "2026-11-02T06:00:00+06:00", "until": "2026-11-02"}, 200.0),
            ({"since": "2026-11-02T23:59:59.999Z", "until": "2026-11-02T23:59:59.999Z"}, 0.0),
        ):
            status, body = metrics(h, **params)
            assert status == 200, body
            assert [a["spend"] for a in body["acquisition"]] == [spent], (params, body)
        # The default window, the 30 days up to now, holds 30 days' worth of spend of 10 a
        # day: today's is what was spent so far, spread over the hours gone by.
        today = datetime.fromtimestamp(now, UTC).date()
        midnight = datetime.combine(today, datetime.min.time(), UTC).timestamp()
        flat = [
            SpendRow((today - timedelta(days=n)).isoformat(), "google", "", "EUR", 10.0)
            for n in range(1, 40)
        ] + [SpendRow(today.isoformat(), "google", "", "EUR", 10.0 * (now - midnight) / DAY)]
        h.engine.writer.submit(lambda c: queries.import_spend(c, "default", flat, now)).result()
        status, body = metrics(h)
        assert [a["spend"] for a in body["acquisition"] if a["currency"] == "EUR"] == [300.0]


def test_sends_the_contact_policy_held_back_are_messages_of_the_window(
    backend_url: str, tmp_path: Path
) -> None:
    """The policy's suppressed and deferred sends never reach the sender, so they have no
    message record: `messages` left them out, though the docs count them, and a journey whose
    every send was refused showed no messages at all."""
    with flows(backend_url, tmp_path, HOLDOUT) as h:
        at = h.engine.clock.now()
        h.send(*({"type": "track", "userId": f"n{i}", "event": "Signed Up"} for i in range(6)))
        h.settle()  # no email address: no channel can carry the offer
        refused = h.sql("SELECT DISTINCT message_id FROM sends WHERE outcome = 'suppressed'")
        assert refused
        message(h, "e1", "offer", at, "sent")
        status, body = metrics(h)
        assert status == 200, body
        (row,) = body["messages"]["by_template"]
        assert (row["channel"], row["template"], row["journey"]) == ("email", "offer", "offer")
        assert (row["messages"], row["sent"]) == (len(refused) + 1, 1), row
        assert body["messages"]["by_channel"][0]["messages"] == len(refused) + 1
        # Outside the window they are not counted.
        status, body = metrics(h, until=str(at - 1))
        assert body["messages"]["by_template"] == []
