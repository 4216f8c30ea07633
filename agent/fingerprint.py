"""The device fingerprint: a few stable machine values, each HMAC'd, as one wire string.

A fingerprint has three components, always in this order:

``machine_id``
    The OS installation's id: Linux ``/etc/machine-id`` (or ``/var/lib/dbus/machine-id``),
    Windows ``MachineGuid`` from the registry, macOS ``IOPlatformUUID``.
``hardware_id``
    The hardware's own id, where readable: Linux ``/sys/class/dmi/id/product_uuid`` (often
    root-only), Windows the SMBIOS system UUID the registry keeps as ``HardwareConfig\\LastConfig``,
    macOS ``IOPlatformSerialNumber`` (on a Mac ``IOPlatformUUID`` already is the hardware UUID).
``volume_id``
    The file-system UUID of the system volume: Linux the UUID of the root file system, Windows the
    serial number of the system drive, macOS the UUID of the data volume. It changes only when the
    disk is reformatted, survives reboots and OS updates, and is independent of the other two,
    which is why it was chosen over MAC addresses (docks, USB adapters, VPNs and address
    randomisation change them), the host name (users rename machines; containers get a new one per
    run) or the OS install time (a Windows feature update resets ``InstallDate``).

Each raw value is HMAC-SHA256'd with an application salt and its component name, and only the
first 22 base64url characters (132 bits) are kept, so no hardware id ever leaves the machine. A
component that cannot be read is sent as ``-``, never dropped, so positions stay comparable. The
matching rule lives in :func:`agent.protocol.same_device`, shared with the server.

Every reader is injectable: pass ``readers`` to :func:`compute_fingerprint`, or a fake registry,
command runner or root directory to the platform readers, to simulate a VM, a container or an
update that changed one value.
"""

from __future__ import annotations

import base64
import ctypes
import hashlib
import hmac
import os
import plistlib
import re
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from .protocol import (
    FINGERPRINT_COMPONENT_LENGTH,
    FINGERPRINT_MISSING,
    FINGERPRINT_SEPARATOR,
    FINGERPRINT_V1_PREFIX,
)

#: The application salt. It is public (it ships in the program); its job is to make the digests
#: specific to TGFlow, so they cannot be linked with another program's ids of the same machine.
#: An embedding application should pass its own salt to :func:`compute_fingerprint`.
DEFAULT_SALT: Final = b"tgflow/device-fingerprint/v1"

#: The components of a v1 fingerprint, in wire order. Never reorder: stored fingerprints depend
#: on it; a new component needs a new version prefix.
COMPONENTS: Final = ("machine_id", "hardware_id", "volume_id")

#: Reads one raw component value; ``None`` when it is not available on this machine.
ComponentReader = Callable[[], str | None]
#: Reads a string value under ``HKEY_LOCAL_MACHINE``: ``(subkey, value name) -> value or None``.
RegistryReader = Callable[[str, str], str | None]
#: Runs a command and returns its standard output, or ``None`` if it failed.
CommandRunner = Callable[[Sequence[str]], bytes | None]

_COMMAND_TIMEOUT_SECONDS: Final = 5.0

# Placeholders that firmware and images ship instead of a real id: treated as missing.
_PLACEHOLDERS: Final = frozenset(
    {
        "",
        "none",
        "null",
        "unknown",
        "default string",
        "not settable",
        "not specified",
        "to be filled by o.e.m.",
        "system serial number",
        "0123456789",
        "03000200-0400-0500-0006-000700080009",
        "uninitialized",
    }
)


class FingerprintUnavailable(RuntimeError):
    """No component of the device fingerprint could be read on this machine."""


@dataclass(frozen=True)
class DeviceFingerprint:
    """A computed fingerprint: the wire string and which components it holds."""

    value: str
    present: tuple[str, ...]
    missing: tuple[str, ...]

    def __str__(self) -> str:
        return self.value


def normalise_identifier(raw: str | None) -> str | None:
    """Canonical form of a raw id (trimmed, lower-case), or ``None`` if it identifies nothing.

    Empty values, firmware placeholders and ids made of one repeated character (all zeros, all
    ``f``) are treated as missing rather than as a value every such machine would share.
    """
    if raw is None:
        return None
    value = raw.strip().strip("\x00").strip().lower()
    if value.startswith("{") and value.endswith("}"):
        value = value[1:-1]
    if value in _PLACEHOLDERS or len(set(value.replace("-", ""))) <= 1:
        return None
    return value


def component_digest(name: str, raw: str, salt: bytes = DEFAULT_SALT) -> str:
    """The encoded digest of one component: base64url(HMAC-SHA256(salt, name NUL value))[:22].

    The component name is part of the message, so the same raw value in two slots yields
    unrelated digests.
    """
    mac = hmac.new(salt, name.encode() + b"\x00" + raw.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode("ascii")[:FINGERPRINT_COMPONENT_LENGTH]


def compute_fingerprint(
    readers: Mapping[str, ComponentReader] | None = None, *, salt: bytes = DEFAULT_SALT
) -> DeviceFingerprint:
    """Read every component and encode the v1 fingerprint: ``v1.<c1>.<c2>.<c3>``.

    ``readers`` maps each name in :data:`COMPONENTS` to its reader (default: this platform's,
    see :func:`default_readers`); a name without a reader counts as missing. A reader that
    raises ``OSError`` also counts as missing. Raises :class:`FingerprintUnavailable` when no
    component at all could be read.
    """
    readers = default_readers() if readers is None else readers
    unknown = set(readers) - set(COMPONENTS)
    if unknown:
        raise ValueError(f"unknown fingerprint components: {sorted(unknown)}")
    parts: list[str] = []
    present: list[str] = []
    missing: list[str] = []
    for name in COMPONENTS:
        reader = readers.get(name)
        try:
            raw = normalise_identifier(reader()) if reader is not None else None
        except OSError:
            raw = None
        if raw is None:
            parts.append(FINGERPRINT_MISSING)
            missing.append(name)
        else:
            parts.append(component_digest(name, raw, salt))
            present.append(name)
    if not present:
        raise FingerprintUnavailable(
            "no machine id, hardware id or volume id is readable on this machine"
        )
    value = FINGERPRINT_V1_PREFIX + FINGERPRINT_SEPARATOR.join(parts)
    return DeviceFingerprint(value, tuple(present), tuple(missing))


def default_readers(platform: str = sys.platform) -> dict[str, ComponentReader]:
    """This platform's component readers (Linux, Windows, macOS; other systems get Linux's)."""
    if platform == "win32":
        return {
            "machine_id": windows_machine_guid,
            "hardware_id": windows_hardware_uuid,
            "volume_id": windows_system_volume_serial,
        }
    if platform == "darwin":
        return {
            "machine_id": macos_platform_uuid,
            "hardware_id": macos_serial_number,
            "volume_id": macos_data_volume_uuid,
        }
    return {
        "machine_id": linux_machine_id,
        "hardware_id": linux_product_uuid,
        "volume_id": linux_root_volume_uuid,
    }


# --- Linux --------------------------------------------------------------------------------------


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii", errors="replace")
    except OSError:  # absent, or root-only (product_uuid)
        return None


def linux_machine_id(root: Path = Path("/")) -> str | None:
    """``/etc/machine-id``, else the D-Bus copy in ``/var/lib/dbus/machine-id``."""
    for relative in ("etc/machine-id", "var/lib/dbus/machine-id"):
        value = normalise_identifier(_read_text(root / relative))
        if value is not None:
            return value
    return None


def linux_product_uuid(root: Path = Path("/")) -> str | None:
    """The SMBIOS product UUID; ``None`` where the file is root-only or absent (containers)."""
    return normalise_identifier(_read_text(root / "sys/class/dmi/id/product_uuid"))


def _root_mount_source(mountinfo: str | None) -> str | None:
    source = None
    for line in (mountinfo or "").splitlines():
        fields = line.split(" ")
        if len(fields) < 10 or fields[4] != "/" or " - " not in line:
            continue
        after = line.split(" - ", 1)[1].split(" ")
        if len(after) >= 2:
            source = after[1]  # the last "/" mount is the visible one
    return source


def linux_root_volume_uuid(root: Path = Path("/")) -> str | None:
    """The file-system UUID of ``/``, found through ``/dev/disk/by-uuid``.

    The root mount's source device comes from ``/proc/self/mountinfo``; the by-uuid link that
    resolves to it names the UUID. Overlay roots (containers) have no such link: ``None``.
    """
    by_uuid = root / "dev/disk/by-uuid"
    source = _root_mount_source(_read_text(root / "proc/self/mountinfo"))
    try:
        links = sorted(by_uuid.iterdir())
    except OSError:
        return None
    targets: set[str] = set()
    if source and source.startswith("/dev/"):
        targets.add(os.path.realpath(root / source.lstrip("/")))
    try:
        root_device: int | None = os.stat(root).st_dev
    except OSError:
        root_device = None
    for link in links:
        try:
            if os.path.realpath(link) in targets:
                return normalise_identifier(link.name)
            if root_device is not None and getattr(os.stat(link), "st_rdev", None) == root_device:
                return normalise_identifier(link.name)
        except OSError:
            continue
    return None


# --- Windows ------------------------------------------------------------------------------------


def _winreg_read(subkey: str, name: str) -> str | None:
    if sys.platform == "win32":
        import winreg

        # 64-bit view: a 32-bit Python would otherwise read the WOW64 copy, lacking MachineGuid.
        access = winreg.KEY_READ | winreg.KEY_WOW64_64KEY
        try:
            with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, subkey, 0, access) as key:
                value, _kind = winreg.QueryValueEx(key, name)
        except OSError:
            return None
        return value if isinstance(value, str) else None
    else:  # a platform branch: mypy checks each OS without an unreachable statement
        return None


def windows_machine_guid(read_value: RegistryReader = _winreg_read) -> str | None:
    """``HKLM\\SOFTWARE\\Microsoft\\Cryptography\\MachineGuid`` (set at install; no WMIC)."""
    return normalise_identifier(read_value(r"SOFTWARE\Microsoft\Cryptography", "MachineGuid"))


def windows_hardware_uuid(read_value: RegistryReader = _winreg_read) -> str | None:
    """The SMBIOS system UUID, as Windows records it in ``HKLM\\SYSTEM\\HardwareConfig``."""
    return normalise_identifier(read_value(r"SYSTEM\HardwareConfig", "LastConfig"))


def _volume_serial(drive: str) -> int | None:
    if sys.platform == "win32":
        serial = ctypes.c_uint32(0)
        ok = ctypes.windll.kernel32.GetVolumeInformationW(
            ctypes.c_wchar_p(drive), None, 0, ctypes.byref(serial), None, None, None, 0
        )
        return serial.value if ok else None
    else:  # a platform branch: mypy checks each OS without an unreachable statement
        return None


def windows_system_volume_serial(
    volume_serial: Callable[[str], int | None] = _volume_serial,
    system_drive: str | None = None,
) -> str | None:
    """The serial number of the system drive's volume (``GetVolumeInformationW``).

    It is written when the volume is formatted, so it survives reboots and Windows updates.
    """
    drive = (system_drive or os.environ.get("SYSTEMDRIVE") or "C:").rstrip("\\") + "\\"
    serial = volume_serial(drive)
    return None if not serial else f"{serial:08x}"


# --- macOS --------------------------------------------------------------------------------------


def run_command(argv: Sequence[str]) -> bytes | None:
    """Run ``argv`` (no shell) and return its output, or ``None`` if it failed or timed out."""
    try:
        done = subprocess.run(  # noqa: S603 - fixed argv, no shell
            list(argv), capture_output=True, timeout=_COMMAND_TIMEOUT_SECONDS, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def _ioreg_property(name: str, run: CommandRunner) -> str | None:
    output = run(["/usr/sbin/ioreg", "-rd1", "-c", "IOPlatformExpertDevice"])
    if output is None:
        return None
    match = re.search(rf'"{re.escape(name)}"\s*=\s*"([^"]*)"', output.decode("utf-8", "replace"))
    return normalise_identifier(match.group(1)) if match else None


def macos_platform_uuid(run: CommandRunner = run_command) -> str | None:
    """``IOPlatformUUID`` from ``ioreg -rd1 -c IOPlatformExpertDevice``."""
    return _ioreg_property("IOPlatformUUID", run)


def macos_serial_number(run: CommandRunner = run_command) -> str | None:
    """``IOPlatformSerialNumber`` from ``ioreg -rd1 -c IOPlatformExpertDevice``."""
    return _ioreg_property("IOPlatformSerialNumber", run)


def macos_data_volume_uuid(run: CommandRunner = run_command) -> str | None:
    """The UUID of the data volume (``diskutil info -plist``).

    Since macOS 10.15 ``/`` is a sealed system snapshot that every OS update replaces; the data
    volume keeps its UUID, so it is asked first.
    """
    for mount in ("/System/Volumes/Data", "/"):
        output = run(["/usr/sbin/diskutil", "info", "-plist", mount])
        if output is None:
            continue
        try:
            info = plistlib.loads(output)
        except (plistlib.InvalidFileException, ValueError):
            continue
        uuid = info.get("VolumeUUID") if isinstance(info, dict) else None
        if isinstance(uuid, str) and normalise_identifier(uuid) is not None:
            return normalise_identifier(uuid)
    return None
