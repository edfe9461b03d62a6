"""The lab's request loop: bounded in count, and a distribution check that has failed stops
after a few failures instead of waiting out every request's timeout. Loopback only."""

from __future__ import annotations

import socket
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from lab.host import tools
from lab.scenario.traffic import request_loop


class _Backend(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("X-LVS-Backend", "web1")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def answering_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Backend)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def refusing_url() -> str:
    # A port nothing listens on: bound, then closed, so connections are refused at once.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def run(loop: str) -> list[str]:
    tools.require("dash", "curl")
    done = subprocess.run(["dash", "-c", loop], capture_output=True, text=True, timeout=60, check=True)
    return done.stdout.splitlines()


def test_a_failing_check_gives_up_after_its_failures(refusing_url: str) -> None:
    lines = run(request_loop(refusing_url, 50, give_up_after=3))
    assert [line.split(" ")[0] for line in lines] == ["000"] * 3


def test_answers_do_not_count_towards_giving_up(answering_url: str) -> None:
    lines = run(request_loop(answering_url, 12, give_up_after=3))
    assert [(line.split(" ")[0], line.split(" ")[-1]) for line in lines] == [("200", "web1")] * 12


def test_without_giving_up_every_request_is_sent(refusing_url: str) -> None:
    assert len(run(request_loop(refusing_url, 7))) == 7
