"""The agent wire protocol: request signing, call envelopes, error codes, backoff.

Every request the agent makes (after pairing) carries:

    X-MLC-Agent:      the agent id
    X-MLC-Timestamp:  unix seconds (integer)
    X-MLC-Nonce:      32 lowercase hex characters (exactly), never reused inside the window
    X-MLC-Signature:  urlsafe base64 Ed25519 signature of the canonical string

    canonical = "MLC-AGENT-V1\\n" METHOD "\\n" TARGET "\\n" AGENT_ID "\\n" TIMESTAMP "\\n" NONCE "\\n"
                sha256_hex(BODY)

TARGET is the request target as sent: the path, and "?" and the query string when there is
one, so a query string cannot be added or changed in transit. (Without a query string
TARGET is the path, as in the first version of the protocol: agents paired before keep
working.)

Every call the control plane sends is an envelope {"call": {...}, "signature": "..."}
whose signature is the control plane's Ed25519 signature of the canonical JSON
of "call" (sorted keys, no spaces), prefixed with "MLC-CALL-V1\\n".
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import re
import secrets
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

SIG_PREFIX = "MLC-AGENT-V1"
CALL_PREFIX = "MLC-CALL-V1\n"
H_AGENT = "X-MLC-Agent"
H_TS = "X-MLC-Timestamp"
H_NONCE = "X-MLC-Nonce"
H_SIG = "X-MLC-Signature"
MAX_SKEW_SECONDS = 300.0
#: A nonce is exactly this: 128 random bits in lowercase hex (`secrets.token_hex(16)`). A fixed
#: form keeps a weak nonce (one character: 16 values) or an oversized one out of the replay table.
NONCE_RE = re.compile(r"^[0-9a-f]{32}$")

# Error codes in 401/403/409 answers: {"error": CODE, "message": ..., "retriable": bool, "server_time": ...}
E_REVOKED = "revoked"
E_UNKNOWN_AGENT = "unknown_agent"
E_BAD_SIGNATURE = "bad_signature"
E_CLOCK_SKEW = "clock_skew"
E_REPLAY = "replayed_nonce"
E_BAD_TOKEN = "invalid_token"
E_MISSING = "missing_headers"
NON_RETRIABLE = frozenset({E_REVOKED, E_UNKNOWN_AGENT, E_BAD_TOKEN})


def b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii")


def b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def body_hash(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def request_target(path: str, query: str = "") -> str:
    """What is signed of the URL: the path, with "?query" when there is a query string."""
    return f"{path}?{query}" if query else path


def canonical_request(method: str, target: str, agent_id: str, ts: str, nonce: str, body: bytes) -> bytes:
    """`target`: the path and query string (request_target)."""
    return "\n".join((SIG_PREFIX, method.upper(), target, agent_id, ts, nonce, body_hash(body))).encode("utf-8")


def valid_nonce(nonce: str) -> bool:
    return NONCE_RE.fullmatch(nonce) is not None


def canonical_json(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


# --------------------------------------------------------------------------- keys


def generate_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def public_key_text(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    pub = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return b64e(pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))


def load_public_key(text: str) -> Ed25519PublicKey:
    raw = b64d(text)
    if len(raw) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes")
    return Ed25519PublicKey.from_public_bytes(raw)


def private_key_bytes(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                             serialization.NoEncryption())


def private_key_from_bytes(raw: bytes) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(raw)


def write_private_key(path: Path, key: Ed25519PrivateKey) -> None:
    """PEM (PKCS#8) file with mode 0600, created atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, pem)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def read_private_key(path: Path) -> Ed25519PrivateKey:
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise PermissionError(f"agent key {path} is readable by group or others (mode {mode:04o}); "
                              f"restrict it with: chmod 600 {path}")
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} does not hold an Ed25519 private key")
    return key


# --------------------------------------------------------------------------- request signatures


def sign_headers(key: Ed25519PrivateKey, agent_id: str, method: str, target: str, body: bytes,
                 *, now: float, nonce: str | None = None) -> dict[str, str]:
    """Headers of a signed request; `target`: the path with its query string, if any, exactly as sent."""
    ts = str(int(now))
    nonce = nonce or secrets.token_hex(16)
    sig = key.sign(canonical_request(method, target, agent_id, ts, nonce, body))
    return {H_AGENT: agent_id, H_TS: ts, H_NONCE: nonce, H_SIG: b64e(sig)}


def verify_request_signature(public_key: str, method: str, target: str, agent_id: str, ts: str, nonce: str,
                             body: bytes, signature: str) -> bool:
    try:
        load_public_key(public_key).verify(b64d(signature),
                                           canonical_request(method, target, agent_id, ts, nonce, body))
        return True
    except (InvalidSignature, ValueError, TypeError):
        return False


# --------------------------------------------------------------------------- call envelopes


def sign_call(key: Ed25519PrivateKey, call: dict[str, Any]) -> dict[str, Any]:
    sig = key.sign(CALL_PREFIX.encode("utf-8") + canonical_json(call))
    return {"call": call, "signature": b64e(sig)}


def verify_call(public_key: str, envelope: dict[str, Any]) -> bool:
    call = envelope.get("call")
    sig = envelope.get("signature")
    if not isinstance(call, dict) or not isinstance(sig, str):
        return False
    try:
        load_public_key(public_key).verify(b64d(sig), CALL_PREFIX.encode("utf-8") + canonical_json(call))
        return True
    except (InvalidSignature, ValueError, TypeError):
        return False


# --------------------------------------------------------------------------- backoff


def backoff_delay(consecutive_errors: int, *, scale: float = 1.0, rng: random.Random | None = None) -> float:
    """Randomized reconnect delay (GitHub runner style): 15-30 s for the first 5 consecutive
    errors, then 30-60 s; times `scale` (tests use a small scale)."""
    r = rng or random
    lo, hi = (15.0, 30.0) if consecutive_errors <= 5 else (30.0, 60.0)
    return r.uniform(lo, hi) * scale


def key_fingerprint(public_key: str) -> str:
    """`SHA256:<hex>` of the control plane's public key, as `agents issue-token` prints it and
    `agent pair --control-plane-key` checks it."""
    return "SHA256:" + hashlib.sha256(public_key.strip().encode("ascii")).hexdigest()
