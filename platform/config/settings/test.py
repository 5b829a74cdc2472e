"""Test settings: PostgreSQL and Redis by default (override with DATABASE_URL / CELERY_BROKER_URL)."""

import getpass
import os
import tempfile
from pathlib import Path

os.environ.setdefault("SLIPWAY_SECRET_KEY", "test-only-not-secret")
os.environ.setdefault("DATABASE_URL", "postgres://root@127.0.0.1:5432/slipway")
os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/15")
os.environ.setdefault("SLIPWAY_DATA_DIR", tempfile.mkdtemp(prefix="slipway-test-"))
# Tests register serving targets in pytest's temporary folders (and, never written,
# /srv/triton): pytest's own root (under the run's own temp root when `make` gives it one), not
# the whole temp folder, which may hold this checkout (a CI clone under /tmp) and would be
# refused. The tests of the allowed roots themselves narrow this with the `settings` fixture.
_pytest_temp = Path(os.environ.get("PYTEST_DEBUG_TEMPROOT") or tempfile.gettempdir()) / f"pytest-of-{getpass.getuser()}"
os.environ.setdefault("SLIPWAY_TARGET_ROOTS", f"{_pytest_temp},/srv/triton")
# The test run keeps its own HOME and temp folder (browsers, npm and schemathesis use them);
# the runtimes' telemetry is still off.
os.environ.setdefault("SLIPWAY_CONFINE_FILES", "false")

from config.settings.base import *  # noqa: E402,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES["staticfiles"] = {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}  # noqa: F405

# WhiteNoise warns about a missing static root; tests don't serve static files.
STATIC_ROOT = DATA_DIR / "static"  # noqa: F405
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
