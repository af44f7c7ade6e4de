"""SQLAlchemy tables and repositories, the billing gRPC client and the outbox relay to Kafka."""
