"""Use cases over abstract ports (repository, outbox, billing), so they run with fakes in unit tests."""
