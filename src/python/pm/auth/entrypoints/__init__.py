"""Auth HTTP entry points: Connexion handlers and request-body validation."""
