"""Replaying the log through scoring models: the shared engine of `leadloop backtest`
(changes nothing) and of rescoring after a model changes (rewrites score state).

Events are streamed per profile in `(profile_id, seq)` order, so memory holds one profile's
history at a time, whatever the size of the log.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from msgspec.structs import replace

from leadloop.identity import decide as identity
from leadloop.identity.model import Profile
from leadloop.log.model import Event
from leadloop.log.store import event_from_row
from leadloop.scoring.decide import rescore
from leadloop.scoring.ledger import ledger_line
from leadloop.scoring.model import (
    ScoreDecision,
    ScoreState,
    ScoringModel,
    same_stage,
    total_at,
)
from leadloop.storage.db import PostgresConnection, SqliteConnection

Conn = SqliteConnection | PostgresConnection
_COLUMNS = (
    "seq, workspace_id, message_id, type, event, user_id, anonymous_id, group_id, "
    "previous_id, ts, received_at, body, profile_id"
)


def count_profiles(conn: Conn, workspace: str) -> int:
    rows = conn.execute(
        "SELECT COUNT(*) FROM profiles WHERE workspace_id = ? AND merged_into IS NULL",
        (workspace,),
    )
    return int(rows[0][0])


def histories(
    conn: Conn,
    workspace: str,
    chunk: int = 5000,
    *,
    longest: int | None = None,
    until: Callable[[Event], bool] | None = None,
) -> Iterator[tuple[str, list[Event]]]:
    """(profile id, its events in log order), one profile at a time. With `until`, after the
    first event it holds for only the events it holds for are kept (training needs nothing
    else a profile did after its outcome). With `longest`, a profile with more events kept is
    left out, its events dropped as soon as they are too many (a scripted client's millions
    would otherwise be held at once)."""
    last_pid, last_seq = "", -1
    current: str | None = None
    events: list[Event] = []
    too_long = ended = False
    while True:
        rows = conn.execute(
            f"SELECT {_COLUMNS} FROM events WHERE workspace_id = ? AND profile_id IS NOT NULL "
            "AND (profile_id, seq) > (?, ?) ORDER BY profile_id, seq LIMIT ?",
            (workspace, last_pid, last_seq, chunk),
        )
        if not rows:
            break
        for row in rows:
            pid = str(row[12])
            if pid != current:
                if current is not None and not too_long:
                    yield current, events
                current, events, too_long, ended = pid, [], False, False
            if too_long:
                continue
            event = event_from_row(row[:12])
            if until is not None:
                if ended and not until(event):
                    continue
                ended = ended or until(event)
            events.append(event)
            if longest is not None and len(events) > longest:
                events, too_long = [], True
        last_pid, last_seq = str(rows[-1][12]), int(rows[-1][0])
    if current is not None and not too_long:
        yield current, events


def history_of(conn: Conn, workspace: str, profile_id: str) -> list[Event]:
    """One profile's events in log order."""
    return [
        event_from_row(row[:12])
        for row in conn.execute(
            f"SELECT {_COLUMNS} FROM events WHERE workspace_id = ? AND profile_id = ? ORDER BY seq",
            (workspace, profile_id),
        )
    ]


def processed_histories(
    conn: Conn, workspace: str, ids: list[str], through: str, excluded: frozenset[int] = frozenset()
) -> dict[str, list[Event]]:
    """The events of profiles `ids` (at most a few hundred) that the processor has processed,
    in log order: those at or before its log position `through`, but for the seqs `excluded`.

    Only processing gives an event a profile, except the engine's own (timer firings, emitted
    events), which are appended with one: bounded by the position, an event waiting in the log
    is scored once, when it is processed, not also as part of the history."""
    found: dict[str, list[Event]] = {pid: [] for pid in ids}
    marks = ",".join("?" * len(ids))
    params: list[Any]
    if conn.dialect == "sqlite":
        bound, params = "seq <= ?", [int(through)]
    else:  # read in (txid, seq) order there (`log.store`)
        txid, _, seq = through.partition(":")
        bound, params = "(txid, seq) <= (?::xid8, ?)", [txid, int(seq)]
    for row in conn.execute(
        f"SELECT {_COLUMNS} FROM events WHERE workspace_id = ? AND profile_id IN ({marks}) "
        f"AND {bound} ORDER BY seq",
        (workspace, *ids, *params),
    ):
        if int(row[0]) not in excluded:
            found[str(row[12])].append(event_from_row(row[:12]))
    return found


def merged_history(
    conn: Conn, workspace: str, ids: list[str], batch_seqs: list[int], before_seq: int
) -> list[Event]:
    """The events before `before_seq` of profiles `ids`, which the batch being processed
    merges into one: those of earlier batches (stored under each id) and the batch's own, by
    `seq` (still unattributed in the log), in log order."""
    found: dict[int, Event] = {}
    marks = ",".join("?" * len(ids))
    for row in conn.execute(
        f"SELECT {_COLUMNS} FROM events WHERE workspace_id = ? AND profile_id IN ({marks}) "
        "AND seq < ?",
        (workspace, *ids, before_seq),
    ):
        found[int(row[0])] = event_from_row(row[:12])
    for start in range(0, len(batch_seqs), 500):
        chunk = batch_seqs[start : start + 500]
        for row in conn.execute(
            f"SELECT {_COLUMNS} FROM events WHERE workspace_id = ? "
            f"AND seq IN ({','.join('?' * len(chunk))})",
            (workspace, *chunk),
        ):
            found[int(row[0])] = event_from_row(row[:12])
    return [found[seq] for seq in sorted(found)]


AccountTraits = Callable[[str, int], Mapping[str, Any]]
"""(group id, log position) → the account's traits once the group calls up to it are applied."""


class AccountLog:
    """Accounts' traits by log position, read from the group calls of every member.

    Live scoring reads an account's traits as all its members' group calls left them (the
    identity stage keeps one `accounts` row per group), so a profile's own events do not
    give them: a colleague's group call that sets `employees: 500` refits every member at
    its next event. Each account's calls are read once, when first asked for."""

    KEEP = 10_000
    """Accounts whose history is held at once; a rescore of a large workspace asks for many."""

    def __init__(self, conn: Conn, workspace: str) -> None:
        self._conn = conn
        self._workspace = workspace
        self._timelines: dict[str, tuple[list[int], list[dict[str, Any]]]] = {}

    def __call__(self, group_id: str, seq: int) -> Mapping[str, Any]:
        timeline = self._timelines.get(group_id)
        if timeline is None:
            if len(self._timelines) >= self.KEEP:
                self._timelines.clear()
            timeline = self._timelines[group_id] = self._read(group_id)
        seqs, states = timeline
        at = bisect_right(seqs, seq)
        return states[at - 1] if at else _NONE

    def _read(self, group_id: str) -> tuple[list[int], list[dict[str, Any]]]:
        seqs: list[int] = []
        states: list[dict[str, Any]] = []
        traits: dict[str, Any] = {}
        for row in self._conn.execute(
            f"SELECT {_COLUMNS} FROM events WHERE workspace_id = ? AND type = 'group' "
            "AND group_id = ? ORDER BY seq",
            (self._workspace, group_id),
        ):
            # Replaced, never updated in place: a state handed out stays as it was.
            traits = identity.account_traits_after(traits, event_from_row(row[:12]).account_traits)
            seqs.append(int(row[0]))
            states.append(traits)
        return seqs, states


_NONE: Mapping[str, Any] = {}


def with_context(
    profile_id: str, events: list[Event], accounts: AccountTraits | None = None
) -> Iterator[tuple[Event, Profile, Mapping[str, Any]]]:
    """Each event with the profile and account traits as they were when it happened.

    Scoring reads a profile's id, traits and accounts, which only identify and group calls
    change (`identity.apply_event`), and a journey's updates at their own events
    (`identity.apply_engine_event`, as the processor applies them before scoring); the
    other events keep the profile object, and the
    account traits keep theirs, so a replay sees unchanged traits as the same objects and
    does not refit (see `decide.rescore`). `accounts` gives an account's traits from the
    whole log (`AccountLog`); without it, from the profile's own group calls only, which is
    the same when no other profile belongs to its accounts."""
    profile: Profile | None = None
    own: dict[str, dict[str, Any]] = {}
    for event in events:
        if profile is None:
            profile = identity.apply_event(identity.new_profile(profile_id, event), event)
        elif event.type in ("identify", "group"):
            profile = identity.apply_event(profile, event)
        elif event.type == "internal":
            profile = identity.apply_engine_event(profile, event)
        if event.type == "group" and event.group_id:
            # Replaced, never updated in place: a yielded dict stays as it was.
            own[event.group_id] = identity.account_traits_after(
                own.get(event.group_id, {}), event.account_traits
            )
        latest = profile.account_ids[-1] if profile.account_ids else None
        if latest is None:
            yield event, profile, _NONE
        elif accounts is not None:
            yield event, profile, accounts(latest, event.seq)
        else:
            yield event, profile, own.get(latest, _NONE)


def replay(
    profile_id: str,
    events: list[Event],
    model: ScoringModel,
    now: float,
    accounts: AccountTraits | None = None,
) -> ScoreDecision:
    return rescore(with_context(profile_id, events, accounts), model, now)


def rescore_profile(
    profile_id: str,
    events: list[Event],
    model: ScoringModel,
    stored: ScoreState | None,
    now: float,
    accounts: AccountTraits | None = None,
) -> ScoreDecision:
    """A profile's state rebuilt from its history under a changed `model`, over `stored` (its
    state under another version, or none): one `rescore` ledger line, the decay due, and
    nothing else. Thresholds the replay crosses fire nothing (sales would be paged for old
    news) and the stage never moves down: the higher of the stored and the replayed one
    stays. The background rescore and the scoring stage (a profile with an event before the
    rescore reached it) both rescore through here."""
    decision = replay(profile_id, events, model, now, accounts)
    state = decision.state
    if stored is not None and model.rank(stored.stage) > model.rank(state.stage):
        state = replace(state, stage=stored.stage)
    before = 0.0 if stored is None else total_at(stored, now)
    line = ledger_line(
        state,
        model,
        now,
        "rescore",
        total_at(state, now) - before,
        f"rescored from the log under model version {model.version[:12]}",
    )
    return ScoreDecision(state=state, changes=(line,), decay_due_at=decision.decay_due_at)


@dataclass
class BacktestResult:
    model: str
    version: str
    stage: str
    reached: int = 0
    """Profiles that reached `stage` (after `since`, if given)."""
    converted: int = 0
    """Of those, profiles with the outcome event after reaching the stage."""
    by_month: dict[str, int] = field(default_factory=dict)
    days_to_stage: list[float] = field(default_factory=list)

    def median_days(self) -> float | None:
        if not self.days_to_stage:
            return None
        ordered = sorted(self.days_to_stage)
        return ordered[len(ordered) // 2]


def backtest_profile(
    results: dict[str, BacktestResult],
    profile_id: str,
    events: list[Event],
    models: tuple[ScoringModel, ...],
    stage: str,
    outcome: str | None,
    since: float | None,
    now: float,
    accounts: AccountTraits | None = None,
) -> None:
    from datetime import UTC, datetime

    for model in models:
        result = results[model.id]
        decision = replay(profile_id, events, model, now, accounts)
        # The live playbook may spell the stage in another case than the one tried.
        reached = next(
            (m.at for m in decision.stage_changes if same_stage(m.to_stage, stage)), None
        )
        if reached is None or (since is not None and reached < since):
            continue
        result.reached += 1
        month = datetime.fromtimestamp(reached, UTC).strftime("%Y-%m")
        result.by_month[month] = result.by_month.get(month, 0) + 1
        result.days_to_stage.append((reached - events[0].timestamp) / 86400.0)
        if outcome and any(
            e.event == outcome and e.timestamp >= reached and e.type != "internal" for e in events
        ):
            result.converted += 1
