"""The patient service: patient records, billing accounts through gRPC, events through an outbox."""
