"""What crosses the gateway in each direction: hop-by-hop headers stay, forwarding facts are the gateway's."""

from __future__ import annotations

from collections.abc import Iterable

Headers = list[tuple[bytes, bytes]]

# RFC 9110 §7.6.1: meaningful for one connection only, never forwarded.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
    }
)
# The gateway alone states forwarding facts; copies sent by clients are dropped. (The caller's identity
# travels as the bearer token itself, forwarded unchanged: every service verifies it.)
FORWARDED_PREFIX = b"x-forwarded-prefix"
GATEWAY_OWNED = frozenset(
    {
        b"host",
        b"forwarded",
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        FORWARDED_PREFIX,
    }
)
# Identity assertions are never taken from a client: an `X-Authenticated-*` header a client sends is
# dropped, so no service (or a proxy behind the gateway) can ever be fooled by one.
IDENTITY_PREFIX = b"x-authenticated-"
# Set by the gateway's own server for its response; the upstream's copies would duplicate them.
RESPONSE_OWNED = frozenset({b"date", b"server"})


def _connection_tokens(headers: Iterable[tuple[bytes, bytes]]) -> set[bytes]:
    """Header names listed in `Connection` are hop-by-hop too (RFC 9110 §7.6.1)."""
    tokens: set[bytes] = set()
    for name, value in headers:
        if name.lower() == b"connection":
            tokens.update(part.strip().lower() for part in value.split(b",") if part.strip())
    return tokens


def upstream_request_headers(
    headers: Iterable[tuple[bytes, bytes]],
    *,
    client: str,
    scheme: str,
    forwarded_prefix: str = "",
) -> Headers:
    """Request headers for the upstream: the client's end-to-end headers plus the gateway's own.

    `client` is the address the gateway attributes the request to: the services' `X-Forwarded-For` is
    exactly that, whatever the client sent. `forwarded_prefix` tells the upstream where it is mounted
    publicly, so that the links it returns (Location, Link) point at the gateway's paths.
    """
    headers = list(headers)
    drop = HOP_BY_HOP | GATEWAY_OWNED | _connection_tokens(headers)
    host = b""
    out: Headers = []
    for name, value in headers:
        lowered = name.lower()
        if lowered == b"host":
            host = value
        elif lowered not in drop and not lowered.startswith((b"proxy-", IDENTITY_PREFIX)):
            out.append((lowered, value))
    out.append((b"x-forwarded-for", client.encode("latin-1")))
    out.append((b"x-forwarded-proto", scheme.encode("latin-1")))
    if host:
        out.append((b"x-forwarded-host", host))
    if forwarded_prefix:
        out.append((FORWARDED_PREFIX, forwarded_prefix.encode("latin-1")))
    return out


def client_response_headers(headers: Iterable[tuple[bytes, bytes]]) -> tuple[Headers, bytes]:
    """Response headers for the client: the upstream's end-to-end headers (names in lower case, as the
    client's server writes them), and the value of its Content-Length (b"" without one; the first of
    several)."""
    headers = list(headers)
    drop = HOP_BY_HOP | RESPONSE_OWNED | _connection_tokens(headers)
    out: Headers = []
    length = b""
    for name, value in headers:
        lowered = name.lower()
        if lowered in drop:
            continue
        if lowered == b"content-length":
            if length:
                continue
            length = value
        out.append((lowered, value))
    return out, length
