#!/usr/bin/env bash
# Make sure a Docker engine answers `docker info`.
#
# Fast path: if the engine already answers, print its version and exit 0 (nothing is touched).
# Otherwise, as root: install Debian's docker.io when dockerd is missing, start dockerd in the
# background (log: /var/log/runner-dockerd.log) and poll `docker info` until it answers.
# Not root and no engine: say what to install/start and exit 1.
#
# Safe to call repeatedly and concurrently (a lock serialises the slow path).
#
# Environment:
#   RUNNER_DOCKERD_TIMEOUT  seconds to wait for a freshly started engine (default 90)
#   RUNNER_DOCKERD_LOG      dockerd log file (default /var/log/runner-dockerd.log)
set -euo pipefail

readonly WAIT_SECONDS="${RUNNER_DOCKERD_TIMEOUT:-90}"
readonly DOCKERD_LOG="${RUNNER_DOCKERD_LOG:-/var/log/runner-dockerd.log}"
readonly LOCK_FILE=/run/runner-ensure-docker.lock

STARTED_PID=""

say() { printf 'ensure-docker: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

# Prints the server version and succeeds when the engine answers.
engine_version() {
    command -v docker >/dev/null 2>&1 || return 1
    timeout 15 docker info --format '{{.ServerVersion}}' 2>/dev/null
}

dockerd_running() {
    pgrep -x dockerd >/dev/null 2>&1
}

print_install_hint() {
    cat >&2 <<'EOF'
ensure-docker: error: no Docker engine answers `docker info`, and only root can install/start one here.
  Debian/Ubuntu:  sudo apt-get update && sudo apt-get install -y docker.io
                  then start it:  sudo systemctl start docker   (or: sudo dockerd &)
  Elsewhere:      install Docker Engine (https://docs.docker.com/engine/install/) and start it.
  If the engine runs but you lack access to /var/run/docker.sock, add yourself to the `docker` group.
EOF
}

install_docker() {
    say "dockerd or the docker CLI is missing; installing Debian's docker.io (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q || die "apt-get update failed"
    apt-get install -y -q docker.io || die "apt-get install docker.io failed"
    command -v dockerd >/dev/null 2>&1 || die "docker.io installed but dockerd is still not on PATH"
}

start_dockerd() {
    if dockerd_running; then
        say "dockerd is already running (pid $(pgrep -x dockerd | head -n1)); waiting for it to answer"
        return
    fi
    say "starting dockerd in the background (log: ${DOCKERD_LOG})"
    mkdir -p "$(dirname "${DOCKERD_LOG}")"
    # setsid: dockerd must outlive this script and the caller's process group (make, CI).
    setsid dockerd >>"${DOCKERD_LOG}" 2>&1 </dev/null &
    STARTED_PID=$!
}

# Is the dockerd we wait for still alive? (Our own child by pid, else any dockerd.)
dockerd_alive() {
    if [[ -n "${STARTED_PID}" ]]; then
        kill -0 "${STARTED_PID}" 2>/dev/null
    else
        dockerd_running
    fi
}

show_log() {
    [[ -s "${DOCKERD_LOG}" ]] || return 0
    say "last lines of ${DOCKERD_LOG}:"
    tail -n 20 "${DOCKERD_LOG}" >&2
}

wait_for_engine() {
    local deadline=$((SECONDS + WAIT_SECONDS))
    local version
    until version="$(engine_version)"; do
        if ! dockerd_alive; then
            show_log
            die "dockerd exited before the engine answered"
        fi
        if ((SECONDS >= deadline)); then
            show_log
            die "Docker engine did not answer within ${WAIT_SECONDS}s"
        fi
        sleep 0.5
    done
    say "Docker engine ${version} is up"
}

main() {
    local version
    if version="$(engine_version)"; then
        say "Docker engine ${version} is up"
        exit 0
    fi

    if [[ "$(id -u)" -ne 0 ]]; then
        print_install_hint
        exit 1
    fi

    # Serialise concurrent callers; the second one re-checks and usually finds the engine up.
    exec 9>"${LOCK_FILE}"
    flock 9
    if version="$(engine_version)"; then
        say "Docker engine ${version} is up"
        exit 0
    fi

    if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker >/dev/null 2>&1; then
        install_docker
    fi
    start_dockerd
    wait_for_engine
}

main "$@"
