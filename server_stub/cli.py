"""``tgflow-server``: run the reference backend and administer it."""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from agent.protocol import KEY_PURPOSE_AUTH, KEY_PURPOSE_LICENSE

from . import db
from .clock import SystemClock
from .config import Settings, default_data_dir
from .errors import DomainError
from .keys import KeyStoreError
from .logging_setup import configure_logging
from .wiring import Services, build_services, open_keys

DEMO_EMAIL = "demo@tgflow.example"
DEMO_PLAN = "demo"


class CliError(Exception):
    """A problem the operator can fix; printed without a traceback."""


def _data_dir(value: str) -> Path:
    return Path(value).expanduser()


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, object] = {}
    if args.data_dir is not None:
        overrides["data_dir"] = args.data_dir
    if getattr(args, "database_url", None):
        overrides["database_url"] = args.database_url
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise CliError(f"invalid TGFLOW_* setting: {exc}") from exc
    _check_writable(settings.data_dir)
    return settings


def _check_writable(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise CliError(f"the data dir {directory} is not writable: {exc.strerror or exc}") from exc


def _services(args: argparse.Namespace) -> Services:
    settings = _settings(args)
    try:
        return build_services(settings)
    except SQLAlchemyError as exc:
        raise CliError(
            f"cannot reach the database: {type(exc).__name__}: {str(exc.__cause__ or exc)[:300]}"
        ) from exc


def _print_pins(services: Services) -> None:
    for key in services.ctx.keys.published():
        print(f"  {key.purpose:8} {key.alg}  {key.pin}")


# --- commands -----------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> None:
    import uvicorn

    settings = _settings(args)
    # Migrate and create keys once, before any worker starts.
    try:
        build_services(settings)
    except SQLAlchemyError as exc:
        raise CliError(f"cannot reach the database: {str(exc.__cause__ or exc)[:300]}") from exc
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
    services.plans.upsert(DEMO_PLAN, monthly_quota=1000, max_devices=2, features=["broadcast"])
    password = secrets.token_urlsafe(12)
    services.auth.create_user(DEMO_EMAIL, password, DEMO_PLAN)
    print("Demo plan 'demo': 1,000 messages a month, 2 devices.")
    print(f"Demo user:  {DEMO_EMAIL}")
    print(f"Password:   {password}")
    print(f"Data dir:   {services.ctx.settings.data_dir}")
    print("Key pins (settings.ini [license] jwt_public_key_fingerprint):")
    _print_pins(services)
    if args.no_run:
        return
    services.ctx.engine.dispose()
    cmd_run(args)


def cmd_keys(args: argparse.Namespace) -> None:
    settings = _settings(args)
    try:
        keys = open_keys(settings, SystemClock())
        if args.action == "rotate":
            purposes = [args.purpose] if args.purpose else [KEY_PURPOSE_AUTH, KEY_PURPOSE_LICENSE]
            for purpose in purposes:
                key = keys.rotate(purpose)
                print(f"rotated {purpose}: new kid {key.kid}  pin {key.pin}")
            print("Add the new pins to jwt_public_key_fingerprint before the old keys expire.")
        elif args.action == "pins":
            published = keys.published()
            for key in published:
                if args.purpose in (None, key.purpose):
                    print(f"{key.purpose:8} {key.alg}  {key.kid}  {key.pin}")
            auth_pins = ",".join(k.pin for k in published if k.purpose == KEY_PURPOSE_AUTH)
            print(f"jwt_public_key_fingerprint = {auth_pins}")
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


def cmd_plans(args: argparse.Namespace) -> None:
    services = _services(args)
    if args.action == "create":
        features = [f.strip() for f in (args.features or "").split(",") if f.strip()]
        plan = services.plans.create(args.name, args.quota, args.max_devices, features)
        print(f"plan {plan.name}: {plan.monthly_quota} messages/month, {plan.max_devices} devices")
        return
    for plan in services.plans.list():
        listed = ",".join(plan.features) or "-"
        quota = f"{plan.monthly_quota:>10} msg/month"
        print(f"{plan.name:20} {quota} {plan.max_devices:>3} devices  {listed}")


def cmd_db(args: argparse.Namespace) -> None:
    settings = _settings(args)
    try:
        engine = db.make_engine(settings.resolved_database_url())
        db.upgrade(engine)
    except SQLAlchemyError as exc:
        raise CliError(f"cannot reach the database: {str(exc.__cause__ or exc)[:300]}") from exc
    print("database schema is up to date")


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
    p = add("plans", cmd_plans, "manage plans")
    p.add_argument("action", choices=["create", "list"])
    p.add_argument("--name")
    p.add_argument("--quota", type=_positive, help="messages per month")
    p.add_argument("--max-devices", type=_positive, default=1)
    p.add_argument("--features", help="comma-separated feature names")
    p = add("db", cmd_db, "database maintenance")
    p.add_argument("action", choices=["upgrade"])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if (
        args.command == "plans"
        and args.action == "create"
        and (not args.name or args.quota is None)
    ):
        parser.error("plans create needs --name and --quota")
    try:
        args.func(args)
    except (CliError, DomainError) as exc:
        print(f"tgflow-server: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
