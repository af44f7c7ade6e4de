"""Billing: one billing account per patient, over gRPC (pm.billing.v1.BillingService)."""
