#!/bin/sh
# Entrypoint of runner's vLLM + Prometheus image (docker/Dockerfile.vllm).
#
# Starts Prometheus in the background (scraping localhost:8000 per /etc/prometheus/prometheus.yml), then
# replaces this shell with the model server, passing every argument through unchanged:
#   runner-vllm-entrypoint MODEL --port 8000 ...   ->   exec vllm serve MODEL --port 8000 ...
# Run the container with an init process (docker run --init, docker-py init=True) so signals reach vLLM
# and the background Prometheus is reaped.
#
# Environment:
#   RUNNER_PROMETHEUS=0         do not start Prometheus (default 1)
#   RUNNER_PROMETHEUS_LOG=PATH  write Prometheus' log to PATH instead of stderr with a "[prometheus] " prefix
#   RUNNER_SERVER_CMD="..."     the server command (default "vllm serve"); split on whitespace, not quoted
set -eu

PROMETHEUS_CONFIG=/etc/prometheus/prometheus.yml
PROMETHEUS_DATA=/prometheus

say() {
    printf 'runner-vllm-entrypoint: %s\n' "$*" >&2
}

start_prometheus() {
    if ! command -v prometheus >/dev/null 2>&1; then
        say "error: prometheus is not on PATH; set RUNNER_PROMETHEUS=0 to run without it"
        exit 127
    fi
    set -- prometheus --config.file="$PROMETHEUS_CONFIG" --web.listen-address=0.0.0.0:9090 \
        --storage.tsdb.path="$PROMETHEUS_DATA"
    if [ -n "${RUNNER_PROMETHEUS_LOG:-}" ]; then
        "$@" >>"$RUNNER_PROMETHEUS_LOG" 2>&1 &
    else
        # Prefix each line so Prometheus' log cannot be mistaken for the server's.
        { "$@" 2>&1 | while IFS= read -r line; do printf '[prometheus] %s\n' "$line"; done >&2; } &
    fi
    say "started prometheus on :9090 (config $PROMETHEUS_CONFIG, data $PROMETHEUS_DATA)"
}

case "${RUNNER_PROMETHEUS:-1}" in
    0 | false | no) say "RUNNER_PROMETHEUS=${RUNNER_PROMETHEUS}: not starting prometheus" ;;
    *) start_prometheus ;;
esac

# Word-split the command on purpose (it is "vllm serve" by default) but never glob it.
set -f
# shellcheck disable=SC2086
exec ${RUNNER_SERVER_CMD:-vllm serve} "$@"
