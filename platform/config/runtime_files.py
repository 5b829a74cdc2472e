"""Keep what Slipway's processes, and the runtimes they load, write under the data folder, with
the runtimes' telemetry off.

Left alone, importing the runtimes writes outside it: onnxruntime a device id and a telemetry
database under ~/.cache/Microsoft/DeveloperTools/.onnxruntime and a session file in the temp
folder (unless ORT_DISABLE_TELEMETRY is set before the import), OpenVINO (whose `import`
loads its converter) a client id and statistics under ~/intel (unless the consent file there
says 0). Other libraries put caches under ~/.cache, ~/.config or ~/.keras and scratch in /tmp.

So every Slipway process points HOME, the XDG folders and TMPDIR into the data folder before
any runtime is imported, and every child it starts (the sandbox, gunicorn's and Celery's
workers) inherits them. Only the standard library is used: `make run`'s supervisor calls this
before Django is loaded.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

# onnxruntime reads this when it is imported (any non-empty value switches telemetry off).
ONNXRUNTIME_TELEMETRY_OFF = {"ORT_DISABLE_TELEMETRY": "1"}


def confined_environment(data_dir: Path) -> dict[str, str]:
    """The variables that keep a process's own files under `data_dir`, telemetry off."""
    home = Path(data_dir) / "home"
    env = {
        "HOME": str(home),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "XDG_STATE_HOME": str(home / ".local" / "state"),
        "TMPDIR": str(Path(data_dir) / "tmp"),
        **ONNXRUNTIME_TELEMETRY_OFF,
    }
    # What people keep in their own HOME is still read from there (only writes move): the S3
    # credentials boto3 would find in ~/.aws, for SLIPWAY_STORAGE=s3 without AWS_* variables,
    # and the framework environments `make framework-envs` built in the user's cache (the
    # default of workers.engine.framework_envs.envs_root, which reads HOME at call time).
    real_home = os.environ.get("HOME")
    if "SLIPWAY_FRAMEWORK_ENVS" not in os.environ and (real_home or os.environ.get("XDG_CACHE_HOME")):
        cache = os.environ.get("XDG_CACHE_HOME") or str(Path(str(real_home)) / ".cache")
        env["SLIPWAY_FRAMEWORK_ENVS"] = str(Path(cache) / "slipway" / "framework-envs")
    if real_home and Path(real_home) != home:
        for variable, name in (("AWS_SHARED_CREDENTIALS_FILE", "credentials"), ("AWS_CONFIG_FILE", "config")):
            if variable not in os.environ and (Path(real_home) / ".aws" / name).is_file():
                env[variable] = str(Path(real_home) / ".aws" / name)
    return env


def confine_to_data_dir(data_dir: Path) -> dict[str, str]:
    """Point this process (and every child it starts) at folders under `data_dir`, create them,
    and record the OpenVINO telemetry opt-out there. Returns the variables set."""
    env = confined_environment(data_dir)
    for name in ("HOME", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "TMPDIR"):
        Path(env[name]).mkdir(mode=0o700, parents=True, exist_ok=True)
    _decline_openvino_telemetry(Path(env["HOME"]))
    os.environ.update(env)
    tempfile.tempdir = None  # forget a temp folder chosen before the move; the next call reads TMPDIR
    return env


def switch_off_telemetry() -> None:
    """Telemetry off without moving any folder (the test settings: the test run's own HOME stays)."""
    os.environ.update(ONNXRUNTIME_TELEMETRY_OFF)


def _decline_openvino_telemetry(home: Path) -> None:
    # openvino_telemetry sends and stores nothing when $HOME/intel/openvino_telemetry holds "0"
    # (its opt-out, as `opt_in_out --opt_out` writes it). It has no environment variable for this.
    consent = home / "intel" / "openvino_telemetry"
    if not consent.exists() or consent.read_text().strip() != "0":
        consent.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        consent.write_text("0")
