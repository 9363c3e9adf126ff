"""Rotating the personal-data key (issue 14, part 5): re-seal every value under the current key.

PiiCipher seals with the first key of `PII_KEYS` and opens with any key of the ring; the key id travels in
each ciphertext's header. After a new key is put first, old values still name the old key, which
therefore had to stay in the ring forever. `reencrypt` opens every value sealed under another key than
the current one and seals it again under the current one, so the old key can then be removed; `status`
counts, per table.column, the values under each key id (read from the header by Postgres, never decrypted).

- Online: batches of `batch_size` rows, one short transaction each, walking the primary key in order
  (keyset pagination). A batch locks its rows `FOR NO KEY UPDATE SKIP LOCKED`: it never waits for a row a
  service holds (it skips it, and a later pass takes it), so it can neither stall a service for longer than one
  batch nor deadlock with the services' lock order (docs/design.md §3): it holds only locks it got
  without waiting, and writes only rows it holds. `lock_timeout` keeps it from queueing behind a
  migration's table lock (with every service queued behind it).
- Never a stale overwrite: the rows are locked from the read to the write, so no service can change them
  in between; the UPDATE also replaces a value only if it still holds the ciphertext that was read
  (compare-and-set), which costs nothing and keeps that guarantee even without the lock. A service
  that rewrites a row waits for the batch to commit, then writes its own (newer) value over it.
- Resumable and idempotent: each run simply looks for values under an old key id, so a crash, a Ctrl-C or
  `max_seconds` loses at most the uncommitted batch, and a finished run finds nothing to do.
- Not rotated here: keyed hashes (HMAC with `PII_PEPPER`: lookups, person keys; the pepper is not a key
  of the ring), and `signing_keys.private_key_enc`, which rotates with the signing-key KEK, separately.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import asyncpg

from services.admin import repository as repo
from services.admin.repository import SealedTable
from services.common.pii import PiiCipher, PiiError

# Every column sealed with PiiCipher, with its purpose (the associated data). Keep in step with the
# seal() calls: result_svc/persons.py (persons), publish_svc/relay.py (certificates, feed_events).
SEALED: tuple[SealedTable, ...] = (
    SealedTable(
        "persons",
        "id",
        "uuid",
        (
            ("identity_enc", "person.identity"),
            ("full_name_enc", "person.full_name"),
            ("family_name_enc", "person.family_name"),
            ("given_name_enc", "person.given_name"),
            ("date_of_birth_enc", "person.date_of_birth"),
            ("phone_enc", "person.phone"),
        ),
    ),
    SealedTable("certificates", "id", "uuid", (("qr_enc", "certificate.qr"),)),
    SealedTable("feed_events", "position", "bigint", (("payload_enc", "feed.event"),)),
)

LOCK_TIMEOUT = "2s"  # a batch gives up (and is retried by the next pass) rather than queue behind DDL
MAX_LOCK_TIMEOUTS = 5  # passes in a row that met a lock timeout before the run gives up


@dataclass(frozen=True, slots=True)
class ColumnStatus:
    column: str  # "table.column"
    purpose: str
    key_ids: dict[str, int]  # key id → values sealed under it


@dataclass(frozen=True, slots=True)
class Status:
    current_key_id: str | None  # None: not known (no keyring given)
    columns: list[ColumnStatus]

    @property
    def old_key_ids(self) -> list[str]:
        """Key ids other than the current one that still seal some value."""
        return sorted({k for c in self.columns for k in c.key_ids if k != self.current_key_id})

    @property
    def old_values(self) -> int | None:
        if self.current_key_id is None:
            return None
        return sum(n for c in self.columns for k, n in c.key_ids.items() if k != self.current_key_id)

    def as_json(self) -> dict[str, object]:
        return {
            "current_key_id": self.current_key_id,
            "old_key_ids": self.old_key_ids,
            "old_values": self.old_values,
            "columns": [{"column": c.column, "purpose": c.purpose, "key_ids": c.key_ids} for c in self.columns],
        }


async def status(conn: asyncpg.Connection, current_key_id: str | None) -> Status:
    """Per sealed column, how many values each key id seals (no key needed: headers only)."""
    columns: list[ColumnStatus] = []
    for table in SEALED:
        counts: dict[str, dict[str, int]] = {c: {} for c, _ in table.columns}
        for column, key_id, n in await repo.sealed_key_id_counts(conn, table):
            counts[column][key_id.decode("ascii", "replace")] = n
        columns += [ColumnStatus(f"{table.table}.{c}", purpose, counts[c]) for c, purpose in table.columns]
    return Status(current_key_id, columns)


@dataclass(slots=True)
class Progress:
    reencrypted: int = 0  # values re-sealed and committed
    batches: int = 0
    failed: list[dict[str, str]] = field(default_factory=list)  # values that would not open: left as they are
    stopped: str | None = None  # why the run ended early ("max_seconds", "max_batches"), None: ran to the end


class KeysMissing(Exception):
    """Values are sealed under key ids the keyring lacks: they cannot be opened, so the run does not start."""

    def __init__(self, key_ids: list[str]):
        super().__init__(", ".join(key_ids))
        self.key_ids = key_ids


async def reencrypt(
    conn: asyncpg.Connection,
    pii: PiiCipher,
    *,
    batch_size: int = 500,
    max_seconds: float | None = None,
    max_batches: int | None = None,
    report: Callable[[dict[str, object]], None] = lambda _: None,
) -> Progress:
    """Re-seal every value under another key than `pii.active_key_id`, batch by batch, pass after pass,
    until a pass changes nothing (rows locked by services are skipped and taken by the next pass). Calls
    `report` after every committed batch. Stops early (between batches) after `max_seconds` or
    `max_batches`; the next run continues where this one stopped."""
    current = pii.active_key_id
    before = await status(conn, current)
    missing = [k for k in before.old_key_ids if k not in pii.key_ids]
    if missing:
        raise KeysMissing(missing)
    progress = Progress()
    failed_seen: set[tuple[str, str]] = set()
    deadline = time.monotonic() + max_seconds if max_seconds is not None else None
    lock_timeouts = 0
    while True:
        changed, timed_out = 0, False
        for table in SEALED:
            after: object | None = None
            while True:
                if deadline is not None and time.monotonic() >= deadline:
                    progress.stopped = "max_seconds"
                elif max_batches is not None and progress.batches >= max_batches:
                    progress.stopped = "max_batches"
                if progress.stopped:
                    return progress
                try:
                    found, after, replaced, failed = await _batch(conn, pii, table, after, batch_size)
                except asyncpg.LockNotAvailableError:  # a table lock (DDL) held: try this table next pass
                    timed_out = True
                    report({"event": "lock_timeout", "table": table.table})
                    break
                if not found:
                    break
                progress.batches += 1
                progress.reencrypted += replaced
                for failure in failed:  # a later pass meets the same value again: list it once
                    if (failure["column"], failure["key"]) not in failed_seen:
                        failed_seen.add((failure["column"], failure["key"]))
                        progress.failed.append(failure)
                changed += replaced
                report(
                    {
                        "event": "batch",
                        "table": table.table,
                        "rows": found,
                        "reencrypted": replaced,
                        "failed": len(failed),
                        "last_key": str(after),
                        "total_reencrypted": progress.reencrypted,
                    }
                )
        lock_timeouts = lock_timeouts + 1 if timed_out else 0
        if lock_timeouts >= MAX_LOCK_TIMEOUTS:
            progress.stopped = "lock_timeout"
            return progress
        if not changed and not timed_out:  # nothing left, or only values that fail to open or rows in long
            return progress  # transactions (status lists them; run again later)


async def _batch(
    conn: asyncpg.Connection, pii: PiiCipher, table: SealedTable, after: object | None, limit: int
) -> tuple[int, object | None, int, list[dict[str, str]]]:
    """One short transaction: lock the next stale rows, re-seal their stale values, write them back.
    Returns (rows found, last key, values replaced, failures)."""
    current = pii.active_key_id
    failed: list[dict[str, str]] = []
    async with conn.transaction():
        await conn.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
        # Locked until COMMIT without waiting for anyone (SKIP LOCKED), and written back by compare-and-set:
        # a service's write can neither slip in between nor be overwritten with the stale plaintext.
        rows = await repo.lock_stale_sealed_rows(conn, table, after, current.encode("ascii"), limit)
        if not rows:
            return 0, after, 0, failed
        writes: list[tuple[object, list[tuple[bytes | None, bytes | None]]]] = []
        for row in rows:
            pairs: list[tuple[bytes | None, bytes | None]] = []
            for column, purpose in table.columns:
                old = bytes(row[column]) if row[column] is not None else None
                new = None
                if old is not None and PiiCipher.key_id_of(old) != current:
                    try:
                        new = pii.seal_bytes(purpose, pii.open_bytes(purpose, old))
                    except PiiError as exc:  # tampered, or copied from another column: left for a human
                        failed.append({"column": f"{table.table}.{column}", "key": str(row["k"]), "error": str(exc)})
                pairs.append((old, new))
            if any(new is not None for _, new in pairs):
                writes.append((row["k"], pairs))
        replaced = await repo.replace_sealed_values(conn, table, writes) if writes else 0
    return len(rows), rows[-1]["k"], replaced, failed
