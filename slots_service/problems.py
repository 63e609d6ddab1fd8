"""RFC 9457 problem details: every error the service answers, mapped in one table."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec
from litestar import Request, Response
from litestar.exceptions import (
    HTTPException,
    MethodNotAllowedException,
    NotFoundException,
    ValidationException,
)
from litestar.openapi.datastructures import ResponseSpec
from litestar.response.base import ASGIResponse

from . import errors
from .logs import log_fault
from .models import Problem

if TYPE_CHECKING:
    from litestar import Litestar
    from litestar.background_tasks import BackgroundTask, BackgroundTasks
    from litestar.datastructures import Cookie
    from litestar.enums import MediaType
    from litestar.types import TypeEncodersMap

log = logging.getLogger(__name__)
K = TypeVar("K")
V = TypeVar("V")
_encode = msgspec.json.Encoder().encode
PROBLEM = "application/problem+json"

_HTTP_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "request_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    503: "unavailable",
}


@dataclass(frozen=True)
class Kind:
    """How the API answers one domain error."""

    status: int
    title: str


# The one table from domain errors to HTTP (API.md "Error codes").
KINDS: dict[type[errors.DomainError], Kind] = {
    errors.DomainError: Kind(400, "Bad request"),
    errors.InvalidRequest: Kind(400, "Bad request"),
    errors.Unauthorized: Kind(401, "Unauthorized"),
    errors.Forbidden: Kind(403, "Forbidden"),
    errors.PersonBlocked: Kind(403, "Person blocked"),
    errors.NotFound: Kind(404, "Not found"),
    errors.SlotFull: Kind(409, "Window full"),
    errors.ActiveBookingExists: Kind(409, "Active booking exists"),
    errors.DailyLimitReached: Kind(409, "Daily limit reached"),
    errors.RebookCooldown: Kind(409, "Rebook cooldown"),
    errors.PhoneBoundToOtherPerson: Kind(409, "Phone bound to another person"),
    errors.CancelCutoffPassed: Kind(409, "Cancel cutoff passed"),
    errors.InvalidState: Kind(409, "Invalid state"),
    errors.RescheduleLimitReached: Kind(409, "Reschedule limit reached"),
    errors.EntryExists: Kind(409, "Entry exists"),
    errors.EntriesClosed: Kind(409, "Entries closed"),
    errors.DrawPending: Kind(409, "Draw pending"),
    errors.WaitlistEntryExists: Kind(409, "Waitlist entry exists"),
    errors.IdempotencyInProgress: Kind(409, "Idempotent request in progress"),
    errors.IdempotencyKeyReused: Kind(422, "Idempotency-Key reused"),
    errors.NotBookable: Kind(422, "Not bookable"),
    errors.RateLimited: Kind(429, "Too many requests"),
    errors.Unavailable: Kind(503, "Service unavailable"),
}
assert set(KINDS) == set(errors.ALL), "every domain error has its status and title"
# One title per problem type (RFC 9457), whoever raises it: the domain error's, else the status's.
_TITLES = {cls.code: kind.title for cls, kind in KINDS.items()} | {
    "internal_error": "Internal error"
}


def kind(exc: errors.DomainError) -> Kind:
    return KINDS[type(exc)]


def headers(exc: errors.DomainError) -> dict[str, str]:
    if isinstance(exc, errors.Unauthorized):
        return {"WWW-Authenticate": "Bearer"}  # RFC 9110: a 401 names its scheme
    retry_after = getattr(exc, "retry_after", None)
    return {"Retry-After": str(retry_after)} if retry_after is not None else {}


def problem(status: int, code: str, title: str, detail: str, **extra: Any) -> bytes:
    return _encode(
        {
            "type": f"https://slots-service/problems/{code}",
            "title": title,
            "status": status,
            "detail": detail,
            "code": code,
            **extra,
        }
    )


def problem_body(exc: errors.DomainError) -> bytes:
    found = kind(exc)
    return problem(found.status, exc.code, found.title, exc.detail, **exc.extra)


def _response(body: bytes, status: int, headers: dict[str, str] | None = None) -> Response[bytes]:
    return Response(content=body, status_code=status, media_type=PROBLEM, headers=headers)


# Bodies of problems that carry nothing of their request (no extra members), encoded once:
# the crowd's `slot_full` is the same bytes every time. Bounded, since a detail may name values.
_ENCODED: dict[tuple[type[errors.DomainError], str], bytes] = {}
_ENCODED_MAX = 512


def _kept(kept: dict[K, V], key: K, make: Callable[[], V]) -> V:
    """`make()`, made once per key while `kept` holds fewer than _ENCODED_MAX."""
    found = kept.get(key)
    if found is None:
        found = make()
        if len(kept) < _ENCODED_MAX:
            kept[key] = found
    return found


def constant_body(exc: errors.DomainError) -> bytes:
    """problem_body(exc), encoded once per kind and detail when it carries no extra members."""
    if exc.extra:
        return problem_body(exc)
    return _kept(_ENCODED, (type(exc), exc.detail), lambda: problem_body(exc))


def on_domain_error(_: Request[Any, Any, Any], exc: errors.DomainError) -> Response[bytes]:
    return _response(constant_body(exc), kind(exc).status, headers(exc))


class Refusal(Response[Any]):
    """A domain error answered by the handler that caught it, not raised through Litestar's
    exception handlers (~20 % of a sold-out booking went there): the status, headers and bytes
    `on_domain_error` answers, and its ASGI response built once. A route returns it where its
    annotation says `Response[T]`: the OpenAPI document keeps T as the success schema, and
    `raises()` documents the refusals as before."""

    __slots__ = ("_answer",)

    def __init__(self, exc: errors.DomainError) -> None:
        body, status, extra = constant_body(exc), kind(exc).status, headers(exc)
        super().__init__(body, status_code=status, media_type=PROBLEM, headers=extra)
        self._answer = ASGIResponse(
            body=body, status_code=status, media_type=PROBLEM, headers=extra
        )

    def to_asgi_response(
        self,
        app: Litestar | None,
        request: Request[Any, Any, Any],
        *,
        background: BackgroundTask | BackgroundTasks | None = None,
        cookies: Iterable[Cookie] | None = None,
        encoded_headers: Iterable[tuple[bytes, bytes]] | None = None,
        headers: dict[str, str] | None = None,
        is_head_response: bool = False,
        media_type: MediaType | str | None = None,
        status_code: int | None = None,
        type_encoders: TypeEncodersMap | None = None,
    ) -> ASGIResponse:
        """The answer built once, unless the route adds something of its own to it (then as
        Litestar builds it; the route's status code never replaces the problem's)."""
        if background or cookies or encoded_headers or headers or is_head_response:
            return super().to_asgi_response(
                app,
                request,
                background=background,
                cookies=cookies,
                encoded_headers=encoded_headers,
                headers=headers,
                is_head_response=is_head_response,
                type_encoders=type_encoders,
            )
        return self._answer

    @property
    def asgi(self) -> ASGIResponse:
        """The answer as an ASGI app, what `to_asgi_response` gives."""
        return self._answer


# Refusals that carry nothing of their request, built once: a crowd's `slot_full` is the same
# answer every time. Bounded, since a detail may name values.
_REFUSALS: dict[tuple[type[errors.DomainError], str, tuple[tuple[str, str], ...]], Refusal] = {}


def refusal(exc: errors.DomainError) -> Refusal:
    """The Refusal of `exc`, kept when it carries no extra members."""
    if exc.extra:
        return Refusal(exc)
    key = (type(exc), exc.detail, tuple(headers(exc).items()))
    return _kept(_REFUSALS, key, lambda: Refusal(exc))


def _validation_detail(exc: ValidationException) -> str:
    detail = str(exc.detail or "invalid request")
    extra = exc.extra
    if isinstance(extra, list) and extra:
        parts = []
        for item in extra:
            if isinstance(item, dict):
                where = item.get("key") or item.get("source") or ""
                parts.append(f"{where}: {item.get('message', '')}".strip(": "))
        if parts:
            detail = "; ".join(parts)
    return detail


def on_http_error(_: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    status = exc.status_code
    if isinstance(exc, ValidationException):
        detail = _validation_detail(exc)
    elif isinstance(exc, NotFoundException):
        detail = "no such route"
    elif isinstance(exc, MethodNotAllowedException):
        detail = "method not allowed on this route"
    else:
        detail = str(exc.detail)
    code = _HTTP_CODES.get(status, "invalid_request" if status < 500 else "internal_error")
    headers = dict(exc.headers or {})
    title = _TITLES.get(code) or HTTPStatus(status).phrase
    return _response(problem(status, code, title, detail), status, headers)


_UNEXPECTED = problem(
    500, "internal_error", "Internal error", "an unexpected error; see the service logs"
)


def on_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    log_fault(log, "unhandled error", exc)
    return _response(_UNEXPECTED, 500)


def unexpected(exc: Exception) -> ASGIResponse:
    """on_unexpected's answer, for a path that answers without Litestar's handlers."""
    log_fault(log, "unhandled error", exc)
    return ASGIResponse(body=_UNEXPECTED, status_code=500, media_type=PROBLEM)


handlers: dict[type[Exception] | int, Any] = {
    errors.DomainError: on_domain_error,
    HTTPException: on_http_error,
    Exception: on_unexpected,
}


# Any route may answer these: a malformed request, no key, the wrong scope, Postgres gone.
_ANY_ROUTE: tuple[type[errors.DomainError], ...] = (
    errors.InvalidRequest,
    errors.Unauthorized,
    errors.Forbidden,
    errors.Unavailable,
)


def raises(*found: type[errors.DomainError]) -> dict[int, ResponseSpec]:
    """The problem responses of a route that may raise these domain errors: one per status,
    naming the codes it may carry (derived from KINDS, never listed by hand)."""
    codes: dict[int, list[str]] = {}
    for cls in (*_ANY_ROUTE, *found):
        codes.setdefault(KINDS[cls].status, []).append(cls.code)
    return {
        status: ResponseSpec(
            data_container=Problem,
            description=", ".join(dict.fromkeys(names)),
            media_type=PROBLEM,
            generate_examples=False,
        )
        for status, names in sorted(codes.items())
    }
