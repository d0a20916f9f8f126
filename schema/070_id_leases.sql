-- Which running service process holds which id node (service/ids.py, docs/ids.md).
--
-- A process leases a node number (0-63) on its first assigned id and renews the lease
-- every few seconds: one row per (node, owner) survives merges, the newest `version`.
-- `claimed` (ns) orders rival claims of one node: the earliest live claim wins.
-- `expires_at` 0 marks a released lease. `reserved_until` (ms since 2024-01-01) is the
-- last millisecond the owner may use in its ids: a later holder of the node starts
-- after the largest reservation ever recorded for it, so no id is assigned twice.
CREATE TABLE IF NOT EXISTS id_leases
(
    node           UInt8,
    owner          String,
    claimed        UInt64,
    expires_at     DateTime('UTC'),
    reserved_until UInt64,
    version        UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (node, owner)
