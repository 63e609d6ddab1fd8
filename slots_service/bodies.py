"""Request bodies: JSON decoded once, strictly, into the route's Struct (API.md answers a
value of the wrong type with 400, where Litestar's own conversion would accept `"3"` for 3)."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request
from litestar.types import Empty

from . import errors


class StrictRequest(Request[Any, Any, Any]):
    """A request whose JSON body is decoded once, strictly, into the handler's Struct.

    Litestar would decode to builtins and then convert laxly (`"3"` to 3, `1` to true); API.md
    answers wrong types with 400. The Struct decoded here is what Litestar hands the handler
    (its conversion passes a value of the right type through untouched)."""

    async def json(self) -> Any:
        data = self.route_handler.parsed_fn_signature.parameters.get("data")
        if data is None:
            return await super().json()
        if self._json is Empty:
            body = await self.body()
            annotation = data.annotation
            self._json = strict(annotation, body) if body else None
        return self._json


_decoders: dict[Any, msgspec.json.Decoder[Any]] = {}


def _decoder(annotation: Any) -> msgspec.json.Decoder[Any]:
    found = _decoders.get(annotation)
    if found is None:
        found = _decoders[annotation] = msgspec.json.Decoder(annotation)
    return found


def strict(annotation: Any, body: bytes) -> Any:
    """`body` decoded strictly into `annotation` (InvalidRequest when it does not fit)."""
    try:
        return _decoder(annotation).decode(body)
    except msgspec.ValidationError as exc:
        # JSON Schema, and so the OpenAPI document, counts `3.0` as an integer; msgspec's
        # strict decoding does not. Tried only once the strict decode refused the body.
        try:
            return msgspec.convert(_whole_numbers(msgspec.json.decode(body)), annotation)
        except (msgspec.ValidationError, msgspec.DecodeError):
            raise errors.InvalidRequest(f"data: {exc}") from None
    except msgspec.DecodeError as exc:
        raise errors.InvalidRequest(f"JSON is malformed: {exc}") from None


def _whole_numbers(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_whole_numbers(v) for v in value]
    if isinstance(value, dict):
        return {k: _whole_numbers(v) for k, v in value.items()}
    return value
