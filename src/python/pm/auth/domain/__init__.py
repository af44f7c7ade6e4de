"""Auth domain: users, roles, credentials rules, the login throttle policy and domain errors."""
