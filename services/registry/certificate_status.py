"""Certificate status in the Redis hot cache: written by the publish relay, read by verify_svc.

Key `<prefix>:cs:v1:<hash of the certificate id>` (no plain identifier in Redis); value
`<status_version>:<status>:<expires epoch seconds>`; expiry one day past the certificate's. A write
replaces the stored value only when its status_version is higher (checked atomically in a Lua
script), so a delayed writer can never bring a revoked certificate back to VALID.
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

# KEYS[i] = key; ARGV[3i-2] = version, ARGV[3i-1] = value, ARGV[3i] = expiry (unix ms). Each key is
# written only if its version is higher than the stored one. Returns how many were written. One script
# call per relay batch: a script runs atomically, so no other writer interleaves between check and set.
_PUT_IF_NEWER = """
local written = 0
for i, key in ipairs(KEYS) do
  local version = tonumber(ARGV[3 * i - 2])
  local current = redis.call('GET', key)
  local stored = current and tonumber(string.match(current, '^(%d+):'))
  if not stored or stored < version then
    redis.call('SET', key, ARGV[3 * i - 1], 'PXAT', ARGV[3 * i])
    written = written + 1
  end
end
return written
"""
_CHUNK = 500  # keys per script call: keeps each atomic script short


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
        self._put = client.register_script(_PUT_IF_NEWER)
        self._reader = reader

    def key(self, certificate_id: str) -> str:
        return _key(self._prefix, certificate_id)

    async def put_many(self, entries: Sequence[StatusEntry]) -> int:
        """Write each entry whose version is newer than what Redis holds; returns how many were. Raises on
        Redis errors."""
        written = 0
        for start in range(0, len(entries), _CHUNK):
            chunk = entries[start : start + _CHUNK]
            keys: list[str] = []
            args: list = []
            for certificate_id, status, version, expires_at in chunk:
                keys.append(self.key(certificate_id))
                args += [version, f"{version}:{status}:{expires_at}", (expires_at + _TTL_PAST_EXPIRY_S) * 1000]
            written += await self._put(keys=keys, args=args)
        return written

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


# Verification looks up the same certificates again and again: their keys (a hash) and parsed values
# (immutable) are remembered, a bounded number per process.
@functools.lru_cache(maxsize=10_000)
def _key(prefix: str, certificate_id: str) -> str:
    return cache_key(prefix, _NAMESPACE, _VERSION, certificate_id)


@functools.lru_cache(maxsize=10_000)
def _parse(raw: bytes) -> CachedStatus:
    version, status, expires = raw.decode("ascii").split(":")
    return CachedStatus(status, int(version), int(expires))
