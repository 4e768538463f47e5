"""IMDSv2 client: the instance metadata the spot watcher and the job need.

IMDSv2 only: every GET carries a session token obtained with `PUT /latest/api/token`; there is
no IMDSv1 fallback (a node that enforces IMDSv2 rejects token-less requests, and one that does
not should not be taught to accept them). The token is reused until shortly before it expires
and refreshed once when IMDS answers 401. Requests never go through a proxy (the link-local
endpoint must not leak to an HTTP_PROXY) and use short timeouts, because a hanging metadata
service must not stall the two-minute spot window.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests
from urllib3.util import Timeout

from decon.eventlog import parse_iso_utc
from decon.node.state import SpotNotice

DEFAULT_ENDPOINT = "http://169.254.169.254"
TOKEN_PATH = "/latest/api/token"
TOKEN_TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
TOKEN_HEADER = "X-aws-ec2-metadata-token"
SPOT_ACTIONS = ("terminate", "stop", "hibernate")


class ImdsError(Exception):
    """IMDS could not answer usefully. `kind` names the failure for logs and status lines."""

    kind = "error"

    def __init__(self, message: str, path: str = "") -> None:
        super().__init__(message)
        self.path = path


class ImdsUnreachable(ImdsError):
    """No HTTP answer: connection refused, no route, DNS, or a reset."""

    kind = "unreachable"


class ImdsTimeout(ImdsUnreachable):
    """Connected (or tried to) but no answer within the timeout: IMDS hangs."""

    kind = "timeout"


class ImdsHttpError(ImdsError):
    """IMDS answered with an unexpected HTTP status (5xx, 401 after a refresh, 403, ...)."""

    kind = "http"

    def __init__(self, message: str, path: str = "", status: int = 0) -> None:
        super().__init__(message, path)
        self.status = status


class ImdsBadJson(ImdsError):
    """A document that should be JSON (with known fields) is not."""

    kind = "bad_json"


class ImdsBadTime(ImdsError):
    """A notice whose time field is not an ISO 8601 UTC time."""

    kind = "bad_time"


@dataclass(frozen=True)
class RebalanceNotice:
    """An EC2 rebalance recommendation: the instance is at elevated risk of interruption."""

    notice_time: str  # ISO 8601 UTC, as IMDS gives it


def parse_imds_time(text: Any, path: str = "") -> dt.datetime:
    """Parse IMDS's `2026-11-23T14:30:12Z` (UTC assumed when no zone is given)."""
    if not isinstance(text, str) or not text:
        raise ImdsBadTime(f"{path}: time is not a string: {text!r}", path)
    try:
        return parse_iso_utc(text)
    except ValueError:
        raise ImdsBadTime(f"{path}: not an ISO 8601 time: {text!r}", path) from None


class ImdsClient:
    """A small IMDSv2 client. `get(path)` reads `/latest/meta-data/<path>`; None means 404."""

    # Refresh the token when less than this share of its TTL (capped at 60 s) is left.
    REFRESH_SHARE = 0.1
    REFRESH_CAP_SECONDS = 60.0

    def __init__(
        self,
        endpoint: str = DEFAULT_ENDPOINT,
        token_ttl: int = 21600,
        timeout: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 1 <= token_ttl <= 21600:
            raise ValueError(f"token_ttl must be in 1..21600, got {token_ttl}")
        self.endpoint = endpoint.rstrip("/")
        self.token_ttl = token_ttl
        # `timeout` bounds one request as a whole (connect + answer); the connect part is short
        # because the link-local endpoint answers at once or not at all.
        self.timeout = Timeout(connect=min(1.0, timeout), read=timeout, total=timeout)
        self._clock = clock
        self._token: str | None = None
        self._token_expires = 0.0
        self.token_requests = 0  # how many PUTs were made (observability and tests)
        self._session = requests.Session()
        self._session.trust_env = False  # no HTTP(S)_PROXY, no .netrc for the metadata service
        self._session.proxies = {}

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> ImdsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- token ---------------------------------------------------------------------------------

    def token(self) -> str:
        """The current session token, fetched or refreshed when needed."""
        margin = min(self.REFRESH_CAP_SECONDS, self.token_ttl * self.REFRESH_SHARE)
        if self._token is None or self._clock() >= self._token_expires - margin:
            self._fetch_token()
        assert self._token is not None
        return self._token

    def invalidate_token(self) -> None:
        self._token = None

    def _fetch_token(self) -> None:
        self._token = None
        started = self._clock()
        self.token_requests += 1
        resp = self._send("PUT", TOKEN_PATH, {TOKEN_TTL_HEADER: str(self.token_ttl)})
        if resp.status_code != 200:
            raise ImdsHttpError(
                f"{TOKEN_PATH}: token request failed: HTTP {resp.status_code}",
                TOKEN_PATH,
                resp.status_code,
            )
        token = resp.text.strip()
        if not token:
            raise ImdsHttpError(f"{TOKEN_PATH}: empty token", TOKEN_PATH, resp.status_code)
        try:
            ttl = int(resp.headers.get(TOKEN_TTL_HEADER, self.token_ttl))
        except ValueError:
            ttl = self.token_ttl
        self._token = token
        self._token_expires = started + min(ttl, self.token_ttl)

    # --- requests ------------------------------------------------------------------------------

    def get(self, path: str) -> str | None:
        """GET `/latest/meta-data/<path>` with the token; None on 404, ImdsError otherwise."""
        full = "/latest/meta-data/" + path.lstrip("/")
        resp = self._send("GET", full, {TOKEN_HEADER: self.token()})
        if resp.status_code == 401:
            # Token expired or IMDS restarted: refresh once, never loop.
            self._fetch_token()
            resp = self._send("GET", full, {TOKEN_HEADER: self.token()})
        if resp.status_code == 404:
            return None
        if resp.status_code != 200:
            raise ImdsHttpError(f"{path}: HTTP {resp.status_code}", path, resp.status_code)
        return resp.text

    def get_json(self, path: str) -> dict[str, Any] | None:
        """GET a JSON object; None on 404, ImdsBadJson when it is not a JSON object."""
        text = self.get(path)
        if text is None:
            return None
        try:
            data = json.loads(text)
        except ValueError:
            raise ImdsBadJson(f"{path}: not JSON: {text[:80]!r}", path) from None
        if not isinstance(data, dict):
            raise ImdsBadJson(f"{path}: expected a JSON object, got {text[:80]!r}", path)
        return data

    def _send(self, method: str, path: str, headers: dict[str, str]) -> requests.Response:
        url = self.endpoint + path
        try:
            return self._session.request(
                method, url, headers=headers, timeout=self.timeout, allow_redirects=False
            )
        except requests.Timeout:
            raise ImdsTimeout(f"{path}: no answer from {self.endpoint} in time", path) from None
        except requests.RequestException as exc:
            reason = type(exc).__name__
            if isinstance(exc, requests.ConnectionError):
                reason = "connection failed"
            raise ImdsUnreachable(f"{path}: {self.endpoint} unreachable ({reason})", path) from None

    # --- documents -----------------------------------------------------------------------------

    def instance_action(self) -> SpotNotice | None:
        """`spot/instance-action`: the pending spot interruption, or None."""
        path = "spot/instance-action"
        data = self.get_json(path)
        if data is None:
            return None
        action = data.get("action")
        if action not in SPOT_ACTIONS:
            raise ImdsBadJson(f"{path}: unknown action {action!r}", path)
        when = parse_imds_time(data.get("time"), path)
        return SpotNotice(action=action, time=_iso(when))

    def rebalance_recommendation(self) -> RebalanceNotice | None:
        """`events/recommendations/rebalance`: the rebalance recommendation, or None."""
        path = "events/recommendations/rebalance"
        data = self.get_json(path)
        if data is None:
            return None
        when = parse_imds_time(data.get("noticeTime"), path)
        return RebalanceNotice(notice_time=_iso(when))

    def instance_id(self) -> str | None:
        return _strip(self.get("instance-id"))

    def ami_launch_index(self) -> int | None:
        text = _strip(self.get("ami-launch-index"))
        if text is None:
            return None
        try:
            return int(text)
        except ValueError:
            raise ImdsBadJson(f"ami-launch-index: not an integer: {text!r}") from None

    def region(self) -> str | None:
        return _strip(self.get("placement/region"))

    def iam_role(self) -> str | None:
        """The instance profile's role name (first line of the listing), or None."""
        text = _strip(self.get("iam/security-credentials/"))
        return text.splitlines()[0].strip() if text else None

    def security_credentials(self, role: str | None = None) -> dict[str, Any] | None:
        """The role's temporary credentials (AccessKeyId, SecretAccessKey, Token, Expiration)."""
        role = role or self.iam_role()
        if role is None:
            return None
        data = self.get_json(f"iam/security-credentials/{role}")
        if data is not None and not {"AccessKeyId", "SecretAccessKey"} <= data.keys():
            raise ImdsBadJson(f"iam/security-credentials/{role}: missing keys", role)
        return data


def _iso(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _strip(text: str | None) -> str | None:
    if text is None:
        return None
    return text.strip() or None
