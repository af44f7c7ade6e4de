"""Hostile requests against a live service, with a concurrent probe that shows whether the loop stalled."""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

SIZE = 100_000
"""Characters in each hostile value."""
QUERY_SIZE = 60_000
"""Characters in a hostile query value: uvicorn's HTTP parser refuses request lines over 64 KiB itself
(a plain-text 400, before any application code runs), so longer values never reach a service."""


def hostile_values(size: int) -> dict[str, str]:
    """Strings of `size` characters that make a backtracking regex engine work hard on the patterns a
    spec may carry: a run of `a.` after an `@` with a trailing blank (email shapes), a run ending in a NUL
    or a blank (the "not blank, no NUL" shapes), and a run of dots."""
    return {
        "email-run": "a@" + "a." * ((size - 3) // 2) + " ",
        "nul-tail": "a" * (size - 1) + "\x00",
        "blank-tail": "a" * (size - 1) + " ",
        "dot-run": "." * size,
    }


HOSTILE_VALUES = hostile_values(SIZE)
BODY_LIMIT_VALUE = hostile_values(1_000_000)["email-run"]
"""A value that nearly fills the 1 MiB body limit the services and the gateway accept."""
QUERY_VALUES = hostile_values(QUERY_SIZE)


Hostile = Callable[[httpx.Client], httpx.Response]
"""One hostile request, sent with the given client."""


def post(path: str, body: Any, headers: Mapping[str, str] | None = None) -> Hostile:
    return lambda client: client.post(path, json=body, headers=headers)


def put(path: str, body: Any, headers: Mapping[str, str]) -> Hostile:
    return lambda client: client.put(path, json=body, headers=headers)


def patch(path: str, body: Any, headers: Mapping[str, str]) -> Hostile:
    return lambda client: client.patch(path, json=body, headers=headers)


def get(path: str, headers: Mapping[str, str]) -> Hostile:
    return lambda client: client.get(path, headers=headers)


def delete(path: str, headers: Mapping[str, str]) -> Hostile:
    return lambda client: client.delete(path, headers=headers)


def query(path: str, params: Mapping[str, str], headers: Mapping[str, str]) -> Hostile:
    return lambda client: get_with_query(client, path, params, headers)


def header_safe(value: str) -> str:
    """`value` as an HTTP header can carry it (no NUL, no surrounding blanks)."""
    return value.replace("\x00", "a").strip()


def get_with_query(
    client: httpx.Client, path: str, params: Mapping[str, str], headers: Mapping[str, str]
) -> httpx.Response:
    """GET with a query of any length (httpx refuses a query component over 64 KiB)."""
    url = client.base_url
    connection = http.client.HTTPConnection(url.host, url.port, timeout=HOSTILE_LIMIT * 3)
    try:
        connection.request("GET", f"{path}?{urllib.parse.urlencode(params)}", headers=dict(headers))
        answer = connection.getresponse()
        return httpx.Response(answer.status, headers=answer.getheaders(), content=answer.read())
    finally:
        connection.close()


PROBE_LIMIT = 1.5
"""Seconds a concurrent request may take while a hostile one is being answered. The stalls these tests
catch last as long as the hostile request (3 s and more); 1.0 was crossed by scheduling alone (1.29 s) at
load average 15 on 2 cores."""
HOSTILE_LIMIT = 10.0
"""Seconds a hostile request may take to be refused (generous: the machine is shared and loaded)."""


@dataclass
class Outcome:
    response: httpx.Response | None
    hostile_seconds: float
    slowest_probe: float
    probes: int


def send_while_probing(
    base_url: str,
    hostile: Hostile,
    probe_path: str = "/health",
    probe_headers: Mapping[str, str] | None = None,
) -> Outcome:
    """Send `hostile` and, while it is in flight, GET `probe_path` again and again; time both.

    The probe starts once the hostile request has been sent, so that it competes with it.
    """
    result: dict[str, httpx.Response] = {}
    done = threading.Event()
    started = threading.Event()

    def attack() -> None:
        with httpx.Client(base_url=base_url, timeout=HOSTILE_LIMIT * 3) as client:
            started.set()
            try:
                result["response"] = hostile(client)
            except httpx.TimeoutException:
                pass
            finally:
                done.set()

    began = time.monotonic()
    thread = threading.Thread(target=attack, daemon=True)
    thread.start()
    started.wait(5)
    time.sleep(0.05)  # let the request reach the service
    slowest = 0.0
    probes = 0
    with httpx.Client(base_url=base_url, timeout=PROBE_LIMIT * 5, headers=probe_headers) as probe:
        while probes == 0 or not done.is_set():
            t0 = time.monotonic()
            try:
                assert probe.get(probe_path).status_code == 200, probe_path
                slowest = max(slowest, time.monotonic() - t0)
            except httpx.TimeoutException:
                slowest = max(slowest, PROBE_LIMIT * 5)
            probes += 1
            if time.monotonic() - began > HOSTILE_LIMIT * 3:
                break
    done.wait(HOSTILE_LIMIT * 3)
    return Outcome(result.get("response"), time.monotonic() - began, slowest, probes)


def assert_refused_without_stall(outcome: Outcome, what: str, *, problem: bool = True) -> None:
    """The hostile request got a 4xx (a problem+json one unless `problem` is False) quickly and the
    concurrent probe never waited long."""
    response = outcome.response
    assert response is not None, f"{what}: no answer within {HOSTILE_LIMIT * 3:.0f} s"
    assert 400 <= response.status_code < 500, f"{what}: {response.status_code} {response.text[:300]}"
    if problem:
        assert (
            response.headers.get("content-type") == "application/problem+json"
        ), f"{what}: {response.headers}"
        assert response.json()["status"] == response.status_code, what
    # The answer names the problem; it does not echo the hostile value back.
    assert len(response.content) < 4096, f"{what}: a {len(response.content)}-byte answer"
    assert outcome.hostile_seconds < HOSTILE_LIMIT, f"{what}: answered after {outcome.hostile_seconds:.2f} s"
    assert (
        outcome.slowest_probe < PROBE_LIMIT
    ), f"{what}: a concurrent request took {outcome.slowest_probe:.2f} s"


class SlowJwks:
    """An ASGI JWKS endpoint serving `document`, each answer `delay` seconds late (a struggling auth)."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.delay = 0.0
        self.fetches = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        self.fetches += 1
        await asyncio.sleep(self.delay)
        body = json.dumps(self.document).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})
