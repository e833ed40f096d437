"""A send step with `selection: thompson`, through the processor on both backends: it counts
each variant's queued messages and first clicks from the log, sends most new entrants the
variant that is clicked, and a replay of the log makes every choice again, the same."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from leadloop.channels import records
from leadloop.log.rebuild import reset_derived_state
from tests.contract.conftest import Harness
from tests.contract.journeys_helpers import flows, people
from tests.contract.test_journeys_seed import playbook_with_journeys

pytestmark = pytest.mark.usefixtures("channels_env")

FRAGMENT = """
journeys:
  templates:
    email: [plain, bold, fancy]
  flows:
    - id: promo
      entry: { event: Go }
      steps:
        - id: offer
          type: send
          channel: email
          selection: thompson
          variants:
            - { template: plain }
            - { template: bold }
"""


def go(h: Harness, users: list[str]) -> None:
    h.send(*({"type": "track", "userId": u, "event": "Go"} for u in users))
    h.settle()


def queued(h: Harness) -> dict[str, tuple[str, str]]:
    """Per queued message: (profile, template)."""
    rows = h.sql("SELECT message_id, profile_id, template FROM sends WHERE outcome = 'queued'")
    return {str(m): (str(p), str(t)) for m, p, t in rows}


def stats(h: Harness) -> dict[str, tuple[int, int]]:
    rows = h.sql("SELECT template, sends, clicks FROM variant_stats WHERE step_id = 'offer'")
    return {str(t): (int(s), int(c)) for t, s, c in rows}


def click(h: Harness, message_id: str, profile_id: str, template: str, first: bool) -> None:
    """The event the channels write for a click on a tracked link of that message."""
    props: dict[str, Any] = {
        "message_id": message_id,
        "journey": "promo",
        "step": "offer",
        "channel": "email",
        "template": template,
        "url": "https://example.com/offer",
        "first_click": first,
    }
    now = h.engine.clock.now()
    name = f"click:{message_id}:{first}"
    h.engine.writer.submit(
        lambda c: records.emit(
            c, "default", name, "Email Link Clicked", profile_id, props, now, now
        )
    ).result()


def test_thompson_learns_which_variant_is_clicked_and_replays_the_same(
    backend_url: str, tmp_path: Path
) -> None:
    with flows(backend_url, tmp_path, FRAGMENT) as h:
        first = [f"a{i}" for i in range(30)]
        people(h, first)
        go(h, first)
        sent = queued(h)
        by_template = {"plain": 0, "bold": 0}
        for _pid, template in sent.values():
            by_template[template] += 1
        assert by_template["plain"] > 0 and by_template["bold"] > 0  # no evidence yet: both
        assert stats(h) == {t: (n, 0) for t, n in by_template.items()}

        # Everyone sent `bold` clicks (twice: only the first click counts); nobody else does.
        for mid, (pid, template) in sent.items():
            if template == "bold":
                click(h, mid, pid, template, first=True)
                click(h, mid, pid, template, first=False)
        h.settle()
        assert stats(h) == {"plain": (by_template["plain"], 0), "bold": (by_template["bold"],) * 2}

        later = [f"b{i}" for i in range(100)]
        people(h, later)
        go(h, later)
        after = {m: v for m, v in queued(h).items() if m not in sent}
        assert len(after) == 100
        assert sum(1 for _p, t in after.values() if t == "bold") >= 90

        # A replay folds the same counts in the same order: every choice comes out the same.
        before = sorted(queued(h).items()), stats(h)
        h.engine.writer.submit(reset_derived_state).result()
        h.engine.processor.wake()
        h.settle()
        assert (sorted(queued(h).items()), stats(h)) == before


PLAIN_ONLY = FRAGMENT.replace(
    """          selection: thompson
          variants:
            - { template: plain }
            - { template: bold }
""",
    "          template: plain\n",
)


def test_a_click_counts_only_for_a_message_whose_send_was_counted(
    backend_url: str, tmp_path: Path
) -> None:
    """Variants added to a step in a new version: clicks on the messages the step sent with its
    one template before count for nothing (their sends were never counted); clicks on a
    variant's messages still count once that variant is removed, as their sends did."""
    with flows(backend_url, tmp_path, PLAIN_ONLY) as h:
        assert PLAIN_ONLY != FRAGMENT
        old = [f"a{i}" for i in range(10)]
        people(h, old)
        go(h, old)
        before = queued(h)
        assert len(before) == 10 and stats(h) == {}

        h.engine.apply_playbook_file(playbook_with_journeys(tmp_path, FRAGMENT, "v2.yaml"))
        h.engine.refresh_playbooks()
        new = [f"b{i}" for i in range(10)]
        people(h, new)
        go(h, new)
        after = {m: v for m, v in queued(h).items() if m not in before}
        counted = {t: 0 for t in ("plain", "bold")}
        for _pid, template in after.values():
            counted[template] += 1
        assert counted["plain"] and counted["bold"]  # no evidence yet: both
        for mid, (pid, template) in (*before.items(), *after.items()):
            if mid in before or template == "bold":
                click(h, mid, pid, template, first=True)
        h.settle()
        assert stats(h) == {"plain": (counted["plain"], 0), "bold": (counted["bold"],) * 2}

        # `plain` leaves the variant set: a late first click on a `plain` message still
        # counts, as its send did (an instance pinned to v2 may still send it).
        without_plain = FRAGMENT.replace("{ template: plain }", "{ template: fancy }")
        assert without_plain != FRAGMENT
        h.engine.apply_playbook_file(playbook_with_journeys(tmp_path, without_plain, "v3.yaml"))
        h.engine.refresh_playbooks()
        for mid, (pid, template) in after.items():
            if template == "plain":
                click(h, mid, pid, template, first=True)
        h.settle()
        assert stats(h)["plain"] == (counted["plain"], counted["plain"])
