"""API conventions every endpoint keeps: Idempotency-Key on creates, ETags on reads, rate
limits per token, ordering on lists, one error body."""

from __future__ import annotations

import errno
import sqlite3

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import OperationalError
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.test import APIClient

from apps.accounts.models import ApiToken
from apps.approvals.models import Policy
from apps.core.api.throttling import PerTokenRateThrottle
from apps.core.models import IdempotencyRecord
from apps.registry.models import ModelVersion, RegisteredModel
from tests import modelzoo
from tests.conftest import client_for

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_broker(broker):
    """Messages to workers are recorded, not sent."""


@pytest.fixture
def onnx_bytes(tmp_path) -> bytes:
    return modelzoo.make_mlp_onnx(tmp_path / "mlp.onnx").read_bytes()


def _upload(client, data: bytes, key: str | None, notes: str = ""):
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}
    return client.post(
        "/api/v1/models/digits/versions/",
        {"file": SimpleUploadedFile("m.onnx", data), "team": "vision", "notes": notes},
        format="multipart",
        **headers,
    )


def test_a_retried_upload_with_the_same_key_makes_one_version(personas, onnx_bytes):
    client = client_for(personas.owner)
    first = _upload(client, onnx_bytes, "push-7f3a")
    again = _upload(client, onnx_bytes, "push-7f3a")
    assert first.status_code == again.status_code == 201
    assert again["Idempotent-Replayed"] == "true" and again.json()["id"] == first.json()["id"]
    assert ModelVersion.objects.count() == 1
    # the same key for a different request is refused; a new key makes a new version
    other = _upload(client, onnx_bytes, "push-7f3a", notes="changed")
    assert other.status_code == 422 and other.json()["code"] == "idempotency_key_reused"
    assert _upload(client, onnx_bytes, "push-8b11").json()["number"] == 2
    # keys are per user: someone else's identical key acts for them
    assert _upload(client_for(personas.admin), onnx_bytes, "push-7f3a").status_code == 201
    assert ModelVersion.objects.count() == 3


def test_a_failed_request_is_not_remembered(personas, onnx_bytes):
    viewer = client_for(personas.viewer)
    RegisteredModel.objects.create(team=personas.team, name="digits", slug="digits", created_by=personas.owner)
    assert _upload(viewer, onnx_bytes, "k-1").status_code == 403
    assert not IdempotencyRecord.objects.exists()
    bad = client_for(personas.owner).post(
        "/api/v1/policies/", {"team": "vision", "name": "x", "kind": "max_p99_latency"}, HTTP_IDEMPOTENCY_KEY="k-2"
    )
    assert bad.status_code == 403  # a data scientist can't manage policies
    assert not IdempotencyRecord.objects.exists() and not Policy.objects.exists()


def test_an_invalid_key_is_a_400(personas, onnx_bytes):
    response = _upload(client_for(personas.owner), onnx_bytes, "x" * 300)
    assert response.status_code == 400 and response.json()["code"] == "invalid_idempotency_key"
    assert not ModelVersion.objects.exists()


def _post_views() -> list[tuple[str, type]]:
    found = []

    def walk(patterns, prefix):
        for pattern in patterns:
            route = prefix + str(pattern.pattern)
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, route)
            elif isinstance(pattern, URLPattern) and route.startswith("api/v1/"):
                view = getattr(pattern.callback, "view_class", None) or getattr(pattern.callback, "cls", None)
                if view is not None and hasattr(view, "post"):
                    found.append((route, view))

    walk(get_resolver().url_patterns, "")
    return found


def test_every_create_endpoint_honours_idempotency_keys():
    def honours(view: type) -> bool:
        # generics route POST through create(); plain views handle it in post()
        return any(getattr(getattr(view, name, None), "idempotent", False) for name in ("post", "create"))

    missing = [route for route, view in _post_views() if not honours(view)]
    assert not missing, f"POST endpoints without @idempotent: {missing}"


def test_reads_have_etags_and_answer_304(personas):
    client = client_for(personas.viewer)
    first = client.get("/api/v1/teams/vision/")
    etag = first["ETag"]
    assert etag
    again = client.get("/api/v1/teams/vision/", HTTP_IF_NONE_MATCH=etag)
    assert again.status_code == 304 and not again.content
    client_for(personas.admin).patch("/api/v1/teams/vision/", {"name": "Vision Team"}, format="json")
    changed = client.get("/api/v1/teams/vision/", HTTP_IF_NONE_MATCH=etag)
    assert changed.status_code == 200 and changed["ETag"] != etag


def test_rate_limit_is_per_token_with_retry_after(personas, monkeypatch):
    from django.core.cache import cache

    cache.clear()
    monkeypatch.setattr(PerTokenRateThrottle, "THROTTLE_RATES", {"api": "3/min", "upload": "1/min"})
    _, one = ApiToken.issue(personas.viewer, "a", ["read"])
    _, two = ApiToken.issue(personas.viewer, "b", ["read"])
    first = APIClient(HTTP_AUTHORIZATION=f"Bearer {one}")
    assert [first.get("/api/v1/teams/").status_code for _ in range(3)] == [200, 200, 200]
    limited = first.get("/api/v1/teams/")
    assert limited.status_code == 429 and int(limited["Retry-After"]) > 0
    assert limited.json()["code"] == "throttled" and limited.json()["message"]
    assert APIClient(HTTP_AUTHORIZATION=f"Bearer {two}").get("/api/v1/teams/").status_code == 200
    cache.clear()


def test_lists_take_an_ordering(personas):
    for name in ("b-model", "a-model", "c-model"):
        RegisteredModel.objects.create(team=personas.team, name=name, slug=name, created_by=personas.owner)
    client = client_for(personas.viewer)
    names = [m["slug"] for m in client.get("/api/v1/models/?ordering=name").json()["results"]]
    assert names == ["a-model", "b-model", "c-model"]
    newest = [m["slug"] for m in client.get("/api/v1/models/").json()["results"]]
    assert newest == ["c-model", "a-model", "b-model"]  # default: newest first


def _integer_query_filters() -> list[tuple[str, str]]:
    """(path, name) of every integer query parameter a list endpoint documents."""
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    found = []
    for path, operations in schema["paths"].items():
        if path.startswith("/api/v1/agent/"):
            continue  # a device's calls, with a device credential: tests/apps/test_device_leases.py
        for parameter in operations.get("get", {}).get("parameters", []):
            if parameter["in"] == "query" and parameter["schema"].get("type") == "integer":
                found.append((path, parameter["name"]))
    return found


def test_integer_filters_refuse_values_no_column_holds_with_a_400(personas):
    from apps.core.api.pagination import DefaultPagination

    filters = _integer_query_filters()
    assert ("/api/v1/deployments/", "version") in filters
    client = client_for(personas.admin)
    for path, name in filters:
        url = path.replace("{slug}", "vision").replace("{id}", "1").replace("{delivery_id}", "1")
        for value in ("99999999999999999999999", "9223372036854775808", "-1", "²", "1" * 5000):
            response = client.get(url, {name: value})
            assert response.status_code < 500, (path, name, value)
            if name == DefaultPagination.page_size_query_param:
                continue  # a page size out of range means the largest page (max_page_size)
            assert response.status_code == 400, (path, name, value, response.content[:200])
            body = response.json()
            assert body["code"] == f"invalid_{name}" and "9223372036854775807" in body["message"], body
        assert client.get(url, {name: str(2**63 - 1)}).status_code in (200, 404), (path, name)


def test_a_json_body_nested_too_deep_is_a_400_on_every_create_endpoint(personas):
    from apps.hardware import devices

    client = client_for(personas.admin)
    # A device's agent calls with its device credential: a user is no device.
    _, token = devices.create_enrollment(personas.team, personas.admin, ["x86-cpu"])
    probe = {"host": "b", "arch": "x86_64", "cpu_model": "x", "cpu_flags": [], "cores": 1, "memory_bytes": 1}
    device = APIClient()
    device.credentials(HTTP_AUTHORIZATION=f"Device {devices.register(token, 'deep', probe)[1]}")
    for route, _ in _post_views():
        url = "/" + route.replace("<slug:slug>", "vision").replace("<int:pk>", "1").replace("<int:delivery_id>", "1")
        url = url.replace("<slug:profile>", "x86-cpu").replace("<int:job>", "1")
        caller = device if route.startswith("api/v1/agent/") else client
        for body in ("[" * 100_000, "[" * 65 + "]" * 65):
            response = caller.post(url, body, content_type="application/json", HTTP_IDEMPOTENCY_KEY="deep-1")
            assert response.status_code == 400, (url, response.content[:200])
            body = response.json()
            assert body["code"] == "parse_error" and "nested more than 64 levels" in body["message"]
    assert not IdempotencyRecord.objects.exists()
    # a body within the bound is read as usual
    nested = {"name": "deep", "scopes": ["read"], "note": [[[[["ok"]]]]]}
    assert client.post("/api/v1/tokens/", nested, format="json").status_code == 201


# ---- a database that can't be used, a full disk: say which (security review, issue 14) ----


def _failing_workers_list(monkeypatch, exc: Exception) -> None:
    from apps.hardware.api.views import WorkerList

    def fail(self):
        raise exc

    monkeypatch.setattr(WorkerList, "get_queryset", fail)


def _sqlite_error(message: str, code: int) -> OperationalError:
    cause = sqlite3.OperationalError(message)
    cause.sqlite_errorcode = code  # what sqlite3 sets (Python 3.11+)
    error = OperationalError(message)
    error.__cause__ = cause
    return error


def test_on_sqlite_a_full_disk_names_the_database_file_not_postgresql(personas, monkeypatch):
    from django.db import connection

    monkeypatch.setattr(connection, "vendor", "sqlite")
    monkeypatch.setitem(connection.settings_dict, "NAME", "/srv/slipway/var/slipway.sqlite3")
    _failing_workers_list(monkeypatch, _sqlite_error("database or disk is full", 13))
    response = client_for(personas.viewer).get("/api/v1/workers/")
    assert response.status_code == 503 and response["Retry-After"]
    body = response.json()
    assert body["code"] == "disk_full"
    assert body["message"].startswith("The disk holding /srv/slipway/var/slipway.sqlite3 is full")
    assert "PostgreSQL" not in body["message"]

    _failing_workers_list(monkeypatch, _sqlite_error("database is locked", 5))
    body = client_for(personas.viewer).get("/api/v1/workers/").json()
    assert body["code"] == "database_unavailable"
    assert "the SQLite file /srv/slipway/var/slipway.sqlite3" in body["message"] and "locked" in body["message"]
    assert "PostgreSQL" not in body["message"]


def test_on_postgresql_an_outage_names_the_server(personas, monkeypatch):
    _failing_workers_list(monkeypatch, OperationalError("connection refused"))
    body = client_for(personas.viewer).get("/api/v1/workers/").json()
    assert body["code"] == "database_unavailable" and "the PostgreSQL server at 127.0.0.1:5432" in body["message"]
    assert "SQLite" not in body["message"]


def test_a_full_disk_outside_the_database_names_the_disk(personas, monkeypatch, settings):
    spool = settings.DATA_DIR / "tmp" / "spool-file"
    _failing_workers_list(monkeypatch, OSError(errno.ENOSPC, "No space left on device", str(spool)))
    response = client_for(personas.viewer).get("/api/v1/workers/")
    assert response.status_code == 503
    body = response.json()
    assert body["code"] == "disk_full" and body["message"].startswith(f"The disk holding {spool} is full")


def test_a_domain_error_is_answered_with_its_status_and_body(db):
    """The exception handler is the one place a domain error becomes HTTP."""
    from apps.core.api.errors import exception_handler
    from apps.core.errors import Conflict, DomainError, ServiceUnavailable

    response = exception_handler(Conflict("version_busy", "The version is being reviewed."), {})
    assert (response.status_code, response.data) == (
        409,
        {"code": "version_busy", "message": "The version is being reviewed.", "fields": {}},
    )
    teapot = exception_handler(DomainError("odd", "Odd.", 418), {})
    assert teapot.status_code == 418 and teapot.data["code"] == "odd"
    unavailable = exception_handler(ServiceUnavailable("database_unavailable", "Down."), {})
    assert unavailable.status_code == 503 and unavailable["Retry-After"]
