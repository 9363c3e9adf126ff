"""Certificate status in the Redis hot cache: written by the publish relay, read by verify_svc.

Key `<prefix>:cs:v1:<hash of the certificate id>` (no plain identifier in Redis); value
`<status_version>:<status>:<expires epoch seconds>`; expiry one day past the certificate's. A write
replaces the stored value only when its status_version is higher (checked atomically in a Lua
script), so a delayed writer can never bring a revoked certificate back to VALID while the key exists.

A key can still disappear (a Redis failover to a replica that missed writes, an operator's FLUSHALL,
eviction if a deployment ignores the noeviction policy). So that a late refill cannot then write an old
status into the empty key, refills are fenced by the **floor**: the feed head (a position in the gapless
feed, which every revocation is part of) that the relay's status writes are current as of. The relay
raises it with every write and once per relay loop; verify_svc's refill carries the feed head its
Postgres read saw, and is written only if that is at or above the floor. A refill from a snapshot
older than a status the relay wrote is refused, key or no key; with the floor itself gone (flushed),
every refill is refused until the relay sets it again (within one relay poll).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

import redis.asyncio as redis

from services.common.cache import cache_key

_NAMESPACE, _VERSION = "cs", 1
_TTL_PAST_EXPIRY_S = 86_400

_CHUNK = 500  # keys per script call: keeps each atomic script short

# Entries from KEYS[2] on: each its key, with version, value and expiry (unix ms) in ARGV[3i-4 .. 3i-2],
# written only if its version is higher than the stored one; returns how many were. Both scripts end
# with it, and a script runs atomically: no other writer interleaves between check and set.
_WRITE_NEWER = """
local written = 0
for i = 2, #KEYS do
  local version = tonumber(ARGV[3 * i - 4])
  local current = redis.call('GET', KEYS[i])
  local stored = current and tonumber(string.match(current, '^(%d+):'))
  if not stored or stored < version then
    redis.call('SET', KEYS[i], ARGV[3 * i - 3], 'PXAT', ARGV[3 * i - 2])
    written = written + 1
  end
end
return written
"""

# The relay's write: KEYS[1] = the floor, ARGV[1] = the feed head the statuses are current as of. Raises
# the floor (never lowers it), then writes the entries.
_PUT_AND_RAISE_FLOOR = (
    """
local floor = tonumber(redis.call('GET', KEYS[1]))
if not floor or floor < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[1])
end
"""
    + _WRITE_NEWER
)

# A refill: KEYS[1] = the floor, ARGV[1] = the feed head the Postgres read saw. Refused as a whole (-1)
# when the floor is missing or above what the read saw.
_REFILL = (
    """
local floor = tonumber(redis.call('GET', KEYS[1]))
if not floor or floor > tonumber(ARGV[1]) then
  return -1
end
"""
    + _WRITE_NEWER
)


class StatusEntry(NamedTuple):
    """One certificate's status to write to the cache."""

    certificate_id: str  # the UVCI
    status: str  # VALID or REVOKED
    version: int  # the certificate's status_version: a write never replaces a higher one
    expires_at: int  # the certificate's expiry, unix seconds


@dataclass(frozen=True)
class CachedStatus:
    status: str  # VALID or REVOKED
    version: int
    expires_at: int  # unix seconds


class StatusReader(Protocol):
    """A faster read path than `client` (verify_svc's pipelined reader with a local mirror)."""

    def known(self, key: str) -> bytes | None: ...

    async def mget(self, keys: list[str]) -> list[bytes | None]: ...


class StatusCache:
    def __init__(self, client: redis.Redis, prefix: str, reader: StatusReader | None = None):
        """`reader` (verify_svc) serves reads on a lean pipelined connection; writes use `client`."""
        self._redis = client
        self._prefix = prefix
        self._put = client.register_script(_PUT_AND_RAISE_FLOOR)
        self._refill = client.register_script(_REFILL)
        # Not a hashed certificate key (`<prefix>:cs:v1:<hash>`), so no certificate id can collide with it.
        self._floor_key = f"{prefix}:{_NAMESPACE}-floor:v{_VERSION}"
        self._reader = reader

    def key(self, certificate_id: str) -> str:
        return _key(self._prefix, certificate_id)

    async def put_many(self, entries: Sequence[StatusEntry], *, feed_head: int) -> int:
        """The relay's write: each entry whose version is newer than what Redis holds, and the refill floor
        raised to `feed_head` (the feed head these statuses are current as of). Returns how many entries
        were written; raises on Redis errors."""
        written = 0
        for start in range(0, max(len(entries), 1), _CHUNK):
            keys, args = self._script_args(entries[start : start + _CHUNK], feed_head)
            written += await self._put(keys=keys, args=args)
        return written

    async def raise_floor(self, feed_head: int) -> None:
        """Refuse refills read before `feed_head` from now on (the relay, once per loop)."""
        await self._put(keys=[self._floor_key], args=[feed_head])

    async def refill_many(self, entries: Sequence[StatusEntry], *, read_at_feed_head: int) -> int | None:
        """verify_svc's write-back of statuses read from Postgres at `read_at_feed_head`: each entry newer
        than Redis holds, or nothing at all (None) if the read is older than the floor or the floor is
        gone. Returns how many were written; raises on Redis errors."""
        written = 0
        for start in range(0, len(entries), _CHUNK):
            keys, args = self._script_args(entries[start : start + _CHUNK], read_at_feed_head)
            outcome = await self._refill(keys=keys, args=args)
            if outcome < 0:
                return None
            written += outcome
        return written

    def _script_args(self, chunk: Sequence[StatusEntry], feed_head: int) -> tuple[list[str], list]:
        keys: list[str] = [self._floor_key]
        args: list = [feed_head]
        for certificate_id, status, version, expires_at in chunk:
            keys.append(self.key(certificate_id))
            args += [version, f"{version}:{status}:{expires_at}", (expires_at + _TTL_PAST_EXPIRY_S) * 1000]
        return keys, args

    def known(self, certificate_id: str) -> CachedStatus | None:
        """The status from the reader's local mirror (no round trip), if it holds a fresh one."""
        if self._reader is None:
            return None
        raw = self._reader.known(self.key(certificate_id))
        return None if raw is None else _parse(raw)

    async def get(self, certificate_id: str) -> CachedStatus | None:
        return (await self.get_many([certificate_id]))[0]

    async def get_many(self, certificate_ids: list[str]) -> list[CachedStatus | None]:
        """One MGET for many certificates (verify_svc batches the lookups of one moment)."""
        keys = [self.key(c) for c in certificate_ids]
        found = await (self._reader.mget(keys) if self._reader else self._redis.mget(keys))
        return [None if raw is None else _parse(raw) for raw in found]


def key_prefix(prefix: str) -> str:
    """What every certificate status key under `prefix` starts with (and nothing else: the floor key's
    namespace differs): verify_svc mirrors all keys with it."""
    return f"{prefix}:{_NAMESPACE}:v{_VERSION}:"


# Verification looks up the same certificates again and again: their keys (a hash) and parsed values
# (immutable) are remembered, a bounded number per process.
@functools.lru_cache(maxsize=10_000)
def _key(prefix: str, certificate_id: str) -> str:
    return cache_key(prefix, _NAMESPACE, _VERSION, certificate_id)


@functools.lru_cache(maxsize=10_000)
def _parse(raw: bytes) -> CachedStatus:
    version, status, expires = raw.decode("ascii").split(":")
    return CachedStatus(status, int(version), int(expires))
