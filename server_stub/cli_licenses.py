"""``tgflow-server licenses list|show|revoke|file``: staff's license commands on the local
machine. Like ``tgflow-server staff``, the CLI acts as an Admin and every change (and every
file it hands out) is audited with the actor ``cli:<os user>``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .cli_staff import ServicesFactory, add_group, cli_actor
from .portal_models import LICENSE_STATUSES
from .services.licensing import LicenseFilter, version_state
from .wiring import Services


def _show(services: Services, ref: str) -> None:
    view = services.licensing.get(ref)
    lic = view.license
    print(f"license {lic.license_key} ({lic.id})")
    print(f"  client   {view.client_name} ({lic.client_id})  contract {lic.contract_id or '-'}")
    print(f"  status   {lic.status}{f' ({lic.status_reason})' if lic.status_reason else ''}")
    print(f"  product  {lic.product_id}  plan {lic.plan}  modules {', '.join(lic.modules) or '-'}")
    print(f"  valid    {lic.valid_from.isoformat()} .. {lic.valid_until.isoformat()}")
    print(f"  grace    {lic.grace_days} days  domain {lic.domain}")
    _, versions = services.licensing.history(ref)
    for v in versions:
        print(
            f"  v{v.version:<4} {v.reason:8} {version_state(v):8} {v.checksum or '-':64} "
            f"by {v.requested_by} approved {v.approved_by or '-'}"
        )


def cmd_licenses(args: argparse.Namespace, services: Services) -> None:
    licensing = services.licensing
    if args.action == "list":
        cursor = None
        while True:
            page = licensing.search(LicenseFilter(status=args.status), cursor=cursor, limit=500)
            for lic in page.licenses:
                print(
                    f"{lic.license_key}  {lic.status:16} {lic.plan:10} v{lic.version:<4} "
                    f"until {lic.valid_until.date().isoformat()}  client {lic.client_id}"
                )
            if page.next_cursor is None:
                return
            cursor = page.next_cursor
    if args.action == "show":
        _show(services, args.license)
    elif args.action == "revoke":
        view = licensing.revoke(cli_actor(), args.license, args.reason)
        print(f"license {view.license.license_key} revoked; the revocation list is re-signed")
    else:
        file = licensing.file(cli_actor(), args.license, args.version)
        if args.output is None:
            sys.stdout.write(file.text)
        else:
            args.output.write_text(file.text, encoding="utf-8")
            print(f"version {file.version} written to {args.output} (sha256 {file.checksum})")


def add_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
    services: ServicesFactory,
) -> None:
    text = "list, show, revoke licenses and write their files (acts as an Admin; audited)"
    p = add_group(sub, common, services, "licenses", text, cmd_licenses)
    p.add_argument("action", choices=["list", "show", "revoke", "file"])
    p.add_argument("license", nargs="?", help="show/revoke/file: the license key or id")
    p.add_argument("--status", choices=LICENSE_STATUSES, help="list: only this status")
    p.add_argument("--reason", help="revoke: why (recorded in the audit log)")
    p.add_argument("--version", type=int, help="file: this version (default: the one in force)")
    p.add_argument("--output", type=Path, help="file: write here (default: stdout)")


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.command != "licenses":
        return
    if args.action != "list" and not args.license:
        parser.error(f"licenses {args.action} needs the license key or id")
    if args.action == "revoke" and not (args.reason and args.reason.strip()):
        parser.error("licenses revoke needs --reason")
    if args.reason is not None and len(args.reason) > 500:
        parser.error("--reason is at most 500 characters")
    if args.version is not None and not 1 <= args.version <= 1_000_000:
        parser.error("--version must be a version number (1, 2, …)")
