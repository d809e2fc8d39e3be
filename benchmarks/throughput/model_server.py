"""An OpenAI-compatible chat server on asyncio, served by several processes on one port.

Why not kern's scripted server (``kern.testing.scripted_server``): it is a
``ThreadingHTTPServer``, a thread per connection parsing every request with ``http.server``
under one GIL, so at 200 concurrent sessions it spends its time switching threads and
would be what limits a batch (``benchmarks/throughput.py --ceiling-only`` shows both). Here
each worker process runs one event loop that reads only what an SDK request needs
(the request line, ``Content-Length``, the JSON body); the kernel spreads connections over
the workers (``SO_REUSEPORT``). The answer is the scripted server's default one, built with
its public helpers, so both servers put the same text back into the session's history.

It serves ``POST /v1/chat/completions`` (not streamed) and ``GET /v1/models``; anything
else is a 404 in OpenAI's error shape.

    python benchmarks/throughput/model_server.py --workers 2   # first stdout line: base URL
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import multiprocessing
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from kern.testing.scripted_server import count_tokens, default_reply_text, request_messages

_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 411: "Length Required"}


def _error(message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": "invalid_request_error", "param": None}}


def _completion(body: dict[str, Any], number: int) -> dict[str, Any]:
    """The scripted server's default answer (it repeats what the user said), same shape."""
    messages = request_messages(body)
    text = default_reply_text(messages)
    prompt = sum(count_tokens(str(m.get("content") or "")) for m in messages)
    completion = count_tokens(text)
    return {
        "id": f"chatcmpl-{number}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": str(body.get("model") or "scripted"),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        },
    }


class _Connection(asyncio.Protocol):
    """One keep-alive client connection: requests are answered in the order they came."""

    numbers = itertools.count(1)

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while self.transport is not None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
            fields = dict(
                (name.strip().lower(), value.strip())
                for name, _, value in (line.partition(":") for line in head[1:])
            )
            if "chunked" in fields.get("transfer-encoding", "").lower():
                self._send(411, _error("send a Content-Length"), close=True)
                return
            total = end + 4 + int(fields.get("content-length") or 0)
            if len(self.buffer) < total:
                return
            raw = bytes(self.buffer[end + 4 : total])
            del self.buffer[:total]
            status, answer = self._answer(head[0], raw)
            self._send(status, answer, close=fields.get("connection", "").lower() == "close")

    def _answer(self, request_line: str, raw: bytes) -> tuple[int, dict[str, Any]]:
        method, _, rest = request_line.partition(" ")
        path = rest.partition(" ")[0].split("?", 1)[0].rstrip("/")
        if method == "POST" and path.endswith("/chat/completions"):
            try:
                body = json.loads(raw)
            except ValueError:
                return 400, _error("request body is not valid JSON")
            if not isinstance(body, dict):
                return 400, _error("request body must be a JSON object")
            if body.get("stream"):
                return 400, _error("this server does not stream")
            return 200, _completion(body, next(self.numbers))
        if method == "GET" and path.endswith("/models"):
            return 200, {"object": "list", "data": [{"id": "bench", "object": "model"}]}
        return 404, _error(f"unknown request URL: {method} {path}")

    def _send(self, status: int, answer: dict[str, Any], *, close: bool) -> None:
        assert self.transport is not None
        payload = json.dumps(answer, separators=(",", ":")).encode()
        head = (
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n"
            f"{'Connection: close' if close else 'Connection: keep-alive'}\r\n\r\n"
        )
        self.transport.write(head.encode("latin-1") + payload)
        if close:
            self.transport.close()
            self.transport = None

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


async def _serve(host: str, port: int, ready: Any) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Connection, host, port, reuse_port=True, backlog=1024)
    ready.release()
    async with server:
        await server.serve_forever()


def _worker(host: str, port: int, ready: Any) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops its workers
    asyncio.run(_serve(host, port, ready))


def serve(host: str, port: int, workers: int) -> None:
    """Start ``workers`` processes on ``host:port`` (0: a free port), print the base URL,
    then wait until terminated; the workers are stopped on the way out."""
    with socket.socket() as probe:  # holds the port until the workers listen on it
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        probe.bind((host, port))
        port = probe.getsockname()[1]
        context = multiprocessing.get_context("spawn")
        ready = context.Semaphore(0)
        processes = [
            context.Process(target=_worker, args=(host, port, ready), daemon=True)
            for _ in range(workers)
        ]
        for process in processes:
            process.start()
        for _ in processes:
            ready.acquire()

    def _terminate(signum: int, frame: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, _terminate)
    try:
        print(f"http://{host}:{port}/v1", flush=True)
        while all(process.is_alive() for process in processes):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.join(timeout=5)


def start(workers: int, host: str = "127.0.0.1") -> tuple[subprocess.Popen[str], str]:
    """This server in a process of its own (with ``workers`` workers) and its base URL."""
    process = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--workers", str(workers), "--host", host],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    return process, process.stdout.readline().strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2, help="processes serving the port")
    args = parser.parse_args()
    serve(args.host, args.port, args.workers)


if __name__ == "__main__":
    main()
