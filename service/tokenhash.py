"""How a token key is stored: the hash shared by ingest, lookups, import and generation."""

from __future__ import annotations

import hashlib

# What is trimmed around a key; the document's pattern for `key` is "anything else".
KEY_SPACE = " \t\r\n\f\v"


def hash_key(key: str) -> str:
    """Tokens are stored by the SHA-256 of their key without the ``sk-`` prefix (and
    without surrounding ASCII whitespace, as a pasted key may have)."""
    key = key.strip(KEY_SPACE)
    if key.startswith("sk-"):
        key = key[3:]
    return hashlib.sha256(key.encode()).hexdigest()
