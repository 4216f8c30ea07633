"""The "Plans & billing" panel's data: the plans on offer, the subscription and its dates,
checkout in the browser, a plan change priced before it is confirmed, cancel and resume, the
invoices and their payments.

The tab updates by itself when a payment lands: while something is pending (a checkout just
opened, an ``incomplete`` subscription, an open invoice) the view-model asks for the
subscription's status every :attr:`BillingViewModel.poll_interval_ms` and, when it changed,
reloads everything. The provider tells the backend, never the desktop, so asking is the only way
to learn it; polling stops as soon as nothing is pending.

Points bought in the store are waited for the same way: once the store's page is open, the
view-model asks the server to verify the purchase (``POST /points/buy``) at the same interval,
only while the tab is on screen, until it is credited or ends unpaid.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from PyQt6.QtCore import QObject, QTimer, QUrl, pyqtSignal
from PyQt6.QtGui import QDesktopServices

from agent.protocol import CancelWhen, ChangeWhen, ProviderName, SubscriptionState
from app.engine import Engine
from app.i18n import Translator

from .queued import QueuedWork

if TYPE_CHECKING:
    from agent.protocol import PlanChangeOut, SubscriptionOut
    from app.core import Core
    from app.core_billing import BillingSnapshot, Converted
    from app.core_points import Bought, PointsPurchase

log = logging.getLogger("tgflow.billing")

#: How often the status is asked for while a payment is awaited (milliseconds).
POLL_INTERVAL_MS: Final = 3000
#: States in which an opened checkout is still waited for (the first payment, or a renewal).
_AWAITING: Final = frozenset(
    {SubscriptionState.INCOMPLETE, SubscriptionState.PAST_DUE, SubscriptionState.UNPAID}
)
#: Invoice states that still wait for money.
_OPEN_INVOICES: Final = frozenset({"open", "draft"})


def open_in_browser(url: str) -> None:
    """The default opener: the system's browser."""
    QDesktopServices.openUrl(QUrl(url))


def awaits_payment(snapshot: BillingSnapshot | None) -> bool:
    """Whether something there waits for the provider: an ``incomplete`` subscription (its
    checkout not paid yet) or an open invoice."""
    if snapshot is None:
        return False
    sub = snapshot.subscription
    if sub is not None and sub.state == SubscriptionState.INCOMPLETE:
        return True
    return any(invoice.status in _OPEN_INVOICES for invoice in snapshot.invoices)


class BillingViewModel(QueuedWork):
    """Actions asked for while other work runs (a poll's reload, say) run in turn, never
    dropped (:class:`QueuedWork`)."""

    changed = pyqtSignal(object)
    #: A checkout was opened in the browser (its URL).
    checkout_opened = pyqtSignal(str)
    #: What a plan change would bill (a ``PlanChangeOut``), to confirm or drop.
    preview_ready = pyqtSignal(object)
    #: Whether the view-model is polling for a payment.
    polling_changed = pyqtSignal(bool)
    #: Points were converted into messages (points, messages): the period's quota grew.
    converted = pyqtSignal(int, int)
    #: Whether a points purchase is awaited (its store page opened, not credited yet).
    purchase_changed = pyqtSignal(bool)
    #: A points purchase was credited (its points).
    points_bought = pyqtSignal(int)

    def __init__(
        self,
        engine: Engine,
        core: Core,
        translator: Translator,
        parent: QObject | None = None,
        *,
        opener: Callable[[str], None] = open_in_browser,
        poll_interval_ms: int = POLL_INTERVAL_MS,
    ) -> None:
        super().__init__(engine, translator, parent)
        self._core = core
        self._open = opener
        self._snapshot: BillingSnapshot | None = None
        self._preview: PlanChangeOut | None = None
        #: A checkout was opened and its payment has not been seen yet.
        self._awaiting_checkout = False
        self._polling = False
        #: The tab is on screen (a view-model without a window counts as watched).
        self._watched = True
        #: A status request is on its way (the timer waits for its answer).
        self._asking = False
        self._poll = QTimer(self)
        self._poll.setSingleShot(True)
        self._poll.setInterval(poll_interval_ms)
        self._poll.timeout.connect(self._ask_status)
        #: The points purchase whose payment is awaited, and whether its check is queued.
        self._purchase: PointsPurchase | None = None
        self._checking = False
        self._purchase_poll = QTimer(self)
        self._purchase_poll.setSingleShot(True)
        self._purchase_poll.setInterval(poll_interval_ms)
        self._purchase_poll.timeout.connect(self._check_purchase)

    @property
    def snapshot(self) -> BillingSnapshot | None:
        return self._snapshot

    @property
    def preview(self) -> PlanChangeOut | None:
        """The plan change priced last, waiting for :meth:`confirm_change`."""
        return self._preview

    @property
    def polling(self) -> bool:
        return self._polling

    @property
    def purchase(self) -> PointsPurchase | None:
        """The points purchase awaited (``None``: none)."""
        return self._purchase

    @property
    def checking_purchase(self) -> bool:
        """Whether the server is (or will soon be) asked about the awaited purchase."""
        return self._checking or self._purchase_poll.isActive()

    # --- what the panel asks ----------------------------------------------------------------

    def refresh(self) -> bool:
        """Reload everything; while other work runs, once it ends."""
        if self._busy:
            self._stale = True
            return True
        return self._act(self._reload)

    def subscribe(self, plan: str, provider: ProviderName) -> bool:
        """Open a checkout for ``plan`` and show it in the browser."""
        return self._act(
            lambda: self.submit(
                self._core.subscribe(plan, provider), self._checkout, self._failed, what="checkout"
            )
        )

    def preview_change(self, plan: str, when: ChangeWhen = ChangeWhen.NOW) -> bool:
        """Price a change to ``plan``: :attr:`preview_ready` with the prorated amounts."""
        self._preview = None
        return self._act(
            lambda: self.submit(
                self._core.preview_plan_change(plan, when),
                self._previewed,
                self._failed,
                what="preview plan change",
            )
        )

    def confirm_change(self) -> bool:
        """Make the change :meth:`preview_change` priced (``False``: nothing was priced)."""
        preview, self._preview = self._preview, None
        if preview is None:
            return False
        return self._act(
            lambda: self.submit(
                self._core.change_plan(preview.plan, preview.when),
                self._got,
                self._failed,
                what="change plan",
            )
        )

    def drop_preview(self) -> None:
        self._preview = None

    def pay_now(self) -> bool:
        """Pay the renewal that is due: on the kept card, or (declined again) at a checkout
        opened in the browser, as :meth:`subscribe` does."""
        return self._act(
            lambda: self.submit(
                self._core.renew_subscription(), self._renewed, self._failed, what="renew"
            )
        )

    def cancel(self, when: CancelWhen = CancelWhen.PERIOD_END) -> bool:
        return self._act(
            lambda: self.submit(
                self._core.cancel_subscription(when), self._got, self._failed, what="cancel"
            )
        )

    def resume(self) -> bool:
        return self._act(
            lambda: self.submit(
                self._core.resume_subscription(), self._got, self._failed, what="resume"
            )
        )

    def convert_points(self, points: int) -> bool:
        """Convert ``points`` into extra messages of the current period (the plan's rate):
        the balance and history reload, and :attr:`converted` tells who shows the quota."""
        return self._act(
            lambda: self.submit(
                self._core.convert_points(points), self._converted, self._failed, what="topup"
            )
        )

    def buy_points(self, product_id: str) -> bool:
        """Start buying ``product_id`` in the store and open its page in the browser; then wait
        for the server to credit it (:attr:`points_bought`)."""
        return self._act(
            lambda: self.submit(
                self._core.start_points_purchase(product_id),
                self._purchase_started,
                self._failed,
                what="buy points",
            )
        )

    def set_watched(self, watched: bool) -> None:
        """Whether the tab is on screen: polls wait while it is not (a long dunning would poll
        for days), and showing it reloads (:meth:`refresh`), which polls on if still needed."""
        self._watched = watched
        if not watched:
            self._poll.stop()
            self._purchase_poll.stop()

    def stop_polling(self) -> None:
        """Stop asking (signed out, or the window closes): a points purchase is no longer
        awaited either (the store's notification still credits it on the server)."""
        self._awaiting_checkout = False
        self._set_polling(False)
        self._purchase_poll.stop()
        self._end_purchase()

    def _reload(self) -> bool:
        return self.submit(self._core.billing_snapshot(), self._got, self._failed, what="billing")

    # --- answers ------------------------------------------------------------------------------

    def _got(self, snapshot: BillingSnapshot) -> None:
        self._snapshot = snapshot
        sub = snapshot.subscription
        if sub is None or sub.state not in _AWAITING:
            self._awaiting_checkout = False
        self.changed.emit(snapshot)
        self._set_polling(self._awaiting_checkout or awaits_payment(snapshot))
        self._arm_purchase_check()
        self._next()

    def _converted(self, done: Converted) -> None:
        self.converted.emit(done.points, done.messages)
        self._got(done.snapshot)

    def _checkout(self, url: str) -> None:
        self._awaiting_checkout = True
        self._open(url)
        self.checkout_opened.emit(url)
        # The new subscription (incomplete) and its open invoice: shown now, then polled.
        self._stale = True
        self._next()

    def _renewed(self, checkout_url: str | None) -> None:
        if checkout_url is not None:
            self._checkout(checkout_url)
            return
        self._stale = True  # paid on the kept card: show it
        self._next()

    def _failed(self, message: str) -> None:
        # A reload that failed does not end the wait for a payment: ask again later.
        self._set_polling(self._polling)
        super()._failed(message)

    def _previewed(self, preview: PlanChangeOut) -> None:
        self._preview = preview
        self.preview_ready.emit(preview)
        self._next()

    # --- polling ------------------------------------------------------------------------------

    def _set_polling(self, on: bool) -> None:
        if on and self._watched and not self._poll.isActive() and not self._asking:
            self._poll.start()
        elif not on:
            self._poll.stop()
        if on != self._polling:
            self._polling = on
            self.polling_changed.emit(on)

    def _ask_status(self) -> None:
        if not self._polling or not self._watched:
            return
        if self._busy:  # the work running ends in a reload or an answer: ask after it
            self._poll.start()
            return
        known = None if self._snapshot is None else self._snapshot.subscription
        self._asking = self.submit(
            self._core.billing_status(),
            lambda status: self._heard(known, status),
            self._poll_failed,
            what="billing status",
        )

    def _heard(self, known: SubscriptionOut | None, status: SubscriptionOut | None) -> None:
        self._asking = False
        if status != known:
            self.refresh()  # the answer decides whether to poll on
        else:
            self._set_polling(self._polling)  # ask again (unless the tab was left meanwhile)

    def _poll_failed(self, message: str) -> None:
        # A poll is not the user's request: the line under the tab stays quiet; ask again.
        log.info("billing status not read: %s", message)
        self._asking = False
        self._set_polling(self._polling)

    # --- a points purchase --------------------------------------------------------------------

    def _purchase_started(self, purchase: PointsPurchase) -> None:
        self._purchase = purchase
        self._open(purchase.checkout_url)
        self.checkout_opened.emit(purchase.checkout_url)
        self.purchase_changed.emit(True)
        self._arm_purchase_check()
        self._next()

    def _arm_purchase_check(self) -> None:
        if (
            self._purchase is not None
            and self._watched
            and not self._checking
            and not self._purchase_poll.isActive()
        ):
            self._purchase_poll.start()

    def _check_purchase(self) -> None:
        purchase = self._purchase
        if purchase is None or not self._watched or self._checking:
            return
        # Queued like the user's actions: it credits points, so it never runs beside them.
        self._checking = self._act(
            lambda: self.submit(
                self._core.settle_points_purchase(purchase),
                self._settled,
                self._settle_failed,
                what="points purchase",
            )
        )

    def _settled(self, bought: Bought | None) -> None:
        self._checking = False
        if bought is None:  # not paid yet: ask again (unless the tab was left meanwhile)
            self._arm_purchase_check()
            self._next()
            return
        self._end_purchase()
        self.points_bought.emit(bought.points)
        self._got(bought.snapshot)

    def _settle_failed(self, message: str) -> None:
        self._checking = False
        self._end_purchase()
        self._failed(message)

    def _end_purchase(self) -> None:
        if self._purchase is not None:
            self._purchase = None
            self.purchase_changed.emit(False)
