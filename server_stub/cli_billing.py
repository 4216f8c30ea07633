"""``tgflow-server plans create|change|retire|list``: the plans' catalogue and prices on the
local machine; ``tgflow-server billing renew|refund|reconcile``: one pass of renewals and dunning,
a refund through the payment's provider, and the reconciler, by hand. Like ``tgflow-server
staff``, the CLI acts as an Admin and every change is audited with the actor ``cli:<os user>``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from .cli_staff import ServicesFactory, cli_actor
from .models import Plan
from .services.billing.contract import Interval
from .services.billing.plans import PlanChanges, PlanSpec
from .wiring import Services

ReadOnlyServicesFactory = Callable[..., Services]


def _features(value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    return tuple(f.strip() for f in value.split(",") if f.strip())


def _describe(plan: Plan) -> str:
    price = f"{plan.price_minor} {plan.currency}/{plan.interval}"
    trial = f"  trial {plan.trial_days}d" if plan.trial_days else ""
    retired = "  retired" if plan.retired_at else ""
    return f"{price}  rank {plan.rank}{trial}{retired}"


def cmd_plans(args: argparse.Namespace, services: ReadOnlyServicesFactory) -> None:
    if args.action == "list":
        for plan in services(args, read_only=True).billing.plans.list():
            listed = ",".join(plan.features) or "-"
            quota = f"{plan.monthly_quota:>10} msg/month"
            print(
                f"{plan.name:20} {quota} {plan.max_devices:>3} devices  {listed}  "
                + _describe(plan)
            )
        return
    plans = services(args).billing.plans
    if args.action == "create":
        spec = PlanSpec(
            name=args.name,
            monthly_quota=args.quota,
            max_devices=args.max_devices or 1,
            features=_features(args.features) or (),
            price_minor=args.price or 0,
            currency=args.currency or "RUB",
            interval=Interval(args.interval or Interval.MONTH),
            trial_days=args.trial_days or 0,
            rank=args.rank or 0,
        )
        plan = plans.create(cli_actor(), spec)
        print(f"plan {plan.name}: {plan.monthly_quota} messages/month, {plan.max_devices} devices")
        print(f"  {_describe(plan)}")
    elif args.action == "change":
        changes = PlanChanges(
            monthly_quota=args.quota,
            max_devices=args.max_devices,
            features=_features(args.features),
            price_minor=args.price,
            currency=args.currency,
            interval=Interval(args.interval) if args.interval else None,
            trial_days=args.trial_days,
            rank=args.rank,
        )
        plan = plans.change(cli_actor(), args.name, changes)
        print(f"plan {plan.name} changed: {_describe(plan)}")
    else:
        plan = plans.retire(cli_actor(), args.name)
        print(f"plan {plan.name} retired: no longer offered; its subscribers keep it")


def cmd_billing(args: argparse.Namespace, services: ServicesFactory) -> None:
    billing = services(args).billing
    if args.action == "renew":
        counts = billing.renew_due()
        done = ", ".join(f"{outcome.value} {n}" for outcome, n in sorted(counts.items()))
        print(f"billing renew: {done or 'nothing was due'}")
        return
    if args.action == "reconcile":
        report = billing.reconcile()
        print(f"reconciled: {report.checked} checked, {report.repaired} repaired")
        for provider, why in sorted(report.failed.items()):
            print(f"  {provider}: not reachable ({why}); nothing of it changed")
        return
    result = billing.refund(cli_actor(), args.payment_id, args.amount)
    p = result.payment
    state = "refunded" if result.succeeded else "accepted, pending at the provider"
    print(f"refund {result.refund_ref}: {result.amount_minor} {p.currency} {state}")
    print(f"  payment {p.id}: {p.refunded_minor} of {p.amount_minor} {p.currency} refunded")
    if result.entitlement_ended:
        print("  the current period was refunded in full: the subscription ended now")


def _whole(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"{value!r} is negative")
    return number


def add_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
    services: ServicesFactory,
) -> None:
    def run(args: argparse.Namespace) -> None:
        cmd_plans(args, services)

    text = "manage plans and their prices (acts as an Admin; changes are audited)"
    p = sub.add_parser("plans", parents=[common], help=text, description=text)
    p.set_defaults(func=run)
    p.add_argument("action", choices=["create", "change", "retire", "list"])
    p.add_argument("--name", help="the plan's name (create, change, retire)")
    p.add_argument("--quota", type=_whole, help="messages per month")
    p.add_argument("--max-devices", type=_whole, help="devices (create: default 1)")
    p.add_argument("--features", help="comma-separated feature names")
    p.add_argument("--price", type=_whole, help="price per interval in minor units (kopecks)")
    p.add_argument("--currency", help="ISO 4217 code (create: default RUB)")
    p.add_argument("--interval", choices=[i.value for i in Interval], help="default month")
    p.add_argument("--trial-days", type=_whole, help="days of trial before the first charge")
    p.add_argument("--rank", type=int, help="the tier: a change to a higher rank is an upgrade")

    def run_billing(args: argparse.Namespace) -> None:
        cmd_billing(args, services)

    text = (
        "billing by hand: renew (one pass of renewals and dunning), refund a payment (acts as "
        "an Admin; audited), reconcile with the providers"
    )
    b = sub.add_parser("billing", help=text, description=text)
    b.set_defaults(func=run_billing)
    actions = b.add_subparsers(dest="action", required=True)
    refund = actions.add_parser(
        "refund",
        parents=[common],
        help="refund a payment through its provider (all that remains by default)",
    )
    refund.add_argument("payment_id", help="our payment's id (GET /staff/billing/payments)")
    refund.add_argument("--amount", type=_whole, help="minor units; default: all not yet refunded")
    actions.add_parser(
        "reconcile",
        parents=[common],
        help="ask each provider for what lost webhooks left behind, and apply it",
    )
    actions.add_parser(
        "renew",
        parents=[common],
        help="one pass of renewals and dunning (the sweeper's job)",
    )


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.command != "plans":
        return
    if args.action == "create" and (not args.name or args.quota is None):
        parser.error("plans create needs --name and --quota")
    if args.action in ("change", "retire") and not args.name:
        parser.error(f"plans {args.action} needs --name")
