"""Auth adapters: SQL tables and repositories, bcrypt, signing keys and JWT issuing."""
