"""Frozen dataclasses as the JSON the pipeline stores: read back by type, described as JSON Schema.

A step's report is written once, by the worker, as JSON, and read by the recommender, the
evidence bundle, deployments, the API, the browser and the CLI. `from_dict` is the one reader:
it checks every field against the dataclass's annotations (numbers are numbers, a tuple field
holds a list, nested dataclasses are read by the same rules) and raises `ReportShapeError`
naming the field that doesn't fit. `json_schema` describes the same classes for the OpenAPI
document, from which the browser's types are generated, so the three never drift apart.

The annotations understood: str, int, float, bool, None, Any, Literal, unions (X | None),
tuple[X, ...], list[X], dict[str, X] / Mapping[str, X], and other frozen dataclasses. A field
with a default may be absent (reports written before it existed); one without may not.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar, get_args, get_origin, get_type_hints

T = TypeVar("T")


class ReportShapeError(ValueError):
    """Stored JSON that does not have the shape its type declares; the message names the field."""


@functools.cache
def _hints(cls: Any) -> dict[str, Any]:
    return get_type_hints(cls)


def from_dict(cls: type[T], data: Any, *, strict: bool = False, path: str = "") -> T:
    """An instance of the dataclass `cls` read from `data` (a mapping, as JSON holds it).

    Keys the class does not declare are ignored, so a newer report still reads; with `strict`
    they are refused (tests check that what a worker writes is all declared).
    """
    where = path or cls.__name__
    if not isinstance(data, Mapping):
        raise ReportShapeError(f"{where} should be an object, not {type(data).__name__}.")
    hints = _hints(cls)  # type: ignore[arg-type]
    values: dict[str, Any] = {}
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        if field.name in data:
            values[field.name] = _read(hints[field.name], data[field.name], f"{where}.{field.name}", strict)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ReportShapeError(f"{where}.{field.name} is missing.")
    if strict:
        unknown = sorted(set(data) - set(hints))
        if unknown:
            raise ReportShapeError(f"{where} has keys its type does not declare: {', '.join(unknown)}.")
    return cls(**values)


def read(cls: type[T], data: Any) -> T | None:
    """`data` as a `cls` where it has that shape, else None: how readers take a stored report
    that may predate its type or be damaged (they then show "unknown", never a wrong figure).
    An instance of `cls` passes through; the class's own `from_dict` is used where it has one."""
    if isinstance(data, cls):
        return data
    if not isinstance(data, Mapping):
        return None
    reader = cls.__dict__.get("from_dict")
    try:
        if isinstance(reader, classmethod):
            return typing.cast(T, getattr(cls, "from_dict")(data))  # noqa: B009  (the class's own reader)
        return from_dict(cls, data)
    except ReportShapeError:
        return None


def _read(hint: Any, value: Any, where: str, strict: bool) -> Any:
    origin = get_origin(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        options = get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _read(option, value, where, strict)
            except ReportShapeError as exc:
                errors.append(str(exc))
        raise ReportShapeError(errors[0] if len(errors) == 1 else f"{where} fits none of its types: {value!r}.")
    if origin is typing.Literal:
        if value not in get_args(hint):
            allowed = ", ".join(repr(option) for option in get_args(hint))
            raise ReportShapeError(f"{where} is {value!r}; it should be one of {allowed}.")
        return value
    if hint is type(None):
        if value is not None:
            raise ReportShapeError(f"{where} should be null.")
        return None
    if hint is bool:
        if not isinstance(value, bool):
            raise ReportShapeError(f"{where} should be true or false, not {value!r}.")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ReportShapeError(f"{where} should be a whole number, not {value!r}.")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ReportShapeError(f"{where} should be a number, not {value!r}.")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ReportShapeError(f"{where} should be text, not {value!r}.")
        return value
    if origin in (tuple, list):
        if not isinstance(value, list | tuple):
            raise ReportShapeError(f"{where} should be a list, not {type(value).__name__}.")
        args = get_args(hint)
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            if len(value) != len(args):
                raise ReportShapeError(f"{where} should hold {len(args)} items, not {len(value)}.")
            return tuple(
                _read(arg, item, f"{where}[{i}]", strict) for i, (arg, item) in enumerate(zip(args, value, strict=True))
            )
        item_hint = args[0] if args else Any
        items = [_read(item_hint, item, f"{where}[{i}]", strict) for i, item in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin in (dict, Mapping) or origin is typing.Mapping or hint is dict:
        if not isinstance(value, Mapping):
            raise ReportShapeError(f"{where} should be an object, not {type(value).__name__}.")
        args = get_args(hint)
        item_hint = args[1] if len(args) == 2 else Any
        return {str(key): _read(item_hint, item, f"{where}.{key}", strict) for key, item in value.items()}
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        own = hint.__dict__.get("from_dict")
        if isinstance(own, classmethod):  # a class that reads itself (old key names, say)
            try:
                return hint.from_dict(value, strict=strict)  # type: ignore[attr-defined]
            except ReportShapeError as exc:
                raise ReportShapeError(f"{where}: {exc}") from None
        return from_dict(hint, value, strict=strict, path=where)
    raise TypeError(f"{where}: the annotation {hint!r} is not one from_dict reads.")


def json_schema(*classes: type, ref: str = "#/components/schemas/") -> dict[str, dict[str, Any]]:
    """JSON Schema of each dataclass in `classes` and of every dataclass they use, by class name.

    Nested dataclasses are `$ref`s to `ref` + their name. A field is `required` when it has no
    default; its schema is `nullable` (OpenAPI 3.0) when None is allowed.
    """
    schemas: dict[str, dict[str, Any]] = {}
    named: dict[str, type] = {}
    pending = list(classes)
    while pending:
        cls = pending.pop(0)
        if cls.__name__ in schemas:
            if named[cls.__name__] is not cls:
                raise TypeError(
                    f"Two report types are named {cls.__name__} ({named[cls.__name__].__module__} and "
                    f"{cls.__module__}); the schema names types by class name, so rename one."
                )
            continue
        named[cls.__name__] = cls
        properties: dict[str, Any] = {}
        required = []
        hints = _hints(cls)
        for field in dataclasses.fields(cls):
            properties[field.name] = _schema(hints[field.name], ref, pending)
            if field.metadata.get("doc"):
                properties[field.name] = {**properties[field.name], "description": field.metadata["doc"]}
            if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
                required.append(field.name)
        schema: dict[str, Any] = {"type": "object", "properties": properties}
        if required:
            schema["required"] = required
        doc = (cls.__doc__ or "").strip()
        if doc and not doc.startswith(f"{cls.__name__}("):
            schema["description"] = " ".join(doc.split())
        schemas[cls.__name__] = schema
    return schemas


def _schema(hint: Any, ref: str, pending: list[type]) -> dict[str, Any]:
    origin = get_origin(hint)
    if hint is Any:
        return {}
    if origin in (typing.Union, types.UnionType):
        options = [option for option in get_args(hint) if option is not type(None)]
        nullable = len(options) < len(get_args(hint))
        parts = [_schema(option, ref, pending) for option in options]
        schema = parts[0] if len(parts) == 1 else {"oneOf": parts}
        if nullable:
            schema = {"allOf": [schema], "nullable": True} if "$ref" in schema else {**schema, "nullable": True}
        return schema
    if origin is typing.Literal:
        values = list(get_args(hint))
        kind = "string" if all(isinstance(value, str) for value in values) else "number"
        return {"type": kind, "enum": values}
    if hint is bool:
        return {"type": "boolean"}
    if hint is int:
        return {"type": "integer"}
    if hint is float:
        return {"type": "number"}
    if hint is str:
        return {"type": "string"}
    if origin in (tuple, list):
        args = get_args(hint)
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            items = [_schema(arg, ref, pending) for arg in args]
            same = all(item == items[0] for item in items)
            return {
                "type": "array",
                "items": items[0] if same else {"oneOf": items},
                "minItems": len(args),
                "maxItems": len(args),
            }
        return {"type": "array", "items": _schema(args[0], ref, pending) if args else {}}
    if origin in (dict, Mapping) or hint is dict:
        args = get_args(hint)
        return {"type": "object", "additionalProperties": _schema(args[1], ref, pending) if len(args) == 2 else {}}
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        pending.append(hint)
        return {"$ref": f"{ref}{hint.__name__}"}
    raise TypeError(f"The annotation {hint!r} has no JSON Schema here.")
