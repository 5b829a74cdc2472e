"""Typed environment helpers refuse bad values with a message naming the variable; production
refuses a weak secret key; the runtimes keep their files under the data folder."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from config.env import envbool, envchoice, envint, envlist, envsecret, envstr
from config.runtime_files import confined_environment


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


# ---- production secret key (security review, issue 14 item 15) ---------------------------

REPO = Path(__file__).resolve().parents[2]
_POSTGRES = "postgres://slipway@127.0.0.1:1/unused"  # never connected to


def _settings_process(module: str, tmp_path: Path, code: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Import `module` as the settings of a fresh interpreter and run `code` there."""
    # the test run's own settings (test database, broker, data folder) stay out
    inherited = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLIPWAY_", "DJANGO_")) and k not in ("DATABASE_URL", "CELERY_BROKER_URL")
    }
    return subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {code}"],
        cwd=REPO,
        env={
            **inherited,
            "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "platform")]),
            "DJANGO_SETTINGS_MODULE": module,
            "SLIPWAY_DATA_DIR": str(tmp_path / "data"),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.parametrize(
    "key",
    ["changeme", "secret", "django-insecure-" + "k3y" * 20, "a-short-key-of-36-characters-exactly", "changeme" * 7],
)
def test_production_settings_refuse_a_weak_secret_key(tmp_path, key):
    run = _settings_process(
        "config.settings.prod", tmp_path, "print('started')", SLIPWAY_SECRET_KEY=key, DATABASE_URL=_POSTGRES
    )
    assert run.returncode != 0 and "started" not in run.stdout
    assert "ImproperlyConfigured: SLIPWAY_SECRET_KEY" in run.stderr and "too weak for production" in run.stderr


def test_production_settings_accept_a_random_secret_key(tmp_path):
    run = _settings_process(
        "config.settings.prod",
        tmp_path,
        "print('started')",
        SLIPWAY_SECRET_KEY=secrets.token_urlsafe(50),
        DATABASE_URL=_POSTGRES,
    )
    assert run.returncode == 0 and "started" in run.stdout, run.stderr


def test_envsecret_reads_the_file_form_too(monkeypatch, tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text("changeme\n")
    monkeypatch.setenv("X_KEY_FILE", str(key_file))
    with pytest.raises(ImproperlyConfigured, match="X_KEY is a well-known placeholder"):
        envsecret("X_KEY")
    strong = secrets.token_urlsafe(50)
    key_file.write_text(strong)
    assert envsecret("X_KEY") == strong


# ---- files stay under the data folder, telemetry off (issue 14 item 14) -------------------

_RUN_THE_RUNTIMES = """
import os, sys, tempfile
from pathlib import Path
from tests import modelzoo
from workers.engine.benchmark import BenchmarkConfig, benchmark_variant
from workers.engine.inspection import inspect_model

# A folder of its own under the temp folder (the sandbox refuses to be handed the temp folder itself).
model = modelzoo.make_mlp_onnx(Path(tempfile.mkdtemp(dir=os.environ["TMPDIR"])) / "mlp.onnx")
inspect_model(model)
quick = BenchmarkConfig(warmup_runs=2, warmup_seconds=0.05, window_runs=5, stable_windows=1, max_windows=2,
                        max_seconds_per_point=0.5)
for backend in ("onnxruntime", "openvino"):
    benchmark_variant(backend, model, None, quick)
import onnxruntime, openvino  # noqa: F401 - both loaded in this process too, not only in the children
print("HOME=" + os.environ["HOME"])
print("TMPDIR=" + os.environ["TMPDIR"])
"""


@pytest.mark.slow
def test_the_runtimes_write_nothing_outside_the_data_folder(tmp_path):
    """An inspection and a benchmark with onnxruntime and OpenVINO under the embedded default's
    settings: the user's HOME (caches, ~/intel) and the system temp folder stay as they were."""
    home, system_tmp, data = tmp_path / "home", tmp_path / "system-tmp", tmp_path / "data"
    home.mkdir()
    system_tmp.mkdir()
    run = _settings_process(
        "config.settings.dev",
        tmp_path,
        _RUN_THE_RUNTIMES,
        HOME=str(home),
        TMPDIR=str(system_tmp),
        XDG_CACHE_HOME=str(home / ".cache"),
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert f"HOME={data / 'home'}" in run.stdout and f"TMPDIR={data / 'tmp'}" in run.stdout
    assert sorted(home.rglob("*")) == [], "files written in the user's HOME"
    assert sorted(system_tmp.rglob("*")) == [], "files written in the system temp folder"
    written = {p.relative_to(data).as_posix() for p in data.rglob("*")}
    # telemetry off: no onnxruntime device id or telemetry database, no OpenVINO client id
    assert not [p for p in written if "Microsoft" in p or p.endswith(("openvino_ga_cid", "/stats", ".ses"))], written
    assert (data / "home" / "intel" / "openvino_telemetry").read_text() == "0"


def test_confined_environment_points_every_folder_under_the_data_folder(tmp_path):
    env = confined_environment(tmp_path)
    for name in ("HOME", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "TMPDIR"):
        assert Path(env[name]).is_relative_to(tmp_path), name
    assert env["ORT_DISABLE_TELEMETRY"] == "1"


def test_the_framework_environments_are_still_found_in_the_users_own_cache(tmp_path, monkeypatch):
    # make framework-envs builds them under the user's cache; `make run` moves HOME into its data
    # folder, and its worker must still find them (found by a new-user trial: no Caffe import queue).
    monkeypatch.delenv("SLIPWAY_FRAMEWORK_ENVS", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "alice"))
    env = confined_environment(tmp_path / "data")
    assert env["SLIPWAY_FRAMEWORK_ENVS"] == str(tmp_path / "alice" / ".cache" / "slipway" / "framework-envs")
    monkeypatch.setenv("SLIPWAY_FRAMEWORK_ENVS", "/opt/slipway/framework-envs")
    assert "SLIPWAY_FRAMEWORK_ENVS" not in confined_environment(tmp_path / "data")
