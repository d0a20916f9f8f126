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


def key_length(key: str) -> int:
    """How many characters a key has besides surrounding whitespace and the ``sk-``
    prefix (and whitespace after it): ``""``, ``"   "``, ``"sk-"`` and ``"sk-   "`` have
    none. Ingest refuses keys under GATELOG_INGEST_MIN_TOKEN_KEY_CHARS and the lookup
    finds none of them."""
    key = key.strip(KEY_SPACE)
    if key.startswith("sk-"):
        key = key[3:]
    return len(key.strip(KEY_SPACE))
