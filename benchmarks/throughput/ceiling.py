"""The model server's own ceiling: requests/s it answers when the client costs almost nothing.

The client is raw asyncio streams on keep-alive connections, one per concurrent session,
each sending the same pre-encoded chat request a turn with three runs of history sends (the
SDK's work is not in it: that cost belongs to the sessions, kern's and the floor's alike).
If a benchmark batch comes near this figure, the server is what limits it.
"""

from __future__ import annotations

import asyncio
import json
import time
from urllib.parse import urlsplit


def turn_request(host: str, port: int, path: str) -> bytes:
    """One chat completion request as the SDK would send it for a turn with history."""
    messages = []
    for n in range(3):
        messages.append({"role": "user", "content": f"s0 turn {n}"})
        messages.append({"role": "assistant", "content": f"[scripted model] an answer to {n}"})
    messages.append({"role": "user", "content": "s0 turn 3"})
    body = json.dumps({"model": "bench", "messages": messages}).encode()
    head = (
        f"POST {path}/chat/completions HTTP/1.1\r\nHost: {host}:{port}\r\n"
        "Content-Type: application/json\r\nAccept: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("latin-1") + body


async def _session(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes, count: int
) -> None:
    for _ in range(count):
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"the model server answered {head[:40]!r}")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        await reader.readexactly(length)


async def measure(base_url: str, concurrency: int, requests: int) -> float:
    """Requests per second over ``requests`` requests (at least one per connection) sent
    by ``concurrency`` connections at once, opened (and warmed) before the clock starts."""
    parts = urlsplit(base_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    request = turn_request(host, port, parts.path.rstrip("/"))
    each = max(1, requests // concurrency)
    streams = await asyncio.gather(
        *(asyncio.open_connection(host, port) for _ in range(concurrency))
    )
    try:
        await asyncio.gather(*(_session(r, w, request, 1) for r, w in streams))
        began = time.perf_counter()
        await asyncio.gather(*(_session(r, w, request, each) for r, w in streams))
        return each * concurrency / (time.perf_counter() - began)
    finally:
        for _, writer in streams:
            writer.close()
