"""A verification centre for the tests: a real HTTP server on a free port speaking the protocol HttpSource
speaks, which a test can take down (503), make slow (past the client's timeout) or make talk nonsense."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Centre:
    def __init__(self, people: dict[str, dict[str, Any]] | None = None, data_as_of: str = "2026-11-01") -> None:
        self.people = people or {}
        self.data_as_of = data_as_of
        self.mode = "up"  # up | down | slow | garbage
        self.requests = 0
        centre = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                centre.requests += 1
                asked = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))["person_keys"]
                if centre.mode == "slow":
                    time.sleep(1.0)
                if centre.mode == "down":
                    self._reply(503, b'{"title": "maintenance"}')
                elif centre.mode == "garbage":
                    self._reply(200, b"<html>gateway</html>")
                else:
                    found = {key: centre.people[key] for key in asked if key in centre.people}
                    self._reply(200, json.dumps({"data_as_of": centre.data_as_of, "people": found}).encode())

            def _reply(self, status: int, body: bytes) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timed out)
                    pass

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/v1/verifications"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
