"""A throwaway SoftHSM2 token holding an EC P-256 key pair, for the PKCS#11 signer's tests.

SoftHSM2 reads ``SOFTHSM2_CONF`` once, when the module is first initialised in the process, so
one token serves the whole test session: every module's ``softhsm_token`` fixture asks
:func:`session_token`, which creates it once.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

#: Where Debian's ``softhsm2`` package puts the module.
SOFTHSM_MODULE = Path("/usr/lib/softhsm/libsofthsm2.so")
TOKEN_LABEL = "tgflow-test"
KEY_LABEL = "tgflow-license"
USER_PIN = "11223344"
SO_PIN = "55667788"


_SESSION_TOKEN: list[SoftHsmToken] = []


@dataclass(frozen=True)
class SoftHsmToken:
    module: Path
    token_label: str
    key_label: str
    pin: str


def softhsm_available() -> bool:
    return SOFTHSM_MODULE.is_file() and shutil.which("softhsm2-util") is not None


def create_token(directory: Path) -> SoftHsmToken:
    """A new token in ``directory`` with a P-256 key pair generated inside it."""
    import pkcs11
    from pkcs11 import Attribute, KeyType
    from pkcs11.util.ec import encode_named_curve_parameters

    tokens = directory / "tokens"
    tokens.mkdir(parents=True)
    conf = directory / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n",
        encoding="utf-8",
    )
    os.environ["SOFTHSM2_CONF"] = str(conf)
    subprocess.run(
        [
            "softhsm2-util",
            "--init-token",
            "--free",
            "--label",
            TOKEN_LABEL,
            "--pin",
            USER_PIN,
            "--so-pin",
            SO_PIN,
        ],
        check=True,
        capture_output=True,
    )
    token = pkcs11.lib(str(SOFTHSM_MODULE)).get_token(token_label=TOKEN_LABEL)
    with token.open(rw=True, user_pin=USER_PIN) as session:
        params = session.create_domain_parameters(
            KeyType.EC,
            {Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")},
            local=True,
        )
        params.generate_keypair(store=True, label=KEY_LABEL)
    return SoftHsmToken(SOFTHSM_MODULE, TOKEN_LABEL, KEY_LABEL, USER_PIN)


def session_token(tmp_path_factory: pytest.TempPathFactory) -> SoftHsmToken:
    """The test session's one token; skips without SoftHSM2 (fails if CI requires it)."""
    if not softhsm_available():
        if os.environ.get("TGFLOW_REQUIRE_SOFTHSM") == "1":
            pytest.fail("SoftHSM2 is required (TGFLOW_REQUIRE_SOFTHSM=1) but not installed")
        pytest.skip("SoftHSM2 is not installed (Debian package softhsm2)")
    if not _SESSION_TOKEN:
        _SESSION_TOKEN.append(create_token(tmp_path_factory.mktemp("softhsm")))
    return _SESSION_TOKEN[0]


def pkcs11_settings(token: SoftHsmToken) -> dict[str, object]:
    """The Settings fields that select ``token`` as the license signer."""
    return {
        "license_signer": "pkcs11",
        "pkcs11_module": token.module,
        "pkcs11_token_label": token.token_label,
        "pkcs11_key_label": token.key_label,
        "pkcs11_pin": token.pin,
    }
