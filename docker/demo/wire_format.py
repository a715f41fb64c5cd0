"""The OpenAI wire format as the demo server speaks it: request parsing, response and chunk shapes, errors.

Pure functions over decoded JSON; no sockets here. Shapes follow what the official `openai` client and
`vllm bench serve` read (ids, `object`, `choices`, `usage`, `system_fingerprint`).
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, cast

from demo_engine import CompletionRequest, count_tokens

FINGERPRINT = "runner-demo-not-a-language-model"
DESCRIPTION = "runner demo workload: deterministic Markov-chain word salad, not a language model"
DEFAULT_MAX_TOKENS = 64


class ApiError(Exception):
    """A request the server refuses; rendered as an OpenAI-style JSON error body."""

    def __init__(self, status: HTTPStatus, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param

    @property
    def err_type(self) -> str:
        """vLLM-style error type from the status: `BadRequestError`, `NotFoundError`, ..."""
        name = self.status.phrase.title().replace(" ", "")
        return name if name.endswith("Error") else f"{name}Error"

    def body(self) -> dict[str, Any]:
        """Return the JSON error document (`{"error": {message, type, param, code}}`)."""
        return {"error": {"message": self.message, "type": self.err_type, "param": self.param,
                          "code": self.status.value}}


def message_text(message: Any) -> tuple[str, str]:
    """(role, text) of one chat message; text parts of a multi-part content are joined."""
    if not isinstance(message, dict) or not isinstance(message.get("role"), str):
        raise ApiError(HTTPStatus.BAD_REQUEST, "each message must be an object with a string 'role'",
                       param="messages")
    content = message.get("content")
    if content is None or isinstance(content, str):
        return message["role"], content or ""
    if isinstance(content, list):
        parts = [p["text"] for p in content
                 if isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)]
        return message["role"], " ".join(parts)
    raise ApiError(HTTPStatus.BAD_REQUEST, "message 'content' must be a string or a list of parts",
                   param="messages")


def chat_prompt(body: dict[str, Any]) -> tuple[str, int]:
    """Canonical seed text and prompt-token count of a chat request's `messages`."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError(HTTPStatus.BAD_REQUEST, "'messages' must be a non-empty list", param="messages")
    pairs = [message_text(m) for m in messages]
    return json.dumps(pairs, ensure_ascii=False), sum(count_tokens(text) for _, text in pairs)


def text_prompt(body: dict[str, Any]) -> tuple[str, int]:
    """Seed text and prompt-token count of a completions request's `prompt` (one string)."""
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise ApiError(HTTPStatus.BAD_REQUEST, "'prompt' must be a string (the demo takes one prompt)",
                       param="prompt")
    return prompt, count_tokens(prompt)


def max_tokens_of(body: dict[str, Any], prompt_tokens: int, max_model_len: int) -> int:
    """`max_completion_tokens` or `max_tokens` (default 64), checked against the context length."""
    if prompt_tokens >= max_model_len:
        raise ApiError(HTTPStatus.BAD_REQUEST, f"This model's maximum context length is "
                       f"{max_model_len} tokens; your prompt has {prompt_tokens}.", param="messages")
    key = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    value = body.get(key)
    if value is None:
        return min(DEFAULT_MAX_TOKENS, max_model_len - prompt_tokens)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ApiError(HTTPStatus.BAD_REQUEST, f"'{key}' must be a positive integer", param=key)
    if prompt_tokens + value > max_model_len:
        raise ApiError(HTTPStatus.BAD_REQUEST, f"This model's maximum context length is "
                       f"{max_model_len} tokens; you asked for {prompt_tokens} + {value}.", param=key)
    return value


def model_of(body: dict[str, Any], served_names: tuple[str, ...]) -> str:
    """The requested model name (default: the first served name); unknown names are a 404."""
    model = body.get("model")
    if model is None:
        return served_names[0]
    if model not in served_names:
        raise ApiError(HTTPStatus.NOT_FOUND, f"The model `{model}` does not exist.", param="model")
    return cast(str, model)


def parse_completion(kind: str, body: dict[str, Any], served_names: tuple[str, ...],
                     max_model_len: int) -> CompletionRequest:
    """Validate a chat ("chat") or completions ("text") body into a `CompletionRequest`."""
    model = model_of(body, served_names)
    prompt, prompt_tokens = chat_prompt(body) if kind == "chat" else text_prompt(body)
    stream = body.get("stream") or False  # null counts as "not given", as in the OpenAI API
    if not isinstance(stream, bool) or body.get("n") not in (None, 1):
        raise ApiError(HTTPStatus.BAD_REQUEST, "'stream' must be a boolean and 'n' must be 1")
    options = body.get("stream_options") or {}
    include_usage = isinstance(options, dict) and options.get("include_usage") is True
    max_tokens = max_tokens_of(body, prompt_tokens, max_model_len)
    return CompletionRequest(kind, model, prompt, prompt_tokens, max_tokens, stream, include_usage)


@dataclass(frozen=True)
class ResponseContext:
    """The fields shared by every body and chunk of one completion."""

    kind: str
    id: str
    created: int
    model: str

    @classmethod
    def for_request(cls, request: CompletionRequest) -> ResponseContext:
        """A fresh id (`chatcmpl-…` or `cmpl-…`) and timestamp for `request`."""
        prefix = "chatcmpl" if request.kind == "chat" else "cmpl"
        return cls(request.kind, f"{prefix}-{uuid.uuid4().hex}", int(time.time()), request.model)

    def envelope(self, choices: list[dict[str, Any]], streaming: bool,
                 usage: dict[str, int] | None = None) -> dict[str, Any]:
        """Wrap choices in the OpenAI object for this kind (full body or stream chunk)."""
        if self.kind == "chat":
            obj = "chat.completion.chunk" if streaming else "chat.completion"
        else:
            obj = "text_completion"
        body: dict[str, Any] = {"id": self.id, "object": obj, "created": self.created, "model": self.model,
                                "system_fingerprint": FINGERPRINT, "choices": choices}
        if usage is not None:
            body["usage"] = usage
        return body

    def choice(self, text: str | None, finish_reason: str | None, streaming: bool) -> dict[str, Any]:
        """One choice: `text` for completions, `message` (full) or `delta` (chunk) for chat."""
        choice: dict[str, Any] = {"index": 0, "logprobs": None, "finish_reason": finish_reason}
        if self.kind == "text":
            choice["text"] = text or ""
        elif streaming:
            choice["delta"] = {} if text is None else {"content": text}
        else:
            choice["message"] = {"role": "assistant", "content": text}
        return choice


def usage_of(request: CompletionRequest, completion_tokens: int) -> dict[str, int]:
    """OpenAI `usage` counts."""
    return {"prompt_tokens": request.prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": request.prompt_tokens + completion_tokens}


def json_object(raw: bytes) -> dict[str, Any]:
    """Parse a request body that must be a JSON object (400 otherwise)."""
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise ApiError(HTTPStatus.BAD_REQUEST, f"invalid JSON body: {exc}") from None
    if not isinstance(value, dict):
        raise ApiError(HTTPStatus.BAD_REQUEST, "the request body must be a JSON object")
    return value


def plain_prompt(body: dict[str, Any]) -> str:
    """The text of a `prompt` or of all `messages` (for /tokenize)."""
    if "messages" in body:
        chat_prompt(body)  # validates
        return " ".join(message_text(m)[1] for m in body["messages"])
    return text_prompt(body)[0]
