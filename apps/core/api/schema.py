"""OpenAPI schema conventions shared by every endpoint.

Every operation documents the one error body ({code, message, fields}) for the 4xx answers
it can give, so clients generated from the schema (the browser app, the CLI's users) and
schemathesis know error shapes as well as success shapes. That includes what the web server
answers on its own (414 for a URL too long, 431 for headers too large), in the same body.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter

ERROR_SCHEMA = {
    "type": "object",
    "description": "Every API error: a stable machine code, a sentence for people, and per-field errors.",
    "properties": {
        "code": {"type": "string", "example": "not_found"},
        "message": {"type": "string", "example": "Not found. It does not exist or you have no access to it."},
        "fields": {"type": "object", "additionalProperties": True},
    },
    "required": ["code", "message", "fields"],
}

_ERRORS = {
    "400": "The request is invalid; the message says what to change.",
    "401": "Not signed in, or the API token is malformed, unknown, revoked or expired.",
    "403": "Your role or your token's scope does not allow this; the message says which would.",
    "404": "It does not exist, or it belongs to a team you are not in.",
    "409": "The object's state does not allow this now (e.g. still running, already approved).",
    "414": "The URL (path and query string) is longer than the web server accepts; gunicorn answers this "
    "itself (platform/docker/gunicorn.conf.py), before the request reaches the API.",
    "429": "Too many requests for this token; retry after the time in Retry-After.",
    "431": "The request's headers are too many or too large for the web server; gunicorn answers this itself.",
    "503": "The database is briefly unavailable, or a disk is full (code disk_full, naming the disk); nothing was "
    "done. Retry after the time in Retry-After.",
}
_SAFE_ERRORS = ("400", "401", "403", "404", "414", "429", "431", "503")


def add_error_responses(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """drf-spectacular postprocessing hook: the Error component and its 4xx responses."""
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    ref = {"$ref": "#/components/schemas/Error"}
    for path in result.get("paths", {}).values():
        for method, operation in path.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses = operation["responses"]
            codes = _SAFE_ERRORS if method == "get" else tuple(_ERRORS)
            for code in codes:
                responses.setdefault(code, {"description": _ERRORS[code]})
            for code, response in responses.items():
                # an error a view declares itself gets the same body
                if code[0] in "45" and "content" not in response:
                    response["content"] = {"application/json": {"schema": ref}}
    return result


def query(name: str, description: str, kind: type = str) -> OpenApiParameter:
    """A documented query-string filter."""
    return OpenApiParameter(name, kind, OpenApiParameter.QUERY, required=False, description=description)


def add_report_components(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """drf-spectacular postprocessing hook: the step reports' types (`workers.engine.reports`) as
    components, written from the same dataclasses the server reads reports with, so the browser's
    generated types and the server's reader describe one shape."""
    from workers.engine.reports import SCHEMA_CLASSES
    from workers.engine.typed import json_schema
    from workers.engine.work import WorkOrder

    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    for name, schema in json_schema(*SCHEMA_CLASSES, WorkOrder).items():
        if name in schemas and schemas[name] != schema:
            raise ValueError(f"Two OpenAPI components are named {name}: rename the report class.")
        schemas[name] = schema
    return result


# The `reports` field of a version: by step kind, then by profile where the step runs per profile.
def _per_profile(report: str) -> dict[str, Any]:
    return {
        "type": "object",
        "description": f"The {report} of each hardware profile, by profile slug.",
        "additionalProperties": {"$ref": f"#/components/schemas/{report}"},
    }


REPORTS_SCHEMA = {
    "type": "object",
    "description": "Each finished step's report from the latest run: by step kind, then by profile for steps that "
    "run per hardware profile (validate, optimize, parity, benchmark, recommend). Every report is typed by the "
    "classes the server reads it with (workers/engine/reports.py).",
    "properties": {
        "import": {"$ref": "#/components/schemas/ImportReport"},
        "inspect": {"$ref": "#/components/schemas/InspectReport"},
        "validate": _per_profile("ValidateReport"),
        "optimize": _per_profile("OptimizeReport"),
        "parity": _per_profile("ParityReport"),
        "benchmark": _per_profile("BenchmarkReport"),
        "recommend": _per_profile("RecommendReport"),
    },
}


WORK_ORDER_SCHEMA = {"$ref": "#/components/schemas/WorkOrder"}
