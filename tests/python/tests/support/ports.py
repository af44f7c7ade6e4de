"""Ports a test may leave closed for a while and bind again."""

from __future__ import annotations

import os
import socket

from pm.common.broker import free_ports


def reserved_ports(count: int) -> list[int]:
    """`count` free ports for a test that stops and restarts what listens on them (a system, a broker).
    With PM_TEST_PORT_BASE (and PM_TEST_PORT_COUNT, default 200) they come from that range, each Pants slot
    from its own part of it: a range outside the kernel's ephemeral
    ports is never handed to another process while one of ours is closed (the broker between a kill and
    its restart). Otherwise any free ports."""
    base = os.environ.get("PM_TEST_PORT_BASE")
    if not base:
        return free_ports(count)
    size = int(os.environ.get("PM_TEST_PORT_COUNT", "200"))
    slot = int(os.environ.get("PM_TEST_SLOT", "0"))
    candidates = [int(base) + (slot * 25 + i) % size for i in range(size)]
    found: list[int] = []
    for port in candidates:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        found.append(port)
        if len(found) == count:
            return found
    raise AssertionError(f"fewer than {count} free ports in {base}+{size}")
