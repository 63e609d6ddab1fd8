"""The OpenAPI document as the contract: what Litestar derives from the models, plus the
constraints it cannot see (unknown fields refused, a search by one key or the other)."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar.openapi.spec import OpenAPI, OpenAPIType, Reference, Schema

from . import models


def _request_structs() -> list[type[models.Request]]:
    found: list[type[models.Request]] = []
    todo: list[type[models.Request]] = [models.Request]
    while todo:
        struct = todo.pop()
        found.append(struct)
        todo.extend(struct.__subclasses__())
    return found


def _search_by_one_key(search: Schema) -> Schema:
    """`{id_type, id_number}` or `{reference}`, never both, never neither, never null."""
    properties = search.properties or {}

    def not_null(name: str) -> Schema | Reference:
        prop = properties[name]
        if isinstance(prop, Schema) and prop.one_of:
            kept = [s for s in prop.one_of if isinstance(s, Schema) and s.type != "null"]
            return Schema(
                type=kept[0].type if len(kept) == 1 else None,
                one_of=None if len(kept) == 1 else kept,
                pattern=prop.pattern,
                min_length=prop.min_length,
                max_length=prop.max_length,
                examples=prop.examples,
            )
        if isinstance(prop, Schema) and isinstance(prop.enum, list):
            return Schema(type=OpenAPIType.STRING, enum=[v for v in prop.enum if v is not None])
        return prop

    def one_way(*names: str) -> Schema:
        return Schema(
            type=OpenAPIType.OBJECT,
            properties={name: not_null(name) for name in names},
            required=list(names),
            additional_properties=False,
        )

    return Schema(
        one_of=[one_way("id_type", "id_number"), one_way("reference")], title=search.title
    )


def _string(found: dict[str, Any]) -> Schema:
    return Schema(
        type=OpenAPIType.STRING,
        min_length=found.get("minLength"),
        max_length=found.get("maxLength"),
        pattern=found.get("pattern"),
    )


def _flat_maps(struct: type[models.Request], schema: Schema) -> None:
    """Litestar drops the key and value constraints of a `dict[str, str]` field (`metadata`):
    take them from msgspec's own schema of the struct."""
    full = msgspec.json.schema(struct)
    own = full.get("$defs", {}).get(struct.__name__, full)
    for name, prop in own.get("properties", {}).items():
        if prop.get("type") != "object" or "propertyNames" not in prop:
            continue
        if schema.properties is None or name not in schema.properties:
            continue
        schema.properties[name] = Schema(
            type=OpenAPIType.OBJECT,
            property_names=_string(prop["propertyNames"]),
            additional_properties=_string(prop["additionalProperties"]),
            max_properties=prop.get("maxProperties"),
        )


def _string_lists(struct: type[models.Request], schema: Schema) -> None:
    """Litestar drops the item constraints of a `list[str]` field (`documents`): take them from
    msgspec's own schema too."""
    full = msgspec.json.schema(struct)
    own = full.get("$defs", {}).get(struct.__name__, full)
    for name, prop in own.get("properties", {}).items():
        items = prop.get("items", {})
        if prop.get("type") != "array" or items.get("type") != "string":
            continue
        if schema.properties is None or name not in schema.properties:
            continue
        schema.properties[name] = Schema(
            type=OpenAPIType.ARRAY,
            items=_string(items),
            max_items=prop.get("maxItems"),
            default=prop.get("default"),
        )


def _unset_optionals(struct: type[models.Request], schema: Schema) -> None:
    """A field that may be left out (`bool | UnsetType`) comes out as a one-way `oneOf`, and a
    list's length limit lost: its plain type, with msgspec's own limit."""
    full = msgspec.json.schema(struct)
    own = full.get("$defs", {}).get(struct.__name__, full).get("properties", {})
    for name, prop in (schema.properties or {}).items():
        if isinstance(prop, Schema) and prop.one_of and len(prop.one_of) == 1:
            assert schema.properties is not None
            plain = prop.one_of[0]
            if isinstance(plain, Schema) and "maxItems" in own.get(name, {}):
                plain.max_items = own[name]["maxItems"]
            schema.properties[name] = plain


def refine(document: OpenAPI) -> None:
    """Write into the generated document what the service enforces beyond the models' types."""
    schemas = document.components.schemas if document.components else None
    if not schemas:
        return
    for struct in _request_structs():
        schema = schemas.get(struct.__name__)
        if schema is not None:  # every request struct forbids unknown fields
            schema.additional_properties = False
            _flat_maps(struct, schema)
            _string_lists(struct, schema)
            _unset_optionals(struct, schema)
    clock = schemas.get(models.ClockIn.__name__)
    if clock is not None and clock.properties and isinstance(clock.properties["now"], Schema):
        clock.properties["now"].pattern = models.CLOCK_PATTERN
    search = schemas.get(models.SearchIn.__name__)
    if search is not None:
        schemas[models.SearchIn.__name__] = _search_by_one_key(search)
