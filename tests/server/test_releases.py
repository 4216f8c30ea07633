"""The release manifest on the server (docs/updates.md): ``tgflow-server release publish``
signs what build/release.py wrote and audits it; ``GET /releases/latest`` serves it to anyone,
a problem ``not_found`` before the first; an older version is refused; the agent's update check
verifies the served manifest against the server's pinned ``license`` key over HTTP."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest

from agent.clock import SystemClock
from agent.key_pins import PinnedKeySet
from agent.updates import UpdateCheck, UpdateChecker
from tests.helpers.api import assert_problem
from tests.helpers.backend import Backend
from tests.helpers.forgery import claims_of, header_of
from tests.helpers.releases import manifest
from tests.helpers.server_cli import run_cli


def release(backend: Backend, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    return run_cli(backend, capsys, "release", *argv)


def write(path: Path, version: str) -> Path:
    path.write_text(manifest(version).model_dump_json(indent=2), encoding="utf-8")
    return path


def desktop_check(backend: Backend, data_dir: Path, pin: str) -> UpdateCheck:
    clock = SystemClock()
    keys = PinnedKeySet(backend.url, [pin], data_dir, clock=clock)
    updates = UpdateChecker(backend.url, keys, data_dir, current_version="0.1.0", clock=clock)

    async def run() -> UpdateCheck:
        async with httpx.AsyncClient() as client:
            return await updates.check(client)

    return asyncio.run(run())


def test_publish_serve_and_verify_end_to_end(
    cli_env: Backend, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    backend = cli_env
    assert_problem(backend.client.get("/releases/latest"), 404, "not_found")
    code, out = release(backend, capsys, "show")
    assert code == 2 and "no release has been published" in out

    code, out = release(backend, capsys, "publish", str(write(tmp_path / "r.json", "0.2.0")))
    assert code == 0 and "release 0.2.0 published" in out, out
    r = backend.client.get("/releases/latest")
    assert r.status_code == 200 and r.headers["content-type"] == "application/jose"
    assert "public" in r.headers["cache-control"]
    header, claims = header_of(r.text), claims_of(r.text)
    assert header["alg"] == "ES256" and header["typ"] == "release-manifest"
    license_key = backend.services.ctx.keys.signing_key("license")
    assert header["kid"] == license_key.kid
    assert claims["version"] == "0.2.0" and claims["iss"] == backend.settings.issuer
    entries = backend.services.audit.search(obj="release/0.2.0").entries
    assert [e.action for e in entries] == ["release.publish"]
    assert entries[0].actor.startswith("cli:")

    # A desktop with the server's license pin is told; with another pin, it is not.
    told = desktop_check(backend, tmp_path / "desktop", license_key.pin)
    assert told.notice is not None and told.notice.version == "0.2.0"
    auth_pin = backend.services.ctx.keys.signing_key("auth").pin
    wary = desktop_check(backend, tmp_path / "wary", auth_pin)
    assert wary.notice is None and wary.ignored is not None

    code, out = release(backend, capsys, "show")
    assert code == 0 and json.loads(out)["version"] == "0.2.0"


def test_an_older_version_is_refused_and_a_republication_supersedes(
    cli_env: Backend, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    backend = cli_env
    assert release(backend, capsys, "publish", str(write(tmp_path / "a.json", "0.3.0")))[0] == 0
    first = backend.client.get("/releases/latest").text
    code, out = release(backend, capsys, "publish", str(write(tmp_path / "b.json", "0.2.9")))
    assert code == 2 and "older than the published 0.3.0" in out
    assert backend.client.get("/releases/latest").text == first
    # The same version again (fixed notes): signed later, so every desktop takes it.
    assert release(backend, capsys, "publish", str(write(tmp_path / "c.json", "0.3.0")))[0] == 0
    again = backend.client.get("/releases/latest").text
    assert claims_of(again)["iat"] > claims_of(first)["iat"]


def test_a_file_that_is_not_a_manifest_is_refused(
    cli_env: Backend, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"version": "1.0"}), encoding="utf-8")
    code, out = release(cli_env, capsys, "publish", str(bad))
    assert code == 2 and "is not a release manifest" in out
    code, out = release(cli_env, capsys, "publish", str(tmp_path / "missing.json"))
    assert code == 2 and "cannot read" in out
    assert_problem(cli_env.client.get("/releases/latest"), 404, "not_found")
