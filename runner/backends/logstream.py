"""Decoding Docker's multiplexed log stream (8-byte frame headers) without per-line overhead.

For containers without a TTY the engine frames output as `[stream, 0, 0, 0, size(4, big endian)]`
+ payload. Frames are not lines; callers that need lines (masking, prefixes) split themselves.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from runner.backends.transport import Response

_HEADER = struct.Struct(">BxxxL")
BULK_READ = 1 << 20


def iter_frames(response: Response, chunk_size: int = 1 << 16, *, follow: bool = True) -> Iterator[tuple[int, bytes]]:
    """(stream, payload) pairs: stream 1 is stdout, 2 is stderr."""
    for batch in _batches(response, chunk_size, follow):
        yield from batch


def iter_payload(response: Response, chunk_size: int = 1 << 16, *, follow: bool = True) -> Iterator[bytes]:
    """Only the bytes, stdout and stderr interleaved as the engine recorded them, joined per read."""
    for batch in _batches(response, chunk_size, follow):
        if batch:
            yield b"".join(payload for _, payload in batch)


def _batches(response: Response, chunk_size: int, follow: bool) -> Iterator[list[tuple[int, bytes]]]:
    """Every complete frame of each read. Not following, reads fill 1 MiB blocks (far fewer calls)."""
    buffer = bytearray()
    try:
        while True:
            chunk = response.read_chunk(chunk_size) if follow else response.read_block(BULK_READ)
            if not chunk:
                break
            buffer += chunk
            frames, offset = [], 0
            while len(buffer) - offset >= _HEADER.size:
                stream, size = _HEADER.unpack_from(buffer, offset)
                end = offset + _HEADER.size + size
                if end > len(buffer):
                    break
                frames.append((stream, bytes(buffer[offset + _HEADER.size:end])))
                offset = end
            del buffer[:offset]
            yield frames
    finally:
        response.close()


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
