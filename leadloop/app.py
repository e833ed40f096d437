"""Composition root: builds storage, the writer, the processor and its stages, timers and
the HTTP app, in flow order."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from leadloop.api.admin import (
    INVALID_REQUEST,
    admin_router,
    install_error_handlers,
    install_openapi,
)
from leadloop.api.channels import TrackingHits, channels_router
from leadloop.api.conversions import conversions_router
from leadloop.api.head import HeadAsGet
from leadloop.api.journeys import journeys_router
from leadloop.api.limits import BodyLimit
from leadloop.api.metrics import dashboard_router, metrics_router
from leadloop.api.parked import parked_router
from leadloop.channels.config import channels_config
from leadloop.channels.sender import MessageSender
from leadloop.channels.webhook import WebhookSender
from leadloop.clock import Clock, ManualClock, SystemClock, monotonic
from leadloop.config import Settings
from leadloop.conversions import config as conversion_config
from leadloop.conversions.sender import ConversionSender
from leadloop.conversions.service import ConversionStage
from leadloop.errors import ConfigError, LeadloopError, PlaybookError, StorageError
from leadloop.ingest.erased import Committed
from leadloop.ingest.hooks import InboundHooks
from leadloop.ingest.http import TrackingApp
from leadloop.ingest.model import Accepted
from leadloop.journeys.service import JourneyStage
from leadloop.log import park
from leadloop.log.breaker import Limits
from leadloop.log.processor import Processor, Redriven
from leadloop.log.timers import TimerLoop
from leadloop.log.writer import Writer
from leadloop.outbox import service as outbox_service
from leadloop.outbox.dispatcher import Dispatcher
from leadloop.playbook import store as playbook_store
from leadloop.playbook.model import Playbook
from leadloop.runtime import tune_gc, tune_switch_interval
from leadloop.scoring import queries as score_queries
from leadloop.scoring.model import ScoringModel
from leadloop.scoring.rescoring import Rescore, models_changing
from leadloop.scoring.service import ScoringStage
from leadloop.storage import workspaces
from leadloop.storage.analyze import analyzer
from leadloop.storage.checkpoint import checkpointer, hand_off_checkpoints
from leadloop.storage.db import DatabaseUrl, PostgresConnection, SqliteConnection, connect
from leadloop.storage.migrate import migrate, pending
from leadloop.storage.upkeep import Upkeep

if TYPE_CHECKING:  # imported where used: the sweep is rarely needed
    from leadloop.journeys.model import Journey
    from leadloop.journeys.sweep import Sweep

log = logging.getLogger("leadloop")
T = TypeVar("T")
Conn = SqliteConnection | PostgresConnection
CREDENTIAL_CACHE_SECONDS = 5.0
"""How long a running engine trusts a write key or admin token it has looked up: a key
revoked from the CLI stops working within this time (every request would otherwise cost a
database read)."""


def prepare_database(url: DatabaseUrl, clock: Clock) -> None:
    """Apply migrations and make sure the `default` workspace exists."""
    conn = connect(url)
    try:
        applied = migrate(conn)
        if applied and applied[0].version == 1:
            # A new database: ten lines naming its migrations tell a first run nothing.
            log.info(
                "created the database schema (migrations %04d-%04d)",
                applied[0].version,
                applied[-1].version,
            )
        else:
            # An upgrade: which migrations ran is worth a line each.
            for migration in applied:
                log.info("applied migration %04d_%s", migration.version, migration.name)
        with conn.transaction():
            workspaces.ensure_workspace(conn, workspaces.DEFAULT_WORKSPACE, clock.now())
    finally:
        conn.close()


def open_existing(
    database_url: str, workspace: str | None = None, *, older: bool = False
) -> SqliteConnection | PostgresConnection:
    """A connection to a database that must already exist (migrated to this version), for the
    commands that inspect or re-drive what an engine did: run in the wrong folder, or given a
    mistyped `workspace`, they say so instead of answering from nothing (and, for SQLite,
    creating an empty file there). It reads and writes no schema: a database behind this
    version is an error that says to run `leadloop migrate`, unless `older` (`leadloop backup`
    copies one before `migrate` upgrades it)."""
    url = DatabaseUrl.parse(database_url)
    try:
        missing = url.dialect == "sqlite" and url.path is not None and not Path(url.path).exists()
    except OSError as error:  # `exists` is False only for a missing file: a name too long raises
        raise LeadloopError(f"cannot open SQLite database {url.path}: {error.strerror}") from error
    if missing:
        raise LeadloopError(
            f"no database at {url.path}: this command reads the one an engine uses. Run it "
            "where the engine runs, or name that database with --database-url or "
            "LEADLOOP_DATABASE_URL (`leadloop serve` or `leadloop migrate` creates one)"
        )
    conn = connect(url)
    try:
        _require_current_schema(conn, older=older)
        if workspace is not None and not workspaces.workspace_exists(conn, workspace):
            raise LeadloopError(f"workspace {workspace!r} does not exist in this database")
    except BaseException:
        conn.close()
        raise
    return conn


def _require_current_schema(conn: Conn, *, older: bool = False) -> None:
    """These commands leave the schema alone: upgrading it under an engine of the older version
    that still runs on it is for `leadloop migrate`, run on purpose, not a side effect of
    `explain`."""
    todo = pending(conn)
    if todo is None:
        raise LeadloopError(
            "that database holds no leadloop schema: this command reads the one an engine uses. "
            "Name that database with --database-url or LEADLOOP_DATABASE_URL (`leadloop "
            "migrate` creates the schema)"
        )
    if todo and not older:
        names = ", ".join(f"{m.version:04d}_{m.name}" for m in todo)
        raise LeadloopError(
            f"the database's schema is older than this leadloop ({len(todo)} migration(s) "
            f"pending: {names}); this command does not change it. Run `leadloop migrate` "
            "first, with engines of the older version stopped"
        )


class Engine:
    """One running leadloop: API, writer, processor and timers sharing one database."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock | None = None,
        manual_clock: bool = False,
        run_processor: bool = True,
        serve_api: bool = True,
    ) -> None:
        self.settings = settings
        self.url = DatabaseUrl.parse(settings.database_url)
        tune_gc(settings.gc_threshold)
        tune_switch_interval()
        self.manual_clock: ManualClock | None = None
        if manual_clock:
            self.manual_clock = clock if isinstance(clock, ManualClock) else ManualClock()
            self.clock: Clock = self.manual_clock
        else:
            self.clock = clock or SystemClock()
        self.writer = Writer(
            self._connect_writer, max_pending=settings.max_pending_events, on_commit=self._committed
        )
        self.playbooks: dict[str, Playbook] = {}
        self.rescore_progress: Callable[[int, int], None] | None = None
        """Told of each rescore's progress, (done, total): see `rescoring.Progress`."""
        self.rescores: dict[str, tuple[int, int]] = {}
        """Workspace → (profiles passed, profiles) of the rescore running in it, for
        `GET /api/v1/status`."""
        self._rescoring: dict[str, Rescore] = {}
        """The rescore running per workspace (the processor's thread only)."""
        self._model_changes: dict[str, int] = {}
        """Per workspace, how many playbooks changed a scoring model since the start."""
        self._playbook_ids: dict[str, int] = {}
        """The newest stored playbook looked at, per workspace (loaded or not)."""
        self.live_playbook_ids: dict[str, int] = {}
        self.playbook_errors: dict[str, tuple[int, str]] = {}
        """Workspace → (stored playbook id, why it did not load), until a newer one loads."""
        self.segment_sweeps: dict[str, tuple[int, int]] = {}
        """Workspace → (profiles evaluated, profiles) of the segment sweep running in it
        (`journeys.sweep`), for `GET /api/v1/status`."""
        self._sweeps: dict[str, Sweep] = {}
        """The segment sweep under way per workspace (the processor's thread only)."""
        self._sweep_queued: dict[str, object] = {}
        """Per workspace, the token of its queued sweep job: one at a time (a job whose token
        was replaced since does nothing)."""
        self._sweep_lock = threading.Lock()
        self.journey_stage = JourneyStage(
            self.playbooks.get,
            channels_enabled=lambda ws: channels_config(self.playbooks.get(ws)).enabled_channels(),
            known_templates=lambda ws: channels_config(self.playbooks.get(ws)).template_names(),
        )
        self.processor = Processor(
            self._connect,
            self.writer,
            self.clock,
            stages=[
                ScoringStage(self.scoring_models),
                self.journey_stage,
                ConversionStage(self.conversions),
            ],
            default_region=settings.default_region,
            limits=Limits(
                window=settings.park_window,
                parks=settings.park_limit,
                in_a_row=settings.park_in_a_row,
                per_sender=settings.park_per_sender,
            ),
        )
        self.timers = TimerLoop(self.writer, self.clock, on_fired=self.processor.wake)
        self.dispatcher = Dispatcher(
            self.writer,
            self.clock,
            {
                "webhook": WebhookSender(
                    self.webhook_endpoint, gone=self.webhook_gone, clock=self.clock
                ),
                "conversion": ConversionSender(self.conversion_destination, clock=self.clock),
            },
            claim_sizes={"conversion": 2000},
        )
        self.processor.on_effects = self.dispatcher.wake
        self.messages = MessageSender.for_engine(self)
        self.dispatcher.senders["message"] = self.messages
        self._started = False
        self._stopped = False
        self._watch_stop = threading.Event()
        self._refresh_lock = threading.Lock()
        """One look for a new playbook at a time: the watch and an explicit refresh both
        found the same playbook new and each queued its rescore and segment sweep."""
        self._watcher: threading.Thread | None = None
        self._upkeep: Upkeep[SqliteConnection] | Upkeep[PostgresConnection] | None = None
        self._run_processor = run_processor
        self._redriving = False
        """A job re-driving the parked events asked for is queued or running."""
        self._local = threading.local()
        self._readers: list[Conn] = []
        self._readers_lock = threading.Lock()
        self._key_cache: dict[str, tuple[str, float]] = {}
        self._token_cache: dict[str, tuple[str, float]] = {}
        self.credential_ttl = CREDENTIAL_CACHE_SECONDS
        self.credential_clock: Callable[[], float] = monotonic
        """What the credential caches expire by (a test seam: the event loop keeps its own)."""
        self.profile_decorators: list[Callable[[Conn, dict[str, Any]], None]] = [
            self._decorate_scores
        ]

    def _connect(self) -> Conn:
        return connect(self.url)

    def _connect_writer(self) -> Conn:
        conn = connect(self.url)
        if isinstance(conn, SqliteConnection):
            hand_off_checkpoints(conn)
        return conn

    def _connect_sqlite(self) -> SqliteConnection:
        conn = connect(self.url)
        assert isinstance(conn, SqliteConnection)
        return conn

    def _connect_postgres(self) -> PostgresConnection:
        conn = connect(self.url)
        assert isinstance(conn, PostgresConnection)
        return conn

    def _committed(self) -> None:
        """New events are in the log."""
        self.processor.wake()

    # -- playbooks -----------------------------------------------------------------------

    def scoring_models(self, workspace: str) -> tuple[ScoringModel, ...]:
        playbook = self.playbooks.get(workspace)
        return playbook.models if playbook is not None else ()

    def conversions(self, workspace: str) -> conversion_config.ConversionsConfig:
        return conversion_config.conversions_config(self.playbooks.get(workspace))

    def conversion_destination(
        self, workspace: str, destination: str
    ) -> conversion_config.DestinationConfig | None:
        return self.conversions(workspace).destination(destination)

    def webhook_endpoint(self, workspace: str, webhook_id: str) -> tuple[str, str] | None:
        playbook = self.playbooks.get(workspace)
        hook = playbook.webhook(webhook_id) if playbook is not None else None
        if hook is None or not hook.enabled:
            return None
        return hook.url, hook.secret

    def webhook_gone(self, workspace: str, webhook_id: str) -> str | None:
        return self.read_sync(
            lambda c: outbox_service.gone_url(c, workspace, "webhook", webhook_id)
        )

    def apply_playbook_file(self, path: str) -> Playbook:
        """Validate a playbook from disk and make it the live one (raises PlaybookError)."""
        sources = playbook_store.read_sources(path)
        playbook = playbook_store.build(sources)
        conn = self._connect()
        try:
            current = playbook_store.latest(conn, playbook.workspace)
            if current is None or current.digest != playbook.digest:
                with conn.transaction():
                    playbook_store.save(conn, playbook, sources, self.clock.now())
        finally:
            conn.close()
        return playbook

    def refresh_playbooks(self, *, starting: bool = False) -> None:
        """Load any playbook applied since the last look. A stored one this version does not
        accept (validation grew stricter since it was applied) is logged and kept in
        `playbook_errors` for `GET /api/v1/status`; a running engine keeps the playbook it
        runs. `starting`, there is none to keep, so the start is refused (`ConfigError`)
        rather than the workspace run with no playbook: no scores, no journeys, no
        conversions, with nothing but a log line to say so."""
        with self._refresh_lock:
            self._refresh_playbooks(starting=starting)

    def _refresh_playbooks(self, *, starting: bool) -> None:
        ids = self.read_sync(playbook_store.latest_ids)
        refused: list[str] = []
        for workspace, pid in ids.items():
            if self._playbook_ids.get(workspace) == pid:
                continue
            applied = self.read_sync(lambda c, ws=workspace: playbook_store.latest(c, ws))  # type: ignore[misc]
            if applied is None:
                continue
            try:
                playbook = playbook_store.build(applied.sources)
            except PlaybookError as exc:
                self._playbook_ids[workspace] = pid
                self.playbook_errors[workspace] = (pid, str(exc))
                if starting:
                    refused.append(playbook_store.refused(workspace, pid, exc))
                    continue
                running = self.live_playbook_ids.get(workspace)
                log.error(
                    "stored playbook #%d of workspace %s does not load: %s; %s",
                    pid,
                    workspace,
                    exc,
                    f"playbook #{running} keeps running"
                    if running is not None
                    else "the workspace has no playbook",
                )
                continue
            self.playbook_errors.pop(workspace, None)
            for warning in playbook.warnings:
                log.warning("playbook: %s", warning)
            previous = self.playbooks.get(workspace)
            if self._started and previous is not None and _models_changed(previous, playbook):
                models_changing(self.writer, workspace)
            self.playbooks[workspace] = playbook
            channels_config(playbook)  # logs the "channel disabled" warnings now, not at first send
            changed = _models_changed(previous, playbook)
            if changed:
                self._model_changes[workspace] = self._model_changes.get(workspace, 0) + 1
            if changed and self._started:
                self.processor.request(lambda c, ws=workspace: self._rescore(c, ws))  # type: ignore[misc]
            if self._started:  # waits for the rescore: a segment may test a score
                self._request_sweep(workspace, requeue=bool(changed))
            self._playbook_ids[workspace] = pid
            self.live_playbook_ids[workspace] = pid
            log.info(  # by its stored number, as `playbook apply` and the status API name it
                "playbook #%d (version %s, digest %s) is live for workspace %s",
                pid,
                playbook.version,
                playbook.digest[:12],
                workspace,
            )
        if refused:
            raise ConfigError("; ".join(refused))

    def playbook_status(self, workspace: str) -> dict[str, Any]:
        """The workspace's live playbook (its stored id) and, when the newest stored one did
        not load, which one and why."""
        error = self.playbook_errors.get(workspace)
        sweeping = self.segment_sweeps.get(workspace)
        rescoring = self.rescores.get(workspace)
        return {
            "live": self.live_playbook_ids.get(workspace),
            "error": None if error is None else {"playbook": error[0], "message": error[1]},
            # Profiles whose new or changed segments are being evaluated (`journeys.sweep`).
            "segment_sweep": None
            if sweeping is None
            else {"profiles_done": sweeping[0], "profiles": sweeping[1]},
            # Profiles passed by the rescore after a scoring model changed; events are
            # processed meanwhile (a profile's own are rescored first).
            "rescore": None
            if rescoring is None
            else {"profiles_done": rescoring[0], "profiles": rescoring[1]},
        }

    def erase(self, workspace: str, profile_id: str) -> Future[int]:
        """Erase a profile (`identity.erase`); the future gives how many profiles went."""
        from leadloop.identity.erase import erase_profile

        return self._erase(lambda conn: erase_profile(conn, workspace, profile_id))

    def commit_delivery(
        self, workspace: str, messages: Sequence[Accepted], erase: Sequence[str]
    ) -> Future[Committed]:
        """Store a HubSpot delivery's events (or any request's that carry a HubSpot id) but
        those of contacts erased for good, then run its privacy deletions (each as `erase`
        does), in one transaction (`ingest.erased.commit_delivery`). With deletions it is
        ordered with the processor as `erase` is; without, it is a plain write, like any
        append."""
        from leadloop.ingest.erased import commit_delivery

        def commit(conn: Conn) -> Committed:
            return commit_delivery(conn, workspace, messages, erase, self.clock.now())

        # Its events are pending while the job waits, as an append's are: raises Overloaded.
        self.writer.reserve(len(messages))
        try:
            done = self._erase(commit) if erase else self.writer.submit(commit)
        except BaseException:
            self.writer.release(len(messages))
            raise
        done.add_done_callback(lambda _done: self.writer.release(len(messages)))
        done.add_done_callback(self._delivered)
        return done

    def _delivered(self, done: Future[Committed]) -> None:
        """A delivery's events are in the log: the processor is told, as for an append."""
        if done.exception() is None and done.result().stored:
            self.processor.wake()

    def _erase(self, erase: Callable[[Conn], T]) -> Future[T]:
        """On SQLite an erasure runs as a processor job, between two batches: a batch decided
        before it and written after it would otherwise write the profile back. On PostgreSQL
        the processor may be another process (`leadloop worker`), so it is a plain write there
        (the erasure epoch orders the two: docs/decisions/0005-erasure-epoch.md)."""
        if self.url.dialect != "sqlite" or not self._run_processor:
            return self.writer.submit(erase)
        done: Future[T] = Future()

        def job(_conn: Conn) -> None:
            try:
                done.set_result(self.writer.submit(erase).result())
            except BaseException as exc:
                done.set_exception(exc)

        self.processor.request(job)
        return done

    def _rescore(self, conn: Conn, workspace: str) -> None:
        """Rescore the workspace under its live models, a chunk per processor job (events are
        processed between two), from where a rescore of the same versions stopped (a restart)
        or from the first profile. One already running goes on: each chunk takes the live
        models, and starts over when they changed (`Rescore.step`)."""
        if workspace in self._rescoring:
            return

        def progress(done: int, total: int) -> None:
            self.rescores[workspace] = (done, total)
            if self.rescore_progress is not None:
                self.rescore_progress(done, total)

        changes = self._model_changes.get(workspace, 0)
        rescore = self._rescoring[workspace] = Rescore(workspace, progress, changes)
        self._rescore_chunk(conn, workspace, rescore)

    def _rescore_chunk(self, conn: Conn, workspace: str, rescore: Rescore) -> None:
        # Read before the models: a change in between is then seen at the next chunk.
        changes = self._model_changes.get(workspace, 0)
        models = self.scoring_models(workspace)
        try:
            more = rescore.step(conn, self.writer, models, self.clock.now(), changes)
        except Exception:
            # Retried at once, it could fail round after round; the record stays, and the
            # next start resumes from it. Meanwhile each profile is rescored at its next event.
            log.exception("rescoring %s failed; it resumes when the engine starts", workspace)
            more = False
        if more:
            self.processor.request_later(lambda c: self._rescore_chunk(c, workspace, rescore))
            return
        rescore.close()
        del self._rescoring[workspace]
        self.rescores.pop(workspace, None)

    def _rescore_stale(self, conn: Conn, workspace: str) -> None:
        from leadloop.scoring.rescoring import stale_models

        if stale_models(conn, workspace, self.scoring_models(workspace)):
            self._rescore(conn, workspace)

    def _request_sweep(
        self, workspace: str, *, requeue: bool = False, next_chunk: bool = False
    ) -> None:
        """Have the processor sweep the workspace's new or changed segments, unless its next
        chunk is queued already (that job reads the journeys as they are when it runs).
        `requeue`: queue it behind the jobs asked for since (a rescore: a segment may test a
        score), the one queued before doing nothing; `next_chunk`: asked by the sweep itself
        (`Processor.request_later`). Not where this engine runs no processor: the workers ask
        for it."""
        if not self._run_processor:
            return
        token = object()
        with self._sweep_lock:
            if workspace in self._sweep_queued and not requeue:
                return
            self._sweep_queued[workspace] = token
        request = self.processor.request_later if next_chunk else self.processor.request
        request(lambda c: self._sweep_segments(c, workspace, token))

    def _sweep_segments(self, conn: Conn, workspace: str, token: object) -> None:
        """Evaluate the next chunk of profiles for the journeys whose segment is new or
        changed since it was last swept (`journeys.sweep`), and ask for the one after: a batch
        of events is processed between two chunks."""
        from leadloop.journeys import sweep

        with self._sweep_lock:  # a request from now on queues the next chunk
            if self._sweep_queued.get(workspace) is not token:
                return  # queued again since, behind a rescore
            del self._sweep_queued[workspace]
        if workspace in self._rescoring:  # a segment may test a score: swept once rescored
            self._request_sweep(workspace, next_chunk=True)
            return
        journeys = self.journey_stage.journeys(workspace)
        # A `score` entry is swept again when a rescore moved its model's crossing instants.
        versions = {m.id: m.version for m in self.scoring_models(workspace)}
        stale: list[Journey] = []
        if journeys is not None:
            sweep.forget_removed(conn, self.writer, workspace, journeys.journeys)
            stale = sweep.stale_segments(conn, workspace, journeys.journeys, versions)
        running = self._sweeps.get(workspace)
        if running is not None and not running.covers(stale, versions):
            self._end_sweep(workspace)  # a segment changed or a journey came or went meanwhile
            running = None
        if not stale:
            return
        try:
            if running is None:
                running = self._sweeps[workspace] = sweep.Sweep(
                    conn, workspace, stale, versions=versions
                )
                self.segment_sweeps[workspace] = running.progress
            finished = running.step(conn, self.writer, self.clock.now())
        except Exception as exc:
            if park.transient(exc):  # the database, not the sweep: its chunk is tried again
                log.warning("a segment sweep chunk failed (%s); retrying", exc)
                self._request_sweep(workspace, next_chunk=True)
                return
            self._end_sweep(workspace)  # logged by the processor; run again at the next start
            raise
        if finished:
            self._end_sweep(workspace)
        else:
            self.segment_sweeps[workspace] = running.progress
            self._request_sweep(workspace, next_chunk=True)

    def _end_sweep(self, workspace: str) -> None:
        running = self._sweeps.pop(workspace, None)
        if running is not None:
            running.close()
        self.segment_sweeps.pop(workspace, None)

    def redrive_parked(self, parked_id: int) -> Future[Redriven]:
        """Process a parked event again on the processor's thread, between two batches
        (`Processor.redrive`). Only where this engine's processor leads: elsewhere a re-drive
        is asked for in the database (`park.request_redrive`), and the leader takes it up."""
        done: Future[Redriven] = Future()

        def job(conn: Conn) -> None:
            try:
                done.set_result(self.processor.redrive(conn, parked_id))
            except BaseException as exc:
                done.set_exception(exc)

        self.processor.request(job)
        return done

    def _redrive_requested(self) -> None:
        """Take up the re-drives asked for from the CLI (another process), where this engine's
        processor leads; one job at a time, so a busy processor does not collect copies."""
        if self._redriving or not self._run_processor or self.processor.idle_here() is None:
            return
        ids = self.read_sync(park.requested)
        if not ids:
            return
        self._redriving = True

        def job(conn: Conn) -> None:
            try:
                for parked_id in ids:
                    self.processor.redrive(conn, parked_id)
            except Exception:  # transient: the rest stay asked for, and are tried again
                log.exception("re-driving parked events failed; trying again")
            finally:
                self._redriving = False

        self.processor.request(job)

    def _watch(self) -> None:
        while not self._watch_stop.wait(1.0):
            try:
                self.refresh_playbooks()
            except Exception:
                log.exception("checking for a new playbook failed")
            try:
                self._redrive_requested()
            except Exception:
                log.exception("checking for parked events to re-drive failed")
            try:
                self._park_requested()
            except Exception:
                log.exception("checking whether the held event is to be parked failed")

    def _park_requested(self) -> None:
        """Cut the wait before the next attempt at the held event short when the CLI (another
        process) asked for it to be parked: the processor parks it then."""
        from leadloop.log.processor import CURSOR

        if not self.processor.holding:
            return
        held = self.read_sync(lambda c: park.held(c, CURSOR))
        if held is not None and held.park_requested_at is not None:
            self.processor.poke()

    def _decorate_scores(self, conn: Conn, view: dict[str, Any]) -> None:
        scores = score_queries.scores_view(conn, view["workspace"], view["id"], self.clock.now())
        # A model removed from the playbook keeps its rows (its ledger explains them), but no
        # longer moves: say so rather than show it as live.
        models = {model.id: model for model in self.scoring_models(view["workspace"])}
        for model_id, entry in scores.items():
            entry["in_playbook"] = model_id in models
            model = models.get(model_id)
            if model is not None and model.predict is not None:
                from leadloop.scoring.predictive.service import predicted_view

                entry["predicted"] = predicted_view(
                    conn, view["workspace"], view["id"], model, self.clock.now()
                )
        view["scores"] = scores

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        prepare_database(self.url, self.clock)
        if self.settings.playbook:
            self.apply_playbook_file(self.settings.playbook)
        self.refresh_playbooks(starting=True)
        for workspace, playbook in self.playbooks.items():
            # A playbook applied while the engine was stopped had no engine to rescore it.
            if playbook.models:
                self.processor.request(lambda c, ws=workspace: self._rescore_stale(c, ws))  # type: ignore[misc]
            # Nor to sweep its segments, and a sweep the stop cut short goes on.
            self._request_sweep(workspace)
        self._started = True
        self._upkeep = (
            checkpointer(self._connect_sqlite)
            if self.url.dialect == "sqlite"
            else analyzer(self._connect_postgres)
        )
        self._upkeep.start()
        self.writer.start()
        if self._run_processor:
            self.processor.start()
            self.timers.start()
            self.dispatcher.start()
        self._watcher = threading.Thread(target=self._watch, name="leadloop-playbooks", daemon=True)
        self._watcher.start()

    def stop(self) -> None:
        """Stop every part, each even when one before it failed (the error is raised after,
        any earlier one chained to it): a tracking drain that raised or timed out left the
        writer's thread and connection, and the checkpointer, running."""
        if self._stopped:
            return
        self._stopped = True
        with ExitStack() as parts:  # stopped last first: readers, upkeep, writer, ..., watcher
            parts.callback(self._close_readers)
            parts.callback(self._stop_upkeep)
            parts.callback(self.writer.stop)
            parts.callback(self.messages.close)
            parts.callback(lambda: self.messages.services.hits.drain().result(timeout=5))
            if self._run_processor:
                parts.callback(self._close_rescores)  # after the processor's thread ends
                parts.callback(self.processor.stop)
                parts.callback(self.timers.stop)
                parts.callback(self.dispatcher.stop)
            parts.callback(self._stop_watcher)

    def _close_rescores(self) -> None:
        """A rescore the stop cut short resumes at the next start (its record stays)."""
        for rescore in self._rescoring.values():
            rescore.close()

    def _stop_watcher(self) -> None:
        self._watch_stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout=5)

    def _stop_upkeep(self) -> None:
        if self._upkeep is not None:
            self._upkeep.stop()
            self._upkeep = None

    def _close_readers(self) -> None:
        with self._readers_lock:
            readers, self._readers = self._readers, []
        for conn in readers:
            try:
                conn.close()
            except Exception:  # a reader owned by another thread may be mid-query at exit
                log.debug("closing a reader connection failed", exc_info=True)
        self._local = threading.local()

    # -- reads (thread-local connections, run off the event loop) ------------------------

    def _reader(self) -> Conn:
        conn: Conn | None = getattr(self._local, "conn", None)
        if conn is not None and conn.broken:  # the database dropped it (a restart, a failover)
            with self._readers_lock:
                self._readers.remove(conn)
            conn.close()
            conn = None
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    def read_sync(self, fn: Callable[[Conn], T]) -> T:
        conn = self._reader()
        try:
            return fn(conn)
        except StorageError:
            if not conn.broken:
                raise
            # The database dropped the session (a restart, a failover): a read changes nothing,
            # so it runs once more on a new connection rather than failing the request.
            return fn(self._reader())

    async def read(self, fn: Callable[[Conn], T]) -> T:
        return await asyncio.to_thread(self.read_sync, fn)

    async def workspace_for_write_key(self, key: str) -> str | None:
        return await self._credential(self._key_cache, key, workspaces.workspace_for_write_key)

    async def workspace_for_token(self, token: str) -> str | None:
        return await self._credential(self._token_cache, token, workspaces.workspace_for_token)

    async def _credential(
        self,
        cache: dict[str, tuple[str, float]],
        secret: str,
        lookup: Callable[[Conn, str], str | None],
    ) -> str | None:
        """The workspace a write key or admin token belongs to, remembered for
        `credential_ttl` seconds (of the machine's clock, not the engine's, which a sandbox
        moves by days): a key revoked by `leadloop keys revoke` in another process stops
        working within that time."""
        now = self.credential_clock()
        cached = cache.get(secret)
        if cached is not None and cached[1] > now:
            return cached[0]
        found = await self.read(lambda c: lookup(c, secret))
        if found is None:
            cache.pop(secret, None)
        elif self.credential_ttl > 0:
            if len(cache) >= 10_000:
                cache.clear()
            cache[secret] = (found, now + self.credential_ttl)
        return found

    def status(self, conn: Conn, workspace: str | None = None) -> dict[str, Any]:
        from leadloop.log import store
        from leadloop.log.processor import CURSOR

        status: dict[str, Any] = {
            "log_length": store.log_length(conn),
            "processor_position": store.processed_seq(conn, CURSOR),
            "lag": store.lag(conn, CURSOR),
            "writer_pending": self.writer.pending,
            # A lag of 0 does not say a batch is not still in flight (an erasure may have
            # taken its events); null where this process's processor does not lead.
            "processor": {
                "idle": self.processor.idle_here() if self._run_processor else None,
                # Holding at an event that fails every time rather than parking it, because
                # parking stopped being rare (`log.breaker`); null while processing goes on.
                "halted": _halted(park.held(conn, CURSOR)),
            },
            # Events set aside because processing them failed every time (`leadloop events
            # parked`): not lost, but not processed either until re-driven.
            "parked_events": park.count(conn, workspace),
            "clock": "manual" if self.manual_clock else "system",
            "now": self.clock.now(),
        }
        if workspace is not None:
            status["playbook"] = self.playbook_status(workspace)
        return status

    def decorate_profile(self, view: dict[str, Any]) -> dict[str, Any]:
        for decorate in self.profile_decorators:
            self.read_sync(lambda c, d=decorate: d(c, view))  # type: ignore[misc]
        return view

    async def advance_clock(self, seconds: float) -> float:
        assert self.manual_clock is not None
        now = self.manual_clock.advance(seconds)
        # Everything due up to the new time happens before the answer: timers fire, their
        # events are processed, and timers those set for instants already passed fire too.
        await asyncio.to_thread(self.settle_timers)
        return now

    def settle_timers(self, timeout: float = 120.0) -> None:
        """Fire due timers and wait for the processor, until no due timer is left."""
        from leadloop.log import store
        from leadloop.log.processor import CURSOR

        def caught_up() -> bool:
            if not self._run_processor:
                return True
            # Idle too: an erasure may have deleted every event of a batch still in flight.
            return store.lag(self._reader(), CURSOR) == 0 and self.processor.is_idle()

        deadline = monotonic() + timeout
        while monotonic() < deadline:
            # Settled only when, with nothing left to process (so no timer is about to be set),
            # nothing was due and nothing was fired meanwhile. The timer loop fires on its own:
            # a wake-up it fired first can set a timer for an instant already passed, which
            # `fired == 0` from this call alone would leave unfired.
            seen = self.timers.fired_total
            idle = caught_up()
            fired = self.timers.fire_now()
            self.processor.wake()
            if fired == 0 and idle and self.timers.fired_total == seen:
                return
            while not caught_up() and monotonic() < deadline:
                self.processor.wake()
                self._watch_stop.wait(0.01)

    # -- HTTP ----------------------------------------------------------------------------

    def asgi(self) -> TrackingApp:
        """The whole HTTP surface: the tracking hot path, then the inbound webhooks of the
        playbooks' `sources:`, in front of the admin app."""
        return TrackingApp(self, InboundHooks(self, TrackingHits(self, self.admin_app())))

    def admin_app(self) -> FastAPI:
        app = FastAPI(
            title="leadloop",
            version="0.1.0",
            openapi_url="/api/v1/openapi.json",
            docs_url="/api/v1/docs",
            redoc_url=None,
            # FastAPI serves an OAuth2 redirect page for Swagger UI by default; the admin API
            # takes a bearer token, not OAuth2, so that page is no route of ours.
            swagger_ui_oauth2_redirect_url=None,
            responses=INVALID_REQUEST,
        )
        install_error_handlers(app)
        install_openapi(app)
        app.add_middleware(BodyLimit)
        app.add_middleware(HeadAsGet)

        async def healthz(request: Request) -> Response:
            return JSONResponse({"status": "ok"})

        app.add_route("/healthz", healthz, methods=["GET"])
        app.include_router(admin_router(self))
        app.include_router(parked_router(self))
        app.include_router(journeys_router(self))
        app.include_router(channels_router(self))
        app.include_router(conversions_router(self))
        app.include_router(metrics_router(self))
        app.include_router(dashboard_router())
        return app


def _models_changed(previous: Playbook | None, playbook: Playbook) -> tuple[ScoringModel, ...]:
    """The models of `playbook` that are new, or of another version, since `previous`."""
    return tuple(
        m
        for m in playbook.models
        if previous is None
        or previous.model(m.id) is None
        or previous.model(m.id).version != m.version  # type: ignore[union-attr]
    )


def _halted(held: park.Hold | None) -> dict[str, Any] | None:
    """What `GET /api/v1/status` says of a hold: engine-wide, so not the held event's message
    id or error message (another workspace's data); `leadloop events parked` shows them."""
    if held is None:
        return None
    return {
        "reason": held.reason,
        "since": held.since,
        "parked_recently": held.parked_recently,
        "seq": held.seq,
        "error": held.error,
    }
