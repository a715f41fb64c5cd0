#!/usr/bin/env bash
# Quickstart walk-through over manifests/.
#
# For now it validates every example manifest with the installed `runner` (run `make venv` first,
# or `make quickstart`, which does). A later issue grows this into the full quickstart.
#
# Environment:
#   RUNNER_BIN  the runner executable to use (default: .venv/bin/runner in the repo)
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly REPO_ROOT
readonly RUNNER_BIN="${RUNNER_BIN:-${REPO_ROOT}/.venv/bin/runner}"

say() { printf 'quickstart: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

main() {
    [[ -x "${RUNNER_BIN}" ]] || die "${RUNNER_BIN} not found; run \`make venv\` first"

    shopt -s nullglob
    local manifests=("${REPO_ROOT}"/manifests/*.yaml "${REPO_ROOT}"/manifests/*.yml)
    shopt -u nullglob
    if ((${#manifests[@]} == 0)); then
        say "no manifests in ${REPO_ROOT}/manifests/; nothing to validate"
        return 0
    fi

    local manifest failed=0
    for manifest in "${manifests[@]}"; do
        say "runner validate -f ${manifest#"${REPO_ROOT}"/}"
        if ! "${RUNNER_BIN}" validate -f "${manifest}"; then
            failed=$((failed + 1))
        fi
    done
    ((failed == 0)) || die "${failed} of ${#manifests[@]} manifest(s) failed validation"
    say "all ${#manifests[@]} manifest(s) are valid"
}

main "$@"
