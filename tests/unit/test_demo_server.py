"""The CPU demo workload (docker/demo/server.py) and the monitoring config it is meant to feed.

The server runs as a real subprocess on a kernel-chosen loopback port (`--port 0`; the port is read back from
its "Starting vLLM API server on http://HOST:PORT" line) and is driven over HTTP, including through the
official `openai` client. No Docker needed. The Prometheus config is checked with `promtool`, and every
Grafana panel query must parse as PromQL and name only metrics the demo (or, for fallbacks, vLLM) exports.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[2]
SERVER = REPO / "docker" / "demo" / "server.py"
PROMETHEUS_YML = REPO / "monitoring" / "prometheus.yml"
DASHBOARD = REPO / "monitoring" / "grafana" / "dashboards" / "vllm.json"
KEY = "demo-key-canary-7f3a"
MODEL = "demo-model"
ALIAS = "demo-alias"
STARTED = re.compile(r"Starting vLLM API server on http://([0-9.]+):(\d+)")
STARTUP_TIMEOUT_S = 20.0

# Families vLLM exports and the demo must too (counter families are named without `_total`).
VLLM_FAMILIES = {
    "vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc",
    "vllm:prompt_tokens", "vllm:generation_tokens", "vllm:request_success",
    "vllm:time_to_first_token_seconds", "vllm:inter_token_latency_seconds",
    "vllm:e2e_request_latency_seconds", "vllm:request_prompt_tokens", "vllm:request_generation_tokens",
}
# Names the dashboard may use only as an `or` fallback for older vLLM releases (runtime-facts §2).
VLLM_ONLY_FALLBACKS = {"vllm:gpu_cache_usage_perc"} | {
    f"vllm:time_per_output_token_seconds_{suffix}" for suffix in ("bucket", "sum", "count")}


@dataclass
class DemoProcess:
    """A running demo server subprocess and everything it printed so far."""

    proc: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    started: threading.Event = field(default_factory=threading.Event)
    base_url: str = ""

    def output(self) -> str:
        """All stdout+stderr lines so far."""
        return "".join(self.lines)

    def pump(self) -> None:
        """Reader thread: collect output, note the bound address and the startup-complete line."""
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            match = STARTED.search(line)
            if match:
                self.base_url = f"http://{match.group(1)}:{match.group(2)}"
            if "Application startup complete." in line:
                self.started.set()


def start_demo(tmp_path: Path, *extra: str, env: dict[str, str] | None = None) -> DemoProcess:
    """Start the server on 127.0.0.1:0 and wait until /health answers.

    The environment is this process's minus any API key variables, plus `env`.
    """
    clean = {name: value for name, value in os.environ.items() if name not in ("VLLM_API_KEY", "API_KEY")}
    clean["PYTHONDONTWRITEBYTECODE"] = "1"  # keep docker/demo/ free of __pycache__
    command = [sys.executable, str(SERVER), "--host", "127.0.0.1", "--port", "0", "--token-delay-ms", "1",
               *extra]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=tmp_path, env={**clean, **(env or {})})
    demo = DemoProcess(proc)
    threading.Thread(target=demo.pump, daemon=True).start()
    if not demo.started.wait(STARTUP_TIMEOUT_S):
        proc.kill()
        pytest.fail(f"demo server did not start:\n{demo.output()}")
    wait_healthy(demo)
    return demo


def wait_healthy(demo: DemoProcess) -> None:
    """Poll /health until 200 or the startup timeout."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            if http(demo, "GET", "/health").status == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    pytest.fail(f"/health never answered 200:\n{demo.output()}")


def stop_demo(demo: DemoProcess) -> None:
    """Terminate (then kill) the subprocess if still running."""
    if demo.proc.poll() is None:
        demo.proc.terminate()
        try:
            demo.proc.wait(5)
        except subprocess.TimeoutExpired:
            demo.proc.kill()
            demo.proc.wait(5)


@dataclass(frozen=True)
class Reply:
    """An HTTP response, read fully."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body decoded as JSON."""
        return json.loads(self.body)


def http(demo: DemoProcess, method: str, path: str, body: Any = None, key: str | None = None) -> Reply:
    """One request with urllib; HTTP errors are returned, not raised."""
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    request = urllib.request.Request(demo.base_url + path, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if key is not None:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return Reply(response.status, dict(response.headers), response.read())
    except urllib.error.HTTPError as error:
        return Reply(error.code, dict(error.headers), error.read())


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoProcess]:
    """One keyed demo server shared by the read-only tests of this module."""
    home = tmp_path_factory.mktemp("demo")
    key_file = home / "api-key"
    key_file.write_text(KEY + "\n")
    process = start_demo(home, "--model", "org/demo", "--served-model-name", MODEL, ALIAS,
                         "--api-key-file", str(key_file))
    yield process
    stop_demo(process)


@pytest.fixture
def client(demo: DemoProcess) -> openai.OpenAI:
    """The official OpenAI client pointed at the demo server."""
    return openai.OpenAI(base_url=f"{demo.base_url}/v1", api_key=KEY, max_retries=0, timeout=15)


# ------------------------------------------------------------------------------------------- API surface


def test_models_lists_the_served_names_and_says_it_is_a_demo(demo: DemoProcess) -> None:
    reply = http(demo, "GET", "/v1/models", key=KEY)
    assert reply.status == 200
    cards = reply.json()["data"]
    assert [card["id"] for card in cards] == [MODEL, ALIAS]
    assert all(card["root"] == "org/demo" and "not a language model" in card["description"] for card in cards)


def test_openai_client_lists_models(client: openai.OpenAI) -> None:
    assert [model.id for model in client.models.list()] == [MODEL, ALIAS]


def test_chat_stream_equals_non_stream(client: openai.OpenAI) -> None:
    messages: Any = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "what is runner?"}]
    whole = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=200)
    text = whole.choices[0].message.content
    assert text and whole.choices[0].finish_reason == "stop"
    assert whole.system_fingerprint == "runner-demo-not-a-language-model"
    assert whole.usage is not None
    assert whole.usage.completion_tokens == len(text.split())
    assert whole.usage.prompt_tokens == 5

    pieces: list[str] = []
    finish = []
    for chunk in client.chat.completions.create(model=MODEL, messages=messages, max_tokens=200, stream=True):
        for choice in chunk.choices:
            if choice.delta.content:
                pieces.append(choice.delta.content)
            if choice.finish_reason:
                finish.append(choice.finish_reason)
    assert len(pieces) >= 2
    assert "".join(pieces) == text
    assert finish == ["stop"]


def test_same_messages_same_reply_and_different_prompts_differ(client: openai.OpenAI) -> None:
    def reply(prompt: str) -> str | None:
        return client.chat.completions.create(
            model=ALIAS, messages=[{"role": "user", "content": prompt}]).choices[0].message.content

    assert reply("hello") == reply("hello")
    assert reply("hello") != reply("goodbye")


def test_completions_honour_max_tokens(client: openai.OpenAI) -> None:
    cut = client.completions.create(model=MODEL, prompt="tell me about prometheus", max_tokens=3)
    assert cut.object == "text_completion"
    assert len(cut.choices[0].text.split()) == 3
    assert cut.choices[0].finish_reason == "length"
    assert cut.usage is not None
    assert (cut.usage.prompt_tokens, cut.usage.completion_tokens, cut.usage.total_tokens) == (4, 3, 7)

    full = client.completions.create(model=MODEL, prompt="tell me about prometheus", max_tokens=500)
    assert full.choices[0].finish_reason == "stop"
    assert full.choices[0].text.split()[:3] == cut.choices[0].text.split()


def test_streamed_completion_reports_usage_when_asked(client: openai.OpenAI) -> None:
    stream = client.completions.create(model=MODEL, prompt="a b c", max_tokens=4, stream=True,
                                       stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(choice.text for chunk in chunks for choice in chunk.choices)
    assert len(text.split()) == 4
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 4


@pytest.mark.parametrize("key", [None, "wrong-key", KEY + "x"], ids=["missing", "wrong", "prefix"])
@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/v1/models"), ("POST", "/v1/chat/completions"), ("POST", "/invocations"), ("POST", "/tokenize"),
])
def test_bad_or_missing_key_is_401(demo: DemoProcess, method: str, path: str, key: str | None) -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]} if method == "POST" else None
    reply = http(demo, method, path, body, key=key)
    assert reply.status == 401
    assert reply.json()["error"]["code"] == 401
    assert reply.headers.get("WWW-Authenticate") == "Bearer"


def test_openai_client_with_wrong_key_gets_authentication_error(demo: DemoProcess) -> None:
    wrong = openai.OpenAI(base_url=f"{demo.base_url}/v1", api_key="nope", max_retries=0, timeout=10)
    with pytest.raises(openai.AuthenticationError):
        wrong.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])


def test_invocations_tokenize_detokenize_work_with_the_key(demo: DemoProcess) -> None:
    chat = http(demo, "POST", "/invocations", {"messages": [{"role": "user", "content": "hi"}]}, key=KEY)
    assert chat.status == 200
    assert chat.json()["object"] == "chat.completion"
    text = http(demo, "POST", "/invocations", {"prompt": "hi", "max_tokens": 2}, key=KEY)
    assert text.json()["object"] == "text_completion"

    tokens = http(demo, "POST", "/tokenize", {"prompt": "the demo server zzz"}, key=KEY).json()
    assert tokens["count"] == 4
    assert tokens["tokens"][-1] == 0
    words = http(demo, "POST", "/detokenize", {"tokens": tokens["tokens"]}, key=KEY).json()
    assert words == {"prompt": "the demo server <unk>"}


def test_health_and_metrics_need_no_key(demo: DemoProcess) -> None:
    health = http(demo, "GET", "/health")
    assert (health.status, health.body) == (200, b"")
    assert http(demo, "GET", "/metrics").status == 200
    assert http(demo, "GET", "/version").json()["version"].endswith("runner.demo")


@pytest.mark.parametrize(("method", "path", "body", "status"), [
    ("GET", "/nope", None, 404),
    ("GET", "/v1/nope", None, 404),
    ("GET", "/v1/chat/completions", None, 405),
    ("POST", "/v1/chat/completions", b"{not json", 400),
    ("POST", "/v1/chat/completions", b"[1, 2]", 400),
    ("POST", "/v1/chat/completions", {"model": MODEL, "messages": []}, 400),
    ("POST", "/v1/chat/completions", {"model": "other", "messages": [{"role": "user", "content": "x"}]}, 404),
    ("POST", "/v1/completions", {"model": MODEL, "prompt": "x", "max_tokens": 0}, 400),
    ("POST", "/v1/completions", {"model": MODEL, "prompt": "x", "max_tokens": 10**6}, 400),
])
def test_errors_are_json(demo: DemoProcess, method: str, path: str, body: Any, status: int) -> None:
    reply = http(demo, method, path, body, key=KEY)
    assert reply.status == status
    assert reply.json()["error"]["code"] == status


def test_startup_and_access_log_lines_never_show_the_key(demo: DemoProcess) -> None:
    http(demo, "GET", "/v1/models", key=KEY)
    output = demo.output()
    assert "Application startup complete." in output
    assert re.search(r'INFO: +127\.0\.0\.1:\d+ - "GET /v1/models HTTP/1\.1" 200 OK', output)
    assert "demo" in output.split("Starting vLLM API server on", 1)[1].splitlines()[0]
    assert KEY not in output


# ------------------------------------------------------------------------------------------------ metrics


def scrape(demo: DemoProcess) -> dict[str, Any]:
    """Parse /metrics into {family name: family}."""
    text = http(demo, "GET", "/metrics").body.decode()
    return {family.name: family for family in text_string_to_metric_families(text)}


def sample_value(families: dict[str, Any], sample_name: str, **labels: str) -> float:
    """Sum of the samples named `sample_name` whose labels include `labels`."""
    return float(sum(sample.value for family in families.values() for sample in family.samples
               if sample.name == sample_name and labels.items() <= sample.labels.items()))


def test_metrics_have_vllm_names_labels_and_counts(demo: DemoProcess, client: openai.OpenAI) -> None:
    client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "count me"}])
    client.completions.create(model=MODEL, prompt="cut me short", max_tokens=2)
    families = scrape(demo)

    assert set(families) >= VLLM_FAMILIES | {"vllm:cache_config_info"}
    for name in VLLM_FAMILIES:
        for sample in families[name].samples:
            assert sample.labels["model_name"] == MODEL, sample
            assert sample.labels["engine"] == "0", sample
    assert families["vllm:request_success"].type == "counter"
    assert families["vllm:e2e_request_latency_seconds"].type == "histogram"
    assert sample_value(families, "vllm:prompt_tokens_total") >= 5
    assert sample_value(families, "vllm:generation_tokens_total") >= 3
    assert sample_value(families, "vllm:request_success_total", finished_reason="stop") >= 1
    assert sample_value(families, "vllm:request_success_total", finished_reason="length") >= 1
    assert sample_value(families, "vllm:time_to_first_token_seconds_count") >= 2
    assert sample_value(families, "vllm:inter_token_latency_seconds_count") >= 1
    assert sample_value(families, "vllm:num_requests_running") == 0
    assert 0 <= sample_value(families, "vllm:kv_cache_usage_perc") <= 1
    assert sample_value(families, "vllm:cache_config_info", engine="0") == 1


def test_running_requests_show_in_gauges_while_streaming(tmp_path: Path) -> None:
    slow = start_demo(tmp_path, "--token-delay-ms", "200", "--max-num-seqs", "1")
    try:
        client = openai.OpenAI(base_url=f"{slow.base_url}/v1", api_key="unused", max_retries=0, timeout=30)
        first = client.completions.create(model="runner-demo", prompt="slow", max_tokens=20, stream=True)
        next(iter(first))  # the request is admitted and generating
        second = threading.Thread(target=lambda: client.completions.create(
            model="runner-demo", prompt="queued", max_tokens=1))
        second.start()
        deadline = time.monotonic() + 10
        while sample_value(scrape(slow), "vllm:num_requests_waiting") < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        families = scrape(slow)
        assert sample_value(families, "vllm:num_requests_running") == 1
        assert sample_value(families, "vllm:num_requests_waiting") == 1
        assert sample_value(families, "vllm:kv_cache_usage_perc") > 0
        first.close()  # the client goes away mid-stream: the server must count an abort and free the slot
        second.join(15)
        assert not second.is_alive()
        while sample_value(scrape(slow), "vllm:request_success_total", finished_reason="abort") < 1:
            assert time.monotonic() < deadline + 10, "the abandoned stream was never counted as aborted"
            time.sleep(0.05)
        assert sample_value(scrape(slow), "vllm:num_requests_running") == 0
    finally:
        stop_demo(slow)


# ------------------------------------------------------------------------------------------- lifecycle


def test_sigterm_exits_zero_promptly(tmp_path: Path) -> None:
    process = start_demo(tmp_path)
    try:
        process.proc.send_signal(signal.SIGTERM)
        assert process.proc.wait(timeout=2) == 0
    finally:
        stop_demo(process)


def test_key_from_environment_when_no_file(tmp_path: Path) -> None:
    process = start_demo(tmp_path, env={"API_KEY": "from-api-key", "VLLM_API_KEY": "from-vllm"})
    try:
        assert http(process, "GET", "/v1/models", key="from-vllm").status == 200
        assert http(process, "GET", "/v1/models", key="from-api-key").status == 401
    finally:
        stop_demo(process)


def test_no_key_means_open_server_with_a_warning(tmp_path: Path) -> None:
    process = start_demo(tmp_path)
    try:
        assert http(process, "GET", "/v1/models").status == 200
        assert "WARNING" in process.output()
        assert "no API key configured" in process.output()
    finally:
        stop_demo(process)


# -------------------------------------------------------------------------------------------- monitoring


def promtool() -> str:
    """Path of promtool (Debian's prometheus package), or skip saying why."""
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool not installed (apt-get install prometheus); config not checked")
    return path


def test_prometheus_config_passes_promtool() -> None:
    result = subprocess.run([promtool(), "check", "config", str(PROMETHEUS_YML)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def dashboard_queries() -> dict[str, list[str]]:
    """{panel title: [PromQL expr, ...]} for every panel of the dashboard (rows included)."""
    dashboard = json.loads(DASHBOARD.read_text())
    panels = [*dashboard["panels"]]
    for panel in dashboard["panels"]:
        panels.extend(panel.get("panels", []))
    return {panel["title"]: [target["expr"] for target in panel.get("targets", [])]
            for panel in panels if panel.get("type") != "row"}


def test_dashboard_has_model_variable_and_provisioned_datasource() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["title"] == "vLLM / runner"
    variable = next(v for v in dashboard["templating"]["list"] if v["name"] == "model_name")
    assert variable["query"]["query"] == 'label_values({__name__=~"vllm:.*"}, model_name)'
    assert "${DS_PROMETHEUS}" not in DASHBOARD.read_text()
    for panel in dashboard["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": "prometheus"}, panel["title"]
        assert panel["targets"], panel["title"]


def test_dashboard_queries_use_only_metrics_the_demo_or_vllm_exports(demo: DemoProcess,
                                                                    client: openai.OpenAI) -> None:
    client.completions.create(model=MODEL, prompt="fill the metrics", max_tokens=2)
    exported = {sample.name for family in scrape(demo).values() for sample in family.samples}
    queries = dashboard_queries()
    assert len(queries) >= 8
    for title, exprs in queries.items():
        names = {name for expr in exprs for name in re.findall(r"\bvllm:[A-Za-z0-9_:]+", expr)}
        assert names, title
        assert names <= exported | VLLM_ONLY_FALLBACKS, (title, names - exported - VLLM_ONLY_FALLBACKS)
        assert names & exported, f"panel {title!r} would be empty on the demo"
        for expr in exprs:
            for fallback in VLLM_ONLY_FALLBACKS & set(re.findall(r"\bvllm:[A-Za-z0-9_:]+", expr)):
                assert re.search(r"\bor\b", expr), f"{title}: {fallback} must be an `or` fallback"
    text = DASHBOARD.read_text()
    assert "vllm:kv_cache_usage_perc" in text and "vllm:gpu_cache_usage_perc" in text
    assert "vllm:inter_token_latency_seconds_bucket" in text
    assert "vllm:time_per_output_token_seconds_bucket" in text


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    rules = []
    for number, expr in enumerate(e for exprs in dashboard_queries().values() for e in exprs):
        concrete = expr.replace("$__rate_interval", "1m").replace("$model_name", ".*")
        assert "$" not in concrete, expr
        rules.append({"record": f"dashboard:query_{number}", "expr": concrete})
    rules_file = tmp_path / "rules.yml"
    rules_file.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run([promtool(), "check", "rules", str(rules_file)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
