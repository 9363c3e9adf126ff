"""The registry: the shared records every service reads and operators administer.

Principals and credentials (who may call), the platform's signing keys, trusted foreign document
signer certificates and the trust list they form, province rules, and certificate statuses in the
Redis hot cache (written by the publish relay, read by verify_svc). Plain functions and types over an
asyncpg connection or a Redis client; the SQL lives in `repository`.
"""
