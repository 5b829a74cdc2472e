"""JSON request bodies (and JSON form fields) with a bound on how deeply they nest.

Python's json module recurses once per level, so a body of 100,000 `[` raises RecursionError,
and a merely deep one (hundreds of levels) can still exhaust the stack later, in a serializer
or in `json.dumps`. No Slipway request needs more than a few levels, so anything deeper than
`MAX_JSON_DEPTH` is refused with a 400 at the parser, before a view sees it.
"""

from __future__ import annotations

from typing import Any

from rest_framework import parsers, serializers
from rest_framework.exceptions import ParseError

MAX_JSON_DEPTH = 64
TOO_DEEP = (
    f"The JSON is nested more than {MAX_JSON_DEPTH} levels deep (arrays or objects inside each other); "
    "no Slipway request needs that many. Send a flatter document."
)


def json_depth(value: Any) -> int:
    """How many arrays and objects deep `value` nests (0 for a plain value); iterative, so
    measuring never recurses itself."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        depth += 1
        if depth > MAX_JSON_DEPTH:
            return depth
        deepest = max(deepest, depth)
        stack.extend((child, depth) for child in children)
    return deepest


def check_depth(value: Any) -> Any:
    """`value` unchanged, or a 400 if it nests deeper than MAX_JSON_DEPTH."""
    if json_depth(value) > MAX_JSON_DEPTH:
        raise ParseError(TOO_DEEP)
    return value


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, answering a too-deep body with a 400 instead of a RecursionError (500)."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError(TOO_DEEP) from None
        return check_depth(data)


class JSONField(serializers.JSONField):
    """A JSON form field (a multipart upload's `inputs`, for instance) with the same bound."""

    def to_internal_value(self, data: Any) -> Any:
        try:
            value = super().to_internal_value(data)
        except RecursionError:
            raise serializers.ValidationError(TOO_DEEP) from None
        if json_depth(value) > MAX_JSON_DEPTH:
            raise serializers.ValidationError(TOO_DEEP)
        return value
