"""The ids the service assigns to logs ingested without one (docs/ids.md).

An id is 53 bits, so that JavaScript's ``JSON.parse`` keeps every id exact
(``Number.MAX_SAFE_INTEGER`` is 2^53 - 1)::

    41 bits  milliseconds since 2024-01-01T00:00:00Z  (until 2093-09)
     6 bits  node: which running service process made it (64 at a time)
     6 bits  sequence within the millisecond (64 ids per millisecond per node)

Ids grow with time. A node that needs more than 64 ids in one millisecond takes the
next millisecond ahead of the clock, so ids stay unique and growing under any burst.

Uniqueness across replicas and restarts needs no configuration: each process leases
its node number from the ``id_leases`` table in the engine (:class:`NodeIds`). A
lease is renewed by a heartbeat; a node whose lease has expired (and a grace period
passed) can be leased again. Each lease row also records ``reserved_until``: the
last millisecond its holder may use. A holder never assigns an id beyond what it
reserved in the engine, and a new holder of a node starts after every reservation
ever recorded for that node, so even a crashed holder's ids are never repeated.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable

from .errors import EngineUnavailable
from .store import LANE, Store

log = logging.getLogger(__name__)

EPOCH_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z
TIME_BITS = 41
NODE_BITS = 6
SEQ_BITS = 6
NODES = 1 << NODE_BITS
SEQ_MASK = (1 << SEQ_BITS) - 1
MAX_MS = (1 << TIME_BITS) - 1
MAX_ID = (1 << (TIME_BITS + NODE_BITS + SEQ_BITS)) - 1  # 2**53 - 1


class IdsExhausted(Exception):
    """The next ids would pass the generator's reserved horizon (``limit_ms``)."""

    def __init__(self, needed_ms: int) -> None:
        super().__init__(f"ids up to millisecond {needed_ms} are not reserved")
        self.needed_ms = needed_ms


class IdGenerator:
    """Time-ordered ids for one node: ``ms << 12 | node << 6 | sequence``.

    ``floor_ms``: every id is above the ids of this millisecond (a node's earlier
    holders reserved up to it). ``limit_ms``: ids beyond this millisecond are refused
    with :class:`IdsExhausted` (None: no limit, for a generator without a lease)."""

    def __init__(
        self,
        node: int,
        clock: Callable[[], float] = time.time,
        floor_ms: int = -1,
        limit_ms: int | None = None,
    ) -> None:
        if not 0 <= node < NODES:
            raise ValueError(f"node must be in 0..{NODES - 1}, got {node}")
        self.node = node
        self.clock = clock
        self.limit_ms = limit_ms
        self._last = floor_ms
        self._seq = SEQ_MASK  # the floor's millisecond counts as used up
        self._lock = threading.Lock()

    def now_ms(self) -> int:
        return max(0, int(self.clock() * 1000) - EPOCH_MS)

    @property
    def last_ms(self) -> int:
        return self._last

    def next_ids(self, count: int) -> list[int]:
        with self._lock:
            last, seq = self._last, self._seq
            now = self.now_ms()
            out = []
            for _ in range(count):
                if now > last:
                    last, seq = now, 0
                elif seq < SEQ_MASK:
                    seq += 1
                else:
                    last, seq = last + 1, 0
                out.append((last << (NODE_BITS + SEQ_BITS)) | (self.node << SEQ_BITS) | seq)
            if last > MAX_MS:
                raise EngineUnavailable("the id space of this build ends in 2093")
            if self.limit_ms is not None and last > self.limit_ms:
                raise IdsExhausted(last)
            self._last, self._seq = last, seq
            return out

    async def take(self, count: int) -> list[int]:
        return self.next_ids(count)


LEASE_TTL_SECONDS = 30.0
HEARTBEAT_SECONDS = 5.0
#: after a lease expired, how long before another process may take the node: covers
#: clock differences between replicas and a holder's renewal still in flight
GRACE_SECONDS = 30.0
#: how many of the lowest free nodes a process chooses among
SPREAD = 4
#: each renewal reserves ids up to this far ahead of the clock
LEAD_MS = 60_000
#: a burst may run ids ahead of the clock by at most this much (64 ids/ms for an hour)
MAX_LEAD_MS = 3_600_000
#: a claim's write must land within this long of its ``claimed`` time, and the claims of
#: its node are read only twice this long after it (see :func:`settled`)
SETTLE_SECONDS = 1.0


async def settled(claimed_ns: int, settle: float = SETTLE_SECONDS) -> bool:
    """Called when a claim (taken at ``claimed_ns``) has been written: False when the
    write took longer than ``settle`` (the claimer gives the claim up); else True once
    ``2 * settle`` has passed since the claim.

    "The earliest live claim wins" needs every earlier claim to be visible when the
    claims are read; a rival that took its time before ours may still be writing when
    ours has landed. Waiting out the time a write may take (once more for the two
    processes' clocks) before reading, and giving up a claim whose write took longer,
    makes every earlier claim either visible or withdrawn."""
    landed = (time.time_ns() - claimed_ns) / 1e9
    if landed > settle:
        return False
    await asyncio.sleep(max(0.0, 2 * settle - landed))
    return True


_STATE_SQL = """
SELECT node, max(reserved) AS reserved,
       countIf(expires > toDateTime({live_after:UInt32}, 'UTC') AND owner != {me:String}) AS live
FROM (
    SELECT node, owner, argMax(expires_at, version) AS expires,
           max(reserved_until) AS reserved
    FROM id_leases
    GROUP BY node, owner
)
GROUP BY node
"""

_CLAIMS_SQL = """
SELECT owner, claimed
FROM id_leases
WHERE node = {node:UInt8}
GROUP BY owner, claimed
HAVING argMax(expires_at, version) > toDateTime({live_after:UInt32}, 'UTC')
ORDER BY claimed, owner
"""

_COLUMNS = ("node", "owner", "claimed", "expires_at", "reserved_until", "version")


class NodeIds:
    """The service's id source: a node leased from the engine, and its generator.

    The lease is taken on the first ids needed (an app that never assigns an id never
    writes a lease), renewed by a heartbeat task, released on close."""

    def __init__(
        self,
        store: Callable[[], Store],
        clock: Callable[[], float] = time.time,
        *,
        nodes: int = NODES,
        ttl: float = LEASE_TTL_SECONDS,
        heartbeat: float = HEARTBEAT_SECONDS,
        grace: float = GRACE_SECONDS,
        settle: float = SETTLE_SECONDS,
    ) -> None:
        self._store = store
        self.settle = settle
        self.clock = clock
        self.nodes = nodes
        self.ttl = ttl
        self.heartbeat = heartbeat
        self.grace = grace
        self.owner = uuid.uuid4().hex
        self.generator: IdGenerator | None = None
        self._claimed = 0
        self._valid_until = 0.0
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    @property
    def node(self) -> int | None:
        return None if self.generator is None else self.generator.node

    async def take(self, count: int) -> list[int]:
        async with self._lock:
            generator = await self._ready()
            try:
                return generator.next_ids(count)
            except IdsExhausted as exc:
                now = generator.now_ms()
                if exc.needed_ms > now + MAX_LEAD_MS:
                    raise EngineUnavailable(
                        "more ids asked for than this node may assign ahead of the clock "
                        "(64 per millisecond); retry later"
                    ) from None
                await self._renew(generator, reserve=max(exc.needed_ms, now) + LEAD_MS)
                return generator.next_ids(count)

    async def _ready(self) -> IdGenerator:
        if self.generator is not None and self.clock() >= self._valid_until:
            log.warning("id lease of node %d lapsed; leasing a node again", self.generator.node)
            self.generator = None
        if self.generator is None:
            self.generator = await self._acquire()
            if self._task is None or self._task.done():
                # The heartbeat is the service's own work, not the first ingesting
                # caller's: a fresh context, in the ingest lane (service/gate.py).
                beat = contextvars.Context()
                beat.run(LANE.set, "write")
                self._task = asyncio.create_task(self._beat(), context=beat)
        return self.generator

    def _ms(self, seconds: float) -> int:
        return max(0, int(seconds * 1000) - EPOCH_MS)

    async def _acquire(self) -> IdGenerator:
        store = self._store()
        now = self.clock()
        live_after = int(now - self.grace)
        state = await store.query(_STATE_SQL, {"live_after": live_after, "me": self.owner})
        reserved = {int(node): int(res) for node, res, _ in state.rows}
        busy = {int(node) for node, _, live in state.rows if live}
        free = [n for n in range(self.nodes) if n not in busy]
        # The lowest free nodes, in random order among the first few: processes starting
        # together rarely race for one node, and the high nodes stay unused for as long
        # as possible (attach-newapi takes a never-used node for good, service/attach.py).
        first = free[:SPREAD]
        random.shuffle(first)
        for node in first + free[SPREAD:]:
            self._claimed = time.time_ns()
            floor = reserved.get(node, -1)
            limit = max(floor, self._ms(now)) + LEAD_MS
            started = self.clock()
            await self._write(store, node, started + self.ttl, limit)
            if await settled(self._claimed, self.settle):
                claims = await store.query(_CLAIMS_SQL, {"node": node, "live_after": live_after})
                if claims.rows and claims.rows[0][0] == self.owner:
                    self._valid_until = started + self.ttl
                    log.info("leased id node %d", node)
                    return IdGenerator(node, self.clock, floor_ms=floor, limit_ms=limit)
            await self._write(store, node, 0, limit)  # lost the race (or late): give it back
        raise EngineUnavailable(
            f"all {self.nodes} id nodes are leased by running gatelog processes: "
            f"at most {self.nodes} replicas can ingest at once"
        )

    async def _write(self, store: Store, node: int, expires: float, reserved: int) -> None:
        row = [node, self.owner, self._claimed, int(expires), reserved, time.time_ns()]
        await store.insert("id_leases", [row], _COLUMNS, settings={"async_insert": 0})

    async def _renew(self, generator: IdGenerator, reserve: int | None = None) -> None:
        """Extend the lease (and the reservation); step down if another process holds
        the node or the renewal came back after the lease had lapsed."""
        store = self._store()
        started = self.clock()
        limit = generator.limit_ms or 0
        limit = max(limit, self._ms(started) + LEAD_MS, reserve or 0)
        claims = await store.query(
            _CLAIMS_SQL, {"node": generator.node, "live_after": int(started - self.grace)}
        )
        if claims.rows and claims.rows[0][0] != self.owner:
            log.warning("id node %d is held by another process; stepping down", generator.node)
            self.generator = None
            raise EngineUnavailable("the id lease moved to another process, retry")
        await self._write(store, generator.node, started + self.ttl, limit)
        if self.clock() >= self._valid_until:
            self.generator = None
            raise EngineUnavailable("the id lease lapsed while it was renewed, retry")
        self._valid_until = started + self.ttl
        generator.limit_ms = limit

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat)
            async with self._lock:
                generator = self.generator
                if generator is None:
                    return
                try:
                    await self._renew(generator)
                except Exception as exc:  # the next take leases again if need be
                    log.warning("id lease not renewed: %s", exc)

    async def close(self) -> None:
        """Stop the heartbeat and give the node back (its reservation stays recorded)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        generator, self.generator = self.generator, None
        if generator is not None:
            try:
                await self._write(self._store(), generator.node, 0, generator.limit_ms or 0)
            except Exception:  # the engine gone at shutdown: the lease simply expires
                log.warning("id lease of node %d not released; it expires", generator.node)
