"""What every ``tgflow-server`` command shares: the operator's error, the settings and services
of a ``--data-dir``, and the argument types."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Protocol

from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from .config import Settings
from .keys import KeyStoreError
from .signing import SignerError
from .wiring import Services, build_services


class CliError(Exception):
    """A problem the operator can fix; printed without a traceback."""


def data_dir(value: str) -> Path:
    return Path(value).expanduser()


def settings_of(args: argparse.Namespace, *, read_only: bool = False) -> Settings:
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
            raise CliError(f"no data dir {settings.data_dir}: {NOTHING_HERE}")
    else:
        check_writable(settings.data_dir)
    return settings


#: Why a read-only command found nothing, and what to do.
NOTHING_HERE = (
    "no server has run with it. Pass the --data-dir of your server (or set TGFLOW_DATA_DIR), "
    "or start one first with `tgflow-server run` or `tgflow-server demo`"
)


def check_writable(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise CliError(f"the data dir {directory} is not writable: {exc.strerror or exc}") from exc


def open_services(args: argparse.Namespace, *, read_only: bool = False) -> Services:
    settings = settings_of(args, read_only=read_only)
    url = settings.resolved_database_url()
    if read_only and url.startswith("sqlite:///"):
        database = Path(url.removeprefix("sqlite:///"))
        if not database.is_file():
            raise CliError(f"no database {database}: {NOTHING_HERE}")
    try:
        return build_services(settings, read_only=read_only)
    except KeyStoreError as exc:
        raise CliError(f"{exc}: {NOTHING_HERE}") from exc
    except SQLAlchemyError as exc:
        raise CliError(
            f"cannot reach the database: {type(exc).__name__}: {str(exc.__cause__ or exc)[:300]}"
        ) from exc
    except SignerError as exc:
        raise CliError(f"the license signer cannot sign: {exc}") from exc


class OpenServices(Protocol):
    """:func:`open_services`, for the groups that open read-only services (``cli_staff``'s
    ``ServicesFactory`` opens them writable)."""

    def __call__(self, args: argparse.Namespace, *, read_only: bool = False) -> Services: ...


def positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"{value!r} must not be negative")
    return number


def port(value: str) -> int:
    number = positive(value)
    if not 0 < number < 65536:
        raise argparse.ArgumentTypeError(f"{value!r} is not a TCP port (1-65535)")
    return number
