"""Cross-origin policy: denied unless the origin is configured.

Starlette's CORSMiddleware writes the headers from these lists; the gateway refuses the preflights this
policy does not allow itself, with a 403 problem, before that middleware sees them.
"""

from __future__ import annotations

from dataclasses import dataclass

ALLOWED_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
ALLOWED_HEADERS = ("Authorization", "Content-Type", "If-Match", "If-None-Match", "X-Request-ID")
# Always allowed by the Fetch standard (and by Starlette's middleware).
SAFELISTED_HEADERS = ("Accept", "Accept-Language", "Content-Language")
EXPOSED_HEADERS = (
    "ETag",
    "Link",
    "Location",
    "Retry-After",
    "X-Request-ID",
    "X-Total-Count",
    "X-Total-Count-Estimated",
)
PREFLIGHT_MAX_AGE = 600

_REQUESTABLE = frozenset(name.lower() for name in ALLOWED_HEADERS + SAFELISTED_HEADERS)


@dataclass(frozen=True)
class CorsPolicy:
    origins: tuple[str, ...]

    def allows(self, origin: str) -> bool:
        # Exactly as Starlette compares them (an Origin header never ends with a slash).
        return "*" in self.origins or origin in self.origins

    def allows_preflight(self, origin: str, method: str, requested_headers: str | None) -> bool:
        """Whether a preflight from `origin` for `method` with `requested_headers` (the comma-separated
        Access-Control-Request-Headers value) may be answered yes."""
        if not self.allows(origin) or method not in ALLOWED_METHODS:
            return False
        requested = (part.strip().lower() for part in (requested_headers or "").split(","))
        return all(name in _REQUESTABLE for name in requested if name)
