"""Typed readers for settings that come from the environment.

Each helper refuses a malformed value with `ImproperlyConfigured` naming the variable, so a
typo in a deployment fails at start-up instead of silently using a default. Secrets can be
given as `<NAME>_FILE` (a path, as Docker and Kubernetes secrets provide them).
"""

from __future__ import annotations

import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def envstr(name: str, default: str | None = None) -> str:
    """Return the variable's value, or the contents of the file named by `<name>_FILE`."""
    file_var = os.environ.get(f"{name}_FILE")
    if file_var:
        try:
            return Path(file_var).read_text().strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE points to {file_var!r}, which can't be read: {exc}") from exc
    value = os.environ.get(name)
    if value is None:
        if default is None:
            raise ImproperlyConfigured(f"Set the environment variable {name}.")
        return default
    return value


def envbool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean; use one of 1/0, true/false, yes/no, on/off.")


def envint(name: str, default: int, *, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = int(raw.strip().replace("_", ""))
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a whole number.") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name}={value} is below the minimum of {minimum}.")
    return value


def envlist(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return list(default)
    return [item.strip() for item in raw.split(",") if item.strip()]


def envdirs(name: str, default: list[Path]) -> list[Path]:
    """Comma-separated absolute folders, symbolic links resolved; refuses relative paths and "/"."""
    folders = [Path(item) for item in envlist(name, [str(path) for path in default])]
    for folder in folders:
        if not folder.is_absolute():
            raise ImproperlyConfigured(f"{name} lists '{folder}', which is not an absolute path.")
    resolved = [folder.resolve() for folder in folders]
    if Path("/") in resolved:
        raise ImproperlyConfigured(f"{name} lists the whole filesystem (/); name the folders themselves.")
    return resolved


def envchoice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = os.environ.get(name, default).strip()
    if value not in choices:
        raise ImproperlyConfigured(f"{name}={value!r} is not one of: {', '.join(choices)}.")
    return value


# Placeholders seen in examples and tutorials; refused whatever their length.
_KNOWN_WEAK_SECRETS = {"changeme", "change-me", "change_me", "secret", "secretkey", "secret-key", "password", "django",
                       "slipway", "test", "dev", "default", "insecure", "xxx"}  # fmt: skip
SECRET_MIN_LENGTH = 50
SECRET_MIN_DISTINCT = 16


def envsecret(name: str) -> str:
    """A signing key from `name` (or `<name>_FILE`) that is long and random enough for production.

    Django's own check only warns; a weak key lets anyone who guesses it forge sessions, password
    reset links and signed values, so production refuses to start with one."""
    value = envstr(name)
    length, distinct = len(value), len(set(value))
    problem = None
    if value.strip().lower() in _KNOWN_WEAK_SECRETS or value.lower().startswith("django-insecure-"):
        problem = "is a well-known placeholder"
    elif length < SECRET_MIN_LENGTH:
        problem = f"has only {length} characters"
    elif distinct < SECRET_MIN_DISTINCT:
        problem = f"uses only {distinct} different characters"
    if problem:
        raise ImproperlyConfigured(
            f"{name} {problem}, too weak for production: use at least {SECRET_MIN_LENGTH} random characters, "
            "e.g. the output of python3 -c 'import secrets; print(secrets.token_urlsafe(50))'."
        )
    return value
