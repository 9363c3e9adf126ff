"""Redis: the client factory and the one way keys are built.

Redis is a cache, never the truth (docs/design.md §6). Keys are namespaced and versioned, and every
identifying part is hashed first, so no plain identifier (certificate id, barcode, person) ever
appears in Redis: `<prefix>:<namespace>:v<version>:<sha256(part)[:32]>`.
"""

from __future__ import annotations

import hashlib

import redis.asyncio as redis

MAX_CONNECTIONS = 32  # per client (one per process): ample for the relay, limits and status refills


def create_client(url: str, max_connections: int = MAX_CONNECTIONS, **kw) -> redis.Redis:
    """An asyncio client with short timeouts: a slow cache must cost latency, not availability.

    Its pool holds at most `max_connections`; a command finding them all busy waits for one up to the
    socket timeout and then fails like a slow Redis. redis-py's default pool would open a new
    connection for every concurrent command instead: when Redis slows down under load, that is a
    connection storm against it from every replica."""
    kw.setdefault("socket_timeout", 0.5)
    kw.setdefault("socket_connect_timeout", 0.5)
    kw.setdefault("health_check_interval", 15)
    pool = redis.BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=kw["socket_timeout"], **kw
    )
    return redis.Redis.from_pool(pool)


def cache_key(prefix: str, namespace: str, version: int, *parts: str | bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        raw = part if isinstance(part, bytes) else part.encode("utf-8")
        digest.update(len(raw).to_bytes(4, "big"))
        digest.update(raw)
    return f"{prefix}:{namespace}:v{version}:{digest.hexdigest()[:32]}"
