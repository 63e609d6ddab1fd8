"""API keys and scopes: `Authorization: Bearer <key>`, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.types import Guard

from . import errors


@dataclass(frozen=True)
class Caller:
    key_hash: bytes  # identifies the key (idempotency scope, rate limits) without holding it
    scopes: frozenset[str]


class Keys:
    def __init__(self, keys: Mapping[str, frozenset[str]]) -> None:
        self._keys = [(k.encode(), scopes) for k, scopes in keys.items()]

    def caller(self, authorization: str | None) -> Caller:
        scheme, _, presented = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            raise errors.Unauthorized()
        given = presented.strip().encode()
        found: frozenset[str] | None = None
        for key, scopes in self._keys:  # look at every key: the time says nothing
            if hmac.compare_digest(key, given):
                found = scopes
        if found is None:
            raise errors.Unauthorized()
        return Caller(hashlib.sha256(given).digest(), found)


def requires(*any_of: str) -> Guard:
    """A Litestar guard: the caller's key must hold one of these scopes."""
    wanted = frozenset(any_of)

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        keys: Keys = connection.app.state.api_keys
        caller = keys.caller(connection.headers.get("authorization"))
        if not caller.scopes & wanted:
            raise errors.Forbidden(f"this key needs one of the scopes {sorted(wanted)}")
        connection.state.caller = caller

    return guard
