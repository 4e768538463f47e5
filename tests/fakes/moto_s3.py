"""A real moto server (ThreadedMotoServer) on 127.0.0.1, reached through real boto3 over HTTP."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass

import boto3
import pytest
import requests
from moto.server import ThreadedMotoServer

REGION = "us-east-1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class MotoServer:
    endpoint: str

    def client(self, service: str = "s3", **kwargs):  # type: ignore[no-untyped-def]
        return boto3.client(service, endpoint_url=self.endpoint, region_name=REGION, **kwargs)

    def reset(self) -> None:
        """Forget every bucket, object and IAM entity (and turn IAM checks off)."""
        requests.post(f"{self.endpoint}/moto-api/reset", timeout=10).raise_for_status()
        # /reset keeps the IAM mode; an unlimited unauthenticated-request budget turns it off.
        requests.post(f"{self.endpoint}/moto-api/reset-auth", data=b"inf", timeout=10)

    def enforce_iam(self) -> None:
        """From now on requests are checked against IAM (AccessDenied for missing actions)."""
        requests.post(f"{self.endpoint}/moto-api/reset-auth", data=b"0", timeout=10)


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield MotoServer(f"http://127.0.0.1:{port}")
    finally:
        server.stop()


@pytest.fixture
def s3(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[MotoServer]:
    """A clean moto server per test, with fake credentials and AWS_ENDPOINT_URL in the env."""
    moto_server.reset()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server.endpoint)
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    yield moto_server
    moto_server.reset()
