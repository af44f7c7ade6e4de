"""One structured (JSON lines) logging setup for every service, carrying the request id."""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
import warnings

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
            "msg": record.getMessage(),
        }
        request_id = request_id_var.get()
        if request_id:
            entry["request_id"] = request_id
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


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
