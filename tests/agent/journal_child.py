"""Child process of the journal crash tests: reserve, record sends, report each, wait to be killed.

Usage: ``python -m tests.agent.journal_child URL JOURNAL MESSAGES SENDS`` with the access token in
the ``TGFLOW_JOURNAL_TOKEN`` environment variable. The child reserves ``MESSAGES`` through the
journal, prints ``reserved <correlation_id>``, then records ``SENDS`` sends one by one, printing
``sent <i>`` after each record is on disk, and finally blocks reading stdin. The parent kills it
(SIGKILL) at the moment it chooses; the child never commits. EOF on stdin (the parent died) ends
it without settling either.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import httpx

from agent.journal import UsageJournal
from agent.usage_http import HttpUsageBackend

TOKEN_ENV = "TGFLOW_JOURNAL_TOKEN"


async def reserve(url: str, token: str, journal: UsageJournal, messages: int) -> str:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        entry = await journal.reserve(HttpUsageBackend(client, token), messages)
    return entry.correlation_id


def main(argv: list[str]) -> None:
    url, path, messages, sends = argv[0], Path(argv[1]), int(argv[2]), int(argv[3])
    with UsageJournal(path) as journal:
        cid = asyncio.run(reserve(url, os.environ[TOKEN_ENV], journal, messages))
        print(f"reserved {cid}", flush=True)
        for i in range(sends):
            journal.record_sent(cid, f"recipient-{i}")
            print(f"sent {i + 1}", flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    main(sys.argv[1:])
