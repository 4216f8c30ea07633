"""``tgflow``: the desktop program's entry point.

``tgflow`` opens the GUI; ``tgflow --demo`` first starts the reference backend in this process
(SQLite, a free loopback port, a demo user and plan) and uses the simulated Telegram transport;
``tgflow --self-test`` runs headless checks of the installation and exits.
"""

from __future__ import annotations

import argparse
import functools
import gc
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import __version__

if TYPE_CHECKING:
    from PyQt6.QtWidgets import QApplication

    from .config import Settings, SettingsError
    from .core import Core
    from .core_config import Pacing
    from .core_handle import DeferredCore
    from .demo import DemoBackend
    from .htmllog import SessionLog
    from .paths import AppPaths
    from .transports.base import TransportFactory
    from .ui.main_window import MainWindow

log = logging.getLogger("tgflow")

#: Exit codes.
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2

#: Set by bench/desktop.py: print a line and quit as soon as the main window is shown.
BENCH_EXIT_WHEN_SHOWN = "TGFLOW_BENCH_EXIT_WHEN_SHOWN"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tgflow", description="TGFlow: licensed Telegram broadcasts to opted-in recipients."
    )
    parser.add_argument("--config", type=Path, help="settings.ini to use")
    parser.add_argument(
        "--demo",
        action="store_true",
        help="start a local reference backend with a demo user and the simulated Telegram",
    )
    parser.add_argument(
        "--self-test", action="store_true", help="run headless checks of this installation"
    )
    parser.add_argument(
        "--offscreen",
        action="store_true",
        help="draw the window off screen (the demo then signs in by itself and saves a picture)",
    )
    parser.add_argument("--lang", choices=["ru", "en"], help="interface language")
    parser.add_argument("--version", action="version", version=f"tgflow {__version__}")
    parser.add_argument(
        "--data-root",
        type=Path,
        help="keep config, data and logs under this directory (default: the user dirs)",
    )
    # The Qt platform probe's child in a frozen build (app/qt_platform.py, probe_command).
    parser.add_argument("--qt-probe", action="store_true", help=argparse.SUPPRESS)
    return parser


@dataclass
class Startup:
    """Everything decided before the first window: settings, paths, the backend to use."""

    settings: Settings
    settings_path: Path
    paths: AppPaths
    api_base_url: str
    pins: tuple[str, ...]
    transports: TransportFactory
    demo: DemoBackend | None = None


def prepare(args: argparse.Namespace) -> Startup:
    """Read the settings and, in demo mode, start the local backend. Raises SettingsError."""
    from .config import check_live_settings, find_config, frozen_executable_dir, load_settings
    from .paths import AppPaths

    paths = AppPaths.under(args.data_root) if args.data_root else AppPaths.default()
    if args.demo:
        paths = AppPaths(paths.config_dir, paths.data_dir / "demo", paths.log_dir)
    paths.ensure()
    path = find_config(
        args.config, executable_dir=frozen_executable_dir(), config_dir=paths.config_dir
    )
    settings = load_settings(path)
    settings_path = path or paths.settings_file
    if args.demo:
        from .clock import SystemAsyncClock
        from .demo import demo_network, start_demo_backend, write_demo_license
        from .license_modules import install_domain
        from .transports.simulated import SimulatedTransportFactory

        demo = start_demo_backend(paths.data_dir / "server")
        write_demo_license(demo, paths.data_dir, install_domain(settings.license.install_domain))
        network = demo_network(SystemAsyncClock())
        return Startup(
            settings,
            settings_path,
            paths,
            demo.url,
            demo.pins,
            SimulatedTransportFactory(network),
            demo,
        )
    check_live_settings(settings)
    return Startup(
        settings,
        settings_path,
        paths,
        settings.license.api_base_url,
        settings.license.jwt_public_key_fingerprint,
        telegram_transports(settings, paths),
    )


def telegram_transports(settings: Settings, paths: AppPaths) -> TransportFactory:
    """kurigram when ``[telegram]`` is filled in; otherwise a factory that says what is missing."""
    from .transports.lazy import LazyTransportFactory
    from .transports.unconfigured import UnconfiguredTransportFactory

    api_id, api_hash = settings.telegram.api_id, settings.telegram.api_hash
    if api_id is None or not api_hash:
        return UnconfiguredTransportFactory(settings.source or paths.settings_file)
    sessions = paths.data_dir / "sessions"

    def load() -> TransportFactory:
        from .transports.pyrogram_transport import PyrogramTransportFactory

        return PyrogramTransportFactory(api_id, api_hash, sessions)

    return LazyTransportFactory("telegram", load)


def setup_logging(log_dir: Path, *, demo: bool) -> SessionLog:
    """Log the ``tgflow`` loggers into this session's HTML log and to stderr."""
    from agent.clock import SystemClock

    from .htmllog import SessionLog, SessionLogHandler

    session_log = SessionLog(log_dir, clock=SystemClock(), session_name="demo" if demo else None)
    root = logging.getLogger("tgflow")
    root.setLevel(logging.INFO)
    root.addHandler(SessionLogHandler(session_log))
    stderr = logging.StreamHandler()
    stderr.setLevel(logging.WARNING)
    stderr.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root.addHandler(stderr)
    return session_log


#: Qt messages that say nothing to the user (the off-screen platform's limits).
_QT_NOISE = ("This plugin does not support",)


def install_qt_message_handler() -> None:
    """Route Qt's own messages into the ``tgflow.qt`` logger."""
    from PyQt6.QtCore import QtMsgType, qInstallMessageHandler

    qt_log = logging.getLogger("tgflow.qt")
    levels = {
        QtMsgType.QtDebugMsg: logging.DEBUG,
        QtMsgType.QtInfoMsg: logging.INFO,
        QtMsgType.QtWarningMsg: logging.WARNING,
        QtMsgType.QtCriticalMsg: logging.ERROR,
        QtMsgType.QtFatalMsg: logging.CRITICAL,
    }

    def handler(kind: QtMsgType, _context: object, message: str | None) -> None:
        text = message or ""
        level = levels.get(kind, logging.WARNING)
        if text.startswith(_QT_NOISE):
            level = logging.DEBUG
        qt_log.log(level, "%s", text)

    qInstallMessageHandler(handler)


def show_startup_error(message: str, *, shown: Callable[[], str] | None = None) -> None:
    """Tell the user why the program cannot start: on stderr (English, like every CLI message),
    and in a dialog when possible (``shown()``'s text: in the window's language)."""
    print(f"tgflow: {message}", file=sys.stderr)
    if os.environ.get("QT_QPA_PLATFORM", "") in ("offscreen", "minimal"):
        return  # nobody could see a dialog
    try:
        from PyQt6.QtWidgets import QApplication, QMessageBox

        app = QApplication.instance() or QApplication(sys.argv[:1])
        box = QMessageBox(QMessageBox.Icon.Critical, "TGFlow", shown() if shown else message)
        box.exec()
        del app
    except Exception as exc:  # no display: stderr has said it already
        log.debug("no dialog for the startup error: %s", exc)


def startup_language(exc: SettingsError, chosen: str | None) -> str:
    """The language to explain a settings problem in: ``--lang``, else the file's own
    ``[ui] language`` when that much of it can be read, else the default (Russian)."""
    import configparser

    from .i18n import DEFAULT_LANGUAGE, LANGUAGES

    if chosen in LANGUAGES:
        return chosen
    for path in {p.file for p in exc.problems if p.file is not None}:
        parser = configparser.ConfigParser(interpolation=None, strict=False)
        try:
            parser.read(path, encoding="utf-8-sig")
            language = parser.get("ui", "language", fallback="").strip().lower()
        except (configparser.Error, OSError, UnicodeDecodeError):
            continue
        if language in LANGUAGES:
            return language
    return DEFAULT_LANGUAGE


def settings_error_text(exc: SettingsError, chosen: str | None) -> str:
    """``exc`` (the file, the key and the reason of each problem) in the window's language."""
    from .i18n import Translator
    from .viewmodels.errors import describe_settings_error

    return describe_settings_error(exc, Translator(startup_language(exc, chosen)))


def display_problem(*, demo: bool = False) -> str | None:
    """Why no window can be shown here, with what happens instead (the demo runs off screen)
    or what to do; ``None`` when a window can be shown."""
    if not sys.platform.startswith("linux") or os.environ.get("QT_QPA_PLATFORM"):
        return None
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        return None
    missing = "no display to open a window on (neither DISPLAY nor WAYLAND_DISPLAY is set)"
    # One message, one course: the demo goes on off screen by itself, so telling the user to
    # set QT_QPA_PLATFORM=offscreen as well would read as a step still to take.
    if demo:
        return (
            f"{missing}: running the demo off screen; it signs in by itself and saves a picture "
            "of the window."
        )
    return f"{missing}. Run it in a desktop session; `tgflow --demo` also runs without one."


def run_gui(args: argparse.Namespace) -> int:
    from .config import SettingsError
    from .qt_platform import unusable_display

    if args.offscreen:
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
        args.headless = True
    # Qt aborts the process when its platform plugin cannot load: find out before it starts.
    no_display = display_problem(demo=bool(args.demo))
    problem = no_display or unusable_display()
    if problem is not None:
        if not args.demo:
            print(f"tgflow: {problem}", file=sys.stderr)
            return EXIT_CONFIG
        # The demo still runs: off screen, signed in by itself, with a picture of the window.
        # (The no-display message says so itself; the unusable display's names the fix first.)
        if no_display is None:
            problem += "\ntgflow: running the demo off screen."
        print(f"tgflow: {problem}", file=sys.stderr)
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
        args.headless = True

    try:
        startup = prepare(args)
    except SettingsError as exc:
        show_startup_error(str(exc), shown=functools.partial(settings_error_text, exc, args.lang))
        return EXIT_CONFIG
    session_log = setup_logging(startup.paths.log_dir, demo=startup.demo is not None)
    try:
        return _gui(args, startup, session_log.path)
    finally:
        if startup.demo is not None:
            startup.demo.stop()
        session_log.close()


def _gui(args: argparse.Namespace, startup: Startup, current_log: Path | None) -> int:
    from PyQt6.QtCore import QTimer
    from PyQt6.QtGui import QIcon
    from PyQt6.QtWidgets import QApplication

    from .antispam import FloodPolicy
    from .catalog import resource_dir
    from .clock import SystemAsyncClock
    from .core_config import CoreConfig
    from .core_handle import DeferredCore
    from .engine import Engine
    from .i18n import Translator
    from .ui.main_window import MainWindow
    from .ui.update_notice import install_updates

    install_qt_message_handler()
    app = QApplication(sys.argv[:1])
    app.setApplicationName("TGFlow")
    app.setWindowIcon(QIcon(str(resource_dir() / "icons" / "tgflow.png")))
    settings = startup.settings
    translator = Translator(args.lang or settings.ui.language)
    engine = Engine()
    demo = startup.demo
    config = CoreConfig(
        api_base_url=startup.api_base_url,
        pins=startup.pins,
        policy=FloodPolicy.from_settings(settings),
        pacing=_pacing(settings, demo=startup.demo is not None),
        demo_pacing=startup.demo is not None,
        telemetry=settings.telemetry.enabled,
        install_domain=settings.license.install_domain,
        store_checkout_url=None if demo is None else demo.store_checkout_url,
    )
    handle = DeferredCore(
        config, SystemAsyncClock(), startup.transports, in_engine_thread=engine.in_engine_thread
    )
    window = MainWindow(
        engine,
        handle,  # type: ignore[arg-type]  # stands in for the Core until it is built
        settings=settings,
        settings_path=startup.settings_path,
        log_dir=startup.paths.log_dir,
        translator=translator,
        demo_credentials=(demo.email, demo.password) if demo is not None else None,
        marketplace_defaults=(
            (demo.url, demo.marketplace.admin_token)
            if demo is not None and demo.marketplace is not None
            else None
        ),
        demo_license=demo.license_file if demo is not None else None,
        current_log=current_log,
    )
    # Help → Check for updates; the daily check starts once the core is built.
    help_menu = install_updates(window, engine, handle, translator, start=False)  # type: ignore[arg-type]
    window.show()
    # Once the window is on screen, the engine imports the license stack and builds the core
    # (its first task: everything the window asks of the core comes after it).
    QTimer.singleShot(
        0,
        lambda: engine.submit(
            _build_core(handle, startup),
            lambda _core: _core_ready(window, args, startup, help_menu.updates.start),
            lambda exc: _core_failed(app, exc),
            what="start-up",
        ),
    )
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: app.quit())
    # Let Python run its signal handlers while Qt's loop waits (Ctrl+C in the terminal).
    heartbeat = QTimer()
    heartbeat.timeout.connect(lambda: None)
    heartbeat.start(250)
    if os.environ.get(BENCH_EXIT_WHEN_SHOWN):
        # bench/desktop.py: report once the event loop has run with the window shown, then end.
        def shown() -> None:
            print("tgflow: window shown", flush=True)
            app.quit()

        QTimer.singleShot(0, shown)
    code = app.exec()
    try:
        if handle.ready:
            engine.submit(handle.wait().close()).result(60)
    finally:
        engine.stop()
    return int(code)


def _pacing(settings: Settings, *, demo: bool) -> Pacing:
    if demo:
        from .demo import DEMO_PACING

        return DEMO_PACING
    from .core_config import Pacing

    return Pacing.from_settings(settings.broadcast)


async def _build_core(handle: DeferredCore, startup: Startup) -> Core:
    import platform

    from agent.fingerprint import compute_fingerprint

    from .core import Core

    core = Core(
        handle.config,
        data_dir=startup.paths.data_dir,
        transports=startup.transports,
        fingerprint=compute_fingerprint().value,
        clock=handle.clock,
        device_name=platform.node() or None,
    )
    handle.attach(core)
    if startup.demo is not None:
        from .demo import seed_demo_desktop

        recipients = await seed_demo_desktop(core, startup.paths.data_dir)
        print(
            f"tgflow: demo backend at {startup.demo.url} (user {startup.demo.email}); "
            f"demo recipients to import: {recipients}",
            flush=True,
        )
        if startup.demo.license_file is not None:
            # The key is the demo's own, new at every start (like the password): not a secret.
            path, key = startup.demo.license_file
            print(f"tgflow: demo license file: {path} (license key {key})", flush=True)
    return core


def _core_ready(
    window: MainWindow,
    args: argparse.Namespace,
    startup: Startup,
    check_updates: Callable[[], None] = lambda: None,
) -> None:
    if startup.demo is not None:
        from .demo import prepare_demo_window

        prepare_demo_window(window, startup.paths.data_dir)
    if getattr(args, "headless", False) and startup.demo is not None:
        _run_headless_demo(window, startup.demo, startup.paths.log_dir)
    else:
        window.start()
    check_updates()
    # Everything built so far lives as long as the program: keep it out of the collector's full
    # passes, which otherwise stall the GUI for tens of milliseconds during a long broadcast.
    gc.collect()
    gc.freeze()


def _core_failed(app: QApplication, exc: BaseException) -> None:
    log.error("the program could not start: %s: %s", type(exc).__name__, exc)
    show_startup_error(f"the program could not start: {exc}")
    app.exit(EXIT_FAILED)


def _run_headless_demo(window: Any, demo: DemoBackend, log_dir: Path) -> None:
    """Sign the demo user in without the dialog and save a picture of the window."""
    from PyQt6.QtCore import QTimer

    picture = log_dir / "demo-window.png"

    def signed_in(_snapshot: object) -> None:
        # Let the window lay itself out for the signed-in state before taking the picture.
        QTimer.singleShot(300, save)

    def save() -> None:
        window.grab().save(str(picture))
        print(
            f"tgflow: demo backend at {demo.url}, signed in as {demo.email}\n"
            f"tgflow: the window is drawn off screen; a picture of it: {picture}\n"
            "tgflow: press Ctrl+C to stop.",
            flush=True,
        )

    window.session.signed_in.connect(signed_in)
    window.show()
    window.session.sign_in(demo.email, demo.password)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.qt_probe:
        from .qt_platform import print_platform

        return print_platform()
    if args.self_test:
        from .selftest import run_self_test

        return run_self_test(args)
    return run_gui(args)


if __name__ == "__main__":
    sys.exit(main())
