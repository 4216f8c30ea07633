"""The command-line options every load benchmark takes, and those of its smoke run."""

from __future__ import annotations

import argparse
from typing import Final

DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"

#: The load options of a smoke run (``bench/run.py --quick``): it proves the plumbing, the
#: figures it gives mean nothing.
QUICK_LOAD: Final = ("--seconds", "0.3", "--warmup", "0", "--connections", "2", "--no-postgres")


def add_load_options(parser: argparse.ArgumentParser, seconds: float, warmup: float) -> None:
    """The options every load benchmark takes: timing, connections, PostgreSQL, kept data."""
    parser.add_argument(
        "--seconds", type=float, default=seconds, help="measured seconds per scenario"
    )
    parser.add_argument("--warmup", type=float, default=warmup, help="warm-up seconds per scenario")
    parser.add_argument("--connections", type=int, default=32, help="concurrent connections")
    parser.add_argument(
        "--postgres",
        default=DEFAULT_POSTGRES,
        help="PostgreSQL server (admin URL) on which a throwaway database is made",
    )
    parser.add_argument("--no-postgres", action="store_true", help="SQLite scenarios only")
    parser.add_argument(
        "--keep-data", action="store_true", help="keep the temporary data dir and server logs"
    )


def load_options_valid(args: argparse.Namespace) -> bool:
    return args.seconds > 0 and args.warmup >= 0 and 2 <= args.connections <= 1024


LOAD_OPTIONS_RULE = "--seconds > 0, --warmup >= 0, 2 <= --connections <= 1024"
