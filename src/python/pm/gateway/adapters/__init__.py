"""Talking to the services behind the gateway: the HTTP proxy, OpenAPI documents, health probes."""
