"""The demo workload's "model" and simulated engine: generation, admission, KV accounting, vLLM metrics.

It is NOT a language model: replies are walks through a tiny Markov chain over a few embedded sentences,
seeded by a hash of the prompt, so the same prompt always gives the same words. Tokens are whitespace-split
words. The metric families copy vLLM's names, labels and buckets so runner's dashboards and scrapers can be
exercised on a CPU. Standard library + prometheus_client only.
"""

from __future__ import annotations

import hashlib
import itertools
import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

FINISH_REASONS = ("stop", "length", "abort")
CORPUS = (
    "this demo server answers like vllm but it is not a language model.",
    "every reply is a walk through a tiny markov chain seeded by the prompt.",
    "the same prompt always gives the same reply so a test can compare streams.",
    "tokens here are words split on whitespace and each one takes a few milliseconds.",
    "prometheus scrapes the metrics endpoint and grafana draws the latency panels.",
    "a real deployment would load weights onto a gpu and fill the kv cache.",
    "runner starts the container and waits until the health check answers.",
    "when the run ends the cache is exported so the next start is warm.",
)
# Bucket edges copied from vLLM (vllm/v1/metrics/loggers.py) so dashboards bin the demo like the real thing.
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
                20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)
ITL_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
               20.0, 40.0, 80.0)
E2E_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0,
               240.0, 480.0, 960.0, 1920.0, 7680.0)


# ---------------------------------------------------------------------------------------------- model


@dataclass(frozen=True)
class Generation:
    """What the demo model decided to say for one prompt, before any timing is simulated."""

    words: tuple[str, ...]
    finish_reason: str


class MarkovModel:
    """A word-level Markov chain over `CORPUS`: same prompt in, same words out."""

    def __init__(self, corpus: tuple[str, ...] = CORPUS) -> None:
        self._starts = [sentence.split()[0] for sentence in corpus]
        self._next: dict[str, list[str]] = {}
        for sentence in corpus:
            words = sentence.split()
            for current, following in itertools.pairwise(words):
                self._next.setdefault(current, []).append(following)
        self.vocab = sorted({word for sentence in corpus for word in sentence.split()})
        self._ids = {word: index + 1 for index, word in enumerate(self.vocab)}

    def generate(self, prompt: str, max_tokens: int) -> Generation:
        """Walk the chain for 1-3 sentences (seeded by the prompt's SHA-256), cut at `max_tokens`."""
        seed = int.from_bytes(hashlib.sha256(prompt.encode("utf-8")).digest()[:8], "big")
        rng = random.Random(seed)  # noqa: S311 - determinism, not secrecy
        sentences_left = rng.randint(1, 3)
        words: list[str] = []
        word = rng.choice(self._starts)
        while len(words) < max_tokens:
            words.append(word)
            if not word.endswith("."):
                word = rng.choice(self._next[word])
                continue
            sentences_left -= 1
            if sentences_left == 0:
                return Generation(tuple(words), "stop")
            word = rng.choice(self._starts)
        return Generation(tuple(words), "length")

    def token_ids(self, text: str) -> list[int]:
        """Tokenize on whitespace; words outside the demo vocabulary become id 0 (`<unk>`)."""
        return [self._ids.get(word, 0) for word in text.split()]

    def detokenize(self, ids: list[int]) -> str:
        """Invert `token_ids` (unknown words come back as `<unk>`)."""
        return " ".join(self.vocab[i - 1] if i > 0 else "<unk>" for i in ids)


def count_tokens(text: str) -> int:
    """The demo's tokenizer: one token per whitespace-separated word."""
    return len(text.split())


@dataclass(frozen=True)
class EngineConfig:
    """What the simulated engine needs from the command line."""

    model_name: str  # the first served name: the `model_name` label on every metric
    token_delay_s: float
    max_model_len: int
    max_num_seqs: int

    @property
    def kv_capacity(self) -> int:
        """Pretend KV-cache size in tokens: room for `max_num_seqs` full-length sequences."""
        return self.max_num_seqs * self.max_model_len

# ---------------------------------------------------------------------------------------------- metrics


class EngineMetrics:
    """vLLM's metric families (names, labels, buckets) in one private `CollectorRegistry`."""

    def __init__(self, registry: CollectorRegistry, config: EngineConfig) -> None:
        self._labels = {"model_name": config.model_name, "engine": "0"}
        names = list(self._labels)
        self.running = Gauge("vllm:num_requests_running", "Requests in model execution batches.", names,
                             registry=registry).labels(**self._labels)
        self.waiting = Gauge("vllm:num_requests_waiting", "Requests waiting to be processed.", names,
                             registry=registry).labels(**self._labels)
        self.kv_usage = Gauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.",
                              names, registry=registry).labels(**self._labels)
        self.prompt_tokens = Counter("vllm:prompt_tokens", "Number of prefill tokens processed.", names,
                                     registry=registry).labels(**self._labels)
        self.generation_tokens = Counter("vllm:generation_tokens", "Number of generation tokens processed.",
                                         names, registry=registry).labels(**self._labels)
        self._success = Counter("vllm:request_success", "Count of successfully processed requests.",
                                [*names, "finished_reason"], registry=registry)
        for reason in FINISH_REASONS:
            self._success.labels(**self._labels, finished_reason=reason)
        self.ttft = self._histogram(registry, "vllm:time_to_first_token_seconds",
                                    "Histogram of time to first token in seconds.", TTFT_BUCKETS)
        self.itl = self._histogram(registry, "vllm:inter_token_latency_seconds",
                                   "Histogram of inter-token latency in seconds.", ITL_BUCKETS)
        self.e2e = self._histogram(registry, "vllm:e2e_request_latency_seconds",
                                   "Histogram of e2e request latency in seconds.", E2E_BUCKETS)
        length_buckets = one_two_five_buckets(config.max_model_len)
        self.request_prompt = self._histogram(registry, "vllm:request_prompt_tokens",
                                              "Number of prefill tokens processed.", length_buckets)
        self.request_generation = self._histogram(registry, "vllm:request_generation_tokens",
                                                  "Number of generation tokens processed.", length_buckets)
        self._cache_info(registry, config)

    def _histogram(self, registry: CollectorRegistry, name: str, doc: str,
                   buckets: tuple[float, ...]) -> Any:
        """A labelled histogram child for this server's model and engine."""
        return Histogram(name, doc, list(self._labels), buckets=buckets, registry=registry).labels(
            **self._labels)

    @staticmethod
    def _cache_info(registry: CollectorRegistry, config: EngineConfig) -> None:
        """vLLM's info-style gauge: the cache config as labels, value 1 (no model_name, as in vLLM)."""
        info = {"block_size": "16", "cache_dtype": "auto", "enable_prefix_caching": "False",
                "gpu_memory_utilization": "0.0", "num_gpu_blocks": str(config.kv_capacity // 16),
                "num_cpu_blocks": "0", "engine": "0"}
        Gauge("vllm:cache_config_info", "Information of the LLMEngine CacheConfig", list(info),
              registry=registry).labels(**info).set(1)

    def record_success(self, reason: str) -> None:
        """Count one finished request under its finish reason."""
        self._success.labels(**self._labels, finished_reason=reason).inc()


def one_two_five_buckets(limit: int) -> tuple[float, ...]:
    """vLLM's 1-2-5 bucket series (1, 2, 5, 10, 20, 50, ...) up to `limit`."""
    buckets: list[float] = []
    exponent = 0
    while True:
        for mantissa in (1, 2, 5):
            value = mantissa * 10**exponent
            if value > limit:
                return tuple(buckets)
            buckets.append(float(value))
        exponent += 1


# ---------------------------------------------------------------------------------------------- engine


@dataclass(frozen=True)
class CompletionRequest:
    """One parsed `/v1/completions` or `/v1/chat/completions` request."""

    kind: str  # "chat" or "text"
    model: str
    prompt: str  # the seed text: the prompt, or the chat messages serialised canonically
    prompt_tokens: int
    max_tokens: int
    stream: bool
    include_usage: bool


class RequestRun:
    """One admitted request: replays its `Generation` with simulated per-token timing and metrics."""

    def __init__(self, engine: DemoEngine, request: CompletionRequest, arrival: float) -> None:
        self._engine = engine
        self._arrival = arrival
        self.generation = engine.model.generate(request.prompt, request.max_tokens)
        self.emitted = 0

    def tokens(self) -> Iterator[str]:
        """Yield the words one by one, sleeping `token_delay` before each (the 'compute')."""
        metrics = self._engine.metrics
        last = self._arrival
        for word in self.generation.words:
            time.sleep(self._engine.config.token_delay_s)
            now = time.monotonic()
            (metrics.ttft if self.emitted == 0 else metrics.itl).observe(now - last)
            last = now
            self.emitted += 1
            metrics.generation_tokens.inc()
            self._engine.hold_kv(1)
            yield word


class DemoEngine:
    """Admission (at most `max_num_seqs` running, the rest waiting), KV accounting and request metrics."""

    def __init__(self, config: EngineConfig, registry: CollectorRegistry) -> None:
        self.config = config
        self.model = MarkovModel()
        self.metrics = EngineMetrics(registry, config)
        self._slots = threading.BoundedSemaphore(config.max_num_seqs)
        self._kv_lock = threading.Lock()
        self._kv_tokens = 0
        self._kv_capacity = config.kv_capacity

    def hold_kv(self, tokens: int) -> None:
        """Add (or with a negative count release) KV-cache tokens and update the usage gauge."""
        with self._kv_lock:
            self._kv_tokens += tokens
            self.metrics.kv_usage.set(min(1.0, self._kv_tokens / self._kv_capacity))

    @contextmanager
    def admit(self, request: CompletionRequest) -> Iterator[RequestRun]:
        """Queue, run and account for one request; an exception inside counts it as aborted."""
        arrival = time.monotonic()
        self.metrics.waiting.inc()
        self._slots.acquire()
        self.metrics.waiting.dec()
        self.metrics.running.inc()
        self.metrics.prompt_tokens.inc(request.prompt_tokens)
        self.hold_kv(request.prompt_tokens)
        run = RequestRun(self, request, arrival)
        reason = "abort"
        try:
            yield run
            reason = run.generation.finish_reason
        finally:
            self.hold_kv(-(request.prompt_tokens + run.emitted))
            self.metrics.running.dec()
            self._slots.release()
            self._finish(request, run, reason, time.monotonic() - arrival)

    def _finish(self, request: CompletionRequest, run: RequestRun, reason: str, elapsed: float) -> None:
        """Record the per-request histograms and the finish reason."""
        self.metrics.e2e.observe(elapsed)
        self.metrics.request_prompt.observe(request.prompt_tokens)
        self.metrics.request_generation.observe(run.emitted)
        self.metrics.record_success(reason)
