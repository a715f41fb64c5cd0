"""Decoding Docker's multiplexed log stream (8-byte frame headers) without per-line overhead.

For containers without a TTY the engine frames output as `[stream, 0, 0, 0, size(4, big endian)]`
+ payload. Frames are not lines; callers that need lines (masking, prefixes) split themselves.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from runner.backends.transport import Response

_HEADER = struct.Struct(">BxxxL")


def iter_frames(response: Response, chunk_size: int = 1 << 16) -> Iterator[tuple[int, bytes]]:
    """(stream, payload) pairs: stream 1 is stdout, 2 is stderr."""
    buffer = bytearray()
    try:
        while True:
            chunk = response.read_chunk(chunk_size)
            if not chunk:
                break
            buffer += chunk
            offset = 0
            while len(buffer) - offset >= _HEADER.size:
                stream, size = _HEADER.unpack_from(buffer, offset)
                end = offset + _HEADER.size + size
                if end > len(buffer):
                    break
                yield stream, bytes(buffer[offset + _HEADER.size:end])
                offset = end
            del buffer[:offset]
    finally:
        response.close()


def iter_payload(response: Response, chunk_size: int = 1 << 16) -> Iterator[bytes]:
    """Only the bytes, stdout and stderr interleaved as the engine recorded them."""
    for _, payload in iter_frames(response, chunk_size):
        yield payload


def iter_lines(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Whole lines (with their newline) from arbitrary chunks; a last partial line is flushed at the end."""
    pending = b""
    for chunk in chunks:
        pending += chunk
        if b"\n" not in chunk:
            continue
        *lines, pending = pending.split(b"\n")
        for line in lines:
            yield line + b"\n"
    if pending:
        yield pending
