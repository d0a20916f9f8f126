"""The time conditions of every query, written once.

Each compares a ``DateTime`` column with a Unix second given as a ``{name:UInt32}``
parameter; the value goes only into the parameter dict.
"""

from __future__ import annotations


def compare(column: str, op: str, name: str) -> str:
    """``column op`` the second in parameter ``name`` (``op``: ``>=``, ``<``, ``<=``...)."""
    return f"{column} {op} toDateTime({{{name}:UInt32}}, 'UTC')"


def window(column: str, lo: str = "lo", hi: str = "hi") -> str:
    """``column`` in the half-open range ``[lo, hi)`` of the two parameters."""
    return f"{compare(column, '>=', lo)} AND {compare(column, '<', hi)}"
