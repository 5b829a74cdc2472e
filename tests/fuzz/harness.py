"""What the fuzz targets share: a scratch folder, and running a target under atheris."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import atheris

# test_fuzz.py points this into its tmp_path; libFuzzer ends the process with _exit, so a
# folder of our own could not be cleaned up at exit.
SCRATCH = Path(os.environ.get("SLIPWAY_FUZZ_SCRATCH") or tempfile.mkdtemp(prefix="slipway-fuzz-"))
SCRATCH.mkdir(parents=True, exist_ok=True)


def scratch_file(data: bytes, name: str = "upload.bin") -> Path:
    """The fuzz input as a file, as uploads reach the engine."""
    path = SCRATCH / name
    path.write_bytes(data)
    return path


def run(test_one_input: Callable[[bytes], None]) -> None:
    """Hand the target to libFuzzer with the command line's flags (-max_total_time, ...)."""
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
