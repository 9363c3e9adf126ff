"""Certificate status in the Redis hot cache: written by the publish relay, read by verify_svc.

Key `<prefix>:cs:v1:<hash of the certificate id>` (no plain identifier in Redis); value
`<status_version>:<status>:<expires epoch seconds>`; expiry one day past the certificate's. A write
replaces the stored value only when its status_version is higher (checked atomically in a Lua
script), so a delayed writer can never bring a revoked certificate back to VALID.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as redis

from services.common.cache import cache_key

_NAMESPACE, _VERSION = "cs", 1
_TTL_PAST_EXPIRY_S = 86_400

# KEYS[1] = key; ARGV[1] = version, ARGV[2] = value, ARGV[3] = expiry (unix ms). Returns 1 if written.
_PUT_IF_NEWER = """
local current = redis.call('GET', KEYS[1])
if current then
  local stored = tonumber(string.match(current, '^(%d+):'))
  if stored and stored >= tonumber(ARGV[1]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[2], 'PXAT', ARGV[3])
return 1
"""


@dataclass(frozen=True)
class CachedStatus:
    status: str          # VALID or REVOKED
    version: int
    expires_at: int      # unix seconds


class StatusCache:
    def __init__(self, client: redis.Redis, prefix: str):
        self._redis = client
        self._prefix = prefix
        self._put = client.register_script(_PUT_IF_NEWER)

    def key(self, certificate_id: str) -> str:
        return cache_key(self._prefix, _NAMESPACE, _VERSION, certificate_id)

    async def put_many(self, entries: list[tuple[str, str, int, int]]) -> int:
        """entries: (certificate id, status, status_version, expires unix seconds). Raises on Redis errors.
        Returns how many were newer than what Redis held."""
        if not entries:
            return 0
        async with self._redis.pipeline(transaction=False) as pipe:
            for certificate_id, status, version, expires in entries:
                await self._put(keys=[self.key(certificate_id)],
                                args=[version, f"{version}:{status}:{expires}", (expires + _TTL_PAST_EXPIRY_S) * 1000],
                                client=pipe)
            return sum(await pipe.execute())

    async def get(self, certificate_id: str) -> CachedStatus | None:
        raw = await self._redis.get(self.key(certificate_id))
        if raw is None:
            return None
        version, status, expires = raw.decode("ascii").split(":")
        return CachedStatus(status, int(version), int(expires))
