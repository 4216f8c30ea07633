"""The accounts file (``accounts.json`` in the data directory): which Telegram accounts TGFlow
uses, by id, name and transport kind. Written atomically; a broken file means no accounts (logged),
never a crash."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .transports.base import AccountInfo

log = logging.getLogger("tgflow.core")


def load_accounts(path: Path) -> dict[str, AccountInfo]:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("%s cannot be read (%s); starting with no accounts", path, exc)
        return {}
    accounts: dict[str, AccountInfo] = {}
    for item in raw.get("accounts", []) if isinstance(raw, dict) else []:
        try:
            info = AccountInfo(
                account_id=str(item["account_id"]),
                display_name=str(item["display_name"]),
                kind=str(item["kind"]),
            )
        except (KeyError, TypeError):
            continue
        accounts[info.account_id] = info
    return accounts


def save_accounts(path: Path, accounts: Iterable[AccountInfo]) -> None:
    body: dict[str, Any] = {
        "accounts": [
            {"account_id": a.account_id, "display_name": a.display_name, "kind": a.kind}
            for a in accounts
        ]
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(body, indent=2), encoding="utf-8")
    os.replace(tmp, path)
