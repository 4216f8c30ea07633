"""``tgflow-server``: run the reference backend and administer it."""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import tempfile
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from agent.protocol import (
    KEY_PURPOSE_AUTH,
    KEY_PURPOSE_LICENSE,
    PAID_PLANS,
    BackendJwk,
    MarketplacePlan,
    public_key_pin,
)

from . import cli_billing, cli_licenses, cli_release, cli_staff, cli_webhooks, db
from .clock import SystemClock
from .config import Settings, default_data_dir
from .demo import DEMO_EMAIL, seed_demo_user
from .errors import DomainError
from .keys import KeyStore, KeyStoreError
from .logging_setup import configure_logging
from .marketplace_tokens import IssuedBackendToken
from .services.marketplace import AppSpec, LicenseView
from .signing import SignerError, signer_from_settings
from .wiring import Services, build_services, open_keys


class CliError(Exception):
    """A problem the operator can fix; printed without a traceback."""


def _data_dir(value: str) -> Path:
    return Path(value).expanduser()


def _settings(args: argparse.Namespace, *, read_only: bool = False) -> Settings:
    """The settings; a command that writes gets a writable data dir (created when missing),
    a read-only one an existing data dir or a :class:`CliError` saying there is none."""
    overrides: dict[str, object] = {}
    if args.data_dir is not None:
        overrides["data_dir"] = args.data_dir
    if getattr(args, "database_url", None):
        overrides["database_url"] = args.database_url
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise CliError(f"invalid TGFLOW_* setting: {exc}") from exc
    if read_only:
        if not settings.data_dir.is_dir():
            raise CliError(f"no data dir {settings.data_dir}: {_NOTHING_HERE}")
    else:
        _check_writable(settings.data_dir)
    return settings


#: Why a read-only command found nothing, and what to do.
_NOTHING_HERE = (
    "no server has run with it. Pass the --data-dir of your server (or set TGFLOW_DATA_DIR), "
    "or start one first with `tgflow-server run` or `tgflow-server demo`"
)


def _check_writable(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise CliError(f"the data dir {directory} is not writable: {exc.strerror or exc}") from exc


def _services(args: argparse.Namespace, *, read_only: bool = False) -> Services:
    settings = _settings(args, read_only=read_only)
    url = settings.resolved_database_url()
    if read_only and url.startswith("sqlite:///"):
        database = Path(url.removeprefix("sqlite:///"))
        if not database.is_file():
            raise CliError(f"no database {database}: {_NOTHING_HERE}")
    try:
        return build_services(settings, read_only=read_only)
    except KeyStoreError as exc:
        raise CliError(f"{exc}: {_NOTHING_HERE}") from exc
    except SQLAlchemyError as exc:
        raise CliError(
            f"cannot reach the database: {type(exc).__name__}: {str(exc.__cause__ or exc)[:300]}"
        ) from exc
    except SignerError as exc:
        raise CliError(f"the license signer cannot sign: {exc}") from exc


def _print_pins(
    keys: KeyStore, purpose: str | None = None, token: tuple[str, str] | None = None
) -> None:
    """Every published key, then the desktop's ready-to-paste settings.ini line: the desktop
    verifies access tokens and leases, which the auth keys sign (all of them while a rotated
    one is still published), and license files and the release manifest, which the license
    key signs (a PKCS#11 token's, ``token`` = its kid and pin, as well as the key files')."""
    published = keys.published()
    for key in published:
        if purpose in (None, key.purpose):
            print(f"{key.purpose:8} {key.alg}  {key.kid}  {key.pin}")
    desktop = [k.pin for k in published if k.purpose == KEY_PURPOSE_AUTH]
    desktop += [k.pin for k in published if k.purpose == KEY_PURPOSE_LICENSE]
    if token is not None:
        # The license key held in a PKCS#11 token, not in the key files.
        print(f"{KEY_PURPOSE_LICENSE:8} ES256  {token[0]}  {token[1]}  (PKCS#11 token)")
        desktop.append(token[1])
    print("For the desktop's settings.ini, section [license]:")
    print(f"jwt_public_key_fingerprint = {','.join(desktop)}")


# --- commands -----------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> None:
    import uvicorn

    settings = _settings(args)
    # Migrate and create keys once, before any worker starts.
    try:
        build_services(settings)
    except SQLAlchemyError as exc:
        raise CliError(f"cannot reach the database: {str(exc.__cause__ or exc)[:300]}") from exc
    except SignerError as exc:
        raise CliError(f"the license signer cannot sign: {exc}") from exc
    os.environ["TGFLOW_DATA_DIR"] = str(settings.data_dir)
    if settings.database_url is not None:
        os.environ["TGFLOW_DATABASE_URL"] = settings.database_url.get_secret_value()
    configure_logging(settings.log_level, json_output=settings.log_json)
    print(f"TGFlow reference backend on http://{args.host}:{args.port}", flush=True)
    uvicorn.run(
        "server_stub.asgi:create_app_from_env",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level="warning",
        access_log=False,
        server_header=False,
    )


def cmd_demo(args: argparse.Namespace) -> None:
    services = _services(args)
    password = secrets.token_urlsafe(12)
    seed_demo_user(services, password)
    print("Demo plan 'demo': 1,000 messages a month, 2 devices.")
    print(f"Demo user:  {DEMO_EMAIL}")
    print(f"Password:   {password}")
    print(f"Data dir:   {services.ctx.settings.data_dir}")
    print("Key pins:")
    _print_pins(services.ctx.keys)
    if args.no_run:
        return
    services.ctx.engine.dispose()
    cmd_run(args)


def cmd_keys(args: argparse.Namespace) -> None:
    writes = args.action == "rotate"
    settings = _settings(args, read_only=not writes)
    try:
        keys = open_keys(settings, SystemClock(), create=writes)
    except KeyStoreError as exc:
        raise CliError(f"{exc}: {_NOTHING_HERE}" if not writes else str(exc)) from exc
    try:
        if args.action == "rotate":
            purposes = [args.purpose] if args.purpose else [KEY_PURPOSE_AUTH, KEY_PURPOSE_LICENSE]
            for purpose in purposes:
                key = keys.rotate(purpose)
                print(f"rotated {purpose}: new kid {key.kid}  pin {key.pin}")
            print("Add the new pins to jwt_public_key_fingerprint before the old keys expire.")
        elif args.action == "pins":
            token = None
            if settings.license_signer == "pkcs11" and args.purpose in (None, KEY_PURPOSE_LICENSE):
                try:
                    handle = signer_from_settings(settings, keys).current()
                except SignerError as exc:
                    raise CliError(f"the license signer cannot sign: {exc}") from exc
                token = (handle.kid, public_key_pin(handle.public_key))
            _print_pins(keys, args.purpose, token)
        else:
            for key in keys.all_keys():
                print(
                    f"{key.kid}  {key.purpose:8} {key.alg}  {keys.state(key):20} "
                    f"created {key.created_at:%Y-%m-%d %H:%M}  {key.pin}"
                )
    except KeyStoreError as exc:
        raise CliError(str(exc)) from exc


def cmd_users(args: argparse.Namespace) -> None:
    services = _services(args)
    password = args.password or os.environ.get("TGFLOW_NEW_USER_PASSWORD")
    generated = password is None
    if password is None:
        password = secrets.token_urlsafe(12)
    if len(password) < 8:
        raise CliError("the password must be at least 8 characters")
    user = services.auth.create_user(args.email, password, args.plan)
    print(
        f"user {user.email} ({user.id}) on plan {args.plan or services.ctx.settings.default_plan}"
    )
    if generated:
        print(f"password: {password}")


def cmd_db(args: argparse.Namespace) -> None:
    settings = _settings(args)
    try:
        engine = db.make_engine(settings.resolved_database_url())
        db.upgrade(engine)
    except SQLAlchemyError as exc:
        raise CliError(f"cannot reach the database: {str(exc.__cause__ or exc)[:300]}") from exc
    print("database schema is up to date")


# --- marketplace --------------------------------------------------------------------------------

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


def cmd_marketplace_backend(args: argparse.Namespace) -> None:
    if args.action == "create":
        jwk = _read_jwk(args.jwk_file)
        services = _services(args)
        created = services.marketplace.create_backend(args.name, jwk.public_members())
        print(f"backend id: {created.backend.id}")
        print(f"name: {created.backend.name}  key: {created.kid}")
        _print_admin_token(created.admin_token)
        return
    services = _services(args)
    issued = services.marketplace.reissue_admin_token(args.backend)
    print(f"backend id: {args.backend}")
    print("The previous Backend Admin Token of this backend no longer works.")
    _print_admin_token(issued)


def cmd_marketplace_app(args: argparse.Namespace) -> None:
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
    app = _services(args).marketplace.create_app(spec)
    print(f"app {app.id} listed: {app.name} by {app.developer}")


def cmd_marketplace_license(args: argparse.Namespace) -> None:
    services = _services(args)
    if args.action == "activate":
        view = services.marketplace.activate_license(args.backend, args.app, until=args.until)
    else:
        view = services.marketplace.revoke_license(args.backend, args.app)
    print(f"license of {view.app_id} for backend {args.backend}: {_describe(view)}")


def cmd_marketplace_apps(args: argparse.Namespace) -> None:
    apps = _services(args, read_only=True).marketplace.list_apps()
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


def cmd_marketplace_audit(args: argparse.Namespace) -> None:
    services = _services(args, read_only=True)
    rows = services.marketplace.audit_trail(backend_id=args.backend, app_id=args.app)
    for row in rows:
        change = json.dumps({"before": row.before, "after": row.after}, sort_keys=True)
        print(
            f"{row.at:%Y-%m-%d %H:%M:%S}  {row.actor:46} {row.action:20} "
            f"backend={row.backend_id or '-'} app={row.app_id or '-'} {change}"
        )


# --- parser -------------------------------------------------------------------------------------


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"{value!r} must not be negative")
    return number


def _port(value: str) -> int:
    number = _positive(value)
    if not 0 < number < 65536:
        raise argparse.ArgumentTypeError(f"{value!r} is not a TCP port (1-65535)")
    return number


def _price(value: str) -> tuple[MarketplacePlan, int]:
    plan, sep, amount = value.partition("=")
    paid = ", ".join(PAID_PLANS)
    if not sep or plan not in PAID_PLANS:
        raise argparse.ArgumentTypeError(f"{value!r} is not PLAN=AMOUNT with PLAN one of {paid}")
    return MarketplacePlan(plan), _positive(amount)


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


def _add_marketplace(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    help_ = "manage the app marketplace: backends, apps, licenses"
    market = sub.add_parser("marketplace", help=help_, description=help_)
    groups = market.add_subparsers(dest="marketplace_command", required=True)

    def leaf(
        parent: argparse._SubParsersAction[argparse.ArgumentParser],
        name: str,
        func: Callable[[argparse.Namespace], None],
        text: str,
        **defaults: object,
    ) -> argparse.ArgumentParser:
        p = parent.add_parser(name, parents=[common], help=text, description=text)
        p.set_defaults(func=func, **defaults)
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
    p.add_argument("--artifact-size", required=True, type=_positive, help="bytes")
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


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--data-dir",
        type=_data_dir,
        default=None,
        help=f"keys and the SQLite database (default: $TGFLOW_DATA_DIR or {default_data_dir()})",
    )
    parser = argparse.ArgumentParser(prog="tgflow-server", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def add(
        name: str, func: Callable[[argparse.Namespace], None], help_: str
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common], help=help_, description=help_)
        p.set_defaults(func=func)
        return p

    def add_run_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--host", default="127.0.0.1")
        p.add_argument("--port", type=_port, default=8000)
        p.add_argument("--workers", type=_port, default=1)

    p = add("run", cmd_run, "serve the API")
    add_run_options(p)
    p = add("demo", cmd_demo, "seed the demo plan and user, print them and the pins, then serve")
    add_run_options(p)
    p.add_argument("--no-run", action="store_true", help="seed and print only")
    p = add("keys", cmd_keys, "manage signing keys")
    p.add_argument("action", choices=["rotate", "pins", "list"])
    p.add_argument("--purpose", choices=[KEY_PURPOSE_AUTH, KEY_PURPOSE_LICENSE])
    p = add("users", cmd_users, "manage users")
    p.add_argument("action", choices=["create"])
    p.add_argument("email")
    p.add_argument("--password", help="default: $TGFLOW_NEW_USER_PASSWORD, else generated")
    p.add_argument("--plan", help="plan name (default: $TGFLOW_DEFAULT_PLAN)")
    p = add("db", cmd_db, "database maintenance")
    p.add_argument("action", choices=["upgrade"])
    _add_marketplace(sub, common)
    cli_staff.add_commands(sub, common, _services)
    cli_licenses.add_commands(sub, common, _services)
    cli_billing.add_commands(sub, common, _services)
    cli_webhooks.add_commands(sub, common, _services)
    cli_release.add_commands(parser, sub, common, _services)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    cli_billing.check_args(parser, args)
    cli_staff.check_args(parser, args)
    cli_licenses.check_args(parser, args)
    try:
        args.func(args)
    except cli_staff.AuditBroken as exc:
        print(f"tgflow-server: {exc}", file=sys.stderr)
        return 1
    except (CliError, DomainError) as exc:
        print(f"tgflow-server: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
