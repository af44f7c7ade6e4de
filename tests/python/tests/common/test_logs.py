"""Structured logs: one JSON object per line with service, level, message, request id and extra fields."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Callable, Iterator

import pytest

from pm.common.logs import KAFKA_TRANSPORT_LOGGER, configure_logging, request_id_var


@pytest.fixture
def lines(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], list[dict[str, object]]]]:
    """Configure logging as a service does, onto a stderr we can read back."""
    stderr = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    configure_logging("billing", "INFO")

    def read() -> list[dict[str, object]]:
        return [json.loads(line) for line in stderr.getvalue().splitlines()]

    yield read
    root.handlers[:] = saved_handlers
    root.setLevel(saved_level)


def test_each_record_is_one_json_line_with_service_level_and_message(
    lines: Callable[[], list[dict[str, object]]],
) -> None:
    logging.getLogger("pm.billing").info("account %s created", "acc-1")
    logging.getLogger("pm.billing").warning("slow query")
    first, second = lines()
    assert first["service"] == "billing"
    assert first["level"] == "INFO"
    assert first["logger"] == "pm.billing"
    assert first["msg"] == "account acc-1 created"
    assert str(first["ts"]).endswith("Z")
    assert second["level"] == "WARNING"
    assert "request_id" not in first


def test_the_request_id_is_attached_while_it_is_set(lines: Callable[[], list[dict[str, object]]]) -> None:
    token = request_id_var.set("req-42")
    try:
        logging.getLogger("pm.patient").info("inside a request")
    finally:
        request_id_var.reset(token)
    logging.getLogger("pm.patient").info("outside a request")
    inside, outside = lines()
    assert inside["request_id"] == "req-42"
    assert "request_id" not in outside


def test_extra_fields_become_json_members_and_odd_values_are_stringified(
    lines: Callable[[], list[dict[str, object]]],
) -> None:
    class AccountId:
        def __str__(self) -> str:
            return "acc-7"

    logging.getLogger("pm.billing").info(
        "created", extra={"patient_id": "p-1", "attempt": 2, "account": AccountId(), "tags": ["a", "b"]}
    )
    (entry,) = lines()
    assert entry["patient_id"] == "p-1"
    assert entry["attempt"] == 2
    assert entry["account"] == "acc-7"
    assert entry["tags"] == ["a", "b"]


def test_an_exception_is_serialized_inside_the_same_line(
    lines: Callable[[], list[dict[str, object]]],
) -> None:
    try:
        raise ValueError("line one\nline two")
    except ValueError:
        logging.getLogger("pm.billing").exception("handler failed")
    (entry,) = lines()
    assert entry["level"] == "ERROR"
    assert entry["msg"] == "handler failed"
    assert "Traceback" in str(entry["exc"])
    assert "ValueError: line one\nline two" in str(entry["exc"])


def test_records_below_the_level_are_dropped_and_noisy_libraries_are_quiet(
    lines: Callable[[], list[dict[str, object]]],
) -> None:
    logging.getLogger("pm.billing").debug("too detailed")
    logging.getLogger("kafka.conn").info("connecting")
    logging.getLogger("kafka.conn").warning("broker down")
    (entry,) = lines()
    assert entry["logger"] == "kafka.conn"
    assert entry["msg"] == "broker down"


def test_kafka_reading_a_socket_closed_under_it_is_not_an_error(
    lines: Callable[[], list[dict[str, object]]],
) -> None:
    transport = logging.getLogger(KAFKA_TRANSPORT_LOGGER)
    try:
        None.recv(4096)  # type: ignore[attr-defined]  # what kafka-python's I/O thread hits at close
    except AttributeError:
        transport.exception("<BrokerConnection node_id=1>: Error receiving network data closing socket")
    try:
        raise ConnectionResetError("reset by peer")
    except ConnectionResetError:
        transport.exception("<BrokerConnection node_id=1>: Error receiving network data closing socket")
    (line,) = lines()
    assert line["level"] == "ERROR"
    assert "reset by peer" in str(line["exc"])


def test_sensitive_fields_are_redacted_at_any_depth(lines: Callable[[], list[dict[str, object]]]) -> None:
    logging.getLogger("pm.patient").warning(
        "rejected",
        extra={
            "patient": {"firstName": "Ada", "Email": "ada@example.org", "date_of_birth": "1815-12-10"},
            "attempts": [{"password": "hunter22", "refreshToken": "r-123"}],
            "authorization": "Bearer abc.def.ghi",
            "patient_id": "p-1",
        },
    )
    (entry,) = lines()
    text = json.dumps(entry)
    for value in ("Ada", "ada@example.org", "1815-12-10", "hunter22", "r-123", "abc.def.ghi"):
        assert value not in text
    assert entry["patient"] == {
        "firstName": "[redacted]",
        "Email": "[redacted]",
        "date_of_birth": "[redacted]",
    }
    assert entry["patient_id"] == "p-1"


def test_values_in_messages_and_tracebacks_are_scrubbed(lines: Callable[[], list[dict[str, object]]]) -> None:
    statement_error = (
        "(psycopg2.errors.UniqueViolation) duplicate key value violates unique constraint\n"
        "DETAIL:  Key (email)=(ada@example.org) already exists.\n"
        "[SQL: INSERT INTO patients (name, email) VALUES (%(name)s, %(email)s)]\n"
        "[parameters: {'name': 'Ada Lovelace', 'email': 'ada@example.org'}]"
    )
    try:
        raise RuntimeError(statement_error)
    except RuntimeError:
        logging.getLogger("pm.patient").exception("insert failed")
    logging.getLogger("pm.common.db").error(
        "cannot connect to %s",
        "postgresql+psycopg2://pm:S3cret-pw@db:5432/patient",
        extra={"error": statement_error},
    )
    text = "\n".join(json.dumps(entry) for entry in lines())
    for value in ("Ada Lovelace", "ada@example.org", "S3cret-pw"):
        assert value not in text
    assert "postgresql+psycopg2://pm:***@db:5432/patient" in text
    assert "INSERT INTO patients" in text  # the statement itself stays: it names no one
