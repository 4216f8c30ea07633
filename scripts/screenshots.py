"""Save a PNG of each panel of the desktop window into ``docs/screenshots/``.

Runs everything in this process, off screen: the reference backend with a demo user (as
``tgflow --demo`` does), the engine thread, a Core on the simulated Telegram with a fake clock
(so the broadcast's pauses take no real time), and the main window. It signs in through the
login dialog, adds simulated accounts, imports recipients, sends a short broadcast, takes apps
from the demo marketplace, subscribes to a plan paid at the fake payment provider, and grabs
each tab; then signs out, activates the demo's license file through the login dialog and grabs
the License panel in license-file mode.

    .venv/bin/python scripts/screenshots.py [--language ru|en] [--out docs/screenshots]
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import secrets
import sys
import tempfile
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
import keyring.backends.fail
from PyQt6.QtCore import QEventLoop, QTimer, pyqtBoundSignal
from PyQt6.QtWidgets import QAbstractItemView, QApplication, QWidget

from agent.secrets import RefreshTokenStore
from app.antispam import FloodPolicy
from app.broadcast import Pacing
from app.clock import FakeAsyncClock
from app.config import load_settings, save_settings
from app.core import Core, CoreConfig
from app.demo import start_demo_backend, write_demo_license
from app.demo_billing import DEMO_POINTS_PRODUCTS
from app.engine import Engine
from app.htmllog import SessionLog, SessionLogHandler
from app.i18n import Translator
from app.transports.base import FloodWait
from app.transports.simulated import SimulatedNetwork, SimulatedTransportFactory
from app.ui.main_window import MainWindow

_T = TypeVar("_T")
ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_MS = 60_000

MESSAGE = (
    "Здравствуйте! Напоминаем: вебинар «Планирование бюджета» начнётся в четверг в 19:00.\n"
    "Ссылка придёт за час до начала. Чтобы отписаться, ответьте «стоп»."
)
MESSAGE_EN = (
    "Hello! A reminder: the budgeting webinar starts on Thursday at 19:00.\n"
    "The link arrives an hour before. Reply STOP to unsubscribe."
)


def wait(signal: pyqtBoundSignal, action: Callable[[], object]) -> tuple[Any, ...]:
    """Connect to ``signal``, run ``action``, and spin the event loop until it fires."""
    loop = QEventLoop()
    got: list[tuple[Any, ...]] = []

    def fired(*args: Any) -> None:
        got.append(args)
        loop.quit()

    signal.connect(fired)
    timer = QTimer()
    timer.setSingleShot(True)
    timer.timeout.connect(loop.quit)
    timer.start(TIMEOUT_MS)
    action()
    if not got:
        loop.exec()
    signal.disconnect(fired)
    if not got:
        raise TimeoutError(f"{signal} did not fire")
    return got[0]


#: The fake provider's checkout form, as its Pay button sends it.
PAY = {"outcome": "pay"}


def billing_active(snapshot: Any) -> bool:
    sub = None if snapshot is None else snapshot.subscription
    return sub is not None and sub.state == "active"


def settle(ms: int = 150) -> None:
    """Let queued events (deliveries, repaints, the progress timer) run."""
    loop = QEventLoop()
    QTimer.singleShot(ms, loop.quit)
    loop.exec()


def save(widget: QWidget, path: Path) -> None:
    settle()
    # Item views lay their items out lazily; a grab must not catch one half-done.
    for view in widget.findChildren(QAbstractItemView):
        view.doItemsLayout()  # type: ignore[attr-defined]  # a public slot the stubs miss
    settle()
    if not widget.grab().save(str(path)):
        raise OSError(f"cannot write {path}")
    print(f"  {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--language", choices=("ru", "en"), default="ru")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = parser.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.WARNING)

    app = QApplication.instance() or QApplication(sys.argv)
    assert isinstance(app, QApplication)
    app.setApplicationName("TGFlow")

    with tempfile.TemporaryDirectory(prefix="tgflow-shots-") as tmp:
        root = Path(tmp)
        backend = start_demo_backend(
            root / "server", monthly_quota=1000, max_devices=3, rate_limit_enabled=False
        )
        clock = FakeAsyncClock(datetime.now(UTC))
        log_dir = root / "logs"
        # Two earlier sessions, so that the Logs panel has a history.
        for hours, text in ((50, "demo session"), (26, "broadcast of 120 messages finished")):
            past = FakeAsyncClock(datetime.now(UTC) - timedelta(hours=hours))
            with SessionLog(log_dir, clock=past, session_name="demo") as old:
                old.write("INFO", "tgflow.app", "TGFlow started")
                old.write("INFO", "tgflow.core", text)
        session_log = SessionLog(log_dir, clock=clock, session_name="demo")
        handler = SessionLogHandler(session_log)
        logging.getLogger("tgflow").addHandler(handler)
        logging.getLogger("tgflow").setLevel(logging.INFO)
        # The embedded backend logs every request; the desktop's own log is what is shown.
        logging.getLogger("tgflow.server").setLevel(logging.WARNING)
        logging.getLogger("tgflow").info("TGFlow started in demo mode")

        settings_path = root / "config" / "settings.ini"
        save_settings(
            settings_path,
            {
                ("license", "api_base_url"): backend.url,
                ("license", "jwt_public_key_fingerprint"): ", ".join(backend.pins),
                ("ui", "language"): args.language,
            },
        )
        settings = load_settings(settings_path)
        domain = "desk01.corp.example.com"
        demo_license = write_demo_license(backend, root, domain)
        network = SimulatedNetwork(seed=11, clock=clock, latency=(0.2, 0.6))
        engine = Engine()

        def run(coro: Coroutine[Any, Any, _T]) -> _T:
            return engine.submit(coro).result(60)

        async def build() -> Core:
            return Core(
                CoreConfig(
                    api_base_url=backend.url,
                    pins=backend.pins,
                    policy=FloodPolicy(),
                    pacing=Pacing(
                        min_delay_sec=settings.broadcast.min_delay_sec,
                        max_delay_sec=settings.broadcast.max_delay_sec,
                        batch_size=20,
                    ),
                    install_domain=domain,
                    store_checkout_url=backend.store_checkout_url,
                ),
                data_dir=root / "data",
                transports=SimulatedTransportFactory(network),
                fingerprint="fp-" + secrets.token_hex(16),
                clock=clock,
                secrets=RefreshTokenStore(root / "data", backend=keyring.backends.fail.Keyring()),
                rng=random.Random(5),  # noqa: S311 - pacing jitter, not cryptography
                device_name="Рабочий ноутбук" if args.language == "ru" else "Work laptop",
            )

        core = run(build())
        translator = Translator(args.language)
        window = MainWindow(
            engine,
            core,
            settings=settings,
            settings_path=settings_path,
            log_dir=log_dir,
            translator=translator,
            demo_credentials=(backend.email, backend.password),
            marketplace_defaults=(
                (backend.url, backend.marketplace.admin_token)
                if backend.marketplace is not None
                else None
            ),
            demo_license=demo_license,
            current_log=session_log.path,
            # The checkout is paid below over HTTP, as the browser would; the tab asks often.
            billing_opener=lambda _url: None,
            billing_poll_ms=200,
        )
        window.resize(1200, 800)
        try:
            print(f"screenshots ({args.language}) into {out}:")
            wait(window.session.needs_sign_in, window.start)
            dialog = window.login_dialog
            assert dialog is not None
            settle()
            save(dialog, out / "login.png")

            wait(window.session.signed_in, dialog.sign_in_button.click)

            # Accounts: three simulated ones; one cools down after a FloodWait, one is excluded.
            panel = window.accounts_panel
            for phone in ("+1 555 000 0001", "+1 555 000 0012", "+1 555 000 0021"):
                panel.phone.setText(phone)
                wait(window.accounts.code_requested, panel.send_code_button.click)
                panel.code.setText("12345")
                if phone.endswith("2"):
                    wait(window.accounts.password_requested, panel.code_button.click)
                    panel.password.setText("secret")
                    wait(window.accounts.account_added, panel.password_button.click)
                else:
                    wait(window.accounts.account_added, panel.code_button.click)
            wait(
                window.accounts.accounts_changed,
                lambda: engine.call_soon(lambda: core.antispam.on_flood_wait("15550000012", 1260)),
            )
            wait(
                window.accounts.accounts_changed,
                lambda: engine.call_soon(
                    lambda: core.antispam.exclude(
                        "15550000021",
                        "PeerFlood (3 consecutive errors): check @SpamBot, then restore.",
                    )
                ),
            )
            panel.select("15550000001")
            wait(window.accounts.spambot_reply, panel.spambot_button.click)
            window.tabs.setCurrentWidget(panel)
            save(window, out / "accounts.png")

            # Broadcast: pasted recipients with a duplicate and two bad lines, a FloodWait.
            bp = window.broadcast_panel
            names = [f"@demo_user{i:03d}" for i in range(1, 41)]
            pasted = "\n".join(
                [*names[:20], "@demo_user005", "hello!", "+7 999", *names[20:], "@unknown_x1"]
            )
            bp.paste.setPlainText(pasted)
            wait(window.broadcast.imported, bp.import_text_button.click)
            bp.opt_in.setChecked(True)
            bp.message.setPlainText(MESSAGE if args.language == "ru" else MESSAGE_EN)
            bp.select_account("15550000001")
            network.script("15550000001", FloodWait(42), at=12)
            wait(window.broadcast.finished, bp.start_button.click)
            settle(300)
            window.tabs.setCurrentWidget(bp)
            bp.table.scrollToTop()
            save(window, out / "broadcast.png")

            # The license after the broadcast: the quota bar shows what was used.
            wait(window.license.changed, window.license.refresh)
            window.tabs.setCurrentWidget(window.license_panel)
            save(window, out / "license.png")

            # Marketplace: the demo's catalog; a trial started and installed, a free app taken.
            market = window.open_marketplace()
            model = window.marketplace
            assert model is not None
            wait(model.changed, lambda: window.tabs.setCurrentWidget(window.marketplace_tab))
            wait(model.license_changed, market.cards["polls"].trial_button.click)
            wait(model.installed, market.cards["polls"].install_button.click)
            wait(model.license_changed, market.cards["notes"].purchase_button.click)
            settle(300)
            save(window, out / "marketplace.png")

            # Plans & billing: "basic" paid on the fake Stripe's page (the tab sees it by itself),
            # points bought in the fake store, then a change to "pro" priced, waiting to be
            # confirmed.
            billing_panel = window.open_billing()
            billing = window.billing
            assert billing is not None
            wait(billing.changed, lambda: window.tabs.setCurrentWidget(window.billing_tab))
            billing_panel.select_plan("basic")
            (url,) = wait(billing.checkout_opened, billing_panel.subscribe_button.click)
            paid = False
            while not billing_active(billing.snapshot):
                # Pay once; after that each refresh of the tab comes by itself.
                wait(billing.changed, dict if paid else partial(httpx.post, url, data=PAY))
                paid = True
            # 100 points bought at the fake RuStore's page (credited by itself), then the change.
            buy = partial(billing.buy_points, DEMO_POINTS_PRODUCTS[0].id)
            (store_url,) = wait(billing.checkout_opened, buy)
            wait(billing.points_bought, partial(httpx.post, store_url, data=PAY))
            billing_panel.select_plan("pro")
            wait(billing.preview_ready, billing_panel.change_button.click)
            # The tab is taller than the other screens (subscription, plans, points, invoices).
            window.resize(1200, 1150)
            save(window, out / "billing.png")
            window.resize(1200, 800)

            window.tabs.setCurrentWidget(window.logs_panel)
            wait(window.logs.log_loaded, window.logs.refresh)
            save(window, out / "logs.png")

            sp = window.settings_panel
            window.tabs.setCurrentWidget(sp)
            editor = sp.editors[("broadcast", "max_delay_sec")]
            assert hasattr(editor, "setText")
            editor.setText("2")
            wait(window.settings.failed, sp.save_button.click)
            save(window, out / "settings.png")

            # License-file mode: signed out, the demo's license file activated from the login
            # dialog ("Activate with a license file…", filled in as in the demo).
            wait(window.session.signed_out, window.session.sign_out)
            login = window.login_dialog
            assert login is not None
            file_dialog = login.open_license_file()
            settle()
            save(file_dialog, out / "license-file-dialog.png")
            wait(window.session.signed_in, file_dialog.activate_button.click)
            window.tabs.setCurrentWidget(window.license_panel)
            save(window, out / "license-file.png")
        finally:
            window.close()
            run(core.close())
            engine.stop()
            backend.stop()
            logging.getLogger("tgflow").removeHandler(handler)
            session_log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
