"""The device fingerprint: HMAC'd components, the encoding, the matching rule, every OS reader.

Readers are always injected: no test reads this machine's real ids, registry or ``ioreg``.
"""

from __future__ import annotations

import os
import plistlib
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
from pydantic import TypeAdapter, ValidationError

from agent import fingerprint as fpm
from agent.fingerprint import (
    COMPONENTS,
    DEFAULT_SALT,
    ComponentReader,
    FingerprintUnavailable,
    compute_fingerprint,
    default_readers,
)
from agent.protocol import (
    Fingerprint,
    fingerprint_agreement,
    fingerprint_components,
    same_device,
)

MACHINE_ID = "4c4c4544003957108052b4c04f384833"
PRODUCT_UUID = "4C4C4544-0039-5710-8052-B4C04F384833"
VOLUME_UUID = "0f3c6a1e-7d2b-4f5e-9a8c-1b2d3e4f5a6b"
RAW = {"machine_id": MACHINE_ID, "hardware_id": PRODUCT_UUID, "volume_id": VOLUME_UUID}

wire_fingerprint = TypeAdapter(Fingerprint)


def readers(**overrides: str | None) -> dict[str, ComponentReader]:
    values: dict[str, str | None] = {**RAW, **overrides}
    return {name: _constant(value) for name, value in values.items()}


def _constant(value: str | None) -> ComponentReader:
    return lambda: value


def fp(**overrides: str | None) -> str:
    return compute_fingerprint(readers(**overrides)).value


# --- the encoding -------------------------------------------------------------------------------


def test_components_are_hmacd_and_no_raw_id_leaves_the_machine() -> None:
    value = fp()
    assert value.startswith("v1.")
    assert len(fingerprint_components(value)) == len(COMPONENTS) == 3
    lowered = value.lower()
    for raw in RAW.values():
        for form in (raw, raw.lower(), raw.replace("-", "").lower(), raw[:8].lower()):
            assert form not in lowered
    assert wire_fingerprint.validate_python(value) == value


def test_the_fingerprint_is_deterministic_and_salt_specific() -> None:
    assert fp() == fp()
    other_app = compute_fingerprint(readers(), salt=b"another application").value
    assert other_app != fp()
    assert not same_device(fp(), other_app)
    assert DEFAULT_SALT  # the module constant is the default


def test_raw_ids_are_normalised_before_hashing() -> None:
    # Case, whitespace and registry braces do not change the device.
    assert fp(hardware_id="  {" + PRODUCT_UUID.lower() + "}\n") == fp()


def test_the_same_value_in_two_slots_gives_unrelated_digests() -> None:
    same = fp(machine_id="a1b2c3d4e5f6", hardware_id="a1b2c3d4e5f6", volume_id="a1b2c3d4e5f6")
    first, second, third = fingerprint_components(same)
    assert len({first, second, third}) == 3


PLACEHOLDERS = [
    None,
    "",
    "   ",
    "00000000-0000-0000-0000-000000000000",
    "FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF",
    "To be filled by O.E.M.",
    "03000200-0400-0500-0006-000700080009",
    "Not Settable",
]


@pytest.mark.parametrize("placeholder", PLACEHOLDERS)
def test_missing_and_placeholder_values_are_explicitly_missing(placeholder: str | None) -> None:
    result = compute_fingerprint(readers(hardware_id=placeholder))
    assert result.missing == ("hardware_id",)
    assert result.present == ("machine_id", "volume_id")
    assert fingerprint_components(result.value)[1] is None
    assert result.value.split(".")[2] == "-"
    assert wire_fingerprint.validate_python(result.value)


def test_a_reader_that_fails_counts_as_missing_and_a_missing_reader_too() -> None:
    def broken() -> str | None:
        raise PermissionError("root only")

    result = compute_fingerprint({"machine_id": broken, "volume_id": lambda: VOLUME_UUID})
    assert result.missing == ("machine_id", "hardware_id")
    assert result.value.startswith("v1.-.-.")


def test_nothing_readable_is_an_error_not_an_empty_fingerprint() -> None:
    with pytest.raises(FingerprintUnavailable):
        compute_fingerprint(readers(machine_id=None, hardware_id=None, volume_id=None))


def test_unknown_component_names_are_refused() -> None:
    with pytest.raises(ValueError, match="mac_address"):
        compute_fingerprint({**readers(), "mac_address": lambda: "00:11:22:33:44:55"})


# --- the matching rule --------------------------------------------------------------------------


@pytest.mark.parametrize("changed", COMPONENTS)
def test_one_component_changed_is_the_same_device(changed: str) -> None:
    # A VM migration, a container rebuild or a Windows update touched one value.
    moved = fp(**{changed: "a-brand-new-value-1234"})
    assert moved != fp()
    assert same_device(fp(), moved)
    assert same_device(moved, fp())
    assert fingerprint_agreement(fp(), moved) == (2, 3)


@pytest.mark.parametrize("kept", COMPONENTS)
def test_two_of_three_changed_is_another_device(kept: str) -> None:
    changed = {name: f"other-{name}-9876" for name in COMPONENTS if name != kept}
    assert not same_device(fp(), fp(**changed))
    assert fingerprint_agreement(fp(), fp(**changed)) == (1, 3)


def test_a_component_missing_on_one_side_counts_neither_way() -> None:
    # product_uuid is root-only on Linux: readable in one run, not in the next.
    without = fp(hardware_id=None)
    assert same_device(fp(), without)
    assert same_device(without, fp())
    assert fingerprint_agreement(fp(), without) == (2, 2)
    # With two compared components both must agree: one changed as well is another device.
    assert not same_device(fp(), fp(hardware_id=None, volume_id="replaced-disk-0001"))
    assert not same_device(without, fp(volume_id="replaced-disk-0001"))


def test_fewer_than_two_comparable_components_need_an_exact_match() -> None:
    only_machine = fp(hardware_id=None, volume_id=None)
    assert same_device(only_machine, only_machine)
    assert not same_device(only_machine, fp())
    assert not same_device(fp(), only_machine)
    assert not same_device(only_machine, fp(machine_id=None, hardware_id=None))


def test_opaque_fingerprints_match_only_exactly() -> None:
    legacy = "fp-" + "ab" * 16
    assert fingerprint_components(legacy) == (legacy,)
    assert same_device(legacy, legacy)
    assert not same_device(legacy, legacy[:-1] + "c")
    assert not same_device(legacy, fp())
    assert not same_device(fp(), legacy)


@pytest.mark.parametrize(
    "malformed",
    [
        "v1.short.parts.here-and-there",
        "v1." + "A" * 22 + "." + "B" * 22,  # fewer than three components
        "v1." + ".".join(["A" * 22, "B" * 22, "C" * 21]),
        "v1." + ".".join(["A" * 22, "B:" + "b" * 20, "C" * 22]),
        "v2." + ".".join(["A" * 22] * 3),
    ],
)
def test_malformed_structured_fingerprints_are_opaque(malformed: str) -> None:
    assert fingerprint_components(malformed) == (malformed,)
    near = malformed[:-1] + ("x" if malformed[-1] != "x" else "y")
    assert not same_device(malformed, near)


def test_fingerprints_of_different_lengths_match_only_exactly() -> None:
    three = ".".join(["A" * 22, "B" * 22, "C" * 22])
    four = ".".join(["A" * 22, "B" * 22, "C" * 22, "D" * 22])
    assert not same_device("v1." + three, "v1." + four)
    assert fingerprint_agreement("v1." + three, "v1." + four) == (0, 0)


def test_a_fingerprint_that_does_not_fit_the_wire_type_is_refused_by_it() -> None:
    with pytest.raises(ValidationError):
        wire_fingerprint.validate_python("v1.-.-.-")


# --- Linux readers ------------------------------------------------------------------------------


def _linux_root(tmp_path: Path) -> Path:
    (tmp_path / "etc").mkdir()
    (tmp_path / "sys/class/dmi/id").mkdir(parents=True)
    (tmp_path / "dev/disk/by-uuid").mkdir(parents=True)
    (tmp_path / "proc/self").mkdir(parents=True)
    return tmp_path


def test_linux_machine_id_falls_back_to_dbus(tmp_path: Path) -> None:
    root = _linux_root(tmp_path)
    assert fpm.linux_machine_id(root) is None
    (root / "var/lib/dbus").mkdir(parents=True)
    (root / "var/lib/dbus/machine-id").write_text("DBUS0123456789abcdef\n")
    assert fpm.linux_machine_id(root) == "dbus0123456789abcdef"
    (root / "etc/machine-id").write_text(MACHINE_ID + "\n")
    assert fpm.linux_machine_id(root) == MACHINE_ID
    # An empty /etc/machine-id (a freshly built image) is not an id.
    (root / "etc/machine-id").write_text("\n")
    assert fpm.linux_machine_id(root) == "dbus0123456789abcdef"


def test_linux_product_uuid_is_optional(tmp_path: Path) -> None:
    root = _linux_root(tmp_path)
    assert fpm.linux_product_uuid(root) is None
    (root / "sys/class/dmi/id/product_uuid").write_text(PRODUCT_UUID + "\n")
    assert fpm.linux_product_uuid(root) == PRODUCT_UUID.lower()


@pytest.mark.skipif(
    sys.platform == "win32" or os.geteuid() == 0, reason="needs POSIX permissions, not root"
)
def test_a_root_only_product_uuid_is_missing_not_an_error(tmp_path: Path) -> None:
    root = _linux_root(tmp_path)
    path = root / "sys/class/dmi/id/product_uuid"
    path.write_text(PRODUCT_UUID + "\n")
    path.chmod(0o000)  # root-only, as on most distributions
    assert fpm.linux_product_uuid(root) is None


@pytest.mark.skipif(sys.platform == "win32", reason="symlinks")
def test_linux_root_volume_uuid_follows_the_root_mount(tmp_path: Path) -> None:
    root = _linux_root(tmp_path)
    (root / "dev/vda2").write_text("")
    (root / "dev/vdb1").write_text("")
    (root / "dev/disk/by-uuid" / "1111aaaa-0000-4000-8000-000000000001").symlink_to("../../vdb1")
    (root / "dev/disk/by-uuid" / VOLUME_UUID).symlink_to("../../vda2")
    (root / "proc/self/mountinfo").write_text(
        "22 1 253:2 / / rw,relatime shared:1 - ext4 /dev/vda2 rw\n"
        "40 22 253:17 / /data rw,relatime shared:2 - ext4 /dev/vdb1 rw\n"
    )
    assert fpm.linux_root_volume_uuid(root) == VOLUME_UUID


@pytest.mark.skipif(sys.platform == "win32", reason="symlinks")
def test_linux_root_volume_uuid_is_missing_in_a_container(tmp_path: Path) -> None:
    root = _linux_root(tmp_path)
    (root / "proc/self/mountinfo").write_text(
        "600 500 0:52 / / rw,relatime - overlay overlay rw,lowerdir=/l,upperdir=/u\n"
    )
    assert fpm.linux_root_volume_uuid(root) is None
    (root / "dev/disk").rename(root / "dev/gone")
    assert fpm.linux_root_volume_uuid(root) is None


def test_default_readers_cover_every_component_on_every_platform() -> None:
    for platform in ("linux", "win32", "darwin", "freebsd14"):
        assert set(default_readers(platform)) == set(COMPONENTS)
    assert default_readers("win32")["machine_id"] is fpm.windows_machine_guid
    assert default_readers("darwin")["machine_id"] is fpm.macos_platform_uuid


# --- Windows readers, with a fake registry ------------------------------------------------------


class FakeRegistry:
    def __init__(self, values: dict[tuple[str, str], str]) -> None:
        self.values = values
        self.reads: list[tuple[str, str]] = []

    def __call__(self, subkey: str, name: str) -> str | None:
        self.reads.append((subkey, name))
        return self.values.get((subkey, name))


WINDOWS_GUID = "8a3f1c2e-5b6d-4e7f-9a0b-1c2d3e4f5a6b"
WINDOWS_SMBIOS = "{4C4C4544-0039-5710-8052-B4C04F384833}"


def _windows_readers(registry: FakeRegistry, serial: int | None) -> dict[str, ComponentReader]:
    return {
        "machine_id": lambda: fpm.windows_machine_guid(registry),
        "hardware_id": lambda: fpm.windows_hardware_uuid(registry),
        "volume_id": lambda: fpm.windows_system_volume_serial(lambda drive: serial, "C:"),
    }


def test_windows_readers_use_the_registry_never_wmic() -> None:
    registry = FakeRegistry(
        {
            (r"SOFTWARE\Microsoft\Cryptography", "MachineGuid"): WINDOWS_GUID,
            (r"SYSTEM\HardwareConfig", "LastConfig"): WINDOWS_SMBIOS,
        }
    )
    assert fpm.windows_machine_guid(registry) == WINDOWS_GUID
    assert fpm.windows_hardware_uuid(registry) == WINDOWS_SMBIOS.strip("{}").lower()
    drives: list[str] = []

    def serial_of(drive: str) -> int | None:
        drives.append(drive)
        return 0x1A2B3C4D

    assert fpm.windows_system_volume_serial(serial_of, "D:") == "1a2b3c4d"
    assert drives == ["D:\\"]
    assert fpm.windows_system_volume_serial(lambda drive: 0, "C:") is None
    assert fpm.windows_system_volume_serial(lambda drive: None, "C:") is None

    before = compute_fingerprint(_windows_readers(registry, 0x1A2B3C4D))
    assert before.missing == ()
    # A feature update re-created MachineGuid: still the same device.
    registry.values[(r"SOFTWARE\Microsoft\Cryptography", "MachineGuid")] = (
        "0b1c2d3e-4f5a-4b6c-8d7e-9f0a1b2c3d4e"
    )
    after_update = compute_fingerprint(_windows_readers(registry, 0x1A2B3C4D))
    assert after_update.value != before.value
    assert same_device(before.value, after_update.value)
    # ... and a new system disk as well: another device.
    after_disk = compute_fingerprint(_windows_readers(registry, 0x55667788))
    assert not same_device(before.value, after_disk.value)


def test_windows_registry_values_that_are_absent_are_missing() -> None:
    empty = FakeRegistry({})
    assert fpm.windows_machine_guid(empty) is None
    assert fpm.windows_hardware_uuid(empty) is None
    result = compute_fingerprint(_windows_readers(empty, 0x1A2B3C4D))
    assert result.missing == ("machine_id", "hardware_id")


@pytest.mark.skipif(sys.platform == "win32", reason="checks the non-Windows fallback")
def test_the_real_windows_backends_return_nothing_elsewhere() -> None:
    assert fpm._winreg_read(r"SOFTWARE\Microsoft\Cryptography", "MachineGuid") is None
    assert fpm._volume_serial("C:\\") is None


# --- macOS readers, with a fake command runner --------------------------------------------------

IOREG = b"""+-o J314sAP  <class IOPlatformExpertDevice, id 0x100000226, registered, matched, active>
    {
      "IOPlatformSerialNumber" = "C02XL0GHJGH5"
      "IOPlatformUUID" = "5F4C1E22-8B3A-5C9D-A1B2-3C4D5E6F7A8B"
      "model" = <"MacBookPro18,3">
    }
"""


class FakeCommands:
    def __init__(self, outputs: dict[tuple[str, ...], bytes]) -> None:
        self.outputs = outputs
        self.calls: list[tuple[str, ...]] = []

    def __call__(self, argv: Sequence[str]) -> bytes | None:
        self.calls.append(tuple(argv))
        return self.outputs.get(tuple(argv))


def _diskutil(mount: str) -> tuple[str, ...]:
    return ("/usr/sbin/diskutil", "info", "-plist", mount)


IOREG_ARGV = ("/usr/sbin/ioreg", "-rd1", "-c", "IOPlatformExpertDevice")


def test_macos_readers_parse_ioreg_and_diskutil() -> None:
    data_volume = plistlib.dumps({"VolumeUUID": "9A8B7C6D-5E4F-4A3B-8C2D-1E0F9A8B7C6D"})
    system_volume = plistlib.dumps({"VolumeUUID": "11111111-2222-4333-8444-555555555555"})
    commands = FakeCommands(
        {
            IOREG_ARGV: IOREG,
            _diskutil("/System/Volumes/Data"): data_volume,
            _diskutil("/"): system_volume,
        }
    )
    assert fpm.macos_platform_uuid(commands) == "5f4c1e22-8b3a-5c9d-a1b2-3c4d5e6f7a8b"
    assert fpm.macos_serial_number(commands) == "c02xl0ghjgh5"
    # The data volume, not the sealed system snapshot that each macOS update replaces.
    assert fpm.macos_data_volume_uuid(commands) == "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
    assert all(call[0].startswith("/usr/sbin/") for call in commands.calls)

    before = compute_fingerprint(
        {
            "machine_id": lambda: fpm.macos_platform_uuid(commands),
            "hardware_id": lambda: fpm.macos_serial_number(commands),
            "volume_id": lambda: fpm.macos_data_volume_uuid(commands),
        }
    )
    assert before.missing == ()
    assert "c02xl0ghjgh5" not in before.value.lower()


def test_macos_readers_fall_back_cleanly() -> None:
    older = FakeCommands({_diskutil("/"): plistlib.dumps({"VolumeUUID": "ABCDEF01-2345"})})
    assert fpm.macos_data_volume_uuid(older) == "abcdef01-2345"
    broken = FakeCommands({IOREG_ARGV: b"garbage", _diskutil("/"): b"not a plist"})
    assert fpm.macos_platform_uuid(broken) is None
    assert fpm.macos_serial_number(broken) is None
    assert fpm.macos_data_volume_uuid(broken) is None
    assert fpm.macos_platform_uuid(FakeCommands({})) is None


def test_run_command_reports_failure_as_none(tmp_path: Path) -> None:
    assert fpm.run_command([str(tmp_path / "no-such-program")]) is None
    assert fpm.run_command([sys.executable, "-c", "raise SystemExit(3)"]) is None
    output = fpm.run_command([sys.executable, "-c", "print('ok')"])
    assert output is not None and output.strip() == b"ok"
