"""The PyInstaller packaging's invariants, checked without building (scripts/test-frozen builds)."""

from __future__ import annotations

import re
import tarfile
import tomllib
from pathlib import Path

import pytest

from tests.helpers.build_scripts import BUILD_DIR, load, png

REPO = BUILD_DIR.parent
rules = load("bundle_rules")
build = load("build")
picture = load("check_picture")


@pytest.mark.parametrize(
    ("dest", "gone"),
    [
        ("PyQt6/Qt6/translations/qtbase_ru.qm", False),
        ("PyQt6/Qt6/translations/qtbase_en.qm", False),
        ("PyQt6/Qt6/translations/qtbase_de.qm", True),
        ("PyQt6/Qt6/translations/qt_ru.qm", True),
        ("PyQt6/Qt6/translations/qtdeclarative_ru.qm", True),
        ("PyQt6/Qt6/plugins/platforms/libqxcb.so", False),
        ("PyQt6/Qt6/plugins/platforms/libqoffscreen.so", False),
        ("PyQt6/Qt6/plugins/platforms/libqminimal.so", False),
        ("PyQt6/Qt6/plugins/platforms/libqminimalegl.so", True),
        ("PyQt6/Qt6/plugins/platforms/libqwayland-egl.so", True),
        ("PyQt6/Qt6/plugins/platforms/libqeglfs.so", True),
        ("PyQt6/Qt6/plugins/platformthemes/libqgtk3.so", True),
        ("PyQt6/Qt6/plugins/imageformats/libqjpeg.so", True),
        ("PyQt6/Qt6/plugins/xcbglintegrations/libqxcb-glx-integration.so", False),
        ("PyQt6/Qt6/lib/libQt6Gui.so.6", False),
        ("PyQt6/Qt6/lib/libQt6Quick.so.6", True),
        ("PyQt6/Qt6/lib/libQt6EglFSDeviceIntegration.so.6", True),
        ("libxcb-cursor.so.0", False),
        ("libX11.so.6", True),  # the desktop's own
        ("libdbus-1.so.3", True),
        ("libstdc++.so.6", False),
        ("libsqlite3.so.0", False),
        ("somelib/tests/data.bin", True),
        # ours are never trimmed, whatever their names
        ("resources/translations/ru.json", False),
        ("resources/icons/tgflow.png", False),
        ("resources/icons/tgflow.ico", True),
        ("server_stub/migrations/versions/0001_initial.py", False),
    ],
)
def test_trimming_keeps_what_the_program_uses(dest: str, gone: bool) -> None:
    assert rules.trimmed(dest) is gone


def test_windows_paths_are_trimmed_alike() -> None:
    assert rules.trimmed("PyQt6\\Qt6\\translations\\qtbase_fr.qm")
    assert not rules.trimmed("PyQt6\\Qt6\\translations\\qtbase_ru.qm")


def test_libraries_only_a_trimmed_plugin_needed_are_pruned() -> None:
    toc = [
        ("PyQt6/Qt6/plugins/platforms/libqxcb.so", "/s/libqxcb.so", "BINARY"),
        ("PyQt6/Qt6/lib/libQt6XcbQpa.so.6", "/s/libQt6XcbQpa.so.6", "BINARY"),
        ("libxcb-cursor.so.0", "/usr/lib/libxcb-cursor.so.0", "BINARY"),
        ("libcairo.so.2", "/usr/lib/libcairo.so.2", "BINARY"),  # the GTK theme's, trimmed
        ("_cffi_backend.cpython-311-x86_64-linux-gnu.so", "/s/_cffi.so", "EXTENSION"),
        ("libpython3.11.so.1.0", "/usr/lib/libpython3.11.so.1.0", "BINARY"),
    ]
    needs = {
        "/s/libqxcb.so": ["libQt6XcbQpa.so.6"],
        "/s/libQt6XcbQpa.so.6": ["libxcb-cursor.so.0"],
    }
    assert rules.unneeded(toc, lambda source: needs.get(source, [])) == {"libcairo.so.2"}


def test_the_qt_modules_the_program_imports_are_never_excluded() -> None:
    imported = set()
    for path in (REPO / "app").rglob("*.py"):
        imported |= set(re.findall(r"PyQt6\.(Qt\w+)", path.read_text(encoding="utf-8")))
    assert imported <= set(rules.QT_MODULES_USED)
    excluded = rules.excluded_modules()
    assert not {f"PyQt6.{name}" for name in rules.QT_MODULES_USED} & set(excluded)
    for heavy in ("PyQt6.QtWebEngineCore", "PyQt6.QtQml", "PyQt6.QtQuick", "PyQt6.QtMultimedia"):
        assert heavy in excluded


def test_what_the_bundle_must_hold_of_ours_exists_in_the_repository() -> None:
    ours = [p for p in rules.REQUIRED_IN_BUNDLE if p.startswith(("resources/", "server_stub/"))]
    assert ours
    for path in ours:
        assert (REPO / path).is_file(), path


def test_the_spec_builds_one_onedir_program_with_the_rules_applied() -> None:
    spec = (BUILD_DIR / "tgflow.spec").read_text(encoding="utf-8")
    assert "exclude_binaries=True" in spec and "COLLECT(" in spec  # onedir, not onefile
    assert 'name="tgflow"' in spec
    assert "bundle_rules.keep(a.datas)" in spec and "bundle_rules.keep(a.binaries)" in spec
    assert "excludes=bundle_rules.excluded_modules()" in spec
    assert '(str(ROOT / "server_stub" / "migrations"), "server_stub/migrations")' in spec
    launcher = (BUILD_DIR / "tgflow_launcher.py").read_text(encoding="utf-8")
    assert "from app.main import main" in launcher


def test_the_archive_is_named_as_release_expects() -> None:
    assert build.archive_name("1.2.3", "linux-x86_64") == "tgflow-1.2.3-linux-x86_64.tar.gz"
    args = build.parse_args([])
    assert args.dist == BUILD_DIR / "dist" and args.work == BUILD_DIR / "work"
    assert build.parse_args(["--dist", "/x"]).dist == Path("/x")


@pytest.mark.parametrize(
    ("pyproject", "files"),
    [
        ('[project]\nname = "tgflow"\nversion = "1.4.2"\n', {}),
        (
            '[project]\nname = "tgflow"\ndynamic = ["version"]\n'
            '[tool.setuptools.dynamic]\nversion = {attr = "tgflow_ver_probe.__version__"}\n',
            {"tgflow_ver_probe.py": '__version__ = "1.4.2"\n'},
        ),
        (
            '[project]\nname = "tgflow"\ndynamic = ["version"]\n'
            '[tool.setuptools.dynamic]\nversion = {file = ["VERSION"]}\n',
            {"VERSION": "1.4.2\n"},
        ),
    ],
)
def test_the_version_comes_from_the_projects_one_place(
    tmp_path: Path, pyproject: str, files: dict[str, str]
) -> None:
    (tmp_path / "pyproject.toml").write_text(pyproject, encoding="utf-8")
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    assert build.project_version(tmp_path / "pyproject.toml") == "1.4.2"


def test_this_projects_version_is_found() -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", build.project_version())


def test_the_archive_holds_the_bundle_under_tgflow_with_its_symlinks(tmp_path: Path) -> None:
    bundle = tmp_path / "tgflow"
    (bundle / "_internal" / "lib").mkdir(parents=True)
    (bundle / "tgflow").write_bytes(b"\x7fELF")
    (bundle / "_internal" / "lib" / "libx.so.1").write_bytes(b"x" * 10)
    (bundle / "_internal" / "libx.so.1").symlink_to("lib/libx.so.1")
    archive = build.make_archive(bundle, tmp_path / "out.tar.gz")
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
        link = tar.getmember("tgflow/_internal/libx.so.1")
    assert {"tgflow/tgflow", "tgflow/_internal/lib/libx.so.1"} <= names
    assert link.issym() and link.linkname == "lib/libx.so.1"
    assert build.tree_size(bundle) == 14  # the symlink is not counted twice
    assert not list(tmp_path.glob("*.partial"))


def test_build_output_is_ignored_by_git_and_ruff() -> None:
    ignored = (REPO / ".gitignore").read_text(encoding="utf-8").split()
    assert "build/dist/" in ignored and "build/work/" in ignored
    ruff = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["ruff"]
    assert {"build/dist", "build/work"} <= set(ruff["extend-exclude"])


def test_a_drawn_window_passes_the_picture_check(tmp_path: Path) -> None:
    path = tmp_path / "window.png"
    path.write_bytes(png(420, 320))
    assert "420x320 PNG" in picture.check(path)


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (png(420, 320, pixel=b"\xff\xff\xff"), "nearly blank"),
        (png(40, 30), "smaller than a window"),
        (b"GIF89a", "not a PNG"),
    ],
)
def test_a_blank_small_or_foreign_picture_fails_the_check(
    tmp_path: Path, data: bytes, why: str
) -> None:
    path = tmp_path / "window.png"
    path.write_bytes(data)
    with pytest.raises(ValueError, match=why):
        picture.check(path)


def test_only_the_named_packages_lose_their_docstrings() -> None:
    pure = [
        ("pyrogram.raw.types.user", "/s/user.py", "PYMODULE"),
        ("pyrogram.errors.exceptions", "/s/e.py", "PYMODULE"),  # reads its __doc__
        ("stripe", "/s/stripe/__init__.py", "PYMODULE"),
        ("stripe_other", "/s/so.py", "PYMODULE"),
        ("app.main", "/s/main.py", "PYMODULE"),
    ]
    kinds = {name: kind for name, _source, kind in rules.strip_docstrings(pure)}
    assert kinds == {
        "pyrogram.raw.types.user": "PYMODULE-2",
        "pyrogram.errors.exceptions": "PYMODULE",
        "stripe": "PYMODULE-2",
        "stripe_other": "PYMODULE",
        "app.main": "PYMODULE",
    }


def test_the_xcb_plugins_system_libraries_are_required_and_known_to_apt() -> None:
    from app.qt_platform import DEBIAN_PACKAGES

    for soname in rules.LINUX_SYSTEM_LIBRARIES:
        assert soname in rules.REQUIRED_IN_BUNDLE
        assert soname in DEBIAN_PACKAGES  # scripts/test-frozen installs them before building
        assert not rules.trimmed(soname)
        assert soname not in rules.SYSTEM_PROVIDED
