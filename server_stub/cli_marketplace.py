"""``tgflow-server marketplace ...``: tenant backends and their admin tokens, the app catalog,
licenses, the marketplace audit trail."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

from pydantic import ValidationError

from agent.protocol import PAID_PLANS, BackendJwk, MarketplacePlan

from .cli_common import CliError, OpenServices, positive
from .marketplace_tokens import IssuedBackendToken
from .services.marketplace import AppSpec, LicenseView

#: Members of a private JWK (RFC 7518 §6.2.2, §6.3.2, §6.4): never accepted from a key file.
_PRIVATE_JWK_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")


def _read_jwk(path: Path) -> BackendJwk:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CliError(f"cannot read the JWK file {path}: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise CliError(f"the JWK file {path} is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise CliError(f"the JWK file {path} must hold one JSON object (a JWK)")
    private = [m for m in _PRIVATE_JWK_MEMBERS if m in data]
    if private:
        raise CliError(
            f"the JWK file {path} holds a private key (member {private[0]!r}); "
            "give the backend's public key only"
        )
    try:
        return BackendJwk.model_validate(data)
    except ValidationError as exc:
        # Never echo the file's values, only where and why.
        reasons = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'key'}: {e['msg']}" for e in exc.errors()
        )
        raise CliError(f"the JWK file {path} is not a public EC P-256 key: {reasons}") from exc


def _print_admin_token(issued: IssuedBackendToken) -> None:
    expires = datetime.fromtimestamp(issued.exp, UTC)
    print(f"Backend Admin Token (valid until {expires:%Y-%m-%d %H:%M} UTC; keep it secret):")
    print(f"admin token: {issued.token}")


def _describe(view: LicenseView) -> str:
    text = f"{view.plan}, {view.status}"
    if view.status == "trial" and view.trial_ends_at is not None:
        text += f", trial until {view.trial_ends_at:%Y-%m-%d %H:%M} UTC"
    elif view.expires_at is not None:
        text += f", until {view.expires_at:%Y-%m-%d %H:%M} UTC"
        if view.grace_until is not None:
            text += f" (grace until {view.grace_until:%Y-%m-%d %H:%M} UTC)"
    elif view.plan == MarketplacePlan.PERPETUAL and view.status == "active":
        text += ", no end"
    return text


def cmd_marketplace_backend(args: argparse.Namespace, open_services: OpenServices) -> None:
    if args.action == "create":
        jwk = _read_jwk(args.jwk_file)
        services = open_services(args)
        created = services.marketplace.create_backend(args.name, jwk.public_members())
        print(f"backend id: {created.backend.id}")
        print(f"name: {created.backend.name}  key: {created.kid}")
        _print_admin_token(created.admin_token)
        return
    services = open_services(args)
    issued = services.marketplace.reissue_admin_token(args.backend)
    print(f"backend id: {args.backend}")
    print("The previous Backend Admin Token of this backend no longer works.")
    _print_admin_token(issued)


def cmd_marketplace_app(args: argparse.Namespace, open_services: OpenServices) -> None:
    prices: dict[MarketplacePlan, int] = {}
    for plan, amount in args.price or []:
        if plan in prices:
            raise CliError(f"--price {plan} is given twice")
        prices[plan] = amount
    spec = AppSpec(
        id=args.id,
        name=args.name,
        developer=args.developer,
        description=args.description,
        prices=prices,
        currency=args.currency.upper(),
        artifact_url=args.artifact_url,
        artifact_sha256=args.artifact_sha256.lower(),
        artifact_size=args.artifact_size,
        iframe_url=args.iframe_url,
        callback_url=args.callback_url,
        permissions=tuple(args.permission or ()),
    )
    app = open_services(args).marketplace.create_app(spec)
    print(f"app {app.id} listed: {app.name} by {app.developer}")


def cmd_marketplace_license(args: argparse.Namespace, open_services: OpenServices) -> None:
    services = open_services(args)
    if args.action == "activate":
        view = services.marketplace.activate_license(args.backend, args.app, until=args.until)
    else:
        view = services.marketplace.revoke_license(args.backend, args.app)
    print(f"license of {view.app_id} for backend {args.backend}: {_describe(view)}")


def cmd_marketplace_apps(args: argparse.Namespace, open_services: OpenServices) -> None:
    apps = open_services(args, read_only=True).marketplace.list_apps()
    if not apps:
        print("no apps listed")
    for app in apps:
        offered = [
            f"{plan}={price}"
            for plan, price in (
                ("monthly", app.price_monthly),
                ("yearly", app.price_yearly),
                ("perpetual", app.price_perpetual),
            )
            if price is not None
        ]
        print(
            f"{app.id:24} {app.name:30} {app.developer:20} {app.currency} {' '.join(offered)}"
            f"  permissions: {','.join(app.permissions) or '-'}"
        )


def cmd_marketplace_audit(args: argparse.Namespace, open_services: OpenServices) -> None:
    services = open_services(args, read_only=True)
    rows = services.marketplace.audit_trail(backend_id=args.backend, app_id=args.app)
    for row in rows:
        change = json.dumps({"before": row.before, "after": row.after}, sort_keys=True)
        print(
            f"{row.at:%Y-%m-%d %H:%M:%S}  {row.actor:46} {row.action:20} "
            f"backend={row.backend_id or '-'} app={row.app_id or '-'} {change}"
        )


def _price(value: str) -> tuple[MarketplacePlan, int]:
    plan, sep, amount = value.partition("=")
    paid = ", ".join(PAID_PLANS)
    if not sep or plan not in PAID_PLANS:
        raise argparse.ArgumentTypeError(f"{value!r} is not PLAN=AMOUNT with PLAN one of {paid}")
    return MarketplacePlan(plan), positive(amount)


def _until(value: str) -> datetime:
    """An ISO date (valid through that whole day, UTC) or an ISO date-time (UTC if naive)."""
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            return datetime.combine(day, time(), UTC) + timedelta(days=1)
        when = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not an ISO date (2026-03-31) or date-time"
        ) from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def add_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
    services: OpenServices,
) -> None:
    """Register ``marketplace backend|app|license|apps|audit`` (``cli.py`` calls this)."""
    help_ = "manage the app marketplace: backends, apps, licenses"
    market = sub.add_parser("marketplace", help=help_, description=help_)
    groups = market.add_subparsers(dest="marketplace_command", required=True)

    def leaf(
        parent: argparse._SubParsersAction[argparse.ArgumentParser],
        name: str,
        func: Callable[[argparse.Namespace, OpenServices], None],
        text: str,
        **defaults: object,
    ) -> argparse.ArgumentParser:
        p = parent.add_parser(name, parents=[common], help=text, description=text)
        # The command opens its services itself: some read only, and a JWK file is checked first.
        p.set_defaults(func=lambda args: func(args, services), **defaults)
        return p

    text = "register tenant backends and issue their Backend Admin Tokens"
    backends = groups.add_parser("backend", help=text, description=text)
    actions = backends.add_subparsers(dest="backend_action", required=True)
    p = leaf(
        actions,
        "create",
        cmd_marketplace_backend,
        "register a backend with its public EC P-256 key; prints its id and admin token",
        action="create",
    )
    p.add_argument("--name", required=True)
    p.add_argument("--jwk-file", required=True, type=Path, help="the public JWK (JSON)")
    p = leaf(
        actions,
        "token",
        cmd_marketplace_backend,
        "issue a new Backend Admin Token; the backend's previous one stops working",
        action="token",
    )
    p.add_argument("--backend", required=True, help="backend id")

    text = "list apps in the catalog"
    apps = groups.add_parser("app", help=text, description=text)
    actions = apps.add_subparsers(dest="app_action", required=True)
    p = leaf(actions, "create", cmd_marketplace_app, "list a new app in the catalog")
    p.add_argument("--id", required=True, help="slug: lower-case letters, digits, hyphens")
    p.add_argument("--name", required=True)
    p.add_argument("--developer", required=True)
    p.add_argument("--description", default="")
    p.add_argument(
        "--price",
        type=_price,
        action="append",
        metavar="PLAN=AMOUNT",
        help="price in minor units, e.g. monthly=990; repeat per plan (monthly, yearly, "
        "perpetual); a plan without a price is not offered",
    )
    p.add_argument("--currency", required=True, help="ISO 4217 code, e.g. USD")
    p.add_argument("--artifact-url", required=True)
    p.add_argument("--artifact-sha256", required=True)
    p.add_argument("--artifact-size", required=True, type=positive, help="bytes")
    p.add_argument("--iframe-url", required=True)
    p.add_argument("--callback-url", required=True)
    p.add_argument(
        "--permission", action="extend", nargs="+", default=[], help="permission(s) it asks for"
    )

    text = "activate or revoke a backend's license of an app"
    licenses = groups.add_parser("license", help=text, description=text)
    actions = licenses.add_subparsers(dest="license_action", required=True)
    p = leaf(
        actions,
        "activate",
        cmd_marketplace_license,
        "mark a paid license paid: active for its period (renewed from its end while active)",
        action="activate",
    )
    p.add_argument("--backend", required=True, help="backend id")
    p.add_argument("--app", required=True, help="app id")
    p.add_argument(
        "--until",
        type=_until,
        help="end of the period instead of one month or year: an ISO date (through that "
        "day, UTC) or date-time",
    )
    p = leaf(
        actions,
        "revoke",
        cmd_marketplace_license,
        "withdraw a license now; the app disappears from the backend at once",
        action="revoke",
    )
    p.add_argument("--backend", required=True, help="backend id")
    p.add_argument("--app", required=True, help="app id")

    leaf(groups, "apps", cmd_marketplace_apps, "list the apps in the catalog")
    p = leaf(groups, "audit", cmd_marketplace_audit, "print the marketplace audit trail")
    p.add_argument("--backend", help="only this backend")
    p.add_argument("--app", help="only this app")
