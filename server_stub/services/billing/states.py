"""The subscription state machine and the paid-through rules, as pure functions (no I/O, no
clock: every time is an argument). docs/billing.md, "Plans, subscriptions and entitlement",
draws the machine.

The one rule of entitlement: access lasts until what was paid runs out (``paid_through``), plus
the grace while the subscription still renews and a payment may yet arrive. Dunning, overdue and
cancellation never move ``paid_through`` back (Kill Bill #1997 blocks an annual subscription
already paid when the account goes overdue; we do not); only a refund of the period does.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final

from ...errors import ValidationFailed
from .contract import SubscriptionState

S = SubscriptionState


class Trigger(StrEnum):
    """What moves a subscription; each is someone's act or a provider's event or the clock."""

    #: The customer asks for a subscription: it waits for its first payment.
    CREATE = "create"
    #: The checkout was paid (or, with a trial, the card was kept).
    CHECKOUT_COMPLETED = "checkout_completed"
    #: The checkout expired unpaid, or a new checkout replaced it.
    CHECKOUT_EXPIRED = "checkout_expired"
    PAYMENT_SUCCEEDED = "payment_succeeded"
    PAYMENT_FAILED = "payment_failed"
    #: ``past_due`` beyond its grace (the clock).
    GRACE_EXPIRED = "grace_expired"
    #: The paid period of a subscription canceled at period end is over (the clock).
    PERIOD_ENDED = "period_ended"
    #: Canceled now by the customer or staff: no renewal; access stays until ``paid_through``.
    CANCEL = "cancel"
    #: The provider ended the recurring agreement (CloudPayments' Cancel).
    AGREEMENT_CANCELED = "agreement_canceled"
    PAUSE = "pause"
    RESUME = "resume"
    #: The payment of the current period was refunded in full: entitlement ends now.
    REFUNDED = "refunded"


#: Where each trigger may take a subscription from each state. A pair not here is illegal; a
#: state mapped to itself is a repeat that changes nothing (another failed retry, say).
TRANSITIONS: Final[dict[tuple[S | None, Trigger], frozenset[S]]] = {
    (None, Trigger.CREATE): frozenset({S.INCOMPLETE}),
    (S.INCOMPLETE, Trigger.CHECKOUT_COMPLETED): frozenset({S.TRIALING, S.ACTIVE}),
    (S.INCOMPLETE, Trigger.PAYMENT_SUCCEEDED): frozenset({S.TRIALING, S.ACTIVE}),
    (S.INCOMPLETE, Trigger.PAYMENT_FAILED): frozenset({S.INCOMPLETE}),
    (S.INCOMPLETE, Trigger.CHECKOUT_EXPIRED): frozenset({S.INCOMPLETE_EXPIRED}),
    (S.INCOMPLETE, Trigger.CANCEL): frozenset({S.INCOMPLETE_EXPIRED}),
    (S.INCOMPLETE, Trigger.AGREEMENT_CANCELED): frozenset({S.INCOMPLETE_EXPIRED}),
    (S.TRIALING, Trigger.PAYMENT_SUCCEEDED): frozenset({S.ACTIVE}),
    (S.TRIALING, Trigger.PAYMENT_FAILED): frozenset({S.PAST_DUE}),
    (S.TRIALING, Trigger.PERIOD_ENDED): frozenset({S.CANCELED}),
    (S.TRIALING, Trigger.CANCEL): frozenset({S.CANCELED}),
    (S.TRIALING, Trigger.AGREEMENT_CANCELED): frozenset({S.CANCELED}),
    (S.TRIALING, Trigger.PAUSE): frozenset({S.PAUSED}),
    (S.TRIALING, Trigger.REFUNDED): frozenset({S.CANCELED}),
    (S.ACTIVE, Trigger.PAYMENT_SUCCEEDED): frozenset({S.ACTIVE}),
    (S.ACTIVE, Trigger.PAYMENT_FAILED): frozenset({S.PAST_DUE}),
    (S.ACTIVE, Trigger.PERIOD_ENDED): frozenset({S.CANCELED}),
    (S.ACTIVE, Trigger.CANCEL): frozenset({S.CANCELED}),
    (S.ACTIVE, Trigger.AGREEMENT_CANCELED): frozenset({S.CANCELED}),
    (S.ACTIVE, Trigger.PAUSE): frozenset({S.PAUSED}),
    (S.ACTIVE, Trigger.REFUNDED): frozenset({S.CANCELED}),
    (S.PAST_DUE, Trigger.PAYMENT_SUCCEEDED): frozenset({S.ACTIVE}),
    (S.PAST_DUE, Trigger.PAYMENT_FAILED): frozenset({S.PAST_DUE}),
    (S.PAST_DUE, Trigger.GRACE_EXPIRED): frozenset({S.UNPAID, S.CANCELED}),
    (S.PAST_DUE, Trigger.CANCEL): frozenset({S.CANCELED}),
    (S.PAST_DUE, Trigger.AGREEMENT_CANCELED): frozenset({S.CANCELED}),
    (S.PAST_DUE, Trigger.REFUNDED): frozenset({S.CANCELED}),
    (S.UNPAID, Trigger.PAYMENT_SUCCEEDED): frozenset({S.ACTIVE}),
    (S.UNPAID, Trigger.PAYMENT_FAILED): frozenset({S.UNPAID}),
    (S.UNPAID, Trigger.CANCEL): frozenset({S.CANCELED}),
    (S.UNPAID, Trigger.AGREEMENT_CANCELED): frozenset({S.CANCELED}),
    (S.UNPAID, Trigger.REFUNDED): frozenset({S.CANCELED}),
    (S.PAUSED, Trigger.RESUME): frozenset({S.ACTIVE}),
    (S.PAUSED, Trigger.CANCEL): frozenset({S.CANCELED}),
    (S.PAUSED, Trigger.AGREEMENT_CANCELED): frozenset({S.CANCELED}),
    (S.PAUSED, Trigger.REFUNDED): frozenset({S.CANCELED}),
    (S.PAUSED, Trigger.PAYMENT_SUCCEEDED): frozenset({S.PAUSED}),
}

#: No way out: a new subscription is a new row.
TERMINAL: Final = frozenset({S.INCOMPLETE_EXPIRED, S.CANCELED})
#: States whose subscription renews on its own (so a late payment may still arrive: grace).
RENEWING: Final = frozenset({S.TRIALING, S.ACTIVE, S.PAST_DUE})
#: How long a checkout waits for its first payment (Stripe: 23 hours).
INCOMPLETE_TTL: Final = timedelta(hours=23)


class IllegalTransition(ValidationFailed):
    """The subscription's state does not allow this (cancel a canceled one, pause one unpaid):
    the request is understood, the state refuses it (422 ``validation_error``)."""

    def __init__(self, state: S | None, trigger: Trigger, target: S | None = None) -> None:
        where = state.value if state is not None else "nothing"
        to = f" to {target.value}" if target is not None else ""
        super().__init__(
            f"a subscription that is {where} cannot go{to} by {trigger.value}",
            state=where,
            trigger=trigger.value,
        )
        self.state = state
        self.trigger = trigger
        self.target = target


def allowed(state: S | None, trigger: Trigger) -> frozenset[S]:
    return TRANSITIONS.get((state, trigger), frozenset())


def transition(state: S | None, trigger: Trigger, target: S | None = None) -> S:
    """The state ``trigger`` takes ``state`` to; ``target`` picks among several (a checkout
    completes into ``trialing`` or ``active``). Raises :class:`IllegalTransition`."""
    targets = allowed(state, trigger)
    if target is None and len(targets) == 1:
        (target,) = targets
    if target is None or target not in targets:
        raise IllegalTransition(state, trigger, target)
    return target


def can(state: S | None, trigger: Trigger) -> bool:
    return bool(allowed(state, trigger))


def later(old: datetime | None, new: datetime) -> datetime:
    """``paid_through`` after a payment for a period ending ``new``: never earlier than it was."""
    return new if old is None or new > old else old


def grace_end(paid_through: datetime, grace: timedelta) -> datetime:
    """``past_due`` keeps access this long past the paid period (not past the failure: a retry
    that fails late must not stretch it, one that fails early must not shorten it)."""
    return paid_through + grace


def access_until(
    state: S,
    paid_through: datetime | None,
    *,
    cancel_at_period_end: bool,
    grace_ends_at: datetime | None,
    grace: timedelta,
) -> datetime | None:
    """Until when the subscription entitles its user to the plan; ``None``: it never did (no
    payment, no trial), so it leaves the user's plan alone.

    What was paid is always kept (``paid_through``). A subscription that still renews keeps the
    grace beyond it as well: a renewal or a dunning retry may yet pay. One that will not renew
    (canceled, unpaid, paused, canceled at period end) ends exactly at ``paid_through``.
    """
    if paid_through is None:
        return None
    if state in RENEWING and not cancel_at_period_end:
        end = grace_ends_at if grace_ends_at is not None else grace_end(paid_through, grace)
        return max(end, paid_through)
    return paid_through


def due_trigger(
    state: S,
    *,
    now: datetime,
    created_at: datetime,
    paid_through: datetime | None,
    cancel_at_period_end: bool,
    grace_ends_at: datetime | None,
) -> Trigger | None:
    """What the clock alone does to a subscription at ``now`` (the billing tick), if anything."""
    if state is S.INCOMPLETE and now >= created_at + INCOMPLETE_TTL:
        return Trigger.CHECKOUT_EXPIRED
    if state is S.PAST_DUE and grace_ends_at is not None and now >= grace_ends_at:
        return Trigger.GRACE_EXPIRED
    if (
        state in (S.TRIALING, S.ACTIVE)
        and cancel_at_period_end
        and paid_through is not None
        and now >= paid_through
    ):
        return Trigger.PERIOD_ENDED
    return None
