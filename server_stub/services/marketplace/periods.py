"""A paid license's periods: every end is computed from a fixed anchor, so month ends never drift.

A monthly license first paid on Jan 31 ends on Feb 28 (Feb 29 in a leap year), then on Mar 31,
Apr 30, May 31…: the ``n``-th end is ``anchor + n`` months (billing's calendar, the one
home of that arithmetic), never the previous end plus a month, which would lose the 31st for good
at the first short month (Feb 28 → Mar 28 → Apr 28…). A yearly anchor on Feb 29 ends on Feb 28 in
common years and on Feb 29 again in leap years.

``n`` is not stored: the end being renewed from is always boundary ``n`` of the anchor (an
activation sets the anchor and the end together), so ``period_containing`` finds it.
"""

from __future__ import annotations

from datetime import datetime

from ...models import BackendLicense
from ..billing.calendar import period_containing
from ..billing.contract import Interval
from .state import Plan

_INTERVAL = {Plan.MONTHLY: Interval.MONTH, Plan.YEARLY: Interval.YEAR}


def _on_boundary(anchor: datetime, interval: Interval, at: datetime) -> bool:
    return anchor <= at and period_containing(anchor, interval, at)[0] == at


def renewal_anchor(lic: BackendLicense, interval: Interval, end: datetime) -> datetime:
    """The anchor a renewal from ``end`` (the license's current end) keeps.

    The stored anchor, when ``end`` is one of its boundaries (it always is unless the row was
    edited by hand). A license last paid before migration 0019 has none: its current period's
    start is taken when ``end`` is a boundary of it (a regular period, so a Jan 31 start that
    ends on Feb 29 renews to Mar 31); otherwise (an ``--until`` end) ``end`` itself, so the next
    period runs one whole period from it, as renewals always did.
    """
    for candidate in (lic.period_anchor, lic.started_at):
        if candidate is not None and _on_boundary(candidate, interval, end):
            return candidate
    return end


def next_period_end(
    lic: BackendLicense, plan: Plan, start: datetime, *, renewal: bool
) -> tuple[datetime, datetime]:
    """``(anchor, end)`` of the paid period of ``lic`` that starts at ``start``: the current end
    when ``renewal`` (the anchor is kept and ``n`` advances by one), else now (a new anchor)."""
    interval = _INTERVAL[plan]
    anchor = renewal_anchor(lic, interval, start) if renewal else start
    # The end of the anchored period holding ``start``: its next boundary, from the anchor.
    return anchor, period_containing(anchor, interval, start)[1]
