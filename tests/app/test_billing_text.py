"""The billing tab's words for a priced plan change and a subscription's notes, each case in
both languages: amounts in minor units shown exactly, a credit never shown as a negative price,
and nothing of the other language on screen."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from agent.protocol import PlanChangeOut, ProductKind, ProductOut, SubscriptionOut
from app.core_billing import BillingSnapshot
from app.i18n import Translator
from app.viewmodels.billing_text import BillingText
from app.viewmodels.points_text import PointsText
from tests.helpers.visible_text import foreign

AT = datetime(2026, 4, 10, tzinfo=UTC)
END = datetime(2026, 5, 1, tzinfo=UTC)


def change(net: int, *, when: str = "now", direction: str = "upgrade") -> PlanChangeOut:
    credit = 70_000
    return PlanChangeOut(
        plan="team",
        when=when,  # type: ignore[arg-type]
        direction=direction,  # type: ignore[arg-type]
        effective_at=AT if when == "now" else END,
        new_price_minor=300_000,
        currency="RUB",
        interval="month",  # type: ignore[arg-type]
        credit_minor=credit if when == "now" else 0,
        charge_minor=credit + net if when == "now" else 0,
        net_minor=net if when == "now" else 0,
        lines=[],
        period_end=END,
    )


@pytest.mark.parametrize("language", ["en", "ru"])
def test_a_priced_change_says_what_is_paid_or_credited(language: str) -> None:
    text = BillingText(Translator(language))
    point = "." if language == "en" else ","
    pay, credit, even = (text.preview(change(n)) for n in (140_000, -45_493, 0))
    later = text.preview(change(0, when="period_end", direction="downgrade"))
    # 1 400.00 RUB to pay; 454.93 RUB credited (never "-454.93"); nothing either way.
    assert f"1\u202f400{point}00 RUB" in pay and f"700{point}00 RUB" in pay
    assert f"454{point}93 RUB" in credit and "-" not in credit.replace("—", "")
    assert pay != even != credit
    assert f"3\u202f000{point}00 RUB" in later and text.date(END) in later
    for shown in (pay, credit, even, later):
        assert foreign(shown, language, data=["team"]) == []


@pytest.mark.parametrize("language", ["en", "ru"])
def test_the_notes_name_what_is_pending(language: str) -> None:
    text = BillingText(Translator(language))
    sub = SubscriptionOut(
        id="s1",
        plan="team",
        state="past_due",  # type: ignore[arg-type]
        provider="stripe",  # type: ignore[arg-type]
        price_minor=300_000,
        currency="RUB",
        interval="month",  # type: ignore[arg-type]
        current_period_start=AT,
        current_period_end=END,
        paid_through=END,
        trial_end=None,
        cancel_at_period_end=True,
        canceled_at=None,
        paused_at=None,
        grace_ends_at=END,
        entitled_until=END,
        created_at=AT,
        pending_credit_minor=1234,
        scheduled_plan="solo",
        scheduled_change_at=END,
    )
    note = text.note(sub)
    point = "." if language == "en" else ","
    assert note.count(text.date(END)) == 3  # the cancel, the grace, the scheduled change
    assert f"12{point}34 RUB" in note and "solo" in note
    assert foreign(note, language, data=["team", "solo"]) == []


@pytest.mark.parametrize("language", ["en", "ru"])
def test_the_points_purchase_line_says_why_nothing_can_be_bought(language: str) -> None:
    text = PointsText(Translator(language))
    product = ProductOut(
        id="points_100",
        kind=ProductKind.CONSUMABLE,
        title="100 points",
        price_minor=9900,
        currency="RUB",
        points=100,
        plan=None,
    )
    point = "." if language == "en" else ","
    assert text.product(product).endswith(f"99{point}00 RUB")
    on_sale = BillingSnapshot((), None, (), None, points_products=(product,), points_store=True)
    sold_out = dataclasses.replace(on_sale, points_products=())
    no_store = dataclasses.replace(sold_out, points_store=False)
    assert text.buy_hint(on_sale, awaited=False) == "" and text.buy_hint(None, awaited=False) == ""
    shown = {
        text.buy_hint(sold_out, awaited=False),
        text.buy_hint(no_store, awaited=False),
        text.buy_hint(on_sale, awaited=True),
        text.bought(1500),
    }
    assert len(shown) == 4 and "" not in shown
    for line in shown:
        assert foreign(line, language) == []
