"""Auth use cases over abstract repositories, a unit of work, a password hasher and a token issuer."""
