#!/bin/sh
# Entry point of the covidtest image: the first argument picks the process, the rest is passed on.
# `exec` makes Python PID 1, so SIGTERM from Kubernetes reaches the server's graceful shutdown.
set -eu

usage() {
    cat >&2 <<'USAGE'
usage: covidtest <command> [arguments...]
  result-svc    sample and result intake, and the AdminService for operators
  publish-svc   Bluezone sync: outbox relay, result feed, certificates
  verify-svc    checkpoint verification
  gateway       HTTP/JSON gateway in front of the three services, and the checkpoint web page
  migrate       apply database migrations (the Kubernetes migration Job)
  admin         operator CLI, e.g. `covidtest admin --help`
USAGE
}

command="${1:-help}"
if [ "$#" -gt 0 ]; then
    shift
fi

case "$command" in
    result-svc)  exec python -m services.result_svc "$@" ;;
    publish-svc) exec python -m services.publish_svc "$@" ;;
    verify-svc)  exec python -m services.verify_svc "$@" ;;
    gateway)     exec python -m services.gateway "$@" ;;
    migrate)     exec python -m services.common.migrate "$@" ;;
    admin)       exec python -m services.admin "$@" ;;
    help | -h | --help)
        usage
        exit 0
        ;;
    *)
        echo "covidtest: unknown command: $command" >&2
        usage
        exit 64
        ;;
esac
