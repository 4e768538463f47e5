"""The fault proxy's rules, through real boto3 to the moto server behind it."""

from __future__ import annotations

import time

import boto3
import pytest
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

from fakes.faulty_proxy import FaultyProxy


def client_via(proxy: FaultyProxy):  # type: ignore[no-untyped-def]
    """One attempt per call, so each call is exactly one request the proxy sees."""
    return boto3.client(
        "s3",
        endpoint_url=proxy.endpoint,
        region_name="us-east-1",
        config=BotoConfig(retries={"total_max_attempts": 1}, read_timeout=10),
    )


@pytest.fixture
def client(s3, faulty_proxy):  # type: ignore[no-untyped-def]
    s3.client().create_bucket(Bucket="bkt")
    return client_via(faulty_proxy)


def put_outcome(client, key: str) -> str:  # type: ignore[no-untyped-def]
    try:
        client.put_object(Bucket="bkt", Key=key, Body=b"x")
    except ClientError as exc:
        return exc.response["Error"]["Code"]
    return "ok"


def test_every_nth_matching_request_fails_the_others_pass(client, faulty_proxy):
    faulty_proxy.fail("503", key_contains="/part-", every=3, times=-1)
    outcomes = [put_outcome(client, f"part-{i}") for i in range(1, 8)]
    other = put_outcome(client, "other")  # not matched: not counted either
    assert outcomes == ["ok", "ok", "SlowDown", "ok", "ok", "SlowDown", "ok"]
    assert other == "ok"
    assert [r.fault for r in faulty_proxy.requests] == [None, None, "503"] * 2 + [None, None]


def test_every_nth_stops_after_times_firings(client, faulty_proxy):
    rule = faulty_proxy.fail("500", key_contains="/k", every=2, times=1)
    assert [put_outcome(client, "k") for _ in range(5)] == ["ok", "InternalError"] + ["ok"] * 3
    assert (rule.hits, rule.matched) == (1, 2)


def test_delay_holds_the_request_then_forwards_it(client, faulty_proxy, s3):
    faulty_proxy.fail("delay", seconds=0.6, key_contains="/slow")
    started = time.monotonic()
    assert put_outcome(client, "slow") == "ok"
    held = time.monotonic() - started
    started = time.monotonic()
    assert put_outcome(client, "slow") == "ok"  # times=1: the second goes straight through
    fast = time.monotonic() - started
    assert held >= 0.6 and fast < held
    assert s3.client().get_object(Bucket="bkt", Key="slow")["Body"].read() == b"x"
    assert [(r.fault, r.status) for r in faulty_proxy.requests] == [("delay", 200), (None, 200)]


def test_a_delay_past_the_client_timeout_is_a_timeout(s3, faulty_proxy):
    s3.client().create_bucket(Bucket="bkt")
    impatient = boto3.client(
        "s3",
        endpoint_url=faulty_proxy.endpoint,
        region_name="us-east-1",
        config=BotoConfig(retries={"total_max_attempts": 1}, read_timeout=0.3),
    )
    faulty_proxy.fail("delay", seconds=1.5, key_contains="/late")
    with pytest.raises(Exception, match="(?i)timeout|timed out"):
        impatient.put_object(Bucket="bkt", Key="late", Body=b"x")


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"action": "delay"}, "seconds > 0"),
        ({"action": "503", "seconds": 1.0}, "seconds > 0"),
        ({"action": "503", "every": 0}, "every must be >= 1"),
        ({"action": "slow"}, "unknown fault"),
    ],
)
def test_bad_rules_are_refused(faulty_proxy, kwargs, error):
    action = kwargs.pop("action")
    with pytest.raises(ValueError, match=error):
        faulty_proxy.fail(action, **kwargs)
