"""The kinds of serving target and what each takes, as the API describes them (GET
/targets/kinds/ and the OpenAPI schema) and as it checks them: one declaration per driver
(`OptionSpec`s), so a form built from the description completes for every kind, and what the
description calls required is what a registration is refused without (issue 20)."""

from __future__ import annotations

import io
from typing import Any, ClassVar

import pytest
import yaml
from django.core.management import call_command

from apps.audit.models import AuditEvent
from apps.deployments.models import ServingTarget
from tests.conftest import client_for
from workers.engine.targets import registry
from workers.engine.targets.base import (
    OptionSpec,
    TargetHealth,
    credential_specs,
    described,
    option_specs,
)

pytestmark = pytest.mark.django_db


class ImageTarget:
    """A kind with required settings of every type (like the Docker-image kind an earlier release
    had), added to the registry by the `image_kind` fixture; registering is all it is used for."""

    kind: ClassVar[str] = "image"
    label: ClassVar[str] = "Container image"
    option_specs: ClassVar[tuple[OptionSpec, ...]] = (
        OptionSpec("image_repository", "string", "where the image is pushed", required=True, example="ghcr.io/a/b"),
        OptionSpec("registry_url", "url", "the registry's API", example="https://ghcr.io"),
        OptionSpec("push_attempts", "integer", "how often a push is tried", default=3, minimum=1, maximum=10),
        OptionSpec("platform", "string", "the image's platform", choices=("linux/amd64", "linux/arm64")),
        OptionSpec("squash", "boolean", "whether layers are squashed", default=False),
    )
    credential_specs: ClassVar[tuple[OptionSpec, ...]] = (
        OptionSpec("registry_password", "string", "the registry's password or token", required=True),
    )
    option_keys: ClassVar[dict[str, str]] = described(option_specs)
    credential_keys: ClassVar[dict[str, str]] = described(credential_specs)

    def health(self) -> TargetHealth:
        return TargetHealth(reachable=False, live=False, ready=False, error="A test kind.")


@pytest.fixture
def image_kind(monkeypatch) -> type[ImageTarget]:
    monkeypatch.setitem(registry.DRIVERS, ImageTarget.kind, ImageTarget)
    return ImageTarget


SAMPLES: dict[str, Any] = {
    "string": "value",
    "url": "https://registry.example.com",
    "boolean": True,
    "path_list": ["/opt/slipway"],
    "string_list": ["onnxruntime"],
    "text_map": {"region_name": "eu-west-1"},
    "headers": {"Authorization": "Bearer test"},
}
WRONG: dict[str, Any] = {
    "string": 5,
    "url": "registry.example.com",
    "integer": 2.5,
    "number": "fast",
    "boolean": "yes",
    "path_list": "/opt/slipway",
    "string_list": [],
    "text_map": ["eu-west-1"],
    "headers": "Authorization: x",
}


def _sample(spec: dict[str, Any]) -> Any:
    """A value a form would send for `spec` (as GET /targets/kinds/ describes it)."""
    if spec["choices"]:
        return spec["choices"][0]
    if spec["type"] in ("integer", "number"):
        return int(spec["minimum"]) if spec["minimum"] is not None else 1
    return SAMPLES[spec["type"]]


def _required(specs: list[dict[str, Any]]) -> dict[str, Any]:
    return {spec["key"]: _sample(spec) for spec in specs if spec["required"]}


def _kinds(personas) -> list[dict[str, Any]]:
    answer = client_for(personas.viewer).get("/api/v1/targets/kinds/")
    assert answer.status_code == 200, answer.content
    kinds: list[dict[str, Any]] = answer.json()
    return kinds


def _register(personas, tmp_path, kind: str, **body: Any):
    return client_for(personas.admin).post(
        "/api/v1/targets/",
        {
            "team": "vision",
            "name": f"Edge {kind}",
            "kind": kind,
            "url": "http://127.0.0.1:8000",
            "repository": str(tmp_path / "repository"),
            "profile": "x86-cpu",
            "allow_private": True,
            **body,
        },
        format="json",
    )


def test_every_registered_driver_is_listed_with_what_it_takes(personas, image_kind):
    kinds = {item["kind"]: item for item in _kinds(personas)}
    assert sorted(kinds) == sorted(registry.DRIVERS) and "image" in kinds
    for kind, driver in registry.DRIVERS.items():
        item = kinds[kind]
        assert item["label"] == driver.label
        assert [spec["key"] for spec in item["options"]] == [spec.key for spec in option_specs(driver)]
        assert [spec["key"] for spec in item["credentials"]] == [spec.key for spec in credential_specs(driver)]
        assert all(spec["help"] and spec["type"] for spec in item["options"] + item["credentials"])
        assert item["private_needs_allow_private"] is True
    image = {spec["key"]: spec for spec in kinds["image"]["options"]}
    assert image["image_repository"]["required"] is True and image["image_repository"]["example"] == "ghcr.io/a/b"
    assert image["push_attempts"] == {
        "key": "push_attempts",
        "type": "integer",
        "help": "how often a push is tried",
        "required": False,
        "default": 3,
        "choices": [],
        "minimum": 1.0,
        "maximum": 10.0,
        "secret_keys": [],
        "example": "",
    }
    assert image["platform"]["choices"] == ["linux/amd64", "linux/arm64"]
    triton = {spec["key"]: spec for spec in kinds["triton"]["options"]}
    assert triton["request_timeout_seconds"]["default"] == 30.0
    assert triton["repository_options"]["secret_keys"] == [
        "aws_access_key_id",
        "aws_secret_access_key",
        "aws_session_token",
    ]


def test_private_addresses_need_no_allowance_where_the_operator_allows_them_for_all(personas, settings):
    settings.ALLOW_PRIVATE_OUTBOUND = True
    assert all(item["private_needs_allow_private"] is False for item in _kinds(personas))


def test_a_registration_of_each_kind_built_from_its_required_specs_is_accepted(personas, tmp_path, image_kind):
    for item in _kinds(personas):
        answer = _register(
            personas,
            tmp_path,
            item["kind"],
            options=_required(item["options"]),
            credentials=_required(item["credentials"]) or None,
        )
        assert answer.status_code == 201, (item["kind"], answer.content)
    image = ServingTarget.objects.get(kind="image")
    assert image.options == {"image_repository": "value"} and image.credentials is not None


@pytest.mark.parametrize("where", ["options", "credentials"])
def test_a_missing_required_setting_is_refused_with_a_sentence_naming_it(personas, tmp_path, image_kind, where):
    """The spec and the driver's check agree: every setting the description calls required is
    one a registration without it is refused for, by name."""
    checked = 0
    for item in _kinds(personas):
        for spec in (s for s in item[where] if s["required"]):
            body = {"options": _required(item["options"]), "credentials": _required(item["credentials"]) or None}
            body[where] = {key: value for key, value in _required(item[where]).items() if key != spec["key"]}
            answer = _register(personas, tmp_path, item["kind"], **body)
            assert answer.status_code == 400, answer.content
            error = answer.json()
            assert error["code"] == f"invalid_{where}", error
            assert f"A {item['label']} target needs the {where[:-1]} {spec['key']}" in error["message"]
            assert error["message"].endswith("add it."), error["message"]
            checked += 1
    assert checked >= 1  # the image kind's repository or password, at least
    assert not ServingTarget.objects.exists()


def test_a_value_of_the_wrong_type_is_refused_naming_its_key(personas, tmp_path, image_kind):
    for item in _kinds(personas):
        for spec in item["options"]:
            options = {**_required(item["options"]), spec["key"]: WRONG[spec["type"]]}
            answer = _register(
                personas, tmp_path, item["kind"], options=options, credentials=_required(item["credentials"]) or None
            )
            assert answer.status_code == 400, (spec, answer.content)
            assert spec["key"] in answer.json()["message"], answer.json()
    assert not ServingTarget.objects.exists()


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"push_attempts": 11}, "The option push_attempts must be a whole number from 1 to 10."),
        ({"platform": "windows"}, "The option platform must be one of linux/amd64, linux/arm64, not 'windows'."),
        (
            {"registry_url": "ghcr.io"},
            "The option registry_url must be an http:// or https:// URL, e.g. https://ghcr.io",
        ),
        ({"colour": "red"}, "Unknown option colour for a Container image target; it takes: image_repository, "),
    ],
)
def test_the_checks_say_what_the_description_says(personas, tmp_path, image_kind, options, words):
    answer = _register(
        personas,
        tmp_path,
        "image",
        options={"image_repository": "ghcr.io/a/b", **options},
        credentials={"registry_password": "x"},
    )
    assert answer.status_code == 400 and words in answer.json()["message"], answer.json()


def test_a_loopback_url_needs_allow_private_which_only_a_team_admin_sets_and_the_audit_trail_keeps(personas, tmp_path):
    refused = _register(personas, tmp_path, "triton", allow_private=False)
    assert refused.status_code == 400 and refused.json()["code"] == "private_address"
    assert "allow_private" in refused.json()["message"]
    created = _register(personas, tmp_path, "triton", allow_private=True)
    assert created.status_code == 201, created.content
    assert created.json()["allow_private"] is True and created.json()["allow_private_by"] == "ada"
    url = f"/api/v1/targets/{created.json()['id']}/"
    assert client_for(personas.approver).patch(url, {"allow_private": False}, format="json").status_code == 403
    dropped = client_for(personas.admin).patch(url, {"allow_private": False}, format="json")
    assert dropped.status_code == 400 and dropped.json()["code"] == "private_address"
    (event,) = AuditEvent.objects.filter(object_type="servingtarget")
    assert event.action == "target.created" and event.after["allow_private"] is True


def test_the_openapi_schema_documents_each_kinds_settings():
    out = io.StringIO()
    call_command("spectacular", "--validate", stdout=out)
    schemas = yaml.safe_load(out.getvalue())["components"]["schemas"]
    create = schemas["TargetCreateInputRequest"]["properties"]
    assert schemas[create["kind"]["allOf"][0]["$ref"].rsplit("/", 1)[1]]["enum"] == sorted(registry.DRIVERS)
    for where, specs_of in (("options", option_specs), ("credentials", credential_specs)):
        documented = {item["title"]: item for item in create[where]["anyOf"]}
        for kind, driver in sorted(registry.DRIVERS.items()):
            item = documented[f"{driver.label} {where} (kind {kind})"]
            specs = specs_of(driver)
            assert list(item["properties"]) == [spec.key for spec in specs]
            assert item.get("required", []) == [spec.key for spec in specs if spec.required]
            assert all(item["properties"][spec.key]["description"].startswith(spec.help) for spec in specs)
    assert schemas["OptionSpec"]["properties"]["type"]


def test_a_string_list_takes_one_or_more_texts_and_only_its_choices():
    from workers.engine.targets.base import OptionSpec, TargetError

    spec = OptionSpec("backends", "string_list", "the backends", choices=("onnxruntime", "openvino"))
    assert spec.check([" onnxruntime ", "openvino"], where="setting") == ["onnxruntime", "openvino"]
    for wrong, words in (
        ([], "a list of one or more non-empty texts"),
        (["onnxruntime", ""], "a list of one or more non-empty texts"),
        ("onnxruntime", "a list of one or more non-empty texts"),
        (["tensorrt"], "takes only onnxruntime, openvino; tensorrt is not one of them"),
    ):
        with pytest.raises(TargetError) as refused:
            spec.check(wrong, where="setting")
        assert f"The setting backends must be {words}" in refused.value.message or words in refused.value.message
    assert spec.json_schema()["items"]["enum"] == ["onnxruntime", "openvino"]
