"""The API contract: the OpenAPI schema generates without warnings, documents every endpoint,
and matches the committed docs/openapi.yaml, so a change to the API is always a visible
change to the contract (run `make openapi` and commit the result)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import yaml
from django.core.management import call_command
from rest_framework.test import APIClient

from tests.conftest import client_for

COMMITTED = Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"


def _generated() -> str:
    out = io.StringIO()
    call_command("spectacular", "--validate", "--fail-on-warn", stdout=out)
    return out.getvalue()


def test_committed_schema_is_current():
    generated = _generated()
    assert COMMITTED.exists(), "docs/openapi.yaml is missing: run `make openapi` and commit it."
    assert generated == COMMITTED.read_text(), (
        "The API changed but docs/openapi.yaml did not: run `make openapi`, review the diff, and commit it."
    )


def test_every_operation_documents_the_error_body():
    schema = yaml.safe_load(_generated())
    assert "apiToken" in schema["components"]["securitySchemes"]
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            assert "401" in operation["responses"], f"{method} {path}"
            assert operation["responses"]["404"]["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/Error"
            }


def test_every_operation_documents_what_the_web_server_answers_on_its_own():
    """gunicorn answers a URL too long (414) and headers too large (431) before Django sees the
    request (platform/docker/gunicorn.conf.py), in the same error body: every operation lists both."""
    schema = yaml.safe_load(_generated())
    error = {"$ref": "#/components/schemas/Error"}
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            for status in ("414", "431"):
                response = operation["responses"].get(status)
                assert response and response["content"]["application/json"]["schema"] == error, (method, path, status)


@pytest.mark.django_db
def test_schema_and_docs_are_served_to_signed_in_users_only(personas):
    assert APIClient().get("/api/schema/").status_code == 401
    client = client_for(personas.viewer)
    assert client.get("/api/schema/").status_code == 200
    docs = client.get("/api/docs/")
    assert docs.status_code == 200 and b"swagger" in docs.content.lower()
    assert b"cdn" not in docs.content.lower()  # assets are served by the app itself
    assert client.get("/api/redoc/").status_code == 200
