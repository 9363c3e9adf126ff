#!/bin/sh
# Writes this pod's redis.conf and sentinel.conf (init container of the redis-server StatefulSet).
# The master is the one the running Sentinels name; on a cold start, when no Sentinel answers, it is
# pod 0. Pods announce their stable DNS names, not their IPs, which change on every restart.
# Redis is a cache here: no persistence, and a replica that starts empty only costs cache misses.
set -eu
: "${REDIS_PASSWORD:?REDIS_PASSWORD is not set}"
: "${STATEFULSET:?}" "${HEADLESS_SERVICE:?}" "${REPLICAS:?}" "${MASTER_NAME:?}" "${QUORUM:?}" "${MAXMEMORY:?}"
conf_dir="${CONF_DIR:-/etc/redis}"
self="$(hostname).${HEADLESS_SERVICE}"
export REDISCLI_AUTH="$REDIS_PASSWORD"

master=""
i=0
while [ "$i" -lt "$REPLICAS" ]; do
    peer="${STATEFULSET}-${i}.${HEADLESS_SERVICE}"
    i=$((i + 1))
    [ "$peer" = "$self" ] && continue
    answer="$(timeout 3 redis-cli -h "$peer" -p 26379 --raw sentinel get-master-addr-by-name "$MASTER_NAME" 2>/dev/null || true)"
    candidate="$(printf '%s\n' "$answer" | head -n 1)"
    # Accept only one of our own pod names (an error reply or an empty answer is not a master).
    case "$candidate" in
        "${STATEFULSET}"-[0-9]*".${HEADLESS_SERVICE}")
            master="$candidate"
            break
            ;;
    esac
done
[ -n "$master" ] || master="${STATEFULSET}-0.${HEADLESS_SERVICE}"
echo "redis-bootstrap: ${self}, master ${master}"

umask 077
{
    echo "port 6379"
    echo "bind * -::*"
    echo "protected-mode no"
    echo "dir /data"
    echo 'save ""'
    echo "appendonly no"
    echo "maxmemory ${MAXMEMORY}"
    # Never evict: an evicted REVOKED status would send verification to Postgres, and a slow read there
    # answers without a status. Full, Redis refuses writes instead: the relay retries them (marked
    # behind in Postgres) and verification reads Postgres. Size MAXMEMORY for the live certificates.
    echo "maxmemory-policy noeviction"
    echo "requirepass ${REDIS_PASSWORD}"
    echo "masterauth ${REDIS_PASSWORD}"
    echo "replica-announce-ip ${self}"
    if [ "$master" != "$self" ]; then
        echo "replicaof ${master} 6379"
    fi
} > "${conf_dir}/redis.conf"

{
    echo "port 26379"
    echo "bind * -::*"
    echo "protected-mode no"
    echo "dir /data"
    echo "sentinel resolve-hostnames yes"
    echo "sentinel announce-hostnames yes"
    echo "sentinel announce-ip ${self}"
    echo "requirepass ${REDIS_PASSWORD}"
    echo "sentinel sentinel-pass ${REDIS_PASSWORD}"
    echo "sentinel monitor ${MASTER_NAME} ${master} 6379 ${QUORUM}"
    echo "sentinel auth-pass ${MASTER_NAME} ${REDIS_PASSWORD}"
    echo "sentinel down-after-milliseconds ${MASTER_NAME} 5000"
    echo "sentinel failover-timeout ${MASTER_NAME} 30000"
    echo "sentinel parallel-syncs ${MASTER_NAME} 1"
    echo "sentinel client-reconfig-script ${MASTER_NAME} /scripts/on-failover.sh"
} > "${conf_dir}/sentinel.conf"
