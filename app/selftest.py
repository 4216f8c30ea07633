"""``tgflow --self-test``: headless checks that this installation (or packaged build) works.

Each check prints ``ok`` or ``FAIL`` with the reason; the exit code is 0 only when all passed.
Nothing here touches the Telegram network: the end-to-end check runs a short broadcast through
the simulated transport against a reference backend started in this process.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .demo import DemoBackend

#: Modules a working build must be able to import.
REQUIRED_MODULES = (
    "PyQt6.QtWidgets",
    "pyrogram",
    "tgcrypto",
    "cryptography",
    "jwt",
    "httpx",
    "keyring",
    "platformdirs",
    "configupdater",
    "pydantic",
    "fastapi",
    "uvicorn",
    "sqlalchemy",
    "argon2",
)


def check_imports() -> str:
    for name in REQUIRED_MODULES:
        importlib.import_module(name)
    return f"{len(REQUIRED_MODULES)} modules"


def check_settings_example() -> str:
    from .config import parse_settings
    from .settings_schema import example_text

    settings = parse_settings(example_text())
    return f"settings.ini.example parses ([ui] language = {settings.ui.language})"


def check_translations() -> str:
    from .catalog import load_catalog

    ru, en = load_catalog("ru"), load_catalog("en")
    if not ru or not en:
        raise RuntimeError("the translation catalogs cannot be read")
    if set(ru) != set(en):
        raise RuntimeError(f"ru and en differ in {sorted(set(ru) ^ set(en))[:5]}")
    return f"ru and en, {len(ru)} strings each"


def check_display() -> str:
    """The platform a window would really open on, tried in a child process (Qt aborts the
    process that fails to load it); off screen from here on when it cannot load."""
    from .qt_platform import OFFSCREEN, probe, unusable_display

    requested = os.environ.get("QT_QPA_PLATFORM", "")
    if requested == OFFSCREEN:
        return "off screen (QT_QPA_PLATFORM=offscreen or no display)"
    problem = unusable_display()
    loaded, why = ("", problem) if problem else probe(requested)
    if not loaded:
        os.environ["QT_QPA_PLATFORM"] = OFFSCREEN
        raise RuntimeError(f"no window can open on {requested or 'this display'}: {why}")
    return f"a window opens on Qt platform {loaded}"


def check_qt() -> str:
    from PyQt6.QtWidgets import QApplication, QLabel

    app = QApplication.instance() or QApplication(sys.argv[:1])
    label = QLabel("TGFlow")
    image = label.grab()
    if image.isNull():
        raise RuntimeError("a widget could not be rendered")
    # The platform that really loaded, read while the application lives: afterwards Qt answers
    # with its compiled-in default ("xcb") whatever was loaded.
    loaded = app.platformName() if isinstance(app, QApplication) else "?"
    del app
    return f"Qt platform {loaded}"


def check_text() -> str:
    """Qt's ICU (trimmed in the Linux bundle, build/icu_trim.py) collates and upper-cases
    Russian: the interface's languages' data is there and loads."""
    from PyQt6.QtCore import QCollator, QLocale

    russian = QLocale(QLocale.Language.Russian, QLocale.Country.Russia)
    if QCollator(russian).compare("ёж", "жук") >= 0 or russian.toUpper("ёж") != "ЁЖ":
        raise RuntimeError("Russian text is not collated or upper-cased")
    return "Russian text collated and upper-cased"


def check_fingerprint() -> str:
    from agent.fingerprint import compute_fingerprint

    fp = compute_fingerprint()
    return f"{len(fp.present)} of {len(fp.present) + len(fp.missing)} device components"


class _SharedBackend:
    """The in-process reference backend the checks share: started on first use (migrations
    and keys take a moment), stopped once every check has run."""

    def __init__(self) -> None:
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._backend: DemoBackend | None = None

    def get(self) -> tuple[DemoBackend, Path]:
        from .demo import start_demo_backend

        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="tgflow-selftest-")
        root = Path(self._tmp.name)
        if self._backend is None:
            self._backend = start_demo_backend(root / "server", monthly_quota=100)
        return self._backend, root

    def close(self) -> None:
        if self._backend is not None:
            self._backend.stop()
            self._backend = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


_BACKEND = _SharedBackend()


def check_pins() -> str:
    """The agent trusts only pinned keys: a token forged under the backend's own ``kid`` is
    refused, and so is every key of the backend when a different pin is configured."""
    import time

    import jwt
    from cryptography.hazmat.primitives.asymmetric import rsa

    from agent.errors import TokenRejected
    from agent.key_pins import PinnedKeySet
    from agent.protocol import ACCESS_TOKEN_ALG, ACCESS_TOKEN_AUDIENCE, public_key_pin
    from agent.tokens import DEFAULT_ISSUER, TokenVerifier

    backend, root = _BACKEND.get()
    keys = PinnedKeySet(backend.url, backend.pins, root / "pins")
    if not keys.refresh_sync():
        raise RuntimeError("the backend's key set holds none of its pinned keys")
    kid = next(k for k in sorted(keys.kids()) if keys.key(k).alg == ACCESS_TOKEN_ALG)
    forger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = int(time.time())
    claims = {
        "iss": DEFAULT_ISSUER,
        "aud": ACCESS_TOKEN_AUDIENCE,
        "sub": "self-test",
        "exp": now + 300,
        "nbf": now - 5,
        "iat": now - 5,
        "jti": "self-test",
        "device": "self-test",
    }
    forged = jwt.encode(claims, forger, algorithm=ACCESS_TOKEN_ALG, headers={"kid": kid})
    try:
        TokenVerifier(keys).verify_access_token(forged)
    except TokenRejected as exc:
        # Refused for its signature, not for a claim this check got wrong.
        if "signature" not in str(exc).lower():
            raise RuntimeError(f"the forged token was refused for another reason: {exc}") from exc
    else:
        raise RuntimeError("a token signed by an unpinned key was accepted")
    stranger = public_key_pin(forger.public_key())
    unpinned = PinnedKeySet(backend.url, [stranger], root / "unpinned")
    unpinned.refresh_sync()
    if unpinned.kids():
        raise RuntimeError("keys were trusted without their pin configured")
    return f"{len(keys.kids())} pinned keys; a forged token and unpinned keys refused"


def check_end_to_end() -> str:
    """Backend + agent + broadcaster: 20 simulated messages, counted exactly once."""
    import keyring.backends.fail

    from agent.secrets import RefreshTokenStore

    from .broadcast import Pacing
    from .clock import FakeAsyncClock
    from .core import Core, CoreConfig
    from .transports.simulated import SimulatedNetwork, SimulatedTransportFactory

    backend, root = _BACKEND.get()

    async def scenario() -> tuple[int, int]:
        clock = FakeAsyncClock(datetime.now(UTC))
        core = Core(
            CoreConfig(
                api_base_url=backend.url,
                pins=backend.pins,
                pacing=Pacing(min_delay_sec=1, max_delay_sec=2, batch_size=8),
            ),
            data_dir=root / "desktop",
            transports=SimulatedTransportFactory(SimulatedNetwork(seed=1, clock=clock)),
            fingerprint="v1.self-test-device-0000000000",
            clock=clock,
            secrets=RefreshTokenStore(root / "desktop", backend=keyring.backends.fail.Keyring()),
        )
        try:
            await core.sign_in(backend.email, backend.password)
            await core.add_account_start("+15550000001")
            account = await core.add_account_code("12345")
            recipients = [f"@selftest_user{i:02d}" for i in range(20)]
            broadcast_id = core.create_broadcast(account.info.account_id, "self-test", recipients)
            final = await core.run_broadcast(broadcast_id, QuietObserver())
            snapshot = await core.license_snapshot()
            return final.counts.sent, snapshot.used
        finally:
            await core.close()

    sent, used = asyncio.run(scenario())
    if (sent, used) != (20, 20):
        raise RuntimeError(f"sent {sent}, quota used {used}; expected 20 and 20")
    return "20 simulated messages sent and counted once"


class QuietObserver:
    """A broadcast observer that ignores everything (for runs nobody watches)."""

    def progress(self, progress: object) -> None:
        return None

    def recipient(self, broadcast_id: str, recipient: str, state: object, detail: str) -> None:
        return None

    def notice(self, broadcast_id: str, kind: str, message: str) -> None:
        return None


CHECKS: tuple[tuple[str, Callable[[], str]], ...] = (
    ("imports", check_imports),
    ("settings", check_settings_example),
    ("translations", check_translations),
    ("display", check_display),
    ("qt", check_qt),
    ("text", check_text),
    ("fingerprint", check_fingerprint),
    ("pins", check_pins),
    ("end-to-end", check_end_to_end),
)


def run_self_test(args: argparse.Namespace | None = None) -> int:
    """Run every check; print one line each; 0 when all passed, 1 otherwise."""
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    headless = not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    if sys.platform.startswith("linux") and headless:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    failed = 0
    try:
        for name, check in CHECKS:
            try:
                detail = check()
            except Exception as exc:  # every failure is a line of the report, never a traceback
                failed += 1
                print(f"FAIL {name}: {type(exc).__name__}: {exc}", flush=True)
            else:
                print(f"ok   {name}: {detail}", flush=True)
    finally:
        _BACKEND.close()
    print("self-test passed" if not failed else f"self-test FAILED ({failed})", flush=True)
    return 0 if not failed else 1
