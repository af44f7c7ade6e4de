"""The database's own failures, for the layers that answer them; light to import (no engine, no ORM):
`problems` loads it, and every HTTP process loads `problems`."""

from __future__ import annotations

from sqlalchemy import exc as sa_exc

# Failures of the database itself (down, unreachable, too slow, pool exhausted), as opposed to bugs in
# our SQL: the call may succeed later (HTTP 503, gRPC UNAVAILABLE), not 500.
DATABASE_UNAVAILABLE = (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError)


class StoreUnavailable(Exception):
    """The service's database cannot be reached right now; the call may succeed if retried."""
