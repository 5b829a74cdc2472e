"""Typed environment helpers refuse bad values with a message naming the variable."""

import pytest
from django.core.exceptions import ImproperlyConfigured

from config.env import envbool, envchoice, envint, envlist, envstr


def test_values_parse(monkeypatch, tmp_path):
    monkeypatch.setenv("X_BOOL", "yes")
    monkeypatch.setenv("X_INT", "1_000")
    monkeypatch.setenv("X_LIST", "a, b,,c")
    secret = tmp_path / "secret"
    secret.write_text("s3cr3t\n")
    monkeypatch.setenv("X_SECRET_FILE", str(secret))
    assert envbool("X_BOOL", False) is True
    assert envint("X_INT", 0) == 1000
    assert envlist("X_LIST", []) == ["a", "b", "c"]
    assert envstr("X_SECRET") == "s3cr3t"
    assert envint("X_MISSING", 7) == 7


@pytest.mark.parametrize(
    ("name", "value", "call"),
    [
        ("X_BOOL", "maybe", lambda: envbool("X_BOOL", False)),
        ("X_INT", "ten", lambda: envint("X_INT", 0)),
        ("X_INT", "0", lambda: envint("X_INT", 5, minimum=1)),
        ("X_CHOICE", "ftp", lambda: envchoice("X_CHOICE", "local", ("local", "s3"))),
    ],
)
def test_bad_values_are_refused_naming_the_variable(monkeypatch, name, value, call):
    monkeypatch.setenv(name, value)
    with pytest.raises(ImproperlyConfigured, match=name):
        call()


def test_required_variable_missing(monkeypatch):
    monkeypatch.delenv("X_REQUIRED", raising=False)
    with pytest.raises(ImproperlyConfigured, match="X_REQUIRED"):
        envstr("X_REQUIRED")
