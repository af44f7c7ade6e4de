"""The billing service over gRPC: every call has a deadline, transient failures are retried a few times.

Retrying CreateBillingAccount is safe because billing is idempotent on the patient id: a retry after a
lost reply returns the account the first attempt opened.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from pm.common import tracing
from pm.common.tls import ClientTls
from pm.patient.domain.model import BillingRejected, BillingUnavailable
from pm.proto.billing.v1 import billing_pb2, billing_pb2_grpc

log = logging.getLogger(__name__)

RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


def channel_credentials(tls: ClientTls) -> grpc.ChannelCredentials:
    ca, key, chain = tls.pem()
    return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=chain)


class GrpcBilling:
    def __init__(
        self,
        target: str,
        *,
        deadline_seconds: float = 2.0,
        attempts: int = 3,
        backoff_seconds: float = 0.2,
        tls: ClientTls | None = None,
        service_token: str | None = None,
    ) -> None:
        self.target = target
        self.deadline_seconds = deadline_seconds
        self.attempts = attempts
        self.backoff_seconds = backoff_seconds
        # Billing's internal credential (PM_BILLING_SERVICE_TOKEN), sent with every BillingService call.
        self._metadata = (("authorization", f"Bearer {service_token}"),) if service_token else None
        self._channel = tracing.grpc_channel(
            grpc.secure_channel(target, channel_credentials(tls)) if tls else grpc.insecure_channel(target)
        )
        self._stub = billing_pb2_grpc.BillingServiceStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)

    def open_account(self, patient_id: uuid.UUID, name: str, email: str) -> str:
        request = billing_pb2.CreateBillingAccountRequest(patient_id=str(patient_id), name=name, email=email)
        account = self._call(self._stub.CreateBillingAccount, request, patient_id, "the account")
        return str(account.account_id)

    def erase_patient_data(self, patient_id: uuid.UUID) -> None:
        """Billing's copy of the name and email erased; safe to retry (billing's erasure is idempotent)."""
        request = billing_pb2.ErasePatientDataRequest(patient_id=str(patient_id))
        self._call(self._stub.ErasePatientData, request, patient_id, "the erasure")

    def _call(self, method: Any, request: Any, patient_id: uuid.UUID, what: str) -> Any:
        """One idempotent call with a deadline per attempt, retried on UNAVAILABLE / DEADLINE_EXCEEDED."""
        for attempt in range(1, self.attempts + 1):
            try:
                return method(request, timeout=self.deadline_seconds, metadata=self._metadata)
            except grpc.RpcError as err:
                code = err.code()
                if code not in RETRYABLE:
                    log.error(
                        f"billing refused {what}",
                        extra={"code": code.name, "patient_id": str(patient_id)},
                    )
                    raise BillingRejected(f"Billing refused {what}: {code.name}.") from None
                log.warning(
                    "billing call failed",
                    extra={"code": code.name, "attempt": attempt, "patient_id": str(patient_id)},
                )
                if attempt < self.attempts:
                    time.sleep(self.backoff_seconds * 2 ** (attempt - 1))
        raise BillingUnavailable(f"Billing at {self.target} did not answer after {self.attempts} attempts.")

    def ping(self) -> None:
        """Health check: billing's standard gRPC health service says SERVING."""
        try:
            reply = self._health.Check(health_pb2.HealthCheckRequest(service=""), timeout=1.0)
        except grpc.RpcError as err:
            raise RuntimeError(f"billing at {self.target}: {err.code().name}") from None
        if reply.status != health_pb2.HealthCheckResponse.SERVING:
            raise RuntimeError(
                f"billing is {health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)}"
            )

    def close(self) -> None:
        self._channel.close()
