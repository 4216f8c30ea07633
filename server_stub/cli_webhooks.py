"""``tgflow-server webhooks list|redrive|work``: the webhook inbox on the local machine.

Like ``tgflow-server staff``, the CLI acts as an Admin; a redrive is audited with the actor
``cli:<os user>``. ``work`` runs the inbox's worker alone (no HTTP), as many as wanted on
PostgreSQL.
"""

from __future__ import annotations

import argparse
import functools
import signal
import threading
from collections.abc import Callable

from .cli_staff import ServicesFactory, cli_actor
from .errors import ValidationFailed
from .services.webhooks.worker import run_until
from .webhook_models import WEBHOOK_PROVIDERS, WEBHOOK_STATUSES
from .wiring import Services


def _list(args: argparse.Namespace, services: Services) -> None:
    rows = services.webhooks.events(status=args.status, provider=args.provider, limit=args.limit)
    for row in rows:
        when = row.event_at.isoformat() if row.event_at else "-"
        print(
            f"{row.seq:>8}  {row.provider:13} {row.status:8} attempts {row.attempts:<2} "
            f"received {row.received_at.isoformat()}  event {when}  {row.kind:24} {row.event_id}"
            + (f"  last error: {row.last_error}" if row.last_error else "")
        )


def _redrive(args: argparse.Namespace, services: Services) -> None:
    if args.dead:
        seqs = services.webhooks.redrive_dead(cli_actor())
        print(f"{len(seqs)} dead-lettered webhooks queued again" + (f": {seqs}" if seqs else ""))
        return
    row = services.webhooks.redrive(cli_actor(), args.seq)
    print(f"webhook {row.seq} ({row.provider} {row.event_id}) queued again")


def _work(args: argparse.Namespace, services: Services) -> None:
    inbox = services.webhooks
    if inbox.applier is None:
        raise ValidationFailed("no event applier is wired: billing applies the webhooks")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    run_until(inbox, stop, services.ctx.settings.webhook_poll_seconds)


def cmd_webhooks(args: argparse.Namespace, services: Services) -> None:
    {"list": _list, "redrive": _redrive, "work": _work}[args.action](args, services)


def _run(services: ServicesFactory, args: argparse.Namespace) -> None:
    cmd_webhooks(args, services(args))


def _limit(value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= 100_000:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number from 1 to 100000")
    return int(value)


def _seq(value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) < 2**31:
        raise argparse.ArgumentTypeError(f"{value!r} is not a webhook id (a whole number)")
    return int(value)


def add_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
    services: ServicesFactory,
) -> None:
    """Register ``webhooks list|redrive|work`` (``cli.py`` calls this, like the other groups)."""
    bound: Callable[[argparse.Namespace], None] = functools.partial(_run, services)
    text = "list the webhook inbox, redrive dead-lettered webhooks, run the worker alone"
    # ``--data-dir`` on the leaves only: a subparser's default would overwrite the parent's value.
    p = sub.add_parser("webhooks", help=text, description=text)
    actions = p.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", parents=[common], help="the newest webhooks first")
    listing.add_argument("--status", choices=WEBHOOK_STATUSES)
    listing.add_argument("--provider", choices=WEBHOOK_PROVIDERS)
    listing.add_argument("--limit", type=_limit, default=100)
    redrive = actions.add_parser(
        "redrive", parents=[common], help="queue dead-lettered webhooks again (audited)"
    )
    which = redrive.add_mutually_exclusive_group(required=True)
    which.add_argument("seq", nargs="?", type=_seq, help="the webhook's id (see list)")
    which.add_argument("--dead", action="store_true", help="every dead-lettered webhook")
    work = actions.add_parser("work", parents=[common], help="apply webhooks until stopped")
    for parser in (listing, redrive, work):
        parser.set_defaults(func=bound)
