"""Journey values: definitions from the playbook, the state of one running instance, and the
effects a transition asks the shell to carry out.

A journey is a graph of steps. An instance is one profile's walk through one *version* of it: a
row holding the step it is at, the timer token it waits on, and the messages it sent. Every
transition is decided by `decide.py` while the processor handles one event (a timer firing is an
event too), so a click and a timeout are ordered by the log and only the first one counts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, get_args

import msgspec

from leadloop.personalization.bandit import Arm
from leadloop.policy.model import PolicyConfig, Recipient
from leadloop.scoring.model import JOURNEY_UPDATE_EVENT, Condition, EventFilter, Predicate

StepType = Literal[
    "send", "wait", "wait_for", "branch", "split", "update_profile", "webhook", "audience", "exit"
]
STEP_TYPES: tuple[StepType, ...] = get_args(StepType)
TestKind = Literal["trait", "score", "stage", "event", "engaged"]
TEST_KINDS: tuple[TestKind, ...] = get_args(TestKind)
Engagement = Literal["delivered", "opened", "clicked"]
ENGAGEMENTS: tuple[Engagement, ...] = get_args(Engagement)
Outcome = Literal["completed", "converted", "exited"]
OUTCOMES: tuple[Outcome, ...] = get_args(Outcome)
ReentryMode = Literal["once", "always", "every"]

DEFAULT_CONVERSION_WINDOW = 30 * 86400.0
"""How long after entry a conversion counts for lift, unless the journey sets
`conversion_window` (docs/journeys.md, "Holdout and lift")."""
WINDOW_OVER = "conversion window over: goal not reached"

WAKE_EVENT = "Journey Wake"
"""The internal event a journey timer becomes when it is due."""
SEGMENT_EVENT = "Journey Segment Due"
"""The internal event a segment's timer becomes when events leave one of its `within` windows
or a score fades past its test, and a `score` entry's when fading makes its test hold
(`journeys.segments`): the profile's segments and crossings are evaluated again then."""
PROFILE_UPDATE_EVENT = JOURNEY_UPDATE_EVENT
"""Emitted by `update_profile`; when the log reaches it, the processor applies its traits and tags
to the profile before any stage reads it, and scoring fits them and sets the stage it names."""

ENGAGEMENT_EVENTS: dict[str, Engagement] = {
    "Email Delivered": "delivered",
    "Message Delivered": "delivered",
    "Email Opened": "opened",
    "Message Read": "opened",
    "Email Link Clicked": "clicked",
    "Message Link Clicked": "clicked",
}
"""Events that report engagement with a message (`properties.message_id`)."""

SUPPRESSION_EVENTS: dict[str, str] = {
    "Unsubscribed": "unsubscribed",
    "Email Bounced": "bounced",
    "Email Complained": "complained",
    "Spam Reported": "complained",
}
"""Events that put a profile on the suppression list (`properties.channel`, default email)."""


# --- definitions (built by `config.parse_journeys`) -------------------------------------------


@dataclass(frozen=True, slots=True)
class Test:
    """One condition of a branch, an entry filter or a segment."""

    kind: TestKind
    subject: str
    """Trait name, scoring model id, event name or step id (for `engaged`)."""
    test: Predicate | None = None
    within: float | None = None
    """`event` tests: the window in seconds (None: the whole history)."""
    where: tuple[Condition, ...] = ()
    engagement: Engagement = "clicked"
    negate: bool = False


@dataclass(frozen=True, slots=True)
class Variant:
    """One template of a send step's variant set, with its share of the profiles."""

    template: str
    weight: float


@dataclass(frozen=True, slots=True)
class SendStep:
    id: str
    channels: tuple[str, ...]
    template: str
    """The template; empty when `variants` chooses one per profile."""
    next: str | None = None
    otherwise: str | None = None
    """Where to go when no channel can carry the message (default: `next`)."""
    transactional: bool = False
    variants: tuple[Variant, ...] = ()
    selection: str = "weights"
    """How `variants` chooses: `weights` (a stable hash, by weight) or `thompson` (Thompson
    sampling over each variant's click rate so far, `personalization.bandit`)."""
    channel_order: str = "listed"
    """`listed`, or `preferred`: `channels` in the order the profile engages with them
    (`personalization.channel_choice`)."""


SELECTIONS = ("weights", "thompson")
CHANNEL_ORDERS = ("listed", "preferred")


@dataclass(frozen=True, slots=True)
class WaitStep:
    id: str
    duration: float | None = None
    until_time: int | None = None
    """Minutes after local midnight, in the profile's time zone."""
    weekdays: tuple[int, ...] = ()
    until_trait: str | None = None
    offset: float = 0.0
    next: str | None = None
    best_time: float | None = None
    """Wait for the profile's best hour to engage within this many seconds
    (`personalization.send_time`)."""


@dataclass(frozen=True, slots=True)
class WaitForStep:
    id: str
    when: EventFilter
    timeout: float
    happened: str | None = None
    timed_out: str | None = None
    message_of: str | None = None
    """Only events about the message sent by this step (`properties.message_id`)."""


@dataclass(frozen=True, slots=True)
class Case:
    tests: tuple[Test, ...]
    then: str | None


@dataclass(frozen=True, slots=True)
class BranchStep:
    id: str
    cases: tuple[Case, ...]
    otherwise: str | None = None


@dataclass(frozen=True, slots=True)
class SplitPath:
    name: str
    weight: float
    next: str | None


@dataclass(frozen=True, slots=True)
class SplitStep:
    id: str
    paths: tuple[SplitPath, ...]


@dataclass(frozen=True, slots=True)
class UpdateProfileStep:
    id: str
    traits: dict[str, Any] = field(default_factory=dict)
    add_tags: tuple[str, ...] = ()
    remove_tags: tuple[str, ...] = ()
    stage: str | None = None
    model: str | None = None
    next: str | None = None


@dataclass(frozen=True, slots=True)
class WebhookStep:
    id: str
    webhook: str
    next: str | None = None


@dataclass(frozen=True, slots=True)
class AudienceStep:
    id: str
    audience: str
    action: Literal["add", "remove"]
    next: str | None = None


@dataclass(frozen=True, slots=True)
class ExitStep:
    id: str
    outcome: Outcome = "exited"
    reason: str = ""


Step = (
    SendStep
    | WaitStep
    | WaitForStep
    | BranchStep
    | SplitStep
    | UpdateProfileStep
    | WebhookStep
    | AudienceStep
    | ExitStep
)


@dataclass(frozen=True, slots=True)
class EventTrigger:
    when: EventFilter


@dataclass(frozen=True, slots=True)
class StageTrigger:
    model: str
    to: tuple[str, ...]
    from_: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ScoreTrigger:
    """Fires when the model's total score starts to satisfy `test` (a crossing)."""

    model: str
    test: Predicate


@dataclass(frozen=True, slots=True)
class SegmentTrigger:
    """Fires when the profile starts to satisfy every test (entering the segment)."""

    tests: tuple[Test, ...]


Trigger = EventTrigger | StageTrigger | ScoreTrigger | SegmentTrigger


@dataclass(frozen=True, slots=True)
class Goal:
    event: EventFilter | None = None
    stage: StageTrigger | None = None


@dataclass(frozen=True, slots=True)
class Reentry:
    mode: ReentryMode = "once"
    period: float = 0.0


@dataclass(frozen=True, slots=True)
class Journey:
    id: str
    version: str
    """Digest of the journey's definition: a changed journey is a new version."""
    trigger: Trigger
    steps: tuple[Step, ...]
    name: str = ""
    only_if: tuple[Test, ...] = ()
    goal: Goal | None = None
    reentry: Reentry = Reentry()
    holdout: float = 0.0
    conversion_window: float = DEFAULT_CONVERSION_WINDOW
    """Seconds from entry in which reaching the goal counts for lift, in both groups."""
    migrate: dict[str, str] = field(default_factory=dict)
    """Step of an older version → step of this one, for instances that should move over."""
    definition: Any = None
    """The definition as plain data, stored per version so pinned instances can be resumed."""
    variables: tuple[str, ...] = ()
    """The `${VAR}`s the journey reads: their values count in its version."""
    _by_id: dict[str, Step] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_id", {step.id: step for step in self.steps})

    @property
    def start(self) -> str:
        return self.steps[0].id

    def step(self, step_id: str) -> Step | None:
        return self._by_id.get(step_id)

    @property
    def measured(self) -> bool:
        """Whether lift is measured: a holdout and a goal. Then every entrant, held out or
        treated, waits for the goal until the conversion window ends."""
        return self.holdout > 0 and self.goal is not None


@dataclass(frozen=True, slots=True)
class JourneySet:
    """A workspace's journeys and the policy their sends go through."""

    journeys: tuple[Journey, ...] = ()
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    digest: str = ""
    warnings: tuple[Any, ...] = field(default=(), compare=False)
    """`PlaybookWarning`s: what parses but will not work (an undefined audience)."""
    cap_window: float | None = field(init=False, repr=False, compare=False)
    """How far back the policy's frequency caps look (None: no caps, no sends are read)."""
    _by_id: dict[str, Journey] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        caps = self.policy.caps
        object.__setattr__(self, "cap_window", max(cap.per for cap in caps) if caps else None)
        object.__setattr__(self, "_by_id", {j.id: j for j in self.journeys})

    def journey(self, journey_id: str) -> Journey | None:
        return self._by_id.get(journey_id)


# --- state (rows) ------------------------------------------------------------------------------

Status = Literal["active", "waiting", "holdout", "completed", "converted", "exited", "ended"]
LIVE_STATUSES: tuple[str, ...] = ("active", "waiting", "holdout")
WakeKind = Literal["", "wait", "timeout", "defer", "window"]
"""`window`: an instance of a journey with a holdout, held out or past its last step, waits
for its goal until its conversion window ends (`Journey.measured`)."""


class Instance(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    id: str
    workspace_id: str
    profile_id: str
    journey_id: str
    version: str
    step: str | None
    status: Status
    entered_at: float
    updated_at: float
    holdout: bool = False
    ended_at: float | None = None
    reason: str = ""
    token: int = 0
    """Bumped on every timer scheduled or cancelled: a firing with an older token is stale."""
    wake: WakeKind = ""
    due_at: float | None = None
    visits: dict[str, int] = msgspec.field(default_factory=dict)
    messages: dict[str, str] = msgspec.field(default_factory=dict)
    """Step id → message id of its latest send."""
    engagement: dict[str, list[str]] = msgspec.field(default_factory=dict)
    """Message id → engagement seen (delivered, opened, clicked)."""
    entry_message_id: str = ""

    @property
    def live(self) -> bool:
        return self.status in LIVE_STATUSES


class Membership(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A profile's history with one journey (re-entry rules, segment entry)."""

    entries: int = 0
    last_entered_at: float | None = None
    active: str | None = None
    in_segment: bool = False
    score_above: bool | None = None
    """A `score` entry: whether its test held at the profile's last evaluation (None: never
    evaluated). The next one is a crossing if the test holds then and did not here (or just
    before it), however the score got across: points, a decay step, fading, a rescore."""
    score_test: str | None = None
    """The test `score_above` was read against (`decide.crossing_test`): after the journey's
    test changed, the record does not say whether the new one held (None: recorded before
    the test was kept, and taken as the journey's)."""
    skipped: int = 0
    """Times a trigger fired but the profile did not enter: the goal already held."""
    skipped_at: float | None = None
    skip_reason: str = ""
    segment_due: float | None = None
    """When the timer watching the journey's segment (or `score` entry) for this profile is
    due (None: no timer). Invariant: if time alone would bring the profile into the segment,
    a timer is due at or before the segment's first change on the way
    (`journeys.segments.next_change`)."""


class ScoreReading(msgspec.Struct, frozen=True):
    """A `score` entry's model as one event reads it, at the event's instant."""

    before: float
    """The total just before the event: what held before it when nothing was recorded."""
    after: float


# --- what a decision asks the shell to do ------------------------------------------------------


class QueueSend(msgspec.Struct, frozen=True):
    message_id: str
    step: str
    channel: str
    template: str
    requested: str
    transactional: bool
    notes: tuple[str, ...] = ()
    variant: bool = False
    """`template` was chosen from the step's variant set."""


class RecordPolicy(msgspec.Struct, frozen=True):
    """A deferred or suppressed send, with the policy's reason."""

    message_id: str
    step: str
    requested: str
    template: str
    outcome: Literal["deferred", "suppressed"]
    reason: str
    channel: str | None = None
    until: float | None = None
    transactional: bool = False


class ScheduleWake(msgspec.Struct, frozen=True):
    due_at: float
    token: int


class CancelWake(msgspec.Struct, frozen=True):
    pass


class EmitEvent(msgspec.Struct, frozen=True):
    key: str
    name: str
    properties: dict[str, Any]


class CallWebhook(msgspec.Struct, frozen=True):
    key: str
    webhook: str
    body: dict[str, Any]


class ChangeAudience(msgspec.Struct, frozen=True):
    key: str
    audience: str
    action: Literal["add", "remove"]
    step: str


Effect = (
    QueueSend | RecordPolicy | ScheduleWake | CancelWake | EmitEvent | CallWebhook | ChangeAudience
)


class PathLine(msgspec.Struct, frozen=True):
    at: float
    step: str | None
    kind: str
    detail: str = ""


class Advance(msgspec.Struct, frozen=True):
    instance: Instance
    effects: tuple[Effect, ...] = ()
    path: tuple[PathLine, ...] = ()


class Facts(Protocol):
    """What decisions may ask about the profile, answered by the shell (reads only)."""

    @property
    def traits(self) -> dict[str, Any]: ...

    def score(self, model: str) -> float | None: ...

    def score_at(self, model: str, at: float) -> float | None:
        """The model's total at `at` (later than the instant decided, or `math.inf`) with no
        event in between: only its `half_life` decay moves it, down (`journeys.segments`)."""
        ...

    def stage(self, model: str) -> str | None: ...

    def event_count(self, name: str, since: float | None, where: tuple[Condition, ...]) -> int:
        """Events named `name` received at or after `since`, the event being decided among
        them (`evaluate.holds` takes it out to see a segment as it stood just before)."""
        ...

    def event_times(
        self, name: str, since: float | None, where: tuple[Condition, ...]
    ) -> list[float]:
        """When those events were received (the instants `event_count` compares with `since`),
        for the instants they leave a `within` window (`journeys.segments`)."""
        ...

    def recipient(self) -> Recipient: ...

    def engagement_times(self) -> list[float]:
        """When the profile opened or clicked a message (people, not image proxies), before
        the event being decided: epoch seconds, for `best_time` waits."""
        ...

    def channel_history(self) -> dict[str, tuple[int, int]]:
        """Per channel, (messages sent, messages opened, read or clicked) to the profile before
        the event being decided, for `channel_order: preferred`."""
        ...

    def variant_arms(self, journey: str, step: str, templates: tuple[str, ...]) -> list[Arm]:
        """Each template's messages queued and clicked so far, for `selection: thompson`."""
        ...
