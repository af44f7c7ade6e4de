"""Gateway use cases: authenticating a caller (a verified bearer token, remembered briefly)."""
