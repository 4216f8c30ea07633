"""The "Points" section's words, in the window's language: the balance (with what is held or
owed), the history's rows (translated kinds, signed amounts), and what converting points into
messages buys at the plan's rate. Plain functions of a translator, like
:mod:`app.viewmodels.billing_text`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent.protocol import PointsKind
from app.i18n import N_, Translator

from .formatting import format_count, format_datetime, format_price

if TYPE_CHECKING:
    from agent.protocol import PointsBalance, PointsEntryOut, ProductOut
    from app.core_billing import BillingSnapshot

_KIND_KEYS = {
    PointsKind.GRANT: N_("points.kind.grant"),
    PointsKind.PURCHASE: N_("points.kind.purchase"),
    PointsKind.SPEND: N_("points.kind.spend"),
    PointsKind.HOLD: N_("points.kind.hold"),
    PointsKind.HOLD_COMMIT: N_("points.kind.hold_commit"),
    PointsKind.HOLD_RELEASE: N_("points.kind.hold_release"),
    PointsKind.REFUND: N_("points.kind.refund"),
    PointsKind.REVERSAL: N_("points.kind.reversal"),
    PointsKind.EXPIRY: N_("points.kind.expiry"),
    PointsKind.ADJUSTMENT: N_("points.kind.adjustment"),
    PointsKind.TOPUP: N_("points.kind.topup"),
    PointsKind.SETTLEMENT: N_("points.kind.settlement"),
}


class PointsText:
    def __init__(self, translator: Translator) -> None:
        self._tr = translator

    def count(self, value: int) -> str:
        return format_count(value, self._tr)

    def signed(self, amount: int) -> str:
        """``+500``, ``−30`` (a true minus sign), ``0``."""
        if amount == 0:
            return "0"
        return ("+" if amount > 0 else "−") + self.count(abs(amount))

    def balance(self, wallet: PointsBalance | None) -> str:
        return "—" if wallet is None else self.count(wallet.balance)

    def set_aside(self, wallet: PointsBalance | None) -> str:
        """What is held or owed (empty when neither is)."""
        if wallet is None:
            return ""
        parts = []
        if wallet.held:
            parts.append(self._tr.tr("points.held", points=self.count(wallet.held)))
        if wallet.shortfall:
            parts.append(self._tr.tr("points.owed", points=self.count(wallet.shortfall)))
        return " · ".join(parts)

    def entry_cells(self, entry: PointsEntryOut) -> tuple[str, str, str, str]:
        """Kind, signed amount, balance after, date."""
        return (
            self._tr.tr(_KIND_KEYS[entry.kind]),
            self.signed(entry.amount),
            self.count(entry.balance_after),
            format_datetime(entry.created_at, self._tr),
        )

    def rate(self, plan: str | None, rate: int | None, points: int) -> str:
        """What ``points`` buy on ``plan``: the messages at its rate, why nothing (a rate of 0),
        or that the rate is applied when converting (a plan not on offer)."""
        tr = self._tr.tr
        name = plan or "—"
        if rate is None:
            return tr("points.rate.unknown", plan=name)
        if rate == 0:
            return tr("points.rate.none", plan=name)
        return tr(
            "points.rate.buys",
            messages=self.count(points * rate),
            rate=self.count(rate),
            plan=name,
        )

    def confirm(self, rate: int | None, points: int) -> str:
        tr = self._tr.tr
        if rate is None:
            return tr("points.confirm.unknown", points=self.count(points))
        return tr("points.confirm", points=self.count(points), messages=self.count(points * rate))

    def converted(self, points: int, messages: int) -> str:
        return self._tr.tr(
            "points.converted", points=self.count(points), messages=self.count(messages)
        )

    def product(self, product: ProductOut) -> str:
        """``100 points — 99.00 RUB``."""
        price = format_price(product.price_minor, product.currency, self._tr)
        return self._tr.tr(
            "points.buy.product", points=self.count(product.points or 0), price=price
        )

    def buy_hint(self, snapshot: BillingSnapshot | None, *, awaited: bool) -> str:
        """What to do while a purchase is awaited, or why nothing can be bought (empty: the
        products are on sale and nothing is awaited)."""
        if awaited:
            return self._tr.tr("points.buy.waiting")
        if snapshot is None or snapshot.points_products:
            return ""
        if snapshot.points_store:
            return self._tr.tr("points.buy.none")
        return self._tr.tr("points.buy.no_store")

    def bought(self, points: int) -> str:
        return self._tr.tr("points.buy.bought", points=self.count(points))
