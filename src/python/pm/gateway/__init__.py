"""The API gateway: the system's only public entry point (routing, JWT check, API docs, limits)."""
