"""Which journeys applying a playbook gives a new version, and why: for `playbook diff` and
`apply`, beside the scoring models it rescores (`scoring.rescoring.rescore_reasons`)."""

from __future__ import annotations

from leadloop.journeys.model import Journey
from leadloop.journeys.writes import REMOVED_REASON, live_marker
from leadloop.log.batch import Conn
from leadloop.scoring.rescoring import variable_names


def version_changes(
    conn: Conn, workspace: str, live: tuple[Journey, ...], journeys: tuple[Journey, ...]
) -> list[str]:
    """A line for each of `journeys` whose version applying them over `live` (both built in
    this process's environment) changes, and for each journey of `live` they remove.

    The engine builds the playbook with its own environment: a `${VAR}` a journey reads may
    hold another value there, so the text alone may not show the new version. The version
    the engine last made live (`writes.live_marker`) is compared with the one built here; the
    versions it registered (`journey_versions`) tell whether that one ran before."""
    stored: dict[str, dict[str, float]] = {}
    for jid, version, created in conn.execute(
        "SELECT journey_id, version, created_at FROM journey_versions WHERE workspace_id = ?",
        (workspace,),
    ):
        stored.setdefault(str(jid), {})[str(version)] = float(created)
    lines = []
    for journey in journeys:
        before = next((j for j in live if j.id == journey.id), None)
        versions = stored.get(journey.id, {journey.version: 0.0})
        running = _running_version(conn, workspace, journey.id, versions)
        if before is None:
            why = "it is new: matching profiles enter it from now on"
        elif before.version != journey.version:
            why = f"its definition changed; {_running(journey)}"
        elif journey.version == running:
            continue
        elif journey.version in versions and journey.variables:
            why = (
                f"back to an earlier version: the value of {variable_names(journey)} in this "
                "shell is one the engine ran it with before, not the one it runs now: an "
                f"engine started with this environment makes that version live again; "
                f"{_running(journey)}"
            )
        elif journey.variables:
            why = (
                f"only the value of {variable_names(journey)} differs in this shell from the "
                "engine's (or the playbook was applied since the engine last ran): an engine "
                f"started with this environment creates it; {_running(journey)}"
            )
        else:
            why = (
                "the engine has not run it yet (the playbook was applied while it was stopped); "
                f"{_running(journey)}"
            )
        lines.append(f"new version of journey {journey.id}: {why}")
    kept = {j.id for j in journeys}
    lines.extend(
        f"removes journey {j.id}: its running instances end with status ended and the reason "
        f"'{REMOVED_REASON}'"
        for j in live
        if j.id not in kept
    )
    return lines


def _running_version(
    conn: Conn, workspace: str, journey_id: str, versions: dict[str, float]
) -> str | None:
    """The journey's version the engine runs: the one it last made live, or, in a database
    it has not run since it began to record that, the latest it registered."""
    rows = conn.execute(
        "SELECT position FROM cursors WHERE name = ?", (live_marker(workspace, journey_id),)
    )
    if rows:
        return str(rows[0][0])
    return max(versions, key=lambda v: versions[v]) if versions else None


def _running(journey: Journey) -> str:
    """What becomes of instances already in the journey (docs/journeys.md, `migrate`)."""
    text = "new entrants run it, running instances stay on the version they entered"
    if not journey.migrate:
        return text
    moves = ", ".join(f"{old} → {new}" for old, new in sorted(journey.migrate.items()))
    return f"{text}, except those `migrate` maps, which move to this version's step ({moves})"
