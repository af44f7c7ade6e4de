"""What the runner measures with: wrk (driven by the Lua scripts), CPU per process, the machine."""

from __future__ import annotations

import os
import platform
import resource
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

from pm.bench.results import WrkRun, parse_wrk

LUA = Path(__file__).parent / "lua"


def machine() -> dict[str, Any]:
    memory = psutil.virtual_memory()
    return {
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gb": round(memory.total / 2**30, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


class CpuSampler:
    """CPU used between start() and stop(), in % of one core: each named process, the runner's reaped
    children (wrk) and every PostgreSQL backend on the machine (shared with anything else using it)."""

    def __init__(self, processes: Mapping[str, psutil.Process]) -> None:
        self.processes = dict(processes)
        self.before: dict[str, float] = {}
        self.postgres_before: dict[int, float] = {}
        self.children_before = 0.0
        self.started = 0.0

    @staticmethod
    def _cpu(process: psutil.Process) -> float:
        try:
            times = process.cpu_times()
            return float(times.user + times.system)
        except psutil.Error:
            return 0.0

    @staticmethod
    def _children() -> float:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    def _postgres(self) -> dict[int, float]:
        found = {}
        for process in psutil.process_iter(["name"]):
            if process.info["name"] == "postgres":
                found[process.pid] = self._cpu(process)
        return found

    def start(self) -> None:
        self.started = time.monotonic()
        self.before = {name: self._cpu(p) for name, p in self.processes.items()}
        self.children_before = self._children()
        self.postgres_before = self._postgres()

    def stop(self) -> dict[str, float]:
        elapsed = time.monotonic() - self.started
        used = {name: self._cpu(p) - self.before[name] for name, p in self.processes.items()}
        used["wrk"] = self._children() - self.children_before
        used["postgres"] = sum(
            cpu - self.postgres_before.get(pid, 0.0) for pid, cpu in self._postgres().items()
        )
        return {name: round(100 * seconds / elapsed, 1) for name, seconds in used.items()}


@dataclass(frozen=True)
class Wrk:
    """Runs wrk against one URL with a script from lua/, sampling the CPU of `processes()` meanwhile."""

    token: str
    threads: int
    connections: int
    processes: Callable[[], Mapping[str, psutil.Process]]

    def __call__(
        self,
        url: str,
        script: str,
        seconds: float,
        extra_env: Mapping[str, str] | None = None,
        connections: int | None = None,
    ) -> tuple[WrkRun, dict[str, float]]:
        env = dict(os.environ)
        env.update(
            {
                "PM_BENCH_LUA_DIR": str(LUA),
                "PM_BENCH_TOKEN": self.token,
                "PM_BENCH_PATH": httpx.URL(url).raw_path.decode(),
                "PM_BENCH_THREADS": str(self.threads),
            }
        )
        env.update(extra_env or {})
        command = [
            "wrk",
            f"-t{self.threads}",
            f"-c{connections or self.connections}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "10s",
            "-s",
            str(LUA / script),
            url,
        ]
        process = subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        sampler = CpuSampler({**self.processes(), "wrk": psutil.Process(process.pid)})
        sampler.start()
        try:
            output, _ = process.communicate(timeout=seconds + 60)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
        cpu = sampler.stop()
        return parse_wrk(output), cpu


def footprint(
    processes: Mapping[str, psutil.Process], services: list[str], limit_mb: float
) -> dict[str, Any]:
    """RSS of every process and its children now; the target: every service within `limit_mb`."""
    rss: dict[str, float] = {}
    for name, process in processes.items():
        try:
            family = [process, *process.children(recursive=True)]
            rss[name] = round(sum(p.memory_info().rss for p in family) / 2**20, 1)
        except psutil.Error:
            continue
    return {
        "rss_mb": rss,
        "targets": [
            {
                "name": f"footprint: every service <= {limit_mb:.0f} MB RSS",
                "met": all(rss.get(name, limit_mb + 1) <= limit_mb for name in services),
            }
        ],
    }
