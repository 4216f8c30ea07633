"""``tgflow-server staff ...`` and ``tgflow-server audit ...``.

The CLI acts as an Admin on the local machine: it needs no staff login (whoever can run it can
read the keys and the database anyway), and every change it makes is audited with the actor
``cli:<os user>``.
"""

from __future__ import annotations

import argparse
import getpass
import os
import secrets
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from agent.protocol import AuditVerdict, audit_time

from .errors import ValidationFailed
from .services.staff import Role, totp_required
from .wiring import Services

ServicesFactory = Callable[[argparse.Namespace], Services]


class AuditBroken(Exception):
    """``audit verify`` found a break: exit status 1, the reason on stderr."""


def cli_actor() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no login name in a bare container
        user = str(os.getuid()) if hasattr(os, "getuid") else "local"
    return f"cli:{user}"


def cmd_staff(args: argparse.Namespace, services: Services) -> None:
    staff = services.staff
    if args.action == "create":
        password = args.password or os.environ.get("TGFLOW_NEW_STAFF_PASSWORD")
        generated = password is None
        password = password or secrets.token_urlsafe(15)
        if len(password) < 10:
            raise ValidationFailed("the password must be at least 10 characters")
        role = Role(args.role)
        created = staff.create(cli_actor(), args.email, args.name or args.email, role, password)
        print(f"staff {created.email} ({created.id}) role {created.role}")
        if generated:
            print(f"password: {password}")
        if totp_required(role):
            print("This role must enrol TOTP at its first login (POST /staff/me/totp/setup).")
        return
    if args.action == "list":
        for row in staff.list():
            state = "disabled" if row.disabled_at else "active"
            totp = "totp" if row.totp_enabled_at else "no-totp"
            print(f"{row.id}  {row.email:32} {row.role:15} {state:9} {totp}  {row.name}")
        return
    target = staff.find(args.staff)
    if args.action == "disable":
        staff.disable(cli_actor(), target.id)
        print(f"staff {target.email} disabled; their sessions are ended")
    else:
        staff.reset_2fa(cli_actor(), target.id)
        print(f"staff {target.email}: TOTP and recovery codes cleared; the next login enrols anew")


def cmd_audit(args: argparse.Namespace, services: Services) -> None:
    audit = services.audit
    if args.action == "verify":
        verdict = audit.verify()
        if not verdict.ok:
            raise AuditBroken(f"audit log BROKEN at entry {verdict.broken_seq}: {verdict.reason}")
        print(
            f"audit log intact: {verdict.entries} entries, head {verdict.head_seq} "
            f"{verdict.head_hash}; {verdict.unanchored} not yet under a signed checkpoint"
        )
        print(_last_checkpoint(verdict, services.ctx.clock.now()))
        if audit.checkpoint_overdue(verdict):
            print(
                f"WARNING: {verdict.unanchored} entries wait longer than the checkpoint interval: "
                "is the server's sweeper running? `tgflow-server audit checkpoint` signs them now",
                file=sys.stderr,
            )
    elif args.action == "checkpoint":
        checkpoint = audit.checkpoint(force=True)
        if checkpoint is None:
            print("the audit log is empty; nothing to sign")
        else:
            print(f"checkpoint signed at entry {checkpoint.seq} ({checkpoint.hash})")
    else:
        services.audit.append(cli_actor(), "audit.export", "audit", {"from_seq": args.from_seq})
        out = args.output.open("w", encoding="utf-8") if args.output else sys.stdout
        try:
            for line in audit.export(from_seq=args.from_seq):
                out.write(line)
        finally:
            if args.output:
                out.close()


def _last_checkpoint(verdict: AuditVerdict, now: datetime) -> str:
    if verdict.last_checkpoint_at is None:
        return "no signed checkpoint yet: a cut from the end of the log would not be seen"
    age = max(0, int((now - verdict.last_checkpoint_at).total_seconds()))
    return (
        f"last checkpoint: entry {verdict.last_checkpoint_seq}, signed "
        f"{audit_time(verdict.last_checkpoint_at)} ({age} s ago); entries after it could be cut "
        "from the end unseen until the next one"
    )


def add_group(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
    services: ServicesFactory,
    name: str,
    text: str,
    func: Callable[[argparse.Namespace, Services], None],
) -> argparse.ArgumentParser:
    """Register the command ``name`` running ``func`` with the services of its ``--data-dir``."""
    p = sub.add_parser(name, parents=[common], help=text, description=text)
    p.set_defaults(func=lambda args: func(args, services(args)))
    return p


def add_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
    services: ServicesFactory,
) -> None:
    text = "manage staff accounts (acts as an Admin; audited)"
    p = add_group(sub, common, services, "staff", text, cmd_staff)
    p.add_argument("action", choices=["create", "list", "disable", "reset-2fa"])
    p.add_argument("staff", nargs="?", help="disable/reset-2fa: the staff id or e-mail")
    p.add_argument("--email", help="create: the e-mail (the login)")
    p.add_argument("--name", help="create: the display name (default: the e-mail)")
    p.add_argument("--role", choices=[r.value for r in Role], help="create: the role")
    p.add_argument("--password", help="create: default $TGFLOW_NEW_STAFF_PASSWORD, else generated")

    text = "verify, checkpoint or export the audit log"
    p = add_group(sub, common, services, "audit", text, cmd_audit)
    p.add_argument("action", choices=["verify", "checkpoint", "export"])
    p.add_argument("--output", type=Path, help="export: write to this file (default: stdout)")
    p.add_argument("--from-seq", type=int, default=1, help="export: the first entry")


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.command != "staff":
        return
    if args.action == "create" and (not args.email or not args.role):
        parser.error("staff create needs --email and --role")
    if args.action in ("disable", "reset-2fa") and not args.staff:
        parser.error(f"staff {args.action} needs the staff id or e-mail")
