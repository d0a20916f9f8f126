"""Unknown and disabled token keys cost the engine the same (issue 17.9): the lookup
reads the same parts and granules whatever the key, so its time cannot tell a disabled
key from an unknown one. Timing itself is measured in bench/token_timing.py, never
asserted here."""

from __future__ import annotations

from typing import Any

from service.logs import TOKEN_LOOKUP, TOKEN_LOOKUP_SETTINGS
from service.tokenhash import hash_key
from tests.conftest import WRITER

KEYS = {"live": "l" * 48, "disabled": "d" * 48}


async def plan(store: Any, key: str) -> list[str]:
    """The engine's index use for the service's lookup of ``key``: parts and granules."""
    rows = await store.query(
        "EXPLAIN indexes = 1 " + TOKEN_LOOKUP, {"key_hash": hash_key(key)}, TOKEN_LOOKUP_SETTINGS
    )
    lines = [str(row[0]).strip(" │├└─") for row in rows.rows]
    return [line for line in lines if line.startswith(("Parts:", "Granules:"))]


async def test_unknown_and_disabled_keys_read_the_same(client: Any, store: Any) -> None:
    tokens = [
        {"id": i + 1, "key": f"sk-{i:048d}", "name": f"t{i}", "user_id": 7, "status": 1 + i % 2}
        for i in range(300)
    ]
    tokens += [
        {"id": 1001, "key": KEYS["live"], "name": "a", "user_id": 7, "status": 1},
        {"id": 1002, "key": KEYS["disabled"], "name": "b", "user_id": 7, "status": 2},
    ]
    for start in range(0, len(tokens), 100):  # several parts
        response = await client.post(
            "/api/internal/tokens", json=tokens[start : start + 100], headers=WRITER
        )
        assert response.status == 200
    disabled = await plan(store, KEYS["disabled"])
    assert disabled, "the plan names the parts and granules read"
    for other in (KEYS["live"], "u" * 48, "x"):
        assert await plan(store, other) == disabled
    for key, status in ((KEYS["disabled"], 404), ("u" * 48, 404), (KEYS["live"], 200)):
        response = await client.get("/api/log/token", params={"key": key})
        assert response.status == status
