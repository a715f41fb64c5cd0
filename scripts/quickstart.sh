#!/usr/bin/env bash
# `make quickstart`: from a fresh clone to a running vLLM-shaped server with Prometheus, then examples.
#
# 1. checks the example manifests validate;
# 2. makes sure a Docker engine answers (scripts/ensure-docker.sh installs docker.io as root);
# 3. picks the demo image's base: $RUNNER_DEMO_BASE, else python:3.11-slim when a registry answers,
#    else a local Debian base made with debootstrap (which also brings Debian's prometheus);
# 4. takes the API key from $API_KEY, else from the secret store, generating one there if missing;
# 5. runs `runner create -f manifests/quickstart.yaml --wait` and prints the endpoints with a working
#    curl and openai example (the key is read from where it lives; it is never printed).
#
# Environment: RUNNER_BIN (default .venv/bin/runner), RUNNER_DEMO_BASE, API_KEY, RUNNER_HOME.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly REPO_ROOT
readonly RUNNER_BIN="${RUNNER_BIN:-${REPO_ROOT}/.venv/bin/runner}"
readonly MANIFEST="${REPO_ROOT}/manifests/quickstart.yaml"
readonly LOCAL_BASE="runner-demo-base:1"

say() { printf 'quickstart: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

validate_examples() {
    local manifest failed=0
    for manifest in "${REPO_ROOT}"/manifests/*.yaml; do
        "${RUNNER_BIN}" validate -f "${manifest}" >/dev/null 2>&1 || { say "invalid: ${manifest}"; failed=1; }
    done
    ((failed == 0)) || die "some example manifests do not validate (run runner validate -f FILE)"
    say "example manifests validate"
}

choose_base() {
    if [[ -n "${RUNNER_DEMO_BASE:-}" ]]; then
        say "demo image base: ${RUNNER_DEMO_BASE} (from RUNNER_DEMO_BASE)"
        return
    fi
    if docker image inspect python:3.11-slim >/dev/null 2>&1 \
        || timeout 60 docker pull -q python:3.11-slim >/dev/null 2>&1; then
        export RUNNER_DEMO_BASE=python:3.11-slim RUNNER_DEMO_INSTALL_DEPS=1
        say "demo image base: python:3.11-slim (a registry is reachable)"
        return
    fi
    if ! docker image inspect "${LOCAL_BASE}" >/dev/null 2>&1; then
        say "no registry reachable: building ${LOCAL_BASE} with debootstrap (about a minute)"
        "${REPO_ROOT}/scripts/build-test-images.sh" --only debian
        docker tag runner-test/debian-python:1 "${LOCAL_BASE}"
    fi
    export RUNNER_DEMO_BASE="${LOCAL_BASE}" RUNNER_DEMO_INSTALL_DEPS=0
    say "demo image base: ${LOCAL_BASE} (local Debian with python3 and prometheus)"
}

# Prints how the examples below obtain the key (a shell expression, never the key itself).
ensure_api_key() {
    if [[ -n "${API_KEY:-}" ]]; then
        say "API key: taken from \$API_KEY"
        echo '$API_KEY'
        return
    fi
    if ! "${RUNNER_BIN}" secret path API_KEY >/dev/null 2>&1; then
        python3 -c 'import secrets; print(secrets.token_urlsafe(32), end="")' | "${RUNNER_BIN}" secret set API_KEY >/dev/null
        say "API key: generated into the secret store (see: runner secret list)"
    else
        say "API key: from the secret store"
    fi
    # The file's absolute path, so the examples work in any shell (whatever its RUNNER_HOME and PATH).
    local key_file
    key_file="$("${RUNNER_BIN}" secret path API_KEY)"
    echo "\$(cat $(printf '%q' "${key_file}"))"
}

# The Python for the openai example: runner's venv has the openai package (a test extra); python3 may not.
example_python() {
    local venv_python
    venv_python="$(dirname "${RUNNER_BIN}")/python"
    if [[ -x "${venv_python}" ]] && "${venv_python}" -c 'import openai' >/dev/null 2>&1; then
        echo "${venv_python}"
    else
        echo python3
    fi
}

main() {
    [[ -x "${RUNNER_BIN}" ]] || die "${RUNNER_BIN} not found; run \`make venv\` first"
    validate_examples
    "${REPO_ROOT}/scripts/ensure-docker.sh"
    choose_base
    local key_expr result
    key_expr="$(ensure_api_key)"
    say "runner create -f manifests/quickstart.yaml --wait (builds the image the first time)"
    result="$("${RUNNER_BIN}" create -f "${MANIFEST}" --wait --timeout 300 --json)" \
        || { printf '%s\n' "${result:-}" >&2; die "the quickstart run did not become ready"; }
    python3 - "${key_expr}" "${result}" "${RUNNER_BIN}" "$(example_python)" <<'PY'
import json, shlex, sys
key_expr, run = sys.argv[1], json.loads(sys.argv[2])
runner, python = shlex.quote(sys.argv[3]), shlex.quote(sys.argv[4])
needs = "" if python != "python3" else "  # needs the openai package: pip install openai\n"
api, prom = run["endpoints"].get("vllm"), run["endpoints"].get("prometheus")
print(f"""
Run {run['id']} ({run['name']}) is {run['status']}.
  vllm        {api}
  prometheus  {prom}

Try it:
  curl -s {api}/v1/chat/completions \\
    -H "Authorization: Bearer {key_expr}" -H 'Content-Type: application/json' \\
    -d '{{"model": "runner-demo", "messages": [{{"role": "user", "content": "Hello!"}}]}}'

{needs}  OPENAI_API_KEY="{key_expr}" {python} -c '
from openai import OpenAI
client = OpenAI(base_url="{api}/v1")
for chunk in client.chat.completions.create(model="runner-demo", stream=True,
        messages=[{{"role": "user", "content": "Hello!"}}]):
    print(chunk.choices[0].delta.content or "", end="", flush=True)
print()'

  Prometheus targets: {prom}/targets     metrics: {api}/metrics
  Logs:  {runner} logs {run['id']} -f
  Stop (exports the cache artifact):  {runner} terminate {run['id']}
""")
PY
}

main "$@"
