"""The renewal retry schedule and the hard/soft decline table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from server_stub.config import Settings
from server_stub.services.billing.dunning_schedule import (
    CLOUDPAYMENTS_HARD_DECLINES,
    DEFAULT_RETRY_DAYS,
    STRIPE_HARD_DECLINES,
    DeclineClass,
    classify_decline,
    next_retry_at,
    parse_retry_days,
    retry_schedule,
)

HARD, SOFT = DeclineClass.HARD, DeclineClass.SOFT
FAILED = datetime(2026, 3, 31, 10, 0, tzinfo=UTC)


def test_default_schedule_is_plus_1_3_5_7_days_from_the_failure() -> None:
    assert Settings().billing_retry_days == DEFAULT_RETRY_DAYS == (1, 3, 5, 7)
    assert retry_schedule(FAILED, DEFAULT_RETRY_DAYS) == (
        datetime(2026, 4, 1, 10, 0, tzinfo=UTC),
        datetime(2026, 4, 3, 10, 0, tzinfo=UTC),
        datetime(2026, 4, 5, 10, 0, tzinfo=UTC),
        datetime(2026, 4, 7, 10, 0, tzinfo=UTC),
    )


def test_retries_follow_the_schedule_then_stop() -> None:
    times = [
        next_retry_at(
            failed_at=FAILED,
            retries_done=n,
            retry_days=(1, 3, 5, 7),
            decline_code="insufficient_funds",
        )
        for n in range(6)
    ]
    assert times == [FAILED + timedelta(days=d) for d in (1, 3, 5, 7)] + [None, None]


@pytest.mark.parametrize(
    "code",
    [
        "stolen_card",
        "lost_card",
        "pickup_card",
        "fraudulent",
        "restricted_card",
        "security_violation",
        "revocation_of_authorization",
        "revocation_of_all_authorizations",
        "stop_payment_order",
        "do_not_honor",
        "do_not_try_again",
        " Stolen_Card ",
        5004,
        5005,
        5012,
        5041,
        5043,
        "5043",
        " 5057 ",
    ],
)
def test_hard_declines_are_never_retried(code: str | int) -> None:
    assert classify_decline(code) is HARD
    assert (
        next_retry_at(failed_at=FAILED, retries_done=0, retry_days=(1, 3), decline_code=code)
        is None
    )


@pytest.mark.parametrize(
    "code",
    [
        None,
        "",
        "insufficient_funds",
        "processing_error",
        "try_again_later",
        "issuer_not_available",
        "generic_decline",
        "card_velocity_exceeded",
        "something_new_from_stripe",
        5051,  # Insufficient Funds
        5091,  # Timeout
        5096,  # System Error
        "5065",  # Exceed Withdrawal Frequency
        1,
        "²",
        True,
    ],
)
def test_soft_and_unknown_declines_follow_the_schedule(code: Any) -> None:
    assert classify_decline(code) is SOFT
    assert next_retry_at(
        failed_at=FAILED, retries_done=0, retry_days=(2,), decline_code=code
    ) == FAILED + timedelta(days=2)


def test_tables_hold_well_formed_codes_of_their_provider() -> None:
    # A typo in a table would silently turn a hard decline soft: the tables hold only
    # well-formed codes of their provider.
    assert all(code == code.lower().strip() and not code.isdigit() for code in STRIPE_HARD_DECLINES)
    assert all(5000 < code < 6000 for code in CLOUDPAYMENTS_HARD_DECLINES)
    assert (
        5051 not in CLOUDPAYMENTS_HARD_DECLINES and "insufficient_funds" not in STRIPE_HARD_DECLINES
    )


@pytest.mark.parametrize(
    ("raw", "days"),
    [("1,3,5,7", (1, 3, 5, 7)), (" 2 , 14 ", (2, 14)), ("", ()), ((1, 2), (1, 2)), ([14], (14,))],
)
def test_retry_days_parse(raw: Any, days: tuple[int, ...], monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_retry_days(raw) == days
    if isinstance(raw, str):
        monkeypatch.setenv("TGFLOW_BILLING_RETRY_DAYS", raw)
        assert Settings().billing_retry_days == days


@pytest.mark.parametrize(
    "raw", ["3,1", "1,1", "0,2", "15", "1,-2", "a", "1;3", "1.5", (1, True), 7, None]
)
def test_bad_retry_days_are_refused(raw: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError):
        parse_retry_days(raw)
    if isinstance(raw, str):
        monkeypatch.setenv("TGFLOW_BILLING_RETRY_DAYS", raw)
        with pytest.raises(ValidationError, match="billing_retry_days"):
            Settings()


@settings(deadline=None)
@given(
    days=st.lists(st.integers(1, 14), unique=True).map(sorted),
    retries_done=st.integers(0, 20),
    code=st.one_of(st.none(), st.text(max_size=30), st.integers(0, 9999)),
)
def test_schedule_properties(days: list[int], retries_done: int, code: str | int | None) -> None:
    schedule = retry_schedule(FAILED, days)
    assert list(schedule) == sorted(set(schedule))
    assert all(FAILED < at <= FAILED + timedelta(days=14) for at in schedule)
    at = next_retry_at(
        failed_at=FAILED, retries_done=retries_done, retry_days=days, decline_code=code
    )
    if classify_decline(code) is HARD or retries_done >= len(days):
        assert at is None
    else:
        assert at == FAILED + timedelta(days=days[retries_done])


def test_times_must_be_utc_and_counts_non_negative() -> None:
    with pytest.raises(ValueError, match="naive"):
        retry_schedule(datetime(2026, 3, 31), (1,))
    with pytest.raises(ValueError):
        next_retry_at(failed_at=FAILED, retries_done=-1, retry_days=(1,), decline_code=None)
