"""Boot the product in a real Debian 12 VM (qemu TCG) the way EC2 would, on the host's loopback.

Pieces: the cached guest image (e2e/build-image.sh), a wheelhouse built from the checkout and
served over HTTP, a NoCloud seed ISO carrying the user-data, and qemu's user-mode network with
`restrict=on` whose `guestfwd` rules are the guest's only way out:

    guest 169.254.169.254:80  -> host 127.0.0.1:<imds port>        IMDSv2 (credentials, spot)
    guest 169.254.169.5:9000  -> host 127.0.0.1:<moto port>        S3 (AWS_ENDPOINT_URL)
    guest 169.254.169.4:8080  -> host 127.0.0.1:<wheelhouse port>  pip --find-links
    host  127.0.0.1:<ssh port> -> guest :22                         ssh root@ with a per-run key
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import functools
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "e2e" / "build-image.sh"
ARTIFACTS = REPO / "build" / "e2e"  # console logs, seeds, timings of the last run

# The guest's view of the host services (all inside qemu's slirp network 169.254.169.0/24).
NET = "169.254.169.0/24"
GATEWAY_IP = "169.254.169.2"
DNS_IP = "169.254.169.3"
DHCP_START = "169.254.169.15"
IMDS_IP, IMDS_PORT = "169.254.169.254", 80
WHEELHOUSE_IP, WHEELHOUSE_PORT = "169.254.169.4", 8080
S3_IP, S3_PORT = "169.254.169.5", 9000
S3_URL_IN_GUEST = f"http://{S3_IP}:{S3_PORT}"
WHEELHOUSE_URL_IN_GUEST = f"http://{WHEELHOUSE_IP}:{WHEELHOUSE_PORT}/"
KERNEL_CMDLINE = "console=ttyS0 root=/dev/vda rw net.ifnames=0 panic=-1"
POWER_DOWN_MARK = "reboot: Power down"
SSH_ATTEMPTS = 4


class HarnessError(RuntimeError):
    """The VM or a host service did not do what the harness waited for."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- image ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GuestImage:
    """A built guest: ext4 root (/dev/vda) plus the kernel and initramfs to boot it directly."""

    rootfs: Path
    kernel: Path
    initrd: Path


def cache_root() -> Path:
    return Path(os.environ.get("DECON_E2E_CACHE", Path.home() / ".cache" / "decon-e2e"))


def image_recipe_hash() -> str:
    """The cache key: the build script is the whole recipe."""
    return hashlib.sha256(BUILD_SCRIPT.read_bytes()).hexdigest()[:16]


def ensure_image(cache: Path | None = None) -> tuple[GuestImage, float]:
    """Return the cached image for the current recipe, building it first if needed.

    The second value is the build time in seconds (0.0 when the cache was used).
    """
    cache = cache or cache_root()
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / f"image-{image_recipe_hash()}"
    image = GuestImage(target / "rootfs.qcow2", target / "vmlinuz", target / "initrd.img")
    with open(cache / "build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if image.rootfs.exists():
            return image, 0.0
        staging = cache / f"staging-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        started = time.monotonic()
        subprocess.run(["bash", str(BUILD_SCRIPT), str(staging)], check=True)
        staging.rename(target)
        return image, time.monotonic() - started


# --- wheelhouse ----------------------------------------------------------------------------------


def build_wheelhouse(dest: Path, repo: Path = REPO) -> list[Path]:
    """`pip wheel` the checkout and all its dependencies into `dest` (runs on the host).

    Serialized by a lock: pip builds in the checkout's tree (build/, *.egg-info), so two test
    processes building at once break each other. setuptools packs all that build/lib holds,
    modules since moved out of the package included, so it starts empty."""
    dest.mkdir(parents=True, exist_ok=True)
    cache = cache_root()
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / "wheel.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        shutil.rmtree(repo / "build" / "lib", ignore_errors=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "-q", str(repo), "-w", str(dest)],
            check=True,
        )
    return sorted(dest.glob("*.whl"))


class StaticHttpServer:
    """`python -m http.server` for one directory, on 127.0.0.1, in a background thread."""

    def __init__(self, directory: Path) -> None:
        handler = functools.partial(_QuietFileHandler, directory=str(directory))
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class _QuietFileHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        return


# --- seed and network ----------------------------------------------------------------------------


@dataclass(frozen=True)
class GuestForward:
    """One guestfwd rule: the guest connects to guest_ip:guest_port, qemu dials the host port."""

    guest_ip: str
    guest_port: int
    host_port: int

    def netdev_option(self) -> str:
        return (
            f"guestfwd=tcp:{self.guest_ip}:{self.guest_port}"
            f"-cmd:socat STDIO TCP:127.0.0.1:{self.host_port}"
        )


def standard_forwards(imds_port: int, s3_port: int, wheelhouse_port: int) -> list[GuestForward]:
    return [
        GuestForward(IMDS_IP, IMDS_PORT, imds_port),
        GuestForward(S3_IP, S3_PORT, s3_port),
        GuestForward(WHEELHOUSE_IP, WHEELHOUSE_PORT, wheelhouse_port),
    ]


def netdev_spec(ssh_port: int, forwards: list[GuestForward]) -> str:
    parts = [
        "user",
        "id=n0",
        f"net={NET}",
        f"host={GATEWAY_IP}",
        f"dns={DNS_IP}",
        f"dhcpstart={DHCP_START}",
        "restrict=on",
        f"hostfwd=tcp:127.0.0.1:{ssh_port}-:22",
    ]
    parts += [fwd.netdev_option() for fwd in forwards]
    return ",".join(parts)


def write_seed_iso(dest: Path, user_data: str, meta_data: dict, network_config: dict) -> Path:
    """A NoCloud seed (volume label `cidata`) as cloud-init finds it on a block device."""
    staging = dest.parent / (dest.name + ".d")
    staging.mkdir(parents=True, exist_ok=True)
    (staging / "user-data").write_text(user_data)
    (staging / "meta-data").write_text(yaml.safe_dump(meta_data, sort_keys=False))
    (staging / "network-config").write_text(yaml.safe_dump(network_config, sort_keys=False))
    subprocess.run(
        ["genisoimage", "-quiet", "-output", str(dest), "-volid", "cidata", "-joliet", "-rock"]
        + [str(staging / name) for name in ("user-data", "meta-data", "network-config")],
        check=True,
    )
    return dest


def check_user_data_schema(user_data: str, workdir: Path) -> str:
    """`cloud-init schema` on the host, before a boot wastes minutes on a typo."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "user-data.checked"
    path.write_text(user_data)
    result = subprocess.run(
        ["cloud-init", "schema", "-c", str(path)], capture_output=True, text=True
    )
    if result.returncode != 0:
        raise HarnessError(f"user-data fails cloud-init schema:\n{result.stdout}{result.stderr}")
    return result.stdout


def make_ssh_key(directory: Path) -> tuple[Path, str]:
    """A fresh ed25519 key pair for this run: (private key path, public key line)."""
    key = directory / "id_ed25519"
    if not key.exists():
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "decon-e2e", "-f", str(key)],
            check=True,
        )
    return key, key.with_suffix(".pub").read_text().strip()


# --- the VM --------------------------------------------------------------------------------------


@dataclass
class VmSpec:
    """Everything a boot needs; user_data is exactly what EC2 would get."""

    image: GuestImage
    workdir: Path
    user_data: str
    forwards: list[GuestForward]
    instance_id: str = "i-0e2e0000000000001"
    hostname: str = "decon-e2e"
    memory_mb: int = 2048
    cpus: int = 2


@dataclass
class Timings:
    """Monotonic seconds since the qemu process started."""

    started_at: float = 0.0
    marks: dict[str, float] = field(default_factory=dict)

    def mark(self, name: str) -> float:
        self.marks[name] = round(time.monotonic() - self.started_at, 1)
        return self.marks[name]


class Vm:
    """One qemu guest: boot, ssh, console log, wait for poweroff."""

    def __init__(self, spec: VmSpec) -> None:
        self.spec = spec
        self.workdir = spec.workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.console_log = self.workdir / "console.log"
        self.ssh_port = free_port()
        self.ssh_key, self.ssh_public_key = make_ssh_key(self.workdir)
        self.timings = Timings()
        self.process: subprocess.Popen[bytes] | None = None
        self.powered_off_at: datetime | None = None  # wall clock, to compare with a spot notice
        self.boots = 0

    def qemu_command(self) -> list[str]:
        spec = self.spec
        overlay = self.workdir / "overlay.qcow2"
        seed = self.workdir / "seed.iso"
        return [
            "qemu-system-x86_64",
            "-accel", "tcg,thread=multi",
            "-cpu", "max",
            "-smp", str(spec.cpus),
            "-m", str(spec.memory_mb),
            "-nodefaults", "-no-user-config", "-display", "none",
            "-no-reboot",
            "-serial", f"file:{self.console_log}",
            "-kernel", str(spec.image.kernel),
            "-initrd", str(spec.image.initrd),
            "-append", KERNEL_CMDLINE,
            "-drive", f"file={overlay},if=virtio,format=qcow2,cache=unsafe",
            "-drive", f"file={seed},if=virtio,format=raw,readonly=on",
            "-netdev", netdev_spec(self.ssh_port, spec.forwards),
            "-device", "virtio-net-pci,netdev=n0",
            "-device", "virtio-rng-pci",
        ]  # fmt: skip

    def start(self) -> None:
        spec = self.spec
        overlay = self.workdir / "overlay.qcow2"
        overlay.unlink(missing_ok=True)
        subprocess.run(
            ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2"]
            + ["-b", str(spec.image.rootfs), str(overlay)],
            check=True,
        )
        meta_data = {
            "instance-id": spec.instance_id,
            "local-hostname": spec.hostname,
            "public-keys": [self.ssh_public_key],
        }
        network = {"version": 2, "ethernets": {"eth0": {"dhcp4": True}}}
        write_seed_iso(self.workdir / "seed.iso", spec.user_data, meta_data, network)
        self._launch()

    def boot_again(self) -> None:
        """Boot the same disk again after a poweroff, as EC2 starts a stopped instance: the
        overlay keeps what the guest wrote, the seed (same instance id) stays. The previous
        boot's console log is kept as console.boot<N>.log."""
        if self.running():
            raise HarnessError("boot_again: the guest is still up")
        if self.console_log.exists():
            self.console_log.rename(self.workdir / f"console.boot{self.boots}.log")
        self.powered_off_at = None
        self._launch()

    def _launch(self) -> None:
        self.boots += 1
        command = self.qemu_command()
        (self.workdir / "qemu-command.txt").write_text(" ".join(_quote(a) for a in command) + "\n")
        if self.boots == 1:
            self.timings.started_at = time.monotonic()
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=open(self.workdir / "qemu.out", "wb"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )

    # -- observation --

    def console(self) -> str:
        if not self.console_log.exists():
            return ""
        return self.console_log.read_bytes().decode("utf-8", "replace")

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def ssh_command(self, command: str) -> list[str]:
        return [
            "ssh", "-q", "-i", str(self.ssh_key), "-p", str(self.ssh_port),
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10",
            "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3",
            "root@127.0.0.1", command,
        ]  # fmt: skip

    def ssh(
        self,
        command: str,
        *,
        check: bool = True,
        timeout: float = 120,
        attempts: int = SSH_ATTEMPTS,
    ) -> subprocess.CompletedProcess[str]:
        """Run a shell command in the guest as root.

        Exit 255 is ssh's own failure (e.g. sshd restarting while cloud-init configures it): the
        command is retried a few times before it counts.
        """
        for _attempt in range(attempts):
            result = subprocess.run(
                self.ssh_command(command), capture_output=True, text=True, timeout=timeout
            )
            if result.returncode != 255 or not self.running():
                break
            time.sleep(2)
        if check and result.returncode != 0:
            raise HarnessError(
                f"guest command failed ({result.returncode}): {command}\n"
                f"stdout: {result.stdout}\nstderr: {result.stderr}"
            )
        return result

    def systemctl_status(self, unit: str = "decon") -> str:
        """`systemctl status` as an operator sees it (exit 3 for an inactive unit is fine)."""
        return self.ssh(f"systemctl status --no-pager --full {unit}", check=False).stdout

    def journal(self, unit: str = "decon") -> str:
        """The unit's journal lines, message text only."""
        return self.ssh(f"journalctl --no-pager -o cat -u {unit}", check=False).stdout

    def wait_for_ssh(self, timeout: float = 300) -> float:
        """Wait until `ssh root@guest true` works; return seconds since start."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._fail_if_exited("waiting for ssh")
            try:
                if self.ssh("true", check=False, timeout=20, attempts=1).returncode == 0:
                    return self.timings.mark("ssh_ready")
            except subprocess.TimeoutExpired:
                pass
            time.sleep(2)
        raise HarnessError(f"no ssh after {timeout:.0f}s\n{self.console_tail()}")

    def wait_for_guest_file(self, path: str, timeout: float = 600) -> float:
        """Poll over ssh until `path` exists in the guest."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._fail_if_exited(f"waiting for {path}")
            with contextlib.suppress(subprocess.TimeoutExpired):
                if self.ssh(f"test -e {path}", check=False, timeout=30, attempts=1).returncode == 0:
                    return self.timings.mark(f"file:{path}")
            time.sleep(3)
        raise HarnessError(f"{path} did not appear in {timeout:.0f}s\n{self.console_tail()}")

    def wait_for_console(self, text: str, timeout: float = 600) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.console():
                return self.timings.mark(f"console:{text}")
            self._fail_if_exited(f"waiting for console text {text!r}")
            time.sleep(1)
        raise HarnessError(f"{text!r} not on the console in {timeout:.0f}s")

    def wait_for_poweroff(self, timeout: float = 600) -> float:
        """Wait for qemu to exit because the guest powered off (not a crash, not a reboot)."""
        assert self.process is not None
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise HarnessError(
                f"guest still up after {timeout:.0f}s\n{self.console_tail()}"
            ) from exc
        elapsed = self.timings.mark("poweroff")
        self.powered_off_at = datetime.now(UTC)
        if code != 0 or POWER_DOWN_MARK not in self.console():
            raise HarnessError(
                f"qemu exited {code} without a guest power-down\n{self.console_tail()}"
            )
        return elapsed

    def console_tail(self, lines: int = 60) -> str:
        return "--- console tail ---\n" + "\n".join(self.console().splitlines()[-lines:])

    def _fail_if_exited(self, doing: str) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise HarnessError(
                f"qemu exited ({self.process.returncode}) while {doing}\n{self.console_tail()}\n"
                + (self.workdir / "qemu.out").read_text(errors="replace")
            )

    def kill(self) -> None:
        if self.running():
            assert self.process is not None
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


BootVm = Callable[..., Vm]
"""The `boot_vm` fixture: user-data (and optionally `s3_port`, e.g. a fault proxy's, for the
guest's S3 address) in, a started Vm wired to the test's host services out."""


@contextlib.contextmanager
def booted(spec: VmSpec) -> Iterator[Vm]:
    """Start a VM and make sure it is gone afterwards, whatever happened."""
    vm = Vm(spec)
    vm.start()
    try:
        yield vm
    finally:
        vm.kill()


def _die_with_parent() -> None:
    """In the qemu child: get SIGTERM if the test process dies, so no VM outlives a run."""
    pr_set_pdeathsig = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _quote(arg: str) -> str:
    return f"'{arg}'" if any(c in arg for c in " ;") else arg
