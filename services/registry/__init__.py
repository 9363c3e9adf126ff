"""The registry: the shared records every service reads and operators administer.

Principals and credentials (who may call), the platform's signing keys, trusted foreign document
signer certificates and the trust list they form, province rules, the DCC value sets operators import
(value_sets), and certificate statuses in the Redis hot cache (written by the publish relay, read by
verify_svc). The domain modules hold validation, orchestration and audit calls over an asyncpg connection
(or a Redis client); their SQL lives in the `repository` package, one module per domain module, and the
sort keys of their lists in `page_keys`.
"""
