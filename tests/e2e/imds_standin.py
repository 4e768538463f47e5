"""A minimal IMDSv2 stand-in for proving the VM's forwarding to 169.254.169.254.

Only until the shared fake (tests/fakes/imds.py) lands: the harness takes any object with the
`ImdsEndpoint` shape, so the switch is one line in tests/e2e/conftest.py. It follows IMDSv2's
rules that matter to a guest: a token from PUT /latest/api/token (TTL header required), every GET
needs a valid token (401 otherwise), spot/instance-action is 404 until a notice is scheduled.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOKEN_PATH = "/latest/api/token"
TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
TOKEN_HEADER = "X-aws-ec2-metadata-token"


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class InstanceFacts:
    """What the stand-in serves about the instance."""

    instance_id: str = "i-0e2e0000000000001"
    region: str = "us-east-1"
    role: str = "decon-node"
    access_key_id: str = "testing"
    secret_access_key: str = "testing"
    session_token: str = "testing"
    spot_action: dict[str, str] | None = None
    tokens: dict[str, float] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)


class _Handler(BaseHTTPRequestHandler):
    server: _ImdsHttpServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        return

    def _reply(self, status: int, body: str = "", content_type: str = "text/plain") -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_PUT(self) -> None:  # noqa: N802
        facts = self.server.facts
        facts.requests.append(f"PUT {self.path}")
        if self.path != TOKEN_PATH:
            self._reply(404)
            return
        if self.headers.get("X-Forwarded-For"):
            self._reply(403)
            return
        try:
            ttl = int(self.headers.get(TTL_HEADER, ""))
        except ValueError:
            self._reply(400)
            return
        if not 1 <= ttl <= 21600:
            self._reply(400)
            return
        token = secrets.token_urlsafe(32)
        facts.tokens[token] = time.monotonic() + ttl
        self._reply(200, token)

    def do_GET(self) -> None:  # noqa: N802
        facts = self.server.facts
        facts.requests.append(f"GET {self.path}")
        expiry = facts.tokens.get(self.headers.get(TOKEN_HEADER, ""))
        if expiry is None or expiry < time.monotonic():
            self._reply(401)
            return
        body = self._lookup(self.path.split("?", 1)[0], facts)
        if body is None:
            self._reply(404)
        else:
            self._reply(200, body)

    @staticmethod
    def _lookup(path: str, facts: InstanceFacts) -> str | None:
        now = datetime.now(UTC)
        creds = json.dumps(
            {
                "Code": "Success",
                "LastUpdated": _iso(now),
                "Type": "AWS-HMAC",
                "AccessKeyId": facts.access_key_id,
                "SecretAccessKey": facts.secret_access_key,
                "Token": facts.session_token,
                "Expiration": _iso(now + timedelta(hours=6)),
            }
        )
        table = {
            "/latest/meta-data/instance-id": facts.instance_id,
            "/latest/meta-data/placement/region": facts.region,
            "/latest/meta-data/placement/availability-zone": facts.region + "a",
            "/latest/meta-data/iam/security-credentials/": facts.role,
            f"/latest/meta-data/iam/security-credentials/{facts.role}": creds,
            "/latest/dynamic/instance-identity/document": json.dumps(
                {"instanceId": facts.instance_id, "region": facts.region}
            ),
        }
        if facts.spot_action is not None:
            table["/latest/meta-data/spot/instance-action"] = json.dumps(facts.spot_action)
        return table.get(path)


class _ImdsHttpServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, facts: InstanceFacts) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.facts = facts


class ImdsStandin:
    """IMDSv2 on 127.0.0.1:<port>, in a background thread."""

    def __init__(self, facts: InstanceFacts | None = None) -> None:
        self.facts = facts or InstanceFacts()
        self._server = _ImdsHttpServer(self.facts)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def schedule_spot_notice(self, action: str, at: datetime) -> None:
        """From now on spot/instance-action answers {"action": action, "time": at}."""
        self.facts.spot_action = {"action": action, "time": _iso(at)}

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
