#!/bin/sh
# Sentinel's client-reconfig-script, run by every Sentinel after a failover with
#   <master-name> <role> <state> <from-ip> <from-port> <to-ip> <to-port>
# The leader empties the new master. Replication is asynchronous: a status the old master accepted
# just before it failed (a revocation, say) may never have reached the promoted replica, which would
# then answer with the older "valid" status. An empty cache costs latency (misses read Postgres and
# refill), never a wrong verdict (docs/design.md §6).
[ "${2:-}" = "leader" ] || exit 0
REDISCLI_AUTH="$REDIS_PASSWORD" exec timeout 10 redis-cli -h "$6" -p "$7" FLUSHALL ASYNC
