"""One structured (JSON lines) logging setup for every service, carrying the request id and, inside a
trace, the `trace_id` and `span_id` of the current span (pm.common.tracing)."""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import time
import warnings
from typing import Any

from opentelemetry import trace

# Connexion imports Starlette's test client at import time, which warns on every service start. Services
# import this module before Connexion, so the filter is in place in time.
warnings.filterwarnings("ignore", message=".*starlette.testclient.*")

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

# uvicorn adds a terminal-coloured copy of its messages; it is noise in JSON.
_RESERVED = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "color_message",
}


# The one redaction point: every log line (and every line a service prints before logging is set up) passes
# through `redact`/`scrub`. Fields with these names never show their values, wherever they are nested.
SENSITIVE_FIELDS = frozenset(
    name.lower().replace("_", "").replace("-", "")
    for name in (
        "name",
        "firstName",
        "lastName",
        "email",
        "dateOfBirth",
        "address",
        "password",
        "passwordHash",
        "newPassword",
        "token",
        "accessToken",
        "refreshToken",
        "authorization",
        "cookie",
        "setCookie",
        "secret",
        "privateKey",
    )
)
REDACTED = "[redacted]"

# Values that reach text from libraries: SQLAlchemy's bound parameters (engines hide them; this catches
# any engine made elsewhere), PostgreSQL's DETAIL lines that quote row values, and URL passwords.
_TEXT_PATTERNS = [
    (re.compile(r"\[parameters: [^\n]*"), "[parameters: " + REDACTED + "]"),
    (re.compile(r"(Key \([^)\n]*\)=)\([^\n]*"), r"\1(" + REDACTED + ")"),
    (re.compile(r"(Failing row contains )\([^\n]*"), r"\1(" + REDACTED + ")"),
    (re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^/\s:@'\"]*:)[^@\s/'\"]+@"), r"\1***@"),
]


def scrub(text: str) -> str:
    """`text` without bound parameters, quoted row values or URL passwords."""
    for pattern, replacement in _TEXT_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def mask_url(url: str) -> str:
    """A URL fit to print: its password replaced by ***."""
    return scrub(url)


def redact(value: Any, key: str | None = None) -> Any:
    """`value` with sensitive fields (by name, at any depth) replaced and every string scrubbed."""
    if key is not None and key.lower().replace("_", "").replace("-", "") in SENSITIVE_FIELDS:
        return REDACTED
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [redact(v) for v in value]
    return value


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "msg": scrub(record.getMessage()),
        }
        request_id = request_id_var.get()
        if request_id:
            entry["request_id"] = request_id
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            entry["trace_id"] = f"{span.trace_id:032x}"
            entry["span_id"] = f"{span.span_id:016x}"
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = redact(value if _jsonable(value) else str(value), key)
        if record.exc_info:
            entry["exc"] = scrub(self.formatException(record.exc_info))
        return json.dumps(entry, default=str)


def _jsonable(value: Any) -> bool:
    return value is None or isinstance(
        value, str | int | float | bool | list | tuple | dict | set | frozenset
    )


class ClosingSocketRace(logging.Filter):
    """kafka-python 3 can read from or write to a connection in its I/O thread at the moment another thread
    closes it (a consumer or producer closing): the socket is already gone, and it logs the AttributeError
    with a traceback at ERROR before dropping the connection it was closing anyway. That is no error of
    ours or of the broker's: keep it as one DEBUG line."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if not (
            isinstance(error, AttributeError) and str(error).startswith("'NoneType' object has no attribute")
        ):
            return True
        record.msg, record.args = f"{record.getMessage()} (connection closed meanwhile: {error})", None
        record.exc_info, record.exc_text = None, None
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


KAFKA_TRANSPORT_LOGGER = "kafka.net.transport"


def configure_logging(service: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.captureWarnings(True)
    # Third-party chatter stays at WARNING unless we debug.
    for noisy in (
        "connexion",
        "kafka",
        "uvicorn.access",
        "alembic",
        "urllib3",
        "httpx",
        "httpcore",
        "botocore",
    ):
        logging.getLogger(noisy).setLevel("DEBUG" if level == "DEBUG" else "WARNING")
    transport = logging.getLogger(KAFKA_TRANSPORT_LOGGER)
    if not any(isinstance(f, ClosingSocketRace) for f in transport.filters):
        transport.addFilter(ClosingSocketRace())
