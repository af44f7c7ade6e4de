"""The gateway's ASGI application and the pages it serves itself."""
