"""What goes into the PyInstaller bundle and what is trimmed from it.

Plain data and pure functions, read by ``build/tgflow.spec`` (at build time, inside PyInstaller)
and by ``tests/build/test_bundle_rules.py`` (without building). Nothing here imports PyInstaller.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Iterable

#: The interface languages (app/i18n.py): only their Qt catalogues are shipped.
LANGUAGES = ("en", "ru")

#: Qt's Python modules the program uses; every other PyQt6 module is excluded from analysis.
QT_MODULES_USED = ("QtCore", "QtGui", "QtWidgets")

#: PyQt6 modules that must never be bundled (their Qt libraries alone are ~100 MB).
QT_MODULES_EXCLUDED = (
    "Qt3DAnimation",
    "Qt3DCore",
    "Qt3DExtras",
    "Qt3DInput",
    "Qt3DLogic",
    "Qt3DRender",
    "QtBluetooth",
    "QtDBus",
    "QtDesigner",
    "QtHelp",
    "QtMultimedia",
    "QtMultimediaWidgets",
    "QtNetwork",
    "QtNfc",
    "QtOpenGL",
    "QtOpenGLWidgets",
    "QtPdf",
    "QtPdfWidgets",
    "QtPositioning",
    "QtPrintSupport",
    "QtQml",
    "QtQuick",
    "QtQuick3D",
    "QtQuickWidgets",
    "QtRemoteObjects",
    "QtSensors",
    "QtSerialPort",
    "QtSpatialAudio",
    "QtSql",
    "QtSvg",
    "QtSvgWidgets",
    "QtTest",
    "QtTextToSpeech",
    "QtWebChannel",
    "QtWebEngineCore",
    "QtWebEngineQuick",
    "QtWebEngineWidgets",
    "QtWebSockets",
    "QtXml",
    "uic",
    "lupdate",
)

#: Python packages the program never imports at run time but that analysis could pull in
#: (test tools, optional back-ends of libraries, GUI toolkits we do not use).
PYTHON_EXCLUDED = (
    "tkinter",
    "_tkinter",
    "pytest",
    "_pytest",
    "pytestqt",
    "hypothesis",
    "schemathesis",
    "playwright",
    "mypy",
    "ruff",
    "IPython",
    "numpy",
    "pandas",
    "PIL",
    "matplotlib",
    "PySide6",
    "PyQt5",
    "readline",
    # uvicorn[standard]'s extras: the embedded server runs on asyncio's own loop and h11
    # (server_stub/embedded.py), never with --reload
    "uvloop",
    "watchfiles",
    # the bundled backend runs on SQLite (the demo and the self-test); PostgreSQL is the
    # server's, installed from source
    "psycopg",
    "psycopg_binary",
    "psycopg_c",
    # pretty printers of command-line tools that some libraries import only when present
    "pygments",
    "rich",
    "werkzeug",
    # the backend's rate limits and caches keep to memory in the bundle (the demo, the
    # self-test); Redis is the production server's
    "redis",
    # the PKCS#11 license signer is the production server's (server_stub/signing/pkcs11.py)
    "pkcs11",
    "tests",
)

#: Packages compiled without docstrings (and asserts): their docstrings are most of their size
#: (kurigram's generated API, the Stripe SDK) and they never read them. pyrogram.errors does
#: (an error's MESSAGE is its class's docstring), so only pyrogram.raw is named.
DOCSTRINGS_STRIPPED = ("pyrogram.raw", "stripe")

#: Bundle paths (as PyInstaller writes them under ``_internal/``) that are trimmed.
_TRIMMED = (
    # Qt's catalogues of languages the program does not offer
    re.compile(rf"PyQt6/Qt6/translations/(?!qtbase_(?:{'|'.join(LANGUAGES)})\.qm$).*"),
    # platform plugins other than X11 and the headless ones (Wayland sessions use XWayland)
    re.compile(r"PyQt6/Qt6/plugins/platforms/libq(?!xcb\.so|offscreen\.so|minimal\.so)[^/]*$"),
    # PNG (the only image format used) is built into QtGui; the GTK theme would pull GTK in;
    # widgets draw without OpenGL, and Wayland sessions run X11 programs through XWayland
    re.compile(
        r"PyQt6/Qt6/plugins/(?:wayland-|egldeviceintegrations|platforminputcontexts|imageformats"
        r"|networkinformation|tls|generic|iconengines|platformthemes/libqgtk3"
        r"|xcbglintegrations/libqxcb-egl)"
    ),
    re.compile(
        r"(?:^|/)libQt6(?:Wayland|WlShell|Quick|Qml|Pdf|Svg|Network|OpenGL|Multimedia"
        r"|Designer|3D|EglFS)[^/]*\.so"
    ),
    # libraries' own test suites
    re.compile(r"(?:^|/)(?:tests?|testing)/"),
    # of a distribution's metadata, importlib.metadata reads METADATA and entry_points.txt
    # (keyring finds its back-ends there); the file list alone is 0.7 MB for kurigram
    re.compile(r"\.dist-info/(?:RECORD|INSTALLER|REQUESTED|WHEEL|direct_url\.json)$"),
)

#: Libraries of Qt's xcb plugin that desktops often lack (app/qt_platform.py names their
#: Debian packages): the Linux bundle carries them, so a window opens without them installed.
LINUX_SYSTEM_LIBRARIES = (
    "libxcb-cursor.so.0",
    "libxcb-icccm.so.4",
    "libxcb-keysyms.so.1",
    "libxcb-image.so.0",
    "libxcb-render-util.so.0",
    "libxcb-xkb.so.1",
    "libxkbcommon-x11.so.0",
)

#: The base of every Linux desktop, left to the system like the libxcb, libGL and glibc that
#: PyInstaller never bundles: the X11 client library, fontconfig and FreeType (a bundled
#: fontconfig can misread a newer system's font configuration), GLib, and D-Bus with the
#: systemd library it links. Qt's wheel is built against far older versions of each.
SYSTEM_PROVIDED = (
    "libX11.so.6",
    "libX11-xcb.so.1",
    "libXau.so.6",
    "libXdmcp.so.6",
    "libbsd.so.0",
    "libmd.so.0",
    "libfontconfig.so.1",
    "libfreetype.so.6",
    "libexpat.so.1",
    "libpng16.so.16",
    "libbrotlicommon.so.1",
    "libbrotlidec.so.1",
    "libglib-2.0.so.0",
    "libgthread-2.0.so.0",
    "libpcre2-8.so.0",
    "libdbus-1.so.3",
    "libsystemd.so.0",
    "libgcrypt.so.20",
    "libgpg-error.so.0",
    "liblz4.so.1",
    "libcap.so.2",
    "libzstd.so.1",
)

#: Bundle paths that must be present for the program to work (checked after the build and by
#: the spec's own tests).
REQUIRED_IN_BUNDLE = (
    "resources/style.qss",
    "resources/icons/tgflow.png",
    "resources/translations/en.json",
    "resources/translations/ru.json",
    "resources/translations/qtbase_supplement.json",
    "PyQt6/Qt6/translations/qtbase_ru.qm",
    "PyQt6/Qt6/plugins/platforms/libqxcb.so",
    "PyQt6/Qt6/plugins/platforms/libqoffscreen.so",
    "server_stub/migrations/env.py",
    "server_stub/migrations/script.py.mako",
    *LINUX_SYSTEM_LIBRARIES,
)


_DEPENDENCY_LIBRARY = re.compile(r"(?:PyQt6/Qt6/lib/)?lib[^/]*\.so(?:\.[0-9]+)*$")


def ldd_needs(library: str) -> list[str]:
    """The sonames ``library`` needs, directly or not (``ldd``); ``[]`` when it cannot say."""
    try:
        done = subprocess.run(  # noqa: S603
            ["ldd", library],  # noqa: S607
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.split("=>")[0].strip() for line in done.stdout.splitlines() if "=>" in line]


def trimmed(dest: str) -> bool:
    """Whether the bundle path ``dest`` (forward slashes) is left out of the bundle."""
    dest = dest.replace("\\", "/")
    if dest.startswith("resources/icons/") and not dest.endswith(".png"):
        return True  # the executables' icons: PyInstaller puts them into the .exe and the .app
    if dest.startswith(("resources/", "server_stub/")):
        return False  # ours: everything under them is there on purpose
    if dest in SYSTEM_PROVIDED:
        return True
    return any(rule.search(dest) for rule in _TRIMMED)


def keep(entries: Iterable[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """PyInstaller's TOC (dest, source, kind) without the trimmed entries."""
    return [entry for entry in entries if not trimmed(entry[0])]


def is_pruning_candidate(dest: str) -> bool:
    """Libraries collected only as another library's dependency: the system's (at the top of
    the bundle) and Qt's own (``PyQt6/Qt6/lib``). They stay only while something kept needs
    them (:func:`unneeded`)."""
    dest = dest.replace("\\", "/")
    return bool(_DEPENDENCY_LIBRARY.match(dest)) and not dest.startswith("libpython")


def unneeded(
    binaries: Iterable[tuple[str, str, str]], needs: Callable[[str], Iterable[str]]
) -> set[str]:
    """Dests of pruning candidates that no kept binary needs, directly or through another.

    ``needs(source)`` names the sonames a binary links against (``ldd``'s, on Linux): what a
    trimmed plugin alone pulled in (GTK's, EGL's) goes with it.
    """
    entries = list(binaries)
    by_soname: dict[str, list[str]] = {}
    for dest, _source, _kind in entries:
        by_soname.setdefault(dest.replace("\\", "/").rsplit("/", 1)[-1], []).append(dest)
    kept = {dest for dest, _source, _kind in entries if not is_pruning_candidate(dest)}
    pending = [source for dest, source, _kind in entries if dest in kept]
    seen_sources: set[str] = set()
    source_of = {dest: source for dest, source, _kind in entries}
    while pending:
        source = pending.pop()
        if source in seen_sources:
            continue
        seen_sources.add(source)
        for soname in needs(source):
            for dest in by_soname.get(soname, ()):
                if dest not in kept:
                    kept.add(dest)
                    pending.append(source_of[dest])
    return {dest for dest, _source, _kind in entries if dest not in kept}


def docstrings_stripped(module: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in DOCSTRINGS_STRIPPED)


def strip_docstrings(pure: Iterable[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """PyInstaller's pure-Python TOC with :data:`DOCSTRINGS_STRIPPED` marked for ``-OO``."""
    return [
        (name, source, "PYMODULE-2" if docstrings_stripped(name) else kind)
        for name, source, kind in pure
    ]


def excluded_modules() -> list[str]:
    """Every module name PyInstaller's analysis is told to leave out."""
    return [f"PyQt6.{name}" for name in QT_MODULES_EXCLUDED] + list(PYTHON_EXCLUDED)
