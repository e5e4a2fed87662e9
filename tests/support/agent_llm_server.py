"""A real HTTP server on 127.0.0.1 that speaks the OpenAI chat-completions API (plain and streamed) and
Anthropic's messages API, replaying scripted replies. Tests see every request it received.

A script item is `{"status": 429}` (an error answer, with `"message"` its text), or
`{"text": str, "tool_calls": [(name, args)]}` where args is a dict (sent as JSON) or a raw string (sent as
is, e.g. broken JSON); `"delay": seconds` makes the server wait that long first (a client with a shorter
timeout sees a timeout). A script may instead
be a function from the request body to such an item."""

from __future__ import annotations

import contextlib
import itertools
import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Item = dict[str, Any]


def _args(raw: Any) -> str:
    return raw if isinstance(raw, str) else json.dumps(raw)


class ScriptedLLMServer:
    def __init__(self, script: list[Item] | Callable[[dict[str, Any]], Item]) -> None:
        self.script = script
        self.requests: list[dict[str, Any]] = []
        self._ids = itertools.count()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def base_url(self) -> str:
        return f"{self.root}/v1"

    def __enter__(self) -> ScriptedLLMServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def bodies(self) -> list[dict[str, Any]]:
        return [r["body"] for r in self.requests]

    def _next(self, body: dict[str, Any]) -> Item | None:
        with self._lock:
            if callable(self.script):
                return self.script(body)
            return self.script.pop(0) if self.script else None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _json(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                headers = {k.lower(): v for k, v in self.headers.items()}
                server.requests.append({"path": self.path, "headers": headers, "body": body})
                item = server._next(body)
                if item is not None and "delay" in item:
                    time.sleep(item["delay"])
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # a client that timed out hung up
                    self._answer(body, item)

            def _answer(self, body: dict[str, Any], item: Item | None) -> None:
                if item is None:
                    self._json(400, {"error": {"message": "script exhausted", "type": "invalid_request_error"}})
                elif "status" in item:
                    self._json(item["status"], {"error": {"message": item.get("message", "slow down"),
                                                          "type": "rate_limit_error"}}, {"Retry-After": "0"})
                elif self.path.endswith("/messages"):
                    self._anthropic(body, item)
                elif body.get("stream"):
                    self._stream(body, item)
                else:
                    self._openai(body, item)

            def _calls(self, item: Item) -> list[tuple[str, str, str]]:
                return [(f"call_{next(server._ids)}", name, _args(args)) for name, args in item.get("tool_calls", [])]

            def _openai(self, body: dict[str, Any], item: Item) -> None:
                calls = self._calls(item)
                message: dict[str, Any] = {"role": "assistant", "content": item.get("text")}
                if calls:
                    message["tool_calls"] = [{"id": i, "type": "function", "function": {"name": n, "arguments": a}}
                                             for i, n, a in calls]
                self._json(200, {"id": "chatcmpl-1", "object": "chat.completion", "created": 0,
                                 "model": body["model"],
                                 "choices": [{"index": 0, "message": message,
                                              "finish_reason": "tool_calls" if calls else "stop"}],
                                 "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}})

            def _stream(self, body: dict[str, Any], item: Item) -> None:
                base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 0, "model": body["model"]}
                chunks = [{"role": "assistant", "content": ""}]
                text = item.get("text") or ""
                chunks += [{"content": text[i:i + 7]} for i in range(0, len(text), 7)]
                for index, (cid, name, args) in enumerate(self._calls(item)):
                    chunks.append({"tool_calls": [{"index": index, "id": cid, "type": "function",
                                                   "function": {"name": name, "arguments": ""}}]})
                    half = len(args) // 2
                    chunks += [{"tool_calls": [{"index": index, "function": {"arguments": part}}]}
                               for part in (args[:half], args[half:])]
                events = [{**base, "choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in chunks]
                events.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
                events.append({**base, "choices": [],
                               "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}})
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                for event in events:
                    self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()

            def _anthropic(self, body: dict[str, Any], item: Item) -> None:
                content: list[dict[str, Any]] = [{"type": "text", "text": item["text"]}] if item.get("text") else []
                content += [{"type": "tool_use", "id": i, "name": n, "input": json.loads(a)}
                            for i, n, a in self._calls(item)]
                stop = "tool_use" if item.get("tool_calls") else "end_turn"
                self._json(200, {"id": "msg_1", "type": "message", "role": "assistant", "model": body["model"],
                                 "content": content, "stop_reason": stop, "stop_sequence": None,
                                 "usage": {"input_tokens": 50, "output_tokens": 10}})

        return Handler
