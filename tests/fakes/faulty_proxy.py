"""A fault-injecting HTTP proxy on 127.0.0.1 in front of an S3 endpoint (the moto server).

    proxy = FaultyProxy(s3.endpoint).start()
    proxy.fail("503", method="PUT", key_contains="manifest.json", times=2)
    proxy.fail("reset", key_contains="decon-run.log")          # RST instead of a response
    proxy.fail("truncate", method="GET", key_contains="part-2/")  # half the body, then RST
    proxy.fail("503", method="PUT", key_contains="partNumber=2")  # matches path + "?" + query
    proxy.fail("delay", seconds=2.0, key_contains="_SUCCESS")   # forwarded 2 s late
    proxy.fail("reset", key_contains="uploadId=", every=3, times=-1)  # every 3rd UploadPart
    client = boto3.client("s3", endpoint_url=proxy.endpoint, ...)
    ...
    assert [r.fault for r in proxy.requests if ...] == [...]
    proxy.stop()

Rules are checked in the order they were added; the first rule that matches a request, has
`times` left (-1 = forever) and whose turn it is (`every=N`: only each Nth request the rule
matches, counting from its creation) decides its fate. Everything else is forwarded unchanged,
with the original Host header so SigV4 signatures stay valid. Fixture: `faulty_proxy` (uses `s3`).
"""

from __future__ import annotations

import http.client
import socket
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse

import pytest

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
}

ERRORS = {
    "500": (500, "InternalError", "We encountered an internal error. Please try again."),
    "503": (503, "SlowDown", "Please reduce your request rate."),
    "403": (403, "AccessDenied", "Access Denied"),
}


ACTIONS = (*ERRORS, "reset", "truncate", "delay")


@dataclass
class FaultRule:
    action: str  # "500" | "503" | "403" | "reset" | "truncate" | "delay"
    method: str | None = "PUT"  # None: any method
    key_contains: str = ""
    times: int = 1  # how many times it fires; -1: forever
    every: int = 1  # fire on every Nth matching request only
    seconds: float = 0.0  # "delay": how long to hold the request before forwarding it
    hits: int = 0  # times fired
    matched: int = 0  # matching requests seen (fired or not)

    def fires(self, method: str, path: str) -> bool:
        """Whether this request matches and it is the rule's turn (counts the match)."""
        if self.times != -1 and self.hits >= self.times:
            return False
        if not ((self.method is None or self.method == method) and self.key_contains in path):
            return False
        self.matched += 1
        if self.matched % self.every:
            return False
        self.hits += 1
        return True


@dataclass
class Seen:
    """One request the proxy saw: its method, unquoted path and what was done to it."""

    method: str
    path: str
    fault: str | None  # None: forwarded
    status: int | None  # the status sent back (None for a reset)


class FaultyProxy:
    def __init__(self, upstream: str) -> None:
        target = urlparse(upstream)
        self.upstream_host = target.hostname or "127.0.0.1"
        self.upstream_port = target.port or 80
        self.rules: list[FaultRule] = []
        self.requests: list[Seen] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def endpoint(self) -> str:
        assert self._server is not None, "proxy not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def fail(
        self,
        action: str,
        *,
        method: str | None = "PUT",
        key_contains: str = "",
        times: int = 1,
        every: int = 1,
        seconds: float = 0.0,
    ) -> FaultRule:
        """Add a rule: the next `times` requests matching `method` and `key_contains` (of
        those, each `every`-th) fail, or with "delay" are held `seconds` and then forwarded."""
        if action not in ACTIONS:
            raise ValueError(f"unknown fault {action!r}")
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        if (action == "delay") != (seconds > 0):
            raise ValueError("seconds > 0 goes with the delay fault, and only with it")
        rule = FaultRule(action, method, key_contains, times, every, seconds)
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()

    def faults(self) -> list[Seen]:
        return [r for r in self.requests if r.fault]

    def start(self) -> FaultyProxy:
        proxy = self

        class Handler(_Handler):
            owner = proxy

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def _decide(self, method: str, path: str) -> FaultRule | None:
        with self._lock:
            for rule in self.rules:
                if rule.fires(method, path):
                    return rule
        return None

    def _record(self, seen: Seen) -> None:
        with self._lock:
            self.requests.append(seen)


class _Handler(BaseHTTPRequestHandler):
    owner: FaultyProxy
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - base signature
        pass

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _handle(self) -> None:
        body = self._body()
        url = urlparse(self.path)
        path = unquote(url.path)
        rule = self.owner._decide(self.command, f"{path}?{url.query}" if url.query else path)
        fault = rule.action if rule else None
        if fault == "delay":
            assert rule is not None
            time.sleep(rule.seconds)
            self._forward(body, path, fault="delay")
        elif fault == "reset":
            self.owner._record(Seen(self.command, path, fault, None))
            self._reset()
        elif fault in ERRORS:
            status, code, message = ERRORS[fault]
            self.owner._record(Seen(self.command, path, fault, status))
            self._send_error_xml(status, code, message)
        else:
            self._forward(body, path, fault=fault)

    def _forward(self, body: bytes, path: str, fault: str | None = None) -> None:
        """Pass the request upstream; `fault` "truncate" cuts the answer, "delay" is recorded."""
        truncate = fault == "truncate"
        conn = http.client.HTTPConnection(
            self.owner.upstream_host, self.owner.upstream_port, timeout=60
        )
        try:
            conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for name, value in self.headers.items():
                if name.lower() not in HOP_BY_HOP:
                    conn.putheader(name, value)
            if body or self.command in ("PUT", "POST"):
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body or None)
            response = conn.getresponse()
            data = response.read()
        finally:
            conn.close()
        # Recorded before the client hears back, so a test never looks too early.
        self.owner._record(Seen(self.command, path, fault, response.status))
        self.send_response(response.status, response.reason)
        for name, value in response.getheaders():
            if name.lower() not in HOP_BY_HOP:
                self.send_header(name, value)
        length = response.getheader("Content-Length") if self.command == "HEAD" else None
        self.send_header("Content-Length", length or str(len(data)))
        self.end_headers()
        if truncate and self.command != "HEAD":
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self._reset()
        elif self.command != "HEAD":
            self.wfile.write(data)

    def _send_error_xml(self, status: int, code: str, message: str) -> None:
        data = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{code}</Code><Message>{message}</Message>"
            "<RequestId>faulty-proxy</RequestId></Error>"
        ).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _reset(self) -> None:
        """Close with SO_LINGER 0: the client gets a TCP RST instead of a response."""
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        self.connection.close()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle  # noqa: N815


@pytest.fixture
def faulty_proxy(s3) -> Iterator[FaultyProxy]:  # type: ignore[no-untyped-def]
    """A FaultyProxy in front of the per-test moto server."""
    proxy = FaultyProxy(s3.endpoint).start()
    yield proxy
    proxy.stop()
