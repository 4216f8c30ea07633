"""Pins: the agent computes the server's pins, and a bad pins setting names the bad value."""

from __future__ import annotations

import base64
import hashlib
import subprocess
import sys

import pytest

from agent.errors import InvalidPin
from agent.key_pins import parse_pins
from agent.protocol import jwk_thumbprint, public_key_pin
from server_stub.keys import public_jwk
from tests.helpers.agent_backend import AgentBackend

GOOD = "sha256/" + base64.urlsafe_b64encode(hashlib.sha256(b"a").digest()).rstrip(b"=").decode()
OTHER = "sha256/" + base64.urlsafe_b64encode(hashlib.sha256(b"b").digest()).rstrip(b"=").decode()


def test_pins_and_kids_match_the_servers(backend: AgentBackend) -> None:
    for purpose in ("auth", "license"):
        key = backend.signing_key(purpose)
        assert public_key_pin(key.public_key) == key.pin
        assert jwk_thumbprint(public_jwk(key.public_key)) == key.kid
    # ... and the pins `tgflow-server keys pins` prints parse as a setting.
    auth, lic = backend.signing_key("auth"), backend.signing_key("license")
    assert parse_pins(f"{auth.pin}, {lic.pin}") == {auth.pin, lic.pin}


def test_parse_pins_accepts_spaces_and_a_trailing_comma() -> None:
    assert parse_pins(f"  {GOOD} ,{OTHER},") == {GOOD, OTHER}
    assert parse_pins(GOOD) == {GOOD}


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ("sha1/" + GOOD[len("sha256/") :], "starts with 'sha256/'"),
        (GOOD + "=", "without padding"),
        (GOOD[:-2], "not valid base64url"),
        (GOOD[:-3], "has 32 bytes, this one has 30"),
        (GOOD + "AAAA", "has 32 bytes, this one has 35"),
        (GOOD[:-4] + "+/ab", "base64url"),
        ("sha256/", "base64url"),
        # 43 characters carry 258 bits: a last character with low bits set is not canonical.
        (GOOD[:-1] + "B", "canonical"),
    ],
)
def test_a_bad_pin_is_named_in_the_error(bad: str, reason: str) -> None:
    with pytest.raises(InvalidPin) as raised:
        parse_pins(f"{GOOD},{bad}")
    assert raised.value.value == bad
    assert repr(bad) in str(raised.value)
    assert reason in str(raised.value)
    assert isinstance(raised.value, ValueError)


@pytest.mark.parametrize("setting", ["", " ", ",", " , "])
def test_an_empty_pins_setting_is_refused(setting: str) -> None:
    with pytest.raises(InvalidPin, match="at least one pin"):
        parse_pins(setting)


def test_agent_imports_neither_server_nor_qt() -> None:
    code = (
        "import sys, agent.key_pins, agent.tokens, agent.errors, agent.clock, agent.updates\n"
        "roots = ('server_stub', 'PyQt6', 'app')\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in roots)\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == ""


def test_the_light_config_checks_agree_with_the_wire_constants() -> None:
    from agent import config_checks, errors, key_pins, protocol

    assert config_checks.PIN_PREFIX == protocol.PIN_PREFIX
    assert errors.InvalidPin is config_checks.InvalidPin
    assert key_pins.validate_pin is config_checks.validate_pin
