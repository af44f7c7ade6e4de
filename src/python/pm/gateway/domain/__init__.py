"""Gateway rules as plain Python: the route table, header forwarding policy, rate limiting, CORS."""
