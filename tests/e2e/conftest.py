"""Fixtures for the VM end-to-end tests (collected only by `make e2e`, see tests/conftest.py)."""

from __future__ import annotations

import json
import shutil
import time
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from harness import (
    ARTIFACTS,
    BootVm,
    GuestImage,
    StaticHttpServer,
    Vm,
    VmSpec,
    build_wheelhouse,
    ensure_image,
    standard_forwards,
)

from fakes.imds import FakeCredentials, FakeImds
from fakes.moto_s3 import MotoServer

HOST_TOOLS = (
    "qemu-system-x86_64",
    "qemu-img",
    "socat",
    "genisoimage",
    "mmdebstrap",
    "ssh",
    "cloud-init",
)
FIGURES = pytest.StashKey[dict[str, dict[str, float]]]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[FIGURES] = {}


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:  # type: ignore[no-untyped-def]
    figures = config.stash.get(FIGURES, {})
    if not figures:
        return
    terminalreporter.section("e2e timings (seconds)")
    for name, marks in figures.items():
        terminalreporter.write_line(f"{name}: {json.dumps(marks)}")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "timings.json").write_text(json.dumps(figures, indent=2) + "\n")


@pytest.fixture(scope="session")
def figures(pytestconfig: pytest.Config) -> dict[str, dict[str, float]]:
    """name -> {mark: seconds}; printed at the end of the run and saved to build/e2e/."""
    return pytestconfig.stash[FIGURES]


@pytest.fixture(scope="session")
def host_tools() -> None:
    missing = [tool for tool in HOST_TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"e2e needs {', '.join(missing)}: run e2e/setup-host.sh as root", False)


@pytest.fixture(scope="session")
def guest_image(host_tools: None, figures: dict[str, dict[str, float]]) -> GuestImage:
    image, seconds = ensure_image()
    figures["image"] = {"build": round(seconds, 1), "cached": float(seconds == 0.0)}
    return image


@pytest.fixture(scope="session")
def wheelhouse(
    tmp_path_factory: pytest.TempPathFactory, figures: dict[str, dict[str, float]]
) -> Iterator[StaticHttpServer]:
    """The checkout and its dependencies as wheels, served on 127.0.0.1 for the guest's pip."""
    started = time.monotonic()
    directory = tmp_path_factory.mktemp("wheelhouse")
    wheels = build_wheelhouse(directory)
    assert any(w.name.startswith("decon_agent-") for w in wheels), wheels
    figures["wheelhouse"] = {"build": round(time.monotonic() - started, 1)}
    server = StaticHttpServer(directory)
    yield server
    server.stop()


@pytest.fixture
def imds() -> Iterator[FakeImds]:
    """IMDSv2 for one guest (the shared fake); credentials unique to this test prove where the
    guest got them."""
    credentials = FakeCredentials(
        access_key_id=f"AKIAE2E{uuid.uuid4().hex[:13].upper()}",
        secret_access_key=uuid.uuid4().hex,
        token=uuid.uuid4().hex,
    )
    with FakeImds(instance_id=f"i-0e2e{uuid.uuid4().hex[:13]}", credentials=credentials) as fake:
        yield fake


@pytest.fixture
def boot_vm(
    request: pytest.FixtureRequest,
    guest_image: GuestImage,
    wheelhouse: StaticHttpServer,
    imds: FakeImds,
    s3: MotoServer,
    figures: dict[str, dict[str, float]],
) -> Iterator[BootVm]:
    """boot_vm(user_data) -> a started Vm wired to this test's IMDS, S3 and the wheelhouse.

    Every VM is killed at teardown if still up. The console log, seed and qemu command line stay
    in build/e2e/<test>/ for post-mortems.
    """
    moto_port = urlsplit(s3.endpoint).port
    assert moto_port is not None
    vms: list[Vm] = []

    def boot(user_data: str, s3_port: int | None = None) -> Vm:
        workdir = ARTIFACTS / request.node.name / f"vm{len(vms)}"
        shutil.rmtree(workdir, ignore_errors=True)
        spec = VmSpec(
            image=guest_image,
            workdir=workdir,
            user_data=user_data,
            forwards=standard_forwards(imds.port, s3_port or moto_port, wheelhouse.port),
            instance_id=imds.metadata["instance-id"],
        )
        vm = Vm(spec)
        vms.append(vm)
        vm.start()
        return vm

    yield boot
    for index, vm in enumerate(vms):
        vm.kill()
        figures[f"{request.node.name}[vm{index}]"] = dict(vm.timings.marks)
