"""The proxy's connection pools and the one package they need that nothing imports."""

from __future__ import annotations

import asyncio
import importlib.util
import sys

import httpx

from pm.gateway.adapters.upstream import ConnectionPools, Timeouts
from tests.gateway.conftest import EchoUpstream


def test_httpcore_still_asks_sniffio_which_event_loop_runs(
    upstreams: dict[str, tuple[EchoUpstream, str]],
) -> None:
    """httpcore imports sniffio on every pooled request to tell asyncio from trio; without the package
    each of those imports fails after a search of sys.path (measured 164 µs against 3.5 µs). So the
    gateway's BUILD declares `sniffio` (adapters/BUILD; nothing imports it, and the gateway's pex
    carries it only through that line). If this fails because httpcore no longer asks, drop that
    dependency. (Tests run with the whole resolve installed, so they cannot see a lost BUILD line:
    `unzip -l dist/src.python.pm.gateway/app.pex | grep sniffio` does.)"""
    assert importlib.util.find_spec("sniffio") is not None, "sniffio is not installed"
    sys.modules.pop("sniffio", None)

    async def one_request() -> int:
        pools = ConnectionPools(Timeouts(connect=2.0, read=5.0), max_connections=2)
        try:
            response = await pools.send(httpx.Request("GET", f"{upstreams['patient'][1]}/health"))
            await response.aread()
            await response.aclose()
            return response.status_code
        finally:
            await pools.aclose()

    assert asyncio.run(one_request()) == 200
    assert "sniffio" in sys.modules, "httpcore no longer imports sniffio: drop it from adapters/BUILD"
