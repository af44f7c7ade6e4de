"""How handlers get their dependencies: one handler object per service, built by `bootstrap`.

A service's handlers are the methods of one class (`PatientHandlers`, `AuthHandlers`, ...) whose
constructor takes what they use (the use cases, keys...). `handler_resolver(handlers)` is a Connexion
`Resolver` (its public `function_resolver` hook) that serves each `operationId` of the spec with the
method of the same name (the last dotted part: `patients.get_patient` -> `get_patient`). No module
globals and no lookup per request: two apps in one process (tests) each call their own objects.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from connexion.resolver import Resolver


def handler_resolver(*handlers: object) -> Resolver:
    """A service with more than one handler object (analytics' API and its broker view) passes each; an
    operation is served by the first that has the method."""

    def method(operation_id: str) -> Callable[..., Any]:
        name = operation_id.rpartition(".")[2]
        for candidate in handlers:
            found = getattr(candidate, name, None)
            if callable(found):
                return found  # type: ignore[no-any-return]
        raise AttributeError(f"no handler has a method for operationId {operation_id!r}")

    return Resolver(function_resolver=method)
