"""RFC 9457 problem details: every error the service answers, mapped in one table."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import (
    HTTPException,
    MethodNotAllowedException,
    NotFoundException,
    ValidationException,
)

from . import errors
from .db import translate
from .logs import log_fault

log = logging.getLogger(__name__)
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

# One title per problem type (RFC 9457), whoever raises it: the domain error's, else the status's.
_DOMAIN: list[type[errors.DomainError]] = [errors.DomainError, *errors.DomainError.__subclasses__()]
_TITLES = {e.code: e.title for e in _DOMAIN} | {"internal_error": "Internal error"}


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
    return problem(exc.status, exc.code, exc.title, exc.detail, **exc.extra)


def _response(body: bytes, status: int, headers: dict[str, str] | None = None) -> Response[bytes]:
    return Response(content=body, status_code=status, media_type=PROBLEM, headers=headers)


def on_domain_error(_: Request[Any, Any, Any], exc: errors.DomainError) -> Response[bytes]:
    return _response(problem_body(exc), exc.status, exc.headers)


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


def on_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    mapped = translate(exc)
    if mapped is not None:
        return on_domain_error(request, mapped)
    log_fault(log, "unhandled error", exc)
    return _response(
        problem(
            500, "internal_error", "Internal error", "an unexpected error; see the service logs"
        ),
        500,
    )


handlers: dict[type[Exception] | int, Any] = {
    errors.DomainError: on_domain_error,
    HTTPException: on_http_error,
    Exception: on_unexpected,
}
