"""A fake EC2 instance metadata service (IMDSv2 only) with AWS's semantics, for tests and e2e.

Semantics (as the real IMDS with `HttpTokens=required`):

- `PUT /latest/api/token` needs `X-aws-ec2-metadata-token-ttl-seconds: 1..21600`; missing or out
  of range -> 400; a request with `X-Forwarded-For` -> 403. The answer is the token (text/plain)
  with the TTL echoed in the same header.
- `GET /latest/meta-data/...` needs `X-aws-ec2-metadata-token`; missing -> 401 (no IMDSv1),
  unknown or expired -> 401. Tokens expire after their TTL on the server's clock (injectable).
- Other methods -> 405 (GET on the token path, PUT on a metadata path, POST anywhere).
- Unknown paths -> 404; `spot/instance-action` and `events/recommendations/rebalance` are 404
  until a test sets them.

Served documents: instance-id, ami-launch-index, instance-type, placement/region,
placement/availability-zone, local-ipv4, spot/instance-action, events/recommendations/rebalance,
iam/security-credentials/ (role listing) and iam/security-credentials/<role> (fake credentials).

Python API (tests): `FakeImds(clock=...)` then `.start()`; `.url`; `set_instance_action(action,
time)`, `clear_instance_action()`, `set_rebalance(notice_time)`, `clear_rebalance()`,
`fail_next(n, status=500)`, `delay_next(n, seconds)` (hang), `bad_json(path, body)`,
`stop()` (connection refused from then on), `start()` again on the same port, `requests` (log of
`Request(method, path, status, token, at)`, `at` the arrival time on the fake's clock), `reset()`.

Standalone (to serve a VM or a manual run from a shell):

    python tests/fakes/imds.py --host 127.0.0.1 --port 8169 --control-port 8170 \\
        [--instance-id i-0123456789abcdef0] [--launch-index 0] [--region us-east-1]

Control API (JSON bodies, on --control-port, so it keeps answering while IMDS "refuses"):

    POST   /_fake/spot        {"action": "terminate|stop|hibernate", "time": "2026-11-23T14:32:12Z"}
                              or {"action": ..., "in_seconds": 120} (default: terminate in 120 s)
    DELETE /_fake/spot        clear the instance-action (404 again)
    POST   /_fake/rebalance   {"noticeTime": "..."} or {} for now
    DELETE /_fake/rebalance
    POST   /_fake/fail        {"count": 3, "status": 500}   the next N IMDS requests fail
    POST   /_fake/delay       {"count": 2, "seconds": 5}    the next N IMDS requests hang first
    POST   /_fake/bad-json    {"path": "spot/instance-action", "body": "{not json"}
    POST   /_fake/metadata    {"instance-id": "i-...", "ami-launch-index": "1", ...}  set documents
    POST   /_fake/imds/stop   stop the IMDS listener (connections refused)
    POST   /_fake/imds/start  start it again on the same port
    POST   /_fake/reset       clear notices, faults and the request log
    GET    /_fake/requests    the request log: [{"method", "path", "status", "token", "at"}]
    GET    /_fake/state       notices, pending faults, listener state

Every control call answers 200 with the resulting state as JSON (400 on a bad body).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import secrets
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOKEN_PATH = "/latest/api/token"
META_PREFIX = "/latest/meta-data/"
TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
TOKEN_HEADER = "X-aws-ec2-metadata-token"
SPOT_PATH = "spot/instance-action"
REBALANCE_PATH = "events/recommendations/rebalance"


def iso(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def utc_in(seconds: float) -> str:
    return iso(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds))


@dataclass
class Request:
    method: str
    path: str
    status: int
    token: bool  # whether a session token header was sent
    at: float = 0.0  # arrival time on the fake's clock


@dataclass
class FakeCredentials:
    role: str = "decon-node"
    access_key_id: str = "ASIAFAKEFAKEFAKEFAKE"
    secret_access_key: str = "fake-secret-access-key"
    token: str = "fake-session-token"

    def document(self) -> dict[str, str]:
        return {
            "Code": "Success",
            "LastUpdated": utc_in(0),
            "Type": "AWS-HMAC",
            "AccessKeyId": self.access_key_id,
            "SecretAccessKey": self.secret_access_key,
            "Token": self.token,
            "Expiration": utc_in(6 * 3600),
        }


@dataclass
class _Faults:
    fail_count: int = 0
    fail_status: int = 500
    delay_count: int = 0
    delay_seconds: float = 0.0
    bad_json: dict[str, str] = field(default_factory=dict)  # path -> body served instead


class FakeImds:
    """The fake service. Thread-safe; one listener that can be stopped and started again."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], float] = time.monotonic,
        instance_id: str = "i-0fake0000000000001",
        launch_index: int = 0,
        region: str = "us-east-1",
        credentials: FakeCredentials | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.clock = clock
        self.credentials = credentials or FakeCredentials()
        self.metadata: dict[str, str] = {
            "instance-id": instance_id,
            "ami-launch-index": str(launch_index),
            "instance-type": "c7i.large",
            "placement/region": region,
            "placement/availability-zone": region + "a",
            "local-ipv4": "10.0.0.10",
        }
        self.instance_action: dict[str, str] | None = None
        self.rebalance: dict[str, str] | None = None
        self.tokens: dict[str, float] = {}  # token -> expiry on self.clock
        self.requests: list[Request] = []
        self._faults = _Faults()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle -----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> FakeImds:
        """Listen (again) on `port` (a free one the first time when 0)."""
        if self._server is not None:
            return self
        server = ThreadingHTTPServer((self.host, self.port), _make_handler(self))
        server.daemon_threads = True
        server.block_on_close = False
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close the listener: clients get 'connection refused' until `start()`."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def __enter__(self) -> FakeImds:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- controls ------------------------------------------------------------------------------

    def set_instance_action(self, action: str = "terminate", time: str | None = None) -> None:
        with self._lock:
            self.instance_action = {"action": action, "time": time or utc_in(120)}

    def clear_instance_action(self) -> None:
        with self._lock:
            self.instance_action = None

    def set_rebalance(self, notice_time: str | None = None) -> None:
        with self._lock:
            self.rebalance = {"noticeTime": notice_time or utc_in(0)}

    def clear_rebalance(self) -> None:
        with self._lock:
            self.rebalance = None

    def fail_next(self, count: int, status: int = 500) -> None:
        """The next `count` requests (any path, token PUTs included) answer `status`."""
        with self._lock:
            self._faults.fail_count = count
            self._faults.fail_status = status

    def delay_next(self, count: int, seconds: float) -> None:
        """The next `count` requests wait `seconds` before answering (a hanging IMDS)."""
        with self._lock:
            self._faults.delay_count = count
            self._faults.delay_seconds = seconds

    def bad_json(self, path: str, body: str = "{not json") -> None:
        """Serve `body` for metadata `path` (e.g. spot/instance-action) until `reset()`."""
        with self._lock:
            self._faults.bad_json[path] = body

    def expire_tokens(self) -> None:
        """Forget every issued token (as after an IMDS restart): the next GET gets 401."""
        with self._lock:
            self.tokens.clear()

    def reset(self) -> None:
        with self._lock:
            self.instance_action = None
            self.rebalance = None
            self._faults = _Faults()
            self.requests.clear()

    def count(self, method: str | None = None, path: str | None = None) -> int:
        with self._lock:
            return sum(
                1
                for r in self.requests
                if (method is None or r.method == method) and (path is None or r.path == path)
            )

    def state(self) -> dict[str, Any]:
        with self._lock:
            return {
                "running": self.running,
                "url": self.url,
                "instance_action": self.instance_action,
                "rebalance": self.rebalance,
                "faults": asdict(self._faults),
                "metadata": dict(self.metadata),
                "requests": len(self.requests),
            }

    # --- request handling (called from handler threads) ----------------------------------------

    def handle(self, method: str, path: str, headers: Any) -> tuple[int, dict[str, str], bytes]:
        arrived = self.clock()
        with self._lock:
            delay = 0.0
            if self._faults.delay_count > 0:
                self._faults.delay_count -= 1
                delay = self._faults.delay_seconds
        if delay:
            time.sleep(delay)
        with self._lock:
            status, extra, body = self._answer(method, path, headers)
            self.requests.append(Request(method, path, status, TOKEN_HEADER in headers, arrived))
        return status, extra, body

    def _answer(self, method: str, path: str, headers: Any) -> tuple[int, dict[str, str], bytes]:
        path = path.split("?", 1)[0]
        if self._faults.fail_count > 0:
            self._faults.fail_count -= 1
            return self._faults.fail_status, {}, b"Internal Server Error"
        if path == TOKEN_PATH:
            if method != "PUT":
                return 405, {}, b"Method Not Allowed"
            if "X-Forwarded-For" in headers:
                return 403, {}, b"Forbidden"
            raw = headers.get(TTL_HEADER)
            try:
                ttl = int(raw) if raw is not None else 0
            except ValueError:
                ttl = 0
            if not 1 <= ttl <= 21600:
                return 400, {}, b"Bad Request"
            token = secrets.token_urlsafe(40)
            self.tokens[token] = self.clock() + ttl
            return 200, {TTL_HEADER: str(ttl)}, token.encode()
        if not path.startswith("/latest/"):
            return 404, {}, b"Not Found"
        if method != "GET":
            return 405, {}, b"Method Not Allowed"
        token = headers.get(TOKEN_HEADER)
        expiry = self.tokens.get(token) if token else None
        if expiry is None or self.clock() >= expiry:
            return 401, {}, b"Unauthorized"
        if not path.startswith(META_PREFIX):
            return 404, {}, b"Not Found"
        return self._document(path[len(META_PREFIX) :])

    def _document(self, key: str) -> tuple[int, dict[str, str], bytes]:
        if key in self._faults.bad_json:
            return 200, {}, self._faults.bad_json[key].encode()
        if key == SPOT_PATH and self.instance_action is not None:
            return 200, {}, json.dumps(self.instance_action).encode()
        if key == REBALANCE_PATH and self.rebalance is not None:
            return 200, {}, json.dumps(self.rebalance).encode()
        if key == "iam/security-credentials/":
            return 200, {}, self.credentials.role.encode()
        if key == f"iam/security-credentials/{self.credentials.role}":
            return 200, {}, json.dumps(self.credentials.document(), indent=2).encode()
        if key in self.metadata:
            return 200, {}, self.metadata[key].encode()
        return 404, {}, b"Not Found"


def _make_handler(fake: FakeImds) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "EC2ws"
        sys_version = ""

        def _serve(self) -> None:
            status, extra, body = fake.handle(self.command, self.path, self.headers)
            try:
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                for key, value in extra.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)
            except OSError:
                pass  # the client gave up (its timeout) while we hung

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = _serve

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    return Handler


# --- control API (standalone use) --------------------------------------------------------------


class ControlServer:
    """The HTTP control API of the module docstring, on its own port."""

    def __init__(self, fake: FakeImds, host: str = "127.0.0.1", port: int = 0) -> None:
        self.fake = fake
        self.server = ThreadingHTTPServer((host, port), _make_control_handler(fake))
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://{host}:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def start(self) -> ControlServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def apply_control(fake: FakeImds, method: str, path: str, body: dict[str, Any]) -> Any:
    """Apply one control call; returns the JSON answer. Raises ValueError on a bad request."""
    route = (method, path.split("?", 1)[0].rstrip("/"))
    if route == ("POST", "/_fake/spot"):
        action = body.get("action", "terminate")
        if action not in ("terminate", "stop", "hibernate"):
            raise ValueError(f"unknown action {action!r}")
        when = body.get("time") or utc_in(float(body.get("in_seconds", 120)))
        fake.set_instance_action(action, when)
    elif route == ("DELETE", "/_fake/spot"):
        fake.clear_instance_action()
    elif route == ("POST", "/_fake/rebalance"):
        fake.set_rebalance(body.get("noticeTime"))
    elif route == ("DELETE", "/_fake/rebalance"):
        fake.clear_rebalance()
    elif route == ("POST", "/_fake/fail"):
        fake.fail_next(int(body.get("count", 1)), int(body.get("status", 500)))
    elif route == ("POST", "/_fake/delay"):
        fake.delay_next(int(body.get("count", 1)), float(body.get("seconds", 5)))
    elif route == ("POST", "/_fake/bad-json"):
        fake.bad_json(str(body.get("path", SPOT_PATH)), str(body.get("body", "{not json")))
    elif route == ("POST", "/_fake/metadata"):
        with fake._lock:
            fake.metadata.update({str(k): str(v) for k, v in body.items()})
    elif route == ("POST", "/_fake/imds/stop"):
        fake.stop()
    elif route == ("POST", "/_fake/imds/start"):
        fake.start()
    elif route == ("POST", "/_fake/reset"):
        fake.reset()
    elif route == ("GET", "/_fake/requests"):
        with fake._lock:
            return [asdict(r) for r in fake.requests]
    elif route != ("GET", "/_fake/state"):
        raise LookupError(f"no control route {method} {path}")
    return fake.state()


def _make_control_handler(fake: FakeImds) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw.strip() else {}
                if not isinstance(body, dict):
                    raise ValueError("body must be a JSON object")
                status, answer = 200, apply_control(fake, self.command, self.path, body)
            except LookupError as exc:
                status, answer = 404, {"error": str(exc)}
            except (ValueError, TypeError) as exc:
                status, answer = 400, {"error": str(exc)}
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fake IMDSv2 server with a control API.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8169)
    parser.add_argument("--control-host", default="127.0.0.1")
    parser.add_argument("--control-port", type=int, default=8170)
    parser.add_argument("--instance-id", default="i-0fake0000000000001")
    parser.add_argument("--launch-index", type=int, default=0)
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--role", default="decon-node")
    args = parser.parse_args(argv)
    fake = FakeImds(
        args.host,
        args.port,
        instance_id=args.instance_id,
        launch_index=args.launch_index,
        region=args.region,
        credentials=FakeCredentials(role=args.role),
    ).start()
    control = ControlServer(fake, args.control_host, args.control_port).start()
    print(f"fake IMDS on {fake.url}, control API on {control.url}", flush=True)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            pass
    finally:
        control.stop()
        fake.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
