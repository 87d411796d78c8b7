"""A scripted OpenAI-compatible chat-completions server for the judge's tests: each request's
reply comes from a function of its body; bodies and Authorization headers are recorded."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


class Scripted:
    """A chat-completions server: `decide(request body) -> (status, reply text)`; records requests."""

    def __init__(self, decide):
        self.decide, self.bodies, self.auth = decide, [], []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.bodies.append(body)
                server.auth.append(self.headers.get("Authorization"))
                status, text = server.decide(body)
                payload = json.dumps({"choices": [{"message": {"role": "assistant", "content": text}}],
                                      "usage": {"prompt_tokens": 10, "completion_tokens": 5}} if status == 200
                                     else {"error": {"message": text}}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def prefers_longer(body) -> tuple[int, str]:
    """A judge that names the longer answer, whatever the order: always consistent."""
    text = body["messages"][1]["content"]
    a, b = re.search(r"【回答A】\n(.*)\n\n【回答B】\n(.*)", text, re.S).groups()
    winner = "A" if len(a) > len(b) else "B" if len(b) > len(a) else "tie"
    return 200, json.dumps({"winner": winner, "reason": "更完整"}, ensure_ascii=False)


@pytest.fixture
def server():
    made = []

    def start(decide):
        made.append(Scripted(decide))
        return made[-1]
    yield start
    for s in made:
        s.close()
