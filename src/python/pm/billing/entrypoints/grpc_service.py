"""The gRPC face of billing: proto in, use case, proto out; domain errors become status codes here."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import TypeVar

import grpc
from grpc_health.v1 import health, health_pb2

from pm.billing.domain.model import AccountNotFound, BillingAccount, InvalidAccountRequest
from pm.billing.service_layer import services
from pm.billing.service_layer.services import UnitOfWorkFactory
from pm.common.db import StoreUnavailable
from pm.proto.billing.v1 import billing_pb2, billing_pb2_grpc

log = logging.getLogger(__name__)

SERVICE_NAME = billing_pb2.DESCRIPTOR.services_by_name["BillingService"].full_name

# Domain error -> (status code, message; None: the error's own text).
GRPC_ERRORS: dict[type[Exception], tuple[grpc.StatusCode, str | None]] = {
    InvalidAccountRequest: (grpc.StatusCode.INVALID_ARGUMENT, None),
    AccountNotFound: (grpc.StatusCode.NOT_FOUND, None),
    StoreUnavailable: (grpc.StatusCode.UNAVAILABLE, "billing storage is unavailable, retry later"),
}


Request = TypeVar("Request")
Response = TypeVar("Response")


def _errors_as_status(
    method: Callable[[BillingServicer, Request, grpc.ServicerContext], Response],
) -> Callable[[BillingServicer, Request, grpc.ServicerContext], Response]:
    """The one place domain errors become status codes, from GRPC_ERRORS (context.abort raises, so
    nothing after a mapped error runs)."""

    @functools.wraps(method)
    def servicer_method(self: BillingServicer, request: Request, context: grpc.ServicerContext) -> Response:
        try:
            return method(self, request, context)
        except tuple(GRPC_ERRORS) as exc:
            code, message = next(GRPC_ERRORS[c] for c in type(exc).__mro__ if c in GRPC_ERRORS)
            if isinstance(exc, StoreUnavailable):
                log.warning("account store unavailable", extra={"error": str(exc)})
                self.on_store_unavailable()
            context.abort(code, message or str(exc))

    return servicer_method


class BillingServicer(billing_pb2_grpc.BillingServiceServicer):
    def __init__(self, uow: UnitOfWorkFactory, on_store_unavailable: Callable[[], None]) -> None:
        self.uow = uow
        self.on_store_unavailable = on_store_unavailable

    @_errors_as_status
    def CreateBillingAccount(
        self, request: billing_pb2.CreateBillingAccountRequest, context: grpc.ServicerContext
    ) -> billing_pb2.BillingAccount:
        account = services.create_billing_account(
            self.uow, patient_id=request.patient_id, name=request.name, email=request.email
        )
        log.info("billing account ready", extra={"account_id": str(account.account_id)})
        return to_proto(account)

    @_errors_as_status
    def GetBillingAccount(
        self, request: billing_pb2.GetBillingAccountRequest, context: grpc.ServicerContext
    ) -> billing_pb2.BillingAccount:
        return to_proto(services.get_billing_account(self.uow, patient_id=request.patient_id))

    @_errors_as_status
    def ErasePatientData(
        self, request: billing_pb2.ErasePatientDataRequest, context: grpc.ServicerContext
    ) -> billing_pb2.ErasePatientDataResponse:
        found = services.erase_patient_data(self.uow, patient_id=request.patient_id)
        log.info("patient data erased", extra={"patient_id": request.patient_id, "account_found": found})
        return billing_pb2.ErasePatientDataResponse(account_found=found)


def to_proto(account: BillingAccount) -> billing_pb2.BillingAccount:
    return billing_pb2.BillingAccount(
        account_id=str(account.account_id),
        status=account.status,
        patient_id=str(account.patient_id),
        name=account.name,
        email=account.email,
        created_at=account.created_at.isoformat(timespec="microseconds").replace("+00:00", "Z"),
    )


class DatabaseHealth:
    """Keeps the standard health service's answers (overall and per service) in line with the database."""

    def __init__(self, ping: Callable[[], None]) -> None:
        self.ping = ping
        self.servicer = _CheckingHealthServicer(self)

    def refresh(self) -> bool:
        try:
            self.ping()
            serving = True
        except Exception as exc:  # noqa: BLE001 - any failure to answer means we cannot serve
            log.warning("database health check failed", extra={"error": str(exc).splitlines()[0][:200]})
            serving = False
        self._set(serving)
        return serving

    def mark_unavailable(self) -> None:
        self._set(False)

    def shutting_down(self) -> None:
        self.servicer.enter_graceful_shutdown()

    def _set(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ("", SERVICE_NAME):
            self.servicer.set(name, status)


class _CheckingHealthServicer(health.HealthServicer):
    """`Check` asks the database each time, so an answer is never staler than the call itself."""

    def __init__(self, owner: DatabaseHealth) -> None:
        super().__init__()
        self.owner = owner

    def Check(self, request, context):  # type: ignore[no-untyped-def]
        if request.service in ("", SERVICE_NAME):
            self.owner.refresh()
        return super().Check(request, context)
