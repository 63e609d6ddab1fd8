"""API keys and scopes: `Authorization: Bearer <key>`, found by its SHA-256 digest."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.handlers.http_handlers import HTTPRouteHandler
from litestar.types import Guard

from . import errors


@dataclass(frozen=True)
class Caller:
    key_hash: bytes  # identifies the key (idempotency scope, rate limits) without holding it
    scopes: frozenset[str]


class Keys:
    """Each key by its SHA-256: a caller is one hash of what it presented and one dict look-up
    (the look-up compares digests, never the key itself, so its time tells nothing of a
    key)."""

    def __init__(self, keys: Mapping[str, frozenset[str]]) -> None:
        self._callers: dict[bytes, Caller] = {}
        for key, scopes in keys.items():
            digest = hashlib.sha256(key.encode()).digest()
            self._callers[digest] = Caller(digest, scopes)

    def caller(self, authorization: str | None) -> Caller:
        scheme, _, presented = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            raise errors.Unauthorized()
        found = self._callers.get(hashlib.sha256(presented.strip().encode()).digest())
        if found is None:
            raise errors.Unauthorized()
        return found


def _authorization(scope: Any) -> str | None:
    """The Authorization header, read straight from the ASGI scope (no Headers object)."""
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            return str(value.decode("latin-1"))
    return None


def caller_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Caller:
    """The caller of a request (Unauthorized without a known key): one hash and one look-up,
    asked again where a handler needs it rather than kept in the request's state (a State
    object and its lock per request)."""
    return caller_in(connection.app.state.api_keys, connection.scope)


def caller_in(keys: Keys, scope: Any) -> Caller:
    """The caller of the request of an ASGI scope (Unauthorized without a known key)."""
    return keys.caller(_authorization(scope))


def allow(caller: Caller, wanted: frozenset[str]) -> None:
    """Forbidden unless the caller's key holds one of the scopes `wanted`."""
    if not caller.scopes & wanted:
        raise errors.Forbidden(f"this key needs one of the scopes {sorted(wanted)}")


def requires(*any_of: str) -> Guard:
    """A Litestar guard: the caller's key must hold one of these scopes."""
    wanted = frozenset(any_of)

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        allow(caller_of(connection), wanted)

    return guard


class Route(HTTPRouteHandler):
    """`litestar.route` whose guards are handed the route handler itself. Litestar hands each
    guard a copy of the handler (`copy.copy` of its ~60 attributes: ~6 % of a sold-out
    booking); the guards of `requires` read nothing of it. For the routes a crowd calls."""

    async def authorize_connection(self, connection: ASGIConnection[Any, Any, Any, Any]) -> None:
        for guard in self.resolve_guards():
            running = guard(connection, self)
            if running is not None:  # resolve_guards made each guard async
                await running
