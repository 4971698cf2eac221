"""The API key format: `et_` + an 8-character public id + `_` + a 256-bit random secret.

    et_3f9c1e0a_Vh2...43 characters of base64url...

`et_3f9c1e0a` is the key's prefix: it is stored in clear, finds the key's row, and makes a
leaked key recognisable in logs and to secret scanners. The whole key is stored only as its
SHA-256. A slow password hash (bcrypt, argon2) is not needed: it protects low-entropy secrets
that can be guessed, while this secret is 256 random bits, so a stolen hash cannot be reversed
by trying candidates, and a fast hash keeps every request cheap.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

SCHEME = "et"
PUBLIC_ID_CHARS = 8


@dataclass(frozen=True)
class NewKey:
    prefix: str  # `et_` + public id, stored in clear
    key: str  # the whole key, shown once and never stored
    hash: str


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def generate() -> NewKey:
    public_id = secrets.token_hex(PUBLIC_ID_CHARS // 2)
    prefix = f"{SCHEME}_{public_id}"
    key = f"{prefix}_{secrets.token_urlsafe(32)}"
    return NewKey(prefix=prefix, key=key, hash=hash_key(key))


def prefix_of(key: str) -> str | None:
    """The prefix of a well-formed key, None for anything else."""
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != SCHEME or len(parts[1]) != PUBLIC_ID_CHARS:
        return None
    if not parts[1].isalnum() or len(parts[2]) < 32:
        return None
    return f"{parts[0]}_{parts[1]}"


def matches(key: str, stored_hash: str) -> bool:
    """Whether `key` hashes to `stored_hash`, compared in constant time."""
    return hmac.compare_digest(hash_key(key).encode(), stored_hash.encode())
