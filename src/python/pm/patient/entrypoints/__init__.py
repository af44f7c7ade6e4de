"""The Connexion handlers: translate HTTP to use cases and back."""
