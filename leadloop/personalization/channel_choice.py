"""Channel preference: a send step's channels in the order the profile engages with them.
Pure: per channel, messages sent and messages engaged with (opened, read or clicked), in; the
order out.

Each channel is scored by its posterior engagement rate, (engaged + 1) / (sent + 2): a channel
never tried scores one half, so a channel the profile has been sent a few messages on and
ignored falls behind one it has not been tried on, and one it answers moves ahead. Ties keep
the order the playbook lists, which is also the order for a profile with no history.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def engagement_rate(sent: int, engaged: int) -> float:
    return (min(engaged, sent) + 1) / (max(sent, 0) + 2)


def preferred_order(
    channels: Sequence[str], history: Mapping[str, tuple[int, int]]
) -> tuple[str, ...]:
    """`channels` by engagement rate, highest first; `history`: channel → (sent, engaged)."""
    rates = {c: engagement_rate(*history.get(c, (0, 0))) for c in channels}
    return tuple(sorted(channels, key=lambda c: -rates[c]))  # sorted() is stable: ties keep order
