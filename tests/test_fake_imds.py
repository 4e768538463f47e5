"""The fake IMDS itself: AWS's IMDSv2 semantics, the control API, standalone use."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from decon.node.imds import ImdsClient, ImdsUnreachable
from fakes.imds import ControlServer, FakeImds

TOKEN = "/latest/api/token"
TTL = "X-aws-ec2-metadata-token-ttl-seconds"


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def imds(clock):
    with FakeImds(clock=clock) as fake:
        yield fake


def put_token(url: str, **headers: str) -> requests.Response:
    return requests.put(url + TOKEN, headers=headers, timeout=2)


@pytest.mark.parametrize("ttl", [None, "0", "21601", "-5", "abc"])
def test_token_ttl_missing_or_out_of_range_is_400(imds, ttl):
    headers = {TTL: ttl} if ttl is not None else {}
    assert put_token(imds.url, **headers).status_code == 400


@pytest.mark.parametrize("ttl", ["1", "21600"])
def test_token_ttl_bounds_accepted_and_echoed(imds, ttl):
    resp = put_token(imds.url, **{TTL: ttl})
    assert resp.status_code == 200
    assert resp.headers[TTL] == ttl
    assert len(resp.text) > 20


def test_x_forwarded_for_on_token_put_is_403(imds):
    assert put_token(imds.url, **{TTL: "60", "X-Forwarded-For": "10.0.0.1"}).status_code == 403


def test_get_without_token_is_401_imdsv2_only(imds):
    assert requests.get(imds.url + "/latest/meta-data/instance-id", timeout=2).status_code == 401


def test_invalid_and_expired_tokens_are_401(imds, clock):
    url = imds.url + "/latest/meta-data/instance-id"
    bad = requests.get(url, headers={"X-aws-ec2-metadata-token": "nope"}, timeout=2)
    assert bad.status_code == 401
    token = put_token(imds.url, **{TTL: "5"}).text
    good = requests.get(url, headers={"X-aws-ec2-metadata-token": token}, timeout=2)
    assert (good.status_code, good.text) == (200, "i-0fake0000000000001")
    clock.now += 5
    expired = requests.get(url, headers={"X-aws-ec2-metadata-token": token}, timeout=2)
    assert expired.status_code == 401


def test_wrong_methods_are_405_and_unknown_paths_404(imds):
    token = put_token(imds.url, **{TTL: "60"}).text
    auth = {"X-aws-ec2-metadata-token": token}
    assert requests.get(imds.url + TOKEN, timeout=2).status_code == 405
    assert requests.post(imds.url + TOKEN, headers={TTL: "60"}, timeout=2).status_code == 405
    meta = imds.url + "/latest/meta-data/instance-id"
    assert requests.put(meta, headers=auth, timeout=2).status_code == 405
    assert requests.post(meta, headers=auth, timeout=2).status_code == 405
    nope = requests.get(imds.url + "/latest/meta-data/nope", headers=auth, timeout=2)
    assert nope.status_code == 404
    assert requests.get(imds.url + "/other", timeout=2).status_code == 404
    spot = requests.get(
        imds.url + "/latest/meta-data/spot/instance-action", headers=auth, timeout=2
    )
    assert spot.status_code == 404


def test_control_api_drives_the_fake(imds):
    control = ControlServer(imds).start()
    try:
        client = ImdsClient(imds.url, 60, 1.0)
        api = control.url + "/_fake"
        state = requests.post(api + "/spot", json={"action": "stop", "in_seconds": 90}, timeout=2)
        assert state.json()["instance_action"]["action"] == "stop"
        assert client.instance_action().action == "stop"
        requests.delete(api + "/spot", timeout=2)
        assert client.instance_action() is None
        requests.post(api + "/rebalance", json={"noticeTime": "2026-11-23T14:00:00Z"}, timeout=2)
        assert client.rebalance_recommendation().notice_time == "2026-11-23T14:00:00Z"
        requests.post(api + "/metadata", json={"ami-launch-index": 3}, timeout=2)
        assert client.ami_launch_index() == 3
        requests.post(api + "/imds/stop", timeout=2)
        with pytest.raises(ImdsUnreachable):
            client.instance_id()
        requests.post(api + "/imds/start", timeout=2)
        assert client.instance_id() == "i-0fake0000000000001"
        log = requests.get(api + "/requests", timeout=2).json()
        first = {k: log[0][k] for k in ("method", "path", "status", "token")}
        assert first == {"method": "PUT", "path": TOKEN, "status": 200, "token": False}
        assert isinstance(log[0]["at"], float)
        bad = requests.post(api + "/spot", json={"action": "reboot"}, timeout=2)
        assert bad.status_code == 400
        assert requests.post(api + "/nope", timeout=2).status_code == 404
        assert requests.post(api + "/reset", timeout=2).json()["requests"] == 0
    finally:
        control.stop()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_standalone_server_with_control_port():
    script = Path(__file__).parent / "fakes" / "imds.py"
    port, control_port = free_port(), free_port()
    proc = subprocess.Popen(
        [sys.executable, str(script), "--port", str(port), "--control-port", str(control_port)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        banner = proc.stdout.readline()
        assert f"127.0.0.1:{port}" in banner and f"127.0.0.1:{control_port}" in banner
        control = f"http://127.0.0.1:{control_port}/_fake"
        requests.post(control + "/spot", json={"action": "terminate"}, timeout=2)
        notice = ImdsClient(f"http://127.0.0.1:{port}", 60, 1.0).instance_action()
        assert notice is not None and notice.action == "terminate"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
