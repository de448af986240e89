"""A local HTTP server that speaks DeepSeek's (OpenAI-compatible) chat-completions API.

``POST /chat/completions`` answers according to ``mode``:

- ``picks``: a forced tool call whose arguments are ``{"picks": [...]}`` (``picks`` is
  set by the test), the way DeepSeek answers ``with_structured_output``;
- ``text``: a plain assistant message, no tool call (the model ignored the tool);
- ``bad_args``: a tool call whose arguments are not JSON;
- ``not_json``: a 200 whose body is not JSON at all;
- ``slow``: waits ``delay`` seconds before answering (a timeout for the client);
- ``401`` / ``429`` / ``500``: DeepSeek's error body with that status.

Every request is kept (path, headers, JSON body) so tests can check what was sent.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeDeepSeek:
    """The server and what it should answer next."""

    def __init__(self) -> None:
        self.mode = "picks"
        self.picks: list[dict[str, Any]] = []
        self.arguments: dict[str, Any] | None = None
        self.delay = 3.0
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._server.block_on_close = False  # a slow handler must not hold up teardown
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def reset(
        self,
        mode: str,
        picks: list[dict[str, Any]] | None = None,
        arguments: dict[str, Any] | None = None,
    ) -> None:
        """Answer ``mode`` from now on; ``arguments`` replaces ``{"picks": picks}``."""
        with self._lock:
            self.mode = mode
            self.picks = picks or []
            self.arguments = arguments
            self.requests.clear()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # ------------------------------------------------------------------ answers

    def _completion(self, body: dict[str, Any]) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": ""}
        finish = "tool_calls"
        if self.mode == "text":
            message["content"] = "I think NVDA and TSLA look great today!"
            finish = "stop"
        else:
            tool = body["tools"][0]["function"]["name"]
            payload = self.arguments if self.arguments is not None else {"picks": self.picks}
            arguments = "{picks: NVDA" if self.mode == "bad_args" else json.dumps(payload)
            message["tool_calls"] = [
                {
                    "id": "call_0",
                    "type": "function",
                    "function": {"name": tool, "arguments": arguments},
                }
            ]
        return {
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "deepseek-chat"),
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
        }

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                with fake._lock:
                    fake.requests.append(
                        {
                            "path": self.path,
                            "headers": {k.lower(): v for k, v in self.headers.items()},
                            "body": body,
                        }
                    )
                    mode = fake.mode
                if mode == "slow":
                    time.sleep(fake.delay)
                if mode in ("401", "429", "500"):
                    error = {"error": {"message": f"test error {mode}", "type": "test"}}
                    self._send(int(mode), json.dumps(error).encode())
                elif mode == "not_json":
                    self._send(200, b"<html>gateway hiccup</html>")
                else:
                    self._send(200, json.dumps(fake._completion(body)).encode())

            def _send(self, status: int, data: bytes) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout): nothing to answer

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        return Handler
