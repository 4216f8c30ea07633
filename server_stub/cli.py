"""``tgflow-server``: run the reference backend and administer it.

The command groups beyond running, keys, users and the schema live in their own ``cli_*`` modules,
each registering itself through its ``add_commands``; what they share is in ``cli_common``.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from collections.abc import Callable, Sequence

from sqlalchemy.exc import SQLAlchemyError

from agent.protocol import KEY_PURPOSE_AUTH, KEY_PURPOSE_LICENSE, public_key_pin

from . import cli_billing, cli_licenses, cli_marketplace, cli_release, cli_staff, cli_webhooks, db
from .cli_common import NOTHING_HERE, CliError, data_dir, open_services, port, settings_of
from .clock import SystemClock
from .config import default_data_dir
from .demo import DEMO_EMAIL, seed_demo_user
from .errors import DomainError
from .keys import KeyStore, KeyStoreError
from .logging_setup import configure_logging
from .signing import SignerError, signer_from_settings
from .wiring import build_services, open_keys


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

    settings = settings_of(args)
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
    services = open_services(args)
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
    settings = settings_of(args, read_only=not writes)
    try:
        keys = open_keys(settings, SystemClock(), create=writes)
    except KeyStoreError as exc:
        raise CliError(f"{exc}: {NOTHING_HERE}" if not writes else str(exc)) from exc
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
    services = open_services(args)
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
    settings = settings_of(args)
    try:
        engine = db.make_engine(settings.resolved_database_url())
        db.upgrade(engine)
    except SQLAlchemyError as exc:
        raise CliError(f"cannot reach the database: {str(exc.__cause__ or exc)[:300]}") from exc
    print("database schema is up to date")


# --- parser -------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--data-dir",
        type=data_dir,
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
        p.add_argument("--port", type=port, default=8000)
        p.add_argument("--workers", type=port, default=1)

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
    cli_marketplace.add_commands(sub, common, open_services)
    cli_staff.add_commands(sub, common, open_services)
    cli_licenses.add_commands(sub, common, open_services)
    cli_billing.add_commands(sub, common, open_services)
    cli_webhooks.add_commands(sub, common, open_services)
    cli_release.add_commands(parser, sub, common, open_services)
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
