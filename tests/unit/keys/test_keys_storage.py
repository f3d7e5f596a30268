"""The keyring directory: permissions, private material kept private, signing with kid."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from zerodown.keys.model import KeyringError, KeyState, Policy
from zerodown.keys.storage import PRIVATE_MEMBERS, KeyringDir, jwks
from zerodown.keys.tokens import TokenSigner, _Registry

T0 = 1_000_000.0
POLICY = Policy(jwks_cache_ttl=300, max_token_lifetime=600, clock_skew=30)


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> float:
        return self.t


def private_values(d: KeyringDir) -> list[str]:
    out = []
    for f in d.path.glob("*.private.jwk"):
        doc = json.loads(f.read_text())
        out += [str(v) for k, v in doc.items() if k in PRIVATE_MEMBERS]
    assert out, "expected private keys on disk"
    return out


@pytest.mark.parametrize("alg", ["EdDSA", "ES256", "RS256"])
def test_init_writes_private_keys_0600_and_signs_with_kid(tmp_path: Path, alg: str) -> None:
    d = KeyringDir(tmp_path / "keys")
    ring = d.init(alg=alg, policy=POLICY, now=T0)
    kid = ring.keys[0].kid
    assert stat.S_IMODE((d.path / f"key-{kid}.private.jwk").stat().st_mode) == 0o600
    assert stat.S_IMODE(d.path.stat().st_mode) == 0o700
    clock = Clock()
    token = TokenSigner(d, clock=clock).sign({"sub": "ann"}, lifetime=60)
    keyset = KeySet.import_key_set(jwks(d.load(), T0))  # type: ignore[arg-type]
    decoded = jwt.decode(token, keyset, algorithms=[alg], registry=_Registry(algorithms=[alg]))
    assert decoded.header["kid"] == kid and decoded.header["alg"] == alg
    assert decoded.claims["sub"] == "ann"
    assert decoded.claims["exp"] - decoded.claims["iat"] == 60


def test_no_private_material_in_repr_str_json_or_jwks(tmp_path: Path) -> None:
    d = KeyringDir(tmp_path / "keys")
    d.init(alg="RS256", policy=POLICY, now=T0)
    d.rotate(now=T0 + 1)
    secrets = private_values(d)
    signer = TokenSigner(d, clock=Clock())
    signer.sign({"sub": "x"})  # loads a private key into the signer
    ring = d.load()
    shown = [
        repr(ring),
        str(ring),
        repr(d),
        repr(signer),
        d.meta_file.read_text(),
        json.dumps(jwks(ring, T0 + 1)),
    ]
    for text in shown:
        for secret in secrets:
            assert secret not in text
    for key in jwks(ring, T0 + 1)["keys"]:
        assert not PRIVATE_MEMBERS & key.keys()
        assert {"kid", "alg", "use"} <= key.keys()


def test_rotation_on_disk_and_retired_private_keys_are_deleted(tmp_path: Path) -> None:
    d = KeyringDir(tmp_path / "keys")
    a = d.init(alg="EdDSA", policy=POLICY, now=T0).keys[0].kid
    ring = d.rotate(now=T0 + 10)
    b = ring.keys[1].kid
    assert [k.kid for k in ring.keys] == [a, b]
    assert ring.keys[1].state is KeyState.NEXT and ring.keys[1].alg == "EdDSA"
    clock = Clock()
    signer = TokenSigner(d, clock=clock)
    clock.t = T0 + 309
    assert jwt_kid(signer.sign({})) == a
    clock.t = T0 + 310
    assert jwt_kid(signer.sign({})) == b  # same directory, switched at the scheduled instant
    ring, moves = d.refresh(T0 + 310 + 600 + 30)
    assert [(m.kid, m.new.value) for m in moves] == [(a, "retired"), (b, "active")]
    assert not (d.path / f"key-{a}.private.jwk").exists()
    assert (d.path / f"key-{b}.private.jwk").exists()
    assert [k["kid"] for k in jwks(ring, T0 + 940)["keys"]] == [b]


def jwt_kid(token: str) -> str:
    from zerodown.keys.tokens import unverified_header

    return str(unverified_header(token)["kid"])


def test_errors_say_what_to_do(tmp_path: Path) -> None:
    d = KeyringDir(tmp_path / "keys")
    with pytest.raises(KeyringError, match="keys init"):
        d.load()
    with pytest.raises(KeyringError, match="keys init"):
        TokenSigner(d).sign({})
    d.init(alg="ES256", policy=POLICY, now=T0)
    with pytest.raises(KeyringError, match="keys rotate"):
        d.init(alg="ES256", policy=POLICY, now=T0)
    with pytest.raises(KeyringError, match="max_token_lifetime"):
        TokenSigner(d, clock=Clock()).sign({}, lifetime=601)
    d.meta_file.write_text("{not json")
    with pytest.raises(KeyringError, match="damaged"):
        d.load()
