"""Helpers shared by every test area: databases, live servers, signed tokens. Fixtures: the root conftest."""
