"""ImdsClient against the fake IMDSv2 server (real HTTP on 127.0.0.1)."""

from __future__ import annotations

import socket

import pytest
import requests

from decon.node.imds import (
    ImdsBadJson,
    ImdsBadTime,
    ImdsClient,
    ImdsHttpError,
    ImdsTimeout,
    ImdsUnreachable,
    RebalanceNotice,
    parse_imds_time,
)
from decon.node.state import SpotNotice
from fakes.imds import FakeImds


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def imds(clock):
    with FakeImds(clock=clock) as fake:
        yield fake


def client_for(fake: FakeImds, clock=None, ttl: int = 300, timeout: float = 10.0) -> ImdsClient:
    kwargs = {"clock": clock} if clock else {}
    return ImdsClient(fake.url, ttl, timeout, **kwargs)


def test_token_flow_put_first_then_gets_with_token(imds, clock):
    client = client_for(imds, clock)
    assert client.instance_id() == "i-0fake0000000000001"
    first, second = imds.requests[:2]
    assert (first.method, first.path, first.status, first.token) == (
        "PUT",
        "/latest/api/token",
        200,
        False,
    )
    assert (second.method, second.path, second.status, second.token) == (
        "GET",
        "/latest/meta-data/instance-id",
        200,
        True,
    )


def test_token_is_reused_for_many_gets(imds, clock):
    client = client_for(imds, clock)
    for _ in range(10):
        assert client.instance_action() is None
        assert client.rebalance_recommendation() is None
    assert imds.count("PUT") == 1
    assert client.token_requests == 1
    assert imds.count("GET") == 20


def test_token_refreshed_before_it_expires(imds, clock):
    client = client_for(imds, clock, ttl=100)
    client.instance_id()
    clock.now += 85  # 15 s left: not yet within the refresh margin (10 % of the TTL)
    client.instance_id()
    assert imds.count("PUT") == 1
    clock.now += 6  # 9 s left: refresh before the server would refuse it
    client.instance_id()
    assert imds.count("PUT") == 2
    assert [r.status for r in imds.requests] == [200] * 5  # never a 401


def test_token_expired_on_the_server_refreshed_once_on_401(imds, clock):
    client = client_for(imds, clock)
    client.instance_id()
    imds.expire_tokens()  # e.g. IMDS restarted: our token is unknown now
    assert client.ami_launch_index() == 0
    tail = [(r.method, r.status) for r in imds.requests[-3:]]
    assert tail == [("GET", 401), ("PUT", 200), ("GET", 200)]


def test_server_clock_expiry_gives_401_then_refresh(clock):
    server_clock = FakeClock()
    with FakeImds(clock=server_clock) as fake:
        client = client_for(fake, clock, ttl=60)
        client.instance_id()
        server_clock.now += 61  # the client's clock did not move: it still trusts the token
        assert client.instance_id() == "i-0fake0000000000001"
        assert [r.status for r in fake.requests] == [200, 200, 401, 200, 200]


def test_persistent_401_is_an_error_not_a_loop(imds, clock):
    client = client_for(imds, clock)
    client.instance_id()
    imds.fail_next(100, status=401)
    with pytest.raises(ImdsHttpError) as err:
        client.instance_action()
    assert err.value.status == 401
    assert imds.count() == 2 + 2  # one GET, one token PUT, nothing more


def test_no_imdsv1_fallback_when_token_put_fails(imds, clock):
    client = client_for(imds, clock)
    imds.fail_next(1, status=403)
    with pytest.raises(ImdsHttpError) as err:
        client.instance_id()
    assert err.value.status == 403
    assert [r.method for r in imds.requests] == ["PUT"]  # never a GET without a token
    assert not any(r.method == "GET" and not r.token for r in imds.requests)


def test_proxy_environment_is_ignored(imds, clock, monkeypatch):
    with socket.socket() as sock:  # a port nobody listens on: a proxy that refuses
        sock.bind(("127.0.0.1", 0))
        dead = sock.getsockname()[1]
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{dead}")
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{dead}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    with pytest.raises(requests.exceptions.ProxyError):  # the environment does take effect
        requests.get(imds.url + "/latest/meta-data/instance-id", timeout=10)
    assert client_for(imds, clock).instance_id() == "i-0fake0000000000001"


def test_404_is_none(imds, clock):
    client = client_for(imds, clock)
    assert client.get("no/such/path") is None
    assert client.instance_action() is None
    assert client.rebalance_recommendation() is None


def test_instance_action_and_rebalance_documents(imds, clock):
    client = client_for(imds, clock)
    imds.set_instance_action("hibernate", "2026-11-23T14:32:12Z")
    imds.set_rebalance("2026-11-23T14:20:00Z")
    assert client.instance_action() == SpotNotice("hibernate", "2026-11-23T14:32:12Z")
    assert client.rebalance_recommendation() == RebalanceNotice("2026-11-23T14:20:00Z")


def test_instance_metadata_and_credentials(imds, clock):
    client = client_for(imds, clock)
    assert client.instance_id() == "i-0fake0000000000001"
    assert client.ami_launch_index() == 0
    assert client.region() == "us-east-1"
    assert client.iam_role() == "decon-node"
    creds = client.security_credentials()
    assert creds["AccessKeyId"] == "ASIAFAKEFAKEFAKEFAKE"
    assert creds["Token"] == "fake-session-token"


def test_http_500_is_a_typed_error(imds, clock):
    client = client_for(imds, clock)
    client.instance_id()
    imds.fail_next(1)
    with pytest.raises(ImdsHttpError) as err:
        client.instance_action()
    assert err.value.status == 500
    assert err.value.path == "spot/instance-action"
    assert client.instance_action() is None  # the next call works


def test_hang_is_a_timeout(imds, clock):
    client = client_for(imds, clock, timeout=0.2)
    client.instance_id()
    imds.delay_next(1, 1.0)
    with pytest.raises(ImdsTimeout):
        client.instance_action()


def test_refused_connection_is_unreachable(imds, clock):
    client = client_for(imds, clock)
    imds.stop()
    with pytest.raises(ImdsUnreachable) as err:
        client.instance_id()
    assert err.value.kind == "unreachable"
    imds.start()  # same port again
    assert client.instance_id() == "i-0fake0000000000001"


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ("{not json", ImdsBadJson),
        ("[1, 2]", ImdsBadJson),
        ('{"action": "reboot", "time": "2026-11-23T14:32:12Z"}', ImdsBadJson),
        ('{"action": "terminate", "time": "soon"}', ImdsBadTime),
        ('{"action": "terminate"}', ImdsBadTime),
    ],
)
def test_bad_instance_action_documents(imds, clock, body, error):
    imds.bad_json("spot/instance-action", body)
    with pytest.raises(error):
        client_for(imds, clock).instance_action()


def test_bad_rebalance_time(imds, clock):
    imds.bad_json("events/recommendations/rebalance", '{"noticeTime": 12}')
    with pytest.raises(ImdsBadTime):
        client_for(imds, clock).rebalance_recommendation()


def test_parse_imds_time_assumes_utc():
    assert parse_imds_time("2026-11-23T14:32:12").utcoffset().total_seconds() == 0
    assert parse_imds_time("2026-11-23T14:32:12Z").isoformat() == "2026-11-23T14:32:12+00:00"


def test_ttl_out_of_bounds_rejected():
    with pytest.raises(ValueError):
        ImdsClient("http://127.0.0.1:1", token_ttl=0)
    with pytest.raises(ValueError):
        ImdsClient("http://127.0.0.1:1", token_ttl=21601)
