"""A local HTTP server standing in for Financial Modeling Prep's company screener."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


class FakeFmp:
    """``GET /stable/company-screener`` answers ``rows`` as JSON (or ``status`` with an error)."""

    def __init__(self, rows: list[dict[str, Any]], status: int = 200) -> None:
        self.rows = rows
        self.status = status
        self.queries: list[dict[str, str]] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                parts = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                fake.queries.append({"path": parts.path, **query})
                ok = parts.path == "/stable/company-screener" and fake.status == 200
                body = fake.rows if ok else {"Error Message": "Invalid API KEY."}
                data = json.dumps(body).encode()
                self.send_response(200 if ok else fake.status or 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        return Handler
