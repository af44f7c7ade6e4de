"""The devstack stops everything when whoever started it goes away, and names a stale previous run."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.e2e.test_devstack import devstack_env

pytestmark = pytest.mark.slow
READY_SECONDS = 300.0
DEVSTACK_READY_TIMEOUT = "240"  # the shared machine can be slow to start five services
FREE_SECONDS = 15.0
# A parent that starts the devstack and does nothing else, as `./pants run` (without pantsd), a shell
# script or a process manager does; SIGTERM kills it outright.
PARENT = "import subprocess, sys; sys.exit(subprocess.call([sys.executable, '-m', 'pm.devstack.up']))"


def repository_root() -> Path | None:
    """The checkout holding `./pants`, when the tests run from one (not inside a Pants sandbox)."""
    for folder in (Path.cwd(), *Path.cwd().parents):
        if (folder / "pants").is_file() and (folder / "pants.toml").is_file():
            return folder
    return None


def read_until_ready(process: subprocess.Popen[str], gateway_port: str) -> list[str]:
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + READY_SECONDS
    for line in process.stdout:
        lines.append(line.rstrip())
        if line.startswith("READY ") or time.monotonic() > deadline:
            break
    assert lines and lines[-1] == f"READY http://127.0.0.1:{gateway_port}", "\n".join(lines[-40:])
    return lines


def busy_ports(env: dict[str, str]) -> list[int]:
    ports = [int(env[var]) for var in env if var.startswith("PM_") and var.endswith("_PORT")]
    busy = []
    for port in ports:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                busy.append(port)
    return busy


def wait_ports_free(env: dict[str, str], timeout: float) -> tuple[list[int], float]:
    started = time.monotonic()
    while busy_ports(env) and time.monotonic() - started < timeout:
        time.sleep(0.2)
    return busy_ports(env), time.monotonic() - started


def processes_holding(env: dict[str, str]) -> list[psutil.Process]:
    """Whatever still listens on the test's ports (to clean up after a failure)."""
    ports = {int(env[var]) for var in env if var.startswith("PM_") and var.endswith("_PORT")}
    found = []
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port in ports and conn.pid:
            found.append(psutil.Process(conn.pid))
    return found


def running(pid: int) -> bool:
    """Alive and not a zombie (the devstack's own parent, pantsd, reaps it when it gets round to it)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def kill_leftovers(env: dict[str, str], tree: list[psutil.Process]) -> None:
    for process in [*tree, *processes_holding(env)]:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass


def test_sigterm_to_the_process_that_started_the_devstack_frees_every_port(tmp_path: Path) -> None:
    env = devstack_env(tmp_path / "data")
    env["PM_DEVSTACK_READY_TIMEOUT"] = DEVSTACK_READY_TIMEOUT
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    tree: list[psutil.Process] = []
    try:
        read_until_ready(parent, env["PM_GATEWAY_PORT"])
        tree = psutil.Process(parent.pid).children(recursive=True)
        devstack = tree[0].pid

        # A second start on the same ports and data folder names the running one (checked below).
        second = subprocess.run(
            [sys.executable, "-m", "pm.devstack.up"], env=env, capture_output=True, text=True, timeout=60
        )

        parent.send_signal(signal.SIGTERM)  # the parent only: its children are not signalled by us
        parent.wait(5)
        busy, seconds = wait_ports_free(env, FREE_SECONDS)
        print(f"FIGURES devstack_parent_sigterm: ports free after {seconds:.1f}s, busy {busy}")
        assert busy == []
        # The pid file goes last, once the children are gone: give it the rest of the same bound.
        pid_file = tmp_path / "data" / "devstack.pid"
        while pid_file.exists() and seconds < FREE_SECONDS:
            time.sleep(0.1)
            seconds += 0.1
        assert not pid_file.exists()
        assert second.returncode == 2
        assert f"a devstack from pid {devstack} still holds port" in second.stderr, second.stderr
    finally:
        kill_leftovers(env, tree)


def test_sigterm_to_the_pants_client_frees_every_port(tmp_path: Path) -> None:
    root = repository_root()
    if root is None:
        pytest.skip(
            "./pants cannot run inside a Pants test sandbox (no checkout there); "
            "test_sigterm_to_the_process_that_started_the_devstack_frees_every_port covers the mechanism"
        )
    env = devstack_env(tmp_path / "data")
    env["PM_DEVSTACK_READY_TIMEOUT"] = DEVSTACK_READY_TIMEOUT
    env.pop("PYTHONPATH", None)  # `./pants run` builds its own
    client = subprocess.Popen(
        ["./pants", "run", "src/python/pm/devstack:up"],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        read_until_ready(client, env["PM_GATEWAY_PORT"])
        held_by = {p.pid for p in processes_holding(env)}
        client.send_signal(signal.SIGTERM)  # the client only, as `kill <pid>` does
        client.wait(15)
        busy, seconds = wait_ports_free(env, FREE_SECONDS)
        print(f"FIGURES devstack_pants_client_sigterm: ports free after {seconds:.1f}s, busy {busy}")
        assert busy == []
        assert [pid for pid in held_by if running(pid)] == []
    finally:
        kill_leftovers(env, [])
        if client.poll() is None:
            client.kill()


def test_the_pid_file_of_a_dead_devstack_is_not_blamed(tmp_path: Path) -> None:
    env = devstack_env(tmp_path / "data")
    (tmp_path / "data").mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / "data" / "devstack.pid").write_text(f"{dead.pid}\n")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", int(env["PM_AUTH_PORT"])))
        busy.listen()
        result = subprocess.run(
            [sys.executable, "-m", "pm.devstack.up"], env=env, capture_output=True, text=True, timeout=60
        )
    assert result.returncode == 2
    assert f"port {env['PM_AUTH_PORT']} (PM_AUTH_PORT) is already in use" in result.stderr
    assert "a devstack from pid" not in result.stderr
