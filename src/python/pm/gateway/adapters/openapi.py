"""Each service's OpenAPI document, fetched from the service and pointed at the gateway."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass
from typing import Any

import httpx

from pm.gateway.adapters.upstream import ConnectionPools, Timeouts, UpstreamFailure, translate


@dataclass(frozen=True)
class DocsSource:
    """Where a document comes from and the public path prefix its operations live under."""

    upstream: str
    base_url: str
    public_prefix: str


def point_at_gateway(document: dict[str, Any], public_prefix: str) -> dict[str, Any]:
    """Rewrite the document's servers so that "Try it out" goes through the gateway."""
    document = dict(document)
    if "swagger" in document:
        document["basePath"] = public_prefix
        document.pop("host", None)
        document.pop("schemes", None)
    else:
        document["servers"] = [{"url": public_prefix, "description": "through the API gateway"}]
    return document


@dataclass(eq=False)
class ApiDocs:
    """Fetches documents on demand and keeps each for `cache_seconds`; a failed fetch is not cached."""

    pools: ConnectionPools
    sources: dict[str, DocsSource]
    timeouts: Timeouts
    _: KW_ONLY
    cache_seconds: float
    clock: Callable[[], float] = time.monotonic

    def __post_init__(self) -> None:
        self._cache: dict[str, tuple[bytes, float]] = {}
        self._locks = {name: asyncio.Lock() for name in self.sources}

    def __contains__(self, name: str) -> bool:
        return name in self.sources

    async def document(self, name: str) -> bytes:
        """The rewritten document as JSON bytes; raises UpstreamFailure when the service cannot give it."""
        cached = self._fresh(name)
        if cached is not None:
            return cached
        # One fetch per document at a time: a burst of page loads costs the service one request.
        async with self._locks[name]:
            cached = self._fresh(name)
            if cached is not None:
                return cached
            body = await self._fetch(self.sources[name])
            self._cache[name] = (body, self.clock())
            return body

    def _fresh(self, name: str) -> bytes | None:
        entry = self._cache.get(name)
        if entry is not None and self.clock() - entry[1] < self.cache_seconds:
            return entry[0]
        return None

    async def _fetch(self, source: DocsSource) -> bytes:
        try:
            response = await self.pools.send(httpx.Request("GET", f"{source.base_url}/openapi.json"))
            try:
                await response.aread()
            finally:
                await response.aclose()
        except httpx.HTTPError as exc:
            raise translate(exc, source.upstream, self.timeouts) from None
        if response.status_code != 200:
            raise UpstreamFailure(
                502,
                "Bad Gateway",
                f"The {source.upstream} service answered {response.status_code} for its API document.",
                "docs_status",
            )
        try:
            document = response.json()
        except ValueError:
            document = None
        if not isinstance(document, dict):
            raise UpstreamFailure(
                502,
                "Bad Gateway",
                f"The {source.upstream} service sent an API document that is not a JSON object.",
                "docs_invalid",
            )
        return json.dumps(point_at_gateway(document, source.public_prefix)).encode()
