"""Checks Warden's did:key ids and EdDSA JWS against an independent
implementation (pyca/cryptography), in both directions, through the CLI.

Usage: identity_check.py PATH_TO_WARDEN

Everything on the Python side — base58btc, the did:key multicodec prefix,
base64url, the JWS signing input — is written here from the specs
(did:key method, RFC 7515, RFC 8037), not taken from Warden.
"""

import base64
import json
import os
import subprocess
import sys
import tempfile
import time

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
ED25519_PREFIX = b"\xed\x01"
WARDEN = sys.argv[1] if len(sys.argv) > 1 else "target/debug/warden"
FAILURES = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        FAILURES.append(what)


def b58encode(data: bytes) -> str:
    n = int.from_bytes(data, "big")
    out = ""
    while n:
        n, r = divmod(n, 58)
        out = B58[r] + out
    pad = len(data) - len(data.lstrip(b"\0"))
    return "1" * pad + out


def b58decode(text: str) -> bytes:
    n = 0
    for c in text:
        n = n * 58 + B58.index(c)
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    pad = len(text) - len(text.lstrip("1"))
    return b"\0" * pad + raw


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64u_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def did_from_public(raw: bytes) -> str:
    return "did:key:z" + b58encode(ED25519_PREFIX + raw)


def public_from_did(did: str) -> bytes:
    assert did.startswith("did:key:z"), did
    data = b58decode(did[len("did:key:z"):])
    assert data[:2] == ED25519_PREFIX and len(data) == 34, data
    return data[2:]


def raw_public(key) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def warden(args, stdin=""):
    return subprocess.run([WARDEN, *args], input=stdin, capture_output=True, text=True, check=False)


def py_sign(private: Ed25519PrivateKey, claims: dict, header: dict) -> str:
    signing_input = b64u(json.dumps(header).encode()) + "." + b64u(json.dumps(claims).encode())
    return signing_input + "." + b64u(private.sign(signing_input.encode()))


def warden_to_python(tmp):
    key = os.path.join(tmp, "warden.key")
    out = warden(["id", "new", "--key", key])
    check(out.returncode == 0, "warden id new")
    did = out.stdout.strip().splitlines()[-1]
    public = public_from_did(did)
    check(did_from_public(public) == did, "Python re-encodes Warden's did:key identically")
    jwk = json.loads(warden(["id", "export", "--key", key, "--format", "jwk"]).stdout)
    check(b64u_decode(jwk["x"]) == public, "Warden's JWK x is the did:key's public key")
    # Warden's private key file is a JWK: Python derives the same public key from d.
    with open(key) as f:
        private_jwk = json.load(f)
    derived = Ed25519PrivateKey.from_private_bytes(b64u_decode(private_jwk["d"]))
    check(raw_public(derived.public_key()) == public, "Python derives the did:key's key from Warden's seed")

    payload = {"task": "cross-check", "n": 7, "text": "ünïcode"}
    token = warden(["id", "sign", "--key", key, "--aud", "crossimpl", "--ttl", "120"], json.dumps(payload)).stdout.strip()
    h, p, s = token.split(".")
    header = json.loads(b64u_decode(h))
    claims = json.loads(b64u_decode(p))
    check(header.get("alg") == "EdDSA" and header.get("kid") == did, "JWS header is alg EdDSA, kid = did:key")
    check(claims["iss"] == did and claims["aud"] == "crossimpl", "claims iss/aud")
    check(claims["payload"] == payload, "claims carry the payload")
    now = int(time.time())
    check(claims["nbf"] <= now + 5 and claims["exp"] > now and claims["jti"], "claims nbf/exp/jti")
    verifier = Ed25519PublicKey.from_public_bytes(public)
    try:
        verifier.verify(b64u_decode(s), f"{h}.{p}".encode())
        check(True, "cryptography verifies Warden's JWS signature")
    except InvalidSignature:
        check(False, "cryptography verifies Warden's JWS signature")
    tampered = b64u(json.dumps({**claims, "aud": "elsewhere"}).encode())
    try:
        verifier.verify(b64u_decode(s), f"{h}.{tampered}".encode())
        check(False, "cryptography rejects a tampered Warden JWS")
    except InvalidSignature:
        check(True, "cryptography rejects a tampered Warden JWS")


def python_to_warden(tmp):
    private = Ed25519PrivateKey.generate()
    public = raw_public(private.public_key())
    did = did_from_public(public)
    # Warden loads a key file Python wrote (a private JWK, mode 0600) to the same did:key.
    seed = private.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    path = os.path.join(tmp, "python.key")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"kty": "OKP", "crv": "Ed25519", "x": b64u(public), "d": b64u(seed)}, f)
    shown = warden(["id", "show", "--key", path])
    check(shown.returncode == 0 and shown.stdout.strip() == did, "Warden derives Python's did:key from Python's key")

    now = int(time.time())
    payload = {"from": "python", "list": [1, 2, 3]}
    claims = {"iss": did, "aud": "crossimpl", "jti": b64u(os.urandom(16)), "iat": now, "nbf": now, "exp": now + 120, "payload": payload}
    header = {"alg": "EdDSA", "kid": did, "typ": "JWT"}
    token = py_sign(private, claims, header)
    out = warden(["id", "verify", "--aud", "crossimpl"], token)
    check(out.returncode == 0, "Warden verifies a JWS made by cryptography: " + out.stderr.strip())
    if out.returncode == 0:
        v = json.loads(out.stdout)
        check(v == {"iss": did, "payload": payload}, "Warden reports Python's iss and payload")
    # Negative cases through Warden.
    other = Ed25519PrivateKey.generate()
    forged = py_sign(other, claims, header)
    out = warden(["id", "verify", "--aud", "crossimpl"], forged)
    check(out.returncode == 1 and "identity:bad_signature" in out.stderr, "Warden rejects a JWS signed by another key")
    out = warden(["id", "verify", "--aud", "crossimpl"], py_sign(private, claims, {"alg": "none", "kid": did}))
    check(out.returncode == 1 and "identity:algorithm" in out.stderr, "Warden rejects alg none")
    out = warden(["id", "verify", "--aud", "crossimpl"], py_sign(private, {**claims, "exp": now - 600, "iat": now - 700, "nbf": now - 700}, header))
    check(out.returncode == 1 and "identity:expired" in out.stderr, "Warden rejects an expired Python JWS")

    # A delegation token made in Python is checked by `warden delegate check`.
    child = did_from_public(raw_public(Ed25519PrivateKey.generate().public_key()))
    delegation = {"iss": did, "aud": child, "jti": b64u(os.urandom(16)), "iat": now, "nbf": now, "exp": now + 300,
                  "cap": {"tools": ["fs.*"], "points": ["pre_tool_call"]}}
    token = py_sign(private, delegation, header)
    out = warden(["delegate", "check", "--token", token, "--tool", "fs.read", "--root", did])
    check(out.returncode == 0, "Warden accepts a Python-signed delegation: " + out.stderr.strip())
    out = warden(["delegate", "check", "--token", token, "--tool", "net.get"])
    check(out.returncode == 1 and "identity:scope" in out.stderr, "...and keeps it to its scope")


def main():
    with tempfile.TemporaryDirectory() as tmp:
        warden_to_python(tmp)
        python_to_warden(tmp)
    if FAILURES:
        print(f"{len(FAILURES)} cross-implementation check(s) failed", file=sys.stderr)
        sys.exit(1)
    print("identity cross-implementation check: all passed")


if __name__ == "__main__":
    main()
