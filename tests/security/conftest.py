"""Decoys on the host, checked untouched after the suite; the host's hostname, mounts and /etc
checked unchanged; the outcomes written for ``python -m tests.security.table``."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from .attacks import Decoys
from .catalog import RESULTS
from .runner import Outcome

# Mount points that change whenever any container on the host starts or stops.
_BUSY_MOUNTS = ("/var/lib/docker/", "/run/docker/", "/run/containerd/", "/run/netns/")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/security/" in str(item.path):
            item.add_marker(pytest.mark.docker)


class Listener:
    """A socket on the host that counts who connects to it."""

    def __init__(self, family: int, address: str | tuple[str, int]) -> None:
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.bind(address)
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.connections = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._done.is_set():
            try:
                peer, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            peer.close()

    def close(self) -> None:
        self._done.set()
        self._thread.join()
        self.sock.close()


@contextlib.contextmanager
def _decoys(label: str) -> Iterator[tuple[Decoys, list[Listener], subprocess.Popen[bytes]]]:
    folder = Path(tempfile.mkdtemp(prefix=f"security-{label}-"))
    folder.chmod(0o777)  # the weakened run writes through a planted link into it
    secret = f"decoy-secret-{secrets.token_hex(8)}"
    secret_file = folder / "secret.txt"
    secret_file.write_text(secret)
    secret_file.chmod(0o644)
    tcp = Listener(socket.AF_INET, ("127.0.0.1", 0))
    abstract = f"execloop-decoy-{secrets.token_hex(6)}"
    unix = Listener(socket.AF_UNIX, "\0" + abstract)
    docker_path = folder / "docker.sock"
    fake_docker = Listener(socket.AF_UNIX, str(docker_path))
    docker_path.chmod(0o666)
    marker = f"execloop-marker-{secrets.token_hex(6)}"
    drop = ["setpriv", "--reuid=1000", "--regid=1000", "--clear-groups"]
    peer = subprocess.Popen([*(drop if os.geteuid() == 0 else []), "sleep", "3600"])
    decoys = Decoys(
        secret_path=str(secret_file),
        secret=secret,
        env_name=f"EXECLOOP_DECOY_{secrets.token_hex(4).upper()}",
        port=tcp.sock.getsockname()[1],
        abstract=abstract,
        docker_socket=str(docker_path),
        marker=marker,
        host_pid=os.getpid(),
        peer_pid=peer.pid,
    )
    try:
        yield decoys, [tcp, unix, fake_docker], peer
    finally:
        peer.kill()
        peer.wait()
        for listener in (tcp, unix, fake_docker):
            listener.close()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def decoys() -> Iterator[Decoys]:
    """The bait of the real runs: every attack must leave it untouched."""
    with _decoys("bait") as (bait, listeners, peer):
        os.environ[bait.env_name] = bait.secret
        mtime = os.stat(bait.secret_path).st_mtime_ns
        try:
            yield bait
        finally:
            del os.environ[bait.env_name]
        folder = Path(bait.secret_path).parent
        assert sorted(p.name for p in folder.iterdir()) == ["docker.sock", "secret.txt"]
        assert Path(bait.secret_path).read_text() == bait.secret
        assert os.stat(bait.secret_path).st_mtime_ns == mtime
        assert [listener.connections for listener in listeners] == [0, 0, 0]
        assert peer.poll() is None, "kill(-1) from a sandbox reached a host process"


@pytest.fixture(scope="session")
def proof_decoys() -> Iterator[Decoys]:
    """The same bait for the weakened runs, which are meant to reach it."""
    with _decoys("proof") as (bait, _, _):
        yield bait


def host_state() -> dict[str, object]:
    """The host's hostname, its mounts (but container churn) and a digest of /etc."""
    mounts = set()
    with open("/proc/self/mountinfo") as handle:
        for line in handle:
            fields = line.split()
            point, fstype = fields[4], fields[fields.index("-") + 1]
            if not point.startswith(_BUSY_MOUNTS):
                mounts.add(f"{point} {fstype}")
    digest = hashlib.sha256()
    for root, folders, files in os.walk("/etc"):
        folders.sort()
        for name in sorted(files):
            path = os.path.join(root, name)
            with contextlib.suppress(OSError):
                info = os.lstat(path)
                digest.update(f"{path} {info.st_size} {info.st_mtime_ns}\n".encode())
    return {"hostname": socket.gethostname(), "mounts": sorted(mounts), "etc": digest.hexdigest()}


@pytest.fixture(scope="session", autouse=True)
def _host_unchanged() -> Iterator[None]:
    before = host_state()
    yield
    after = host_state()
    assert after["hostname"] == before["hostname"]
    assert after["etc"] == before["etc"], "/etc changed during the security suite"
    assert after["mounts"] == before["mounts"], (
        sorted(set(after["mounts"]) ^ set(before["mounts"]))  # type: ignore[arg-type]
    )


@pytest.fixture(scope="session")
def security_results() -> Iterator[list[Outcome]]:
    """Outcomes of this run, merged into RESULTS (a partial run updates its own rows)."""
    outcomes: list[Outcome] = []
    yield outcomes
    if not outcomes:
        return
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    rows = json.loads(RESULTS.read_text()) if RESULTS.exists() else []
    fresh = {(o.attack, o.backend) for o in outcomes}
    rows = [r for r in rows if (r["attack"], r["backend"]) not in fresh]
    rows += [o.__dict__ for o in outcomes]
    RESULTS.write_text(json.dumps(rows, indent=1, ensure_ascii=False) + "\n")
