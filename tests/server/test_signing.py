"""The ``license`` key's signers: the 0600 key file and PKCS#11 against a real SoftHSM2 token."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import ValidationError

from agent.errors import UntrustedKey
from agent.protocol import (
    LICENSE_FILE_TYP,
    REVOCATION_LIST_TYP,
    RevokedLicense,
    b64url,
    jwk_thumbprint,
    public_key_pin,
)
from server_stub.cli import main as cli_main
from server_stub.clock import FakeClock
from server_stub.config import Settings
from server_stub.keys import KeyStore, public_jwk
from server_stub.services.license_files import issue_license_file, issue_revocation_list
from server_stub.signing import (
    FileSigner,
    Pkcs11Signer,
    SignerError,
    sign_claims,
    signer_from_settings,
)
from tests.helpers.backend import BackendFactory
from tests.helpers.license_files import ISSUER, LICENSE_KEY, NOW, TERMS, installation, vendor
from tests.helpers.softhsm import SoftHsmToken, pkcs11_settings, session_token


@pytest.fixture(scope="session")
def softhsm_token(tmp_path_factory: pytest.TempPathFactory) -> SoftHsmToken:
    return session_token(tmp_path_factory)


@pytest.fixture
def keys(tmp_path: Path) -> KeyStore:
    lifetimes = {"auth": timedelta(days=1), "license": timedelta(days=1)}
    return KeyStore(tmp_path / "keys", FakeClock(NOW), lifetimes).ensure()


def _verify(token: str, public_key: object) -> tuple[dict[str, object], dict[str, object]]:
    header = jwt.get_unverified_header(token)
    claims = jwt.decode(token, public_key, algorithms=["ES256"], options={"verify_aud": False})  # type: ignore[arg-type]
    return header, claims


# --- the key file ----------------------------------------------------------------------------


def test_file_signer_signs_a_jws_that_verifies_with_the_published_license_key(
    keys: KeyStore,
) -> None:
    signer = FileSigner(keys)
    token = sign_claims(signer, LICENSE_FILE_TYP, {"sub": "x", "exp": 2_000_000_000})
    published = keys.signing_key("license")
    header, claims = _verify(token, published.public_key)
    assert header == {"alg": "ES256", "kid": published.kid, "typ": LICENSE_FILE_TYP}
    assert claims["sub"] == "x"
    with pytest.raises(jwt.InvalidSignatureError):
        _verify(token, _other_key())


def _other_key() -> object:
    return ec.generate_private_key(ec.SECP256R1()).public_key()


def test_file_signer_follows_a_rotation(keys: KeyStore) -> None:
    signer = FileSigner(keys)
    before = signer.current().kid
    keys.rotate("license")
    after = signer.current().kid
    assert after != before
    token = sign_claims(signer, REVOCATION_LIST_TYP, {"iat": 1})
    assert jwt.get_unverified_header(token)["kid"] == after


# --- PKCS#11 (SoftHSM2) ----------------------------------------------------------------------


def test_pkcs11_signer_signs_a_jws_that_verifies_with_the_tokens_public_key(
    softhsm_token: SoftHsmToken,
) -> None:
    signer = Pkcs11Signer(
        softhsm_token.module, softhsm_token.token_label, softhsm_token.key_label, softhsm_token.pin
    )
    assert signer.kid == jwk_thumbprint(public_jwk(signer.public_key))
    raw = signer.sign(b"payload")
    assert len(raw) == 64  # JWS's r || s, not DER
    token = sign_claims(signer, LICENSE_FILE_TYP, {"license_key": "k", "iat": 1})
    header, claims = _verify(token, signer.public_key)
    assert header["kid"] == signer.kid and header["typ"] == LICENSE_FILE_TYP
    assert claims == {"license_key": "k", "iat": 1}
    # The signature is over exactly these bytes: one edited payload character breaks it.
    head, _payload, sig = token.split(".")
    forged = json.dumps({"license_key": "K", "iat": 1}, separators=(",", ":")).encode()
    with pytest.raises(jwt.InvalidSignatureError):
        _verify(f"{head}.{b64url(forged)}.{sig}", signer.public_key)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("pin", "00000000", "PIN"),
        ("token_label", "no-such-token", "no PKCS#11 token labelled"),
        ("key_label", "no-such-key", "holds no EC key pair labelled"),
        ("module", Path("/nonexistent/libpkcs11.so"), "does not exist"),
    ],
)
def test_pkcs11_signer_that_cannot_sign_fails_at_construction(
    softhsm_token: SoftHsmToken, field: str, value: object, message: str
) -> None:
    args: dict[str, object] = {
        "module": softhsm_token.module,
        "token_label": softhsm_token.token_label,
        "key_label": softhsm_token.key_label,
        "pin": softhsm_token.pin,
    }
    args[field] = value
    with pytest.raises(SignerError, match=message) as info:
        Pkcs11Signer(**args)  # type: ignore[arg-type]
    assert softhsm_token.pin not in str(info.value)


# --- settings --------------------------------------------------------------------------------


def test_pkcs11_settings_incomplete_are_refused_naming_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="TGFLOW_PKCS11_KEY_LABEL, TGFLOW_PKCS11_PIN"):
        Settings(
            data_dir=tmp_path,
            license_signer="pkcs11",
            pkcs11_module=Path("/usr/lib/softhsm/libsofthsm2.so"),
            pkcs11_token_label="t",
        )


def test_settings_select_the_signer_and_fail_closed(
    softhsm_token: SoftHsmToken, keys: KeyStore, tmp_path: Path
) -> None:
    assert isinstance(signer_from_settings(Settings(data_dir=tmp_path), keys), FileSigner)
    settings = Settings(
        data_dir=tmp_path,
        license_signer="pkcs11",
        pkcs11_module=softhsm_token.module,
        pkcs11_token_label=softhsm_token.token_label,
        pkcs11_key_label=softhsm_token.key_label,
        pkcs11_pin=softhsm_token.pin,
    )
    signer = signer_from_settings(settings, keys)
    assert isinstance(signer, Pkcs11Signer)
    bad = settings.model_copy(update={"pkcs11_key_label": "gone"})
    # Configured but unusable: an error, never a quiet fall back to the key file.
    with pytest.raises(SignerError):
        signer_from_settings(bad, keys)


def test_a_license_file_signed_in_the_token_activates_an_offline_installation(
    softhsm_token: SoftHsmToken, tmp_path: Path
) -> None:
    signer = Pkcs11Signer(
        softhsm_token.module, softhsm_token.token_label, softhsm_token.key_label, softhsm_token.pin
    )
    text = issue_license_file(signer, TERMS, issuer=ISSUER, now=NOW, encrypt=True)
    site = installation(tmp_path / "agent", [public_key_pin(signer.public_key)])
    lic = site.verifier.verify(text, LICENSE_KEY)
    assert lic.kid == signer.kid and lic.license_key == LICENSE_KEY
    # The same file is worthless to an installation that pins another key.
    elsewhere = installation(tmp_path / "other", [vendor(tmp_path / "keys2").pin])
    with pytest.raises(UntrustedKey):
        elsewhere.verifier.verify(text, LICENSE_KEY)


def test_the_server_does_not_start_with_an_unusable_pkcs11_signer(
    softhsm_token: SoftHsmToken,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("TGFLOW_LICENSE_SIGNER", "pkcs11")
    monkeypatch.setenv("TGFLOW_PKCS11_MODULE", str(softhsm_token.module))
    monkeypatch.setenv("TGFLOW_PKCS11_TOKEN_LABEL", softhsm_token.token_label)
    monkeypatch.setenv("TGFLOW_PKCS11_KEY_LABEL", softhsm_token.key_label)
    data = str(tmp_path / "data")
    # A server that ran before (read-only commands such as `plans list` create nothing).
    monkeypatch.setenv("TGFLOW_PKCS11_PIN", softhsm_token.pin)
    assert cli_main(["plans", "create", "--name", "p", "--quota", "10", "--data-dir", data]) == 0
    capsys.readouterr()
    monkeypatch.setenv("TGFLOW_PKCS11_PIN", "99999999")
    assert cli_main(["plans", "list", "--data-dir", data]) == 2
    err = capsys.readouterr().err
    assert "the license signer cannot sign" in err and "PIN" in err and "99999999" not in err
    monkeypatch.setenv("TGFLOW_PKCS11_PIN", softhsm_token.pin)
    assert cli_main(["plans", "list", "--data-dir", data]) == 0


def test_the_jwks_publishes_the_tokens_key_so_an_online_agent_verifies_its_lists(
    softhsm_token: SoftHsmToken,
    make_backend: BackendFactory,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pkcs11 = pkcs11_settings(softhsm_token)
    backend = make_backend(**pkcs11)
    signer = backend.services.signer
    assert isinstance(signer, Pkcs11Signer)
    served = backend.client.get("/.well-known/jwks.json").json()["keys"]
    assert signer.kid in {k["kid"] for k in served}
    assert len(served) == 3  # auth, the license key file, the token's key
    # An agent pinning the token's key fetches the JWKS once and then verifies a standalone list.
    pin = public_key_pin(signer.public_key)
    site = installation(tmp_path / "agent", [pin])
    site.keys.jwks_url = backend.url + "/.well-known/jwks.json"
    assert site.keys.refresh_sync()
    listing = issue_revocation_list(
        signer,
        [RevokedLicense(license_key=LICENSE_KEY)],
        issuer=ISSUER,
        now=NOW,
        next_update=NOW + timedelta(days=1),
    )
    assert site.revocations.offer(listing)
    # `keys pins` names the token's key and its pin beside the key files'.
    for name, value in pkcs11.items():
        monkeypatch.setenv(f"TGFLOW_{name.upper()}", str(value))
    assert cli_main(["keys", "pins", "--data-dir", str(backend.settings.data_dir)]) == 0
    assert f"{signer.kid}  {pin}  (PKCS#11 token)" in capsys.readouterr().out
