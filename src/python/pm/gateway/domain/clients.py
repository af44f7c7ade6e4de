"""Who the client is: the TCP peer, unless the peer is a proxy we trust to say who it forwards for.

A client's own `Forwarded` / `X-Forwarded-For` is never believed: anyone can write them. A trusted proxy
(a load balancer in front of the gateway) appends the address it saw to `X-Forwarded-For`, so reading
the list from the right, the first address that is not itself a trusted proxy is the client; anything
further left was written by the client.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

UNKNOWN = "unknown"


def _address(text: str) -> Address | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


class ClientAddresses:
    def __init__(self, trusted_proxies: Sequence[str]) -> None:
        self.networks = [ipaddress.ip_network(cidr, strict=False) for cidr in trusted_proxies]

    def trusted(self, address: Address) -> bool:
        return any(address in network for network in self.networks)

    def client(self, peer: str | None, headers: Iterable[tuple[bytes, bytes]]) -> str:
        """The client's address for limits and for the services (`X-Forwarded-For`)."""
        if peer is None:
            return UNKNOWN
        if not self.networks:
            return peer
        peer_address = _address(peer)
        if peer_address is None or not self.trusted(peer_address):
            return peer
        hops = [
            part
            for name, value in headers
            if name.lower() == b"x-forwarded-for"
            for part in value.decode("latin-1").split(",")
        ]
        client = peer_address
        for hop in reversed(hops):
            address = _address(hop)
            if address is None:
                # Not an address: no trusted proxy wrote it, so the last trusted hop is the client.
                break
            client = address
            if not self.trusted(address):
                break
        return str(client)
