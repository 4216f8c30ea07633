"""The pure state machine and paid-through rules (services/billing/states.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from server_stub.services.billing.contract import SubscriptionState
from server_stub.services.billing.states import (
    TERMINAL,
    TRANSITIONS,
    IllegalTransition,
    Trigger,
    access_until,
    due_trigger,
    later,
    transition,
)

S = SubscriptionState
T0 = datetime(2026, 3, 1, tzinfo=UTC)
GRACE = timedelta(days=3)


def test_every_state_is_reachable_and_the_terminal_ones_have_no_exit() -> None:
    reached = {dst for targets in TRANSITIONS.values() for dst in targets}
    assert reached == set(S)
    assert not [key for key in TRANSITIONS if key[0] in TERMINAL]


@pytest.mark.parametrize(
    ("state", "trigger", "target"),
    [
        (S.CANCELED, Trigger.RESUME, None),
        (S.INCOMPLETE_EXPIRED, Trigger.PAYMENT_SUCCEEDED, None),
        (S.UNPAID, Trigger.PAUSE, None),
        (S.INCOMPLETE, Trigger.PAUSE, None),
        (S.ACTIVE, Trigger.RESUME, None),
        (S.INCOMPLETE, Trigger.CHECKOUT_COMPLETED, S.PAST_DUE),
        (None, Trigger.CANCEL, None),
    ],
)
def test_illegal_transitions_raise_a_typed_error(
    state: S | None, trigger: Trigger, target: S | None
) -> None:
    with pytest.raises(IllegalTransition) as exc:
        transition(state, trigger, target)
    assert exc.value.code == "validation_error" and exc.value.trigger is trigger


def test_a_checkout_completes_into_the_state_asked_and_nothing_else() -> None:
    assert transition(S.INCOMPLETE, Trigger.CHECKOUT_COMPLETED, S.TRIALING) is S.TRIALING
    assert transition(S.PAST_DUE, Trigger.PAYMENT_SUCCEEDED) is S.ACTIVE
    with pytest.raises(IllegalTransition):
        transition(S.INCOMPLETE, Trigger.CHECKOUT_COMPLETED)  # two targets: one must be named


def test_paid_through_only_grows() -> None:
    assert later(None, T0) == T0
    assert later(T0, T0 - timedelta(days=1)) == T0
    assert later(T0, T0 + timedelta(days=1)) == T0 + timedelta(days=1)


@pytest.mark.parametrize(
    ("state", "cancel_at_period_end", "grace_ends_at", "until"),
    [
        (S.ACTIVE, False, None, T0 + GRACE),
        (S.TRIALING, False, None, T0 + GRACE),
        (S.PAST_DUE, False, T0 + GRACE, T0 + GRACE),
        # A grace recorded short of the paid period never cuts it.
        (S.PAST_DUE, False, T0 - timedelta(days=5), T0),
        (S.ACTIVE, True, None, T0),
        (S.CANCELED, False, None, T0),
        (S.UNPAID, False, None, T0),
        (S.PAUSED, False, None, T0),
    ],
)
def test_access_lasts_what_was_paid_plus_grace_while_renewing(
    state: S, cancel_at_period_end: bool, grace_ends_at: datetime | None, until: datetime
) -> None:
    assert (
        access_until(
            state,
            T0,
            cancel_at_period_end=cancel_at_period_end,
            grace_ends_at=grace_ends_at,
            grace=GRACE,
        )
        == until
    )
    never_paid = access_until(
        state, None, cancel_at_period_end=False, grace_ends_at=None, grace=GRACE
    )
    assert never_paid is None


def test_what_the_clock_does() -> None:
    def due(state: S, now: datetime, **kw: object) -> Trigger | None:
        args: dict[str, object] = {
            "created_at": T0,
            "paid_through": T0 + timedelta(days=30),
            "cancel_at_period_end": False,
            "grace_ends_at": None,
        }
        args.update(kw)
        return due_trigger(state, now=now, **args)  # type: ignore[arg-type]

    assert due(S.INCOMPLETE, T0 + timedelta(hours=22)) is None
    assert due(S.INCOMPLETE, T0 + timedelta(hours=23)) is Trigger.CHECKOUT_EXPIRED
    assert due(S.PAST_DUE, T0, grace_ends_at=T0 + GRACE) is None
    assert due(S.PAST_DUE, T0 + GRACE, grace_ends_at=T0 + GRACE) is Trigger.GRACE_EXPIRED
    assert due(S.ACTIVE, T0 + timedelta(days=30)) is None
    end = T0 + timedelta(days=30)
    assert due(S.ACTIVE, end, cancel_at_period_end=True) is Trigger.PERIOD_ENDED
    assert due(S.CANCELED, end + GRACE) is None
