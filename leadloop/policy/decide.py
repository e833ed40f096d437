"""The contact-pressure policy, pure: `decide_send(request, recipient, config, at)`.

No clock, no storage: the shell passes the recipient's traits, suppressions and recent sends,
and `at`, the instant of the send (from the log, so a replay decides the same).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from leadloop.policy.model import (
    ADDRESS_TRAITS,
    HARD_REASONS,
    HARD_TRAITS,
    UNSUBSCRIBE_TRAITS,
    Cap,
    Defer,
    PolicyConfig,
    QuietHours,
    Recipient,
    Send,
    SendRequest,
    SentRecord,
    Suppress,
    Verdict,
)

_ZONES: dict[str, ZoneInfo | None] = {}


def zone(name: object, default: str = "UTC") -> ZoneInfo:
    """The IANA zone named by a `timezone` trait; the default for a missing or unknown one."""
    if isinstance(name, str) and name:
        if name not in _ZONES:
            try:
                _ZONES[name] = ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError):
                _ZONES[name] = None
        found = _ZONES[name]
        if found is not None:
            return found
    return ZoneInfo(default)


def channel_order(request: SendRequest, config: PolicyConfig) -> tuple[str, ...]:
    """The asked channels, each followed by its configured fallbacks, without repeats."""
    if not config.fallback:
        return tuple(dict.fromkeys(request.channels))
    order: list[str] = []
    pending = list(request.channels)
    while pending:
        channel = pending.pop(0)
        if channel in order:
            continue
        order.append(channel)
        pending[0:0] = [c for c in config.fallback.get(channel, ()) if c not in order]
    return tuple(order)


def _truthy(value: object) -> bool:
    if isinstance(value, str):
        return value.strip().casefold() in ("true", "yes", "1", "y", "opted_in", "granted")
    return value is True or (isinstance(value, int | float) and value == 1)


_NO_TAGS: frozenset[str] = frozenset()
_FLAG_TRAITS = frozenset(
    name for names in (*HARD_TRAITS.values(), *UNSUBSCRIBE_TRAITS.values()) for name in names
)
"""Every trait `_flagged` may find true: a profile with none of them (and no tags) has none set."""


def _tags(traits: dict[str, object]) -> frozenset[str]:
    tags = traits.get("tags")
    if isinstance(tags, list | tuple):
        return frozenset(str(t).casefold() for t in tags)
    return _NO_TAGS


def _flagged(traits: dict[str, object], tags: frozenset[str], name: str) -> bool:
    """The trait `name` is true, or `name` is one of the profile's tags."""
    value = traits.get(name)
    return (value is not None and _truthy(value)) or name in tags


def unavailable(
    channel: str, recipient: Recipient, config: PolicyConfig, transactional: bool
) -> str | None:
    """Why `channel` cannot carry this send to this recipient at all (None: it can)."""
    traits = recipient.traits
    if channel not in config.channels or (
        recipient.channel_enabled is not None and channel not in recipient.channel_enabled
    ):
        return "channel not enabled"
    for name in ADDRESS_TRAITS.get(channel, ()):
        if traits.get(name) not in (None, ""):
            break
    else:
        wanted = " or ".join(ADDRESS_TRAITS.get(channel, ("an address",)))
        return f"no {wanted}"
    tags = _tags(traits)
    # Most profiles carry none of the flag traits and no tags: one set test instead of six.
    flags = bool(tags) or not _FLAG_TRAITS.isdisjoint(traits)
    for name in HARD_TRAITS.get(channel, ()) if flags else ():
        if _flagged(traits, tags, name):
            return f"suppressed: {name}"
    for entry in recipient.suppressions:
        if entry.channel in (channel, "*") and (not transactional or entry.reason in HARD_REASONS):
            return f"suppressed: {entry.reason}"
    if transactional:
        return None
    for scope in ("*", channel) if flags else ():
        for name in UNSUBSCRIBE_TRAITS.get(scope, ()):
            if _flagged(traits, tags, name):
                return f"suppressed: {name}"
    needed = config.consent.get(channel, ())
    if needed and not any(_truthy(traits.get(name)) for name in needed):
        return f"no consent ({' or '.join(needed)})"
    return None


def cap_free_at(
    channel: str, sent: tuple[SentRecord, ...], caps: tuple[Cap, ...], at: float
) -> tuple[float, Cap] | None:
    """When every cap covering `channel` has room again, if one is full at `at`."""
    worst: tuple[float, Cap] | None = None
    for cap in caps:
        if cap.channels and channel not in cap.channels:
            continue
        # No upper bound: a send decided at a later instant than `at` is already earlier in
        # the log (a timer is decided at its due time but reaches the log when it fires).
        times = sorted(
            s.at
            for s in sent
            if not s.transactional
            and (not cap.channels or s.channel in cap.channels)
            and at - cap.per < s.at
        )
        if len(times) < cap.max:
            continue
        # The window holds len(times) sends; room returns once the oldest surplus one leaves it.
        free = _leaves_window(times[len(times) - cap.max], cap.per)
        if worst is None or free > worst[0]:
            worst = (free, cap)
    return worst


def _leaves_window(sent: float, per: float) -> float:
    """The first instant at which `sent` is out of a `per` window, by the test above. `sent + per`
    can round down (crossing a power of two: 2**31 is in January 2038) to an instant still in the
    window, even to the `at` it was decided at: a timer woken then would be deferred to its own
    due time, fire under the same event id and be dropped as a duplicate. One step up is out."""
    free = sent + per
    if free - per < sent:
        free = math.nextafter(free, math.inf)
    return free


def _local_minutes(local: datetime) -> float:
    return local.hour * 60 + local.minute + local.second / 60 + local.microsecond / 60e6


def in_quiet_hours(quiet: QuietHours, local: datetime) -> bool:
    minutes = _local_minutes(local)
    if quiet.start == quiet.end:
        return False
    if quiet.start < quiet.end:
        return quiet.start <= minutes < quiet.end
    return minutes >= quiet.start or minutes < quiet.end


def next_local_time(
    at: float, tz: ZoneInfo, minutes: int, weekdays: tuple[int, ...] = (), strictly: bool = False
) -> float:
    """The first instant at or after `at` (after, when `strictly`) whose local wall-clock time is
    `minutes` after midnight, on one of `weekdays` (0 = Monday; empty: any day)."""
    local = datetime.fromtimestamp(at, UTC).astimezone(tz)
    day = local.date()
    for offset in range(0, 15):
        date = day + timedelta(days=offset)
        if weekdays and date.weekday() not in weekdays:
            continue
        wall = datetime(date.year, date.month, date.day, minutes // 60, minutes % 60, tzinfo=tz)
        first, second = wall.timestamp(), wall.replace(fold=1).timestamp()
        # When the clocks go back the time occurs twice. Its second occurrence (fold=1) is a
        # match only from inside the repeated hour's second pass, when the clock reads earlier
        # again (or `at` there would wait a day); from the first pass the time has been, and a
        # daily loop woken at the first would fire again an hour later. In a gap fold=1 is the
        # earlier instant (a wall time that does not occur): only fold=0, just after the gap.
        repeat = second > first and local.fold == 1 and date == day
        for candidate in (first, second) if repeat else (first,):
            if candidate > at or (candidate == at and not strictly):
                return candidate
    raise ValueError("no matching day within two weeks")  # unreachable with valid weekdays


def quiet_until(quiet: QuietHours | None, channel: str, tz: ZoneInfo, at: float) -> float | None:
    """The end of the quiet period `at` falls in, or None when sending is allowed at `at`."""
    if quiet is None or (quiet.channels and channel not in quiet.channels):
        return None
    local = datetime.fromtimestamp(at, UTC).astimezone(tz)
    if not in_quiet_hours(quiet, local):
        return None
    return next_local_time(at, tz, quiet.end, strictly=True)


def _clock(at: float, tz: ZoneInfo) -> str:
    return datetime.fromtimestamp(at, UTC).astimezone(tz).strftime("%Y-%m-%d %H:%M %Z")


def decide_send(
    request: SendRequest, recipient: Recipient, config: PolicyConfig, at: float
) -> Verdict:
    return _decide(request, recipient, config, at, wait_for_room=True)


def _decide(
    request: SendRequest,
    recipient: Recipient,
    config: PolicyConfig,
    at: float,
    *,
    wait_for_room: bool,
) -> Verdict:
    tz = zone(recipient.traits.get("timezone"), config.default_timezone)
    notes: list[str] = []
    capped: list[tuple[float, str]] = []
    for channel in channel_order(request, config):
        reason = unavailable(channel, recipient, config, request.transactional)
        if reason is not None:
            notes.append(f"{channel}: {reason}")
            continue
        if not request.transactional:
            full = cap_free_at(channel, recipient.sent, config.caps, at)
            if full is not None:
                free, cap = full
                scope = "/".join(cap.channels) if cap.channels else "all channels"
                notes.append(
                    f"{channel}: frequency cap {cap.max} per {cap.per:g}s on {scope} "
                    f"until {_clock(free, tz)}"
                )
                capped.append((free, channel))
                continue
            until = quiet_until(config.quiet_hours, channel, tz, at)
            if until is not None:
                # A channel passed over for its cap may have room before the quiet hours end.
                sooner = (
                    _wait_for_room(request, recipient, config, tz, capped, tuple(notes))
                    if wait_for_room and capped
                    else None
                )
                if sooner is not None and sooner.until < until:
                    return sooner
                return Defer(
                    until,
                    f"quiet hours in {tz.key} until {_clock(until, tz)}",
                    channel,
                    tuple(notes),
                )
        return Send(channel, tuple(notes))
    if not capped:
        return Suppress("no channel can carry it: " + "; ".join(notes), tuple(notes))
    room = (
        _wait_for_room(request, recipient, config, tz, capped, tuple(notes))
        if wait_for_room
        else None
    )
    if room is not None:
        return room
    free, channel = min(capped)
    until = quiet_until(config.quiet_hours, channel, tz, free) or free
    return Defer(until, f"frequency cap: deferred to {_clock(until, tz)}", channel, tuple(notes))


def _wait_for_room(
    request: SendRequest,
    recipient: Recipient,
    config: PolicyConfig,
    tz: ZoneInfo,
    capped: list[tuple[float, str]],
    notes: tuple[str, ...],
) -> Defer | None:
    """The first moment a channel passed over for its cap carries the send (None: at none of
    the moments they free). A channel is free once its cap has room and its quiet hours are
    over, and the one freed first may be in quiet hours past another's room."""
    moments = sorted(
        {
            (quiet_until(config.quiet_hours, channel, tz, free) or free, channel)
            for free, channel in capped
        }
    )
    for moment, _channel in moments:
        # At `moment` this channel is neither capped nor quiet: the decision is a send, or a
        # deferral for the quiet hours of a channel asked before it. Not asked again from
        # there (`wait_for_room`): a cap's end rounded in floats must not recurse for good.
        again = _decide(request, recipient, config, moment, wait_for_room=False)
        if isinstance(again, Send):
            reason = f"frequency cap: deferred to {_clock(moment, tz)}"
            return Defer(moment, reason, again.channel, notes)
    return None
