"""The auth service: users, passwords, token issue and validation, brute-force defence."""
