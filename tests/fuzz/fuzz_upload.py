"""Fuzz target (a): what the web process does with upload bytes, and the archive checks.

Format detection (every importer's sniffer, the pickle refusal, the ONNX header scan, the zip
central-directory checks), extraction of a zip that passed them, and the .npz description of
side files. Anything but a ModelError is a bug.

Run: python -m tests.fuzz.fuzz_upload CORPUS_DIR -max_total_time=20 -max_len=65536
"""

from __future__ import annotations

import contextlib
import shutil

import atheris

from tests.fuzz.harness import SCRATCH, run, scratch_file

with atheris.instrument_imports(include=["workers"]):
    from workers.engine.archive import check_archive, extract_members
    from workers.engine.errors import ModelError
    from workers.engine.importers.registry import detect_upload_format
    from workers.engine.npz import describe_npz


def test_one_input(data: bytes) -> None:
    path = scratch_file(data)
    try:
        fmt = detect_upload_format(path)
    except ModelError:
        fmt = None
    if fmt == "onnx-zip":
        destination = SCRATCH / "unpacked"
        try:
            summary = check_archive(path)
            extract_members(path, summary.members, destination)
        except ModelError:
            pass
        finally:
            shutil.rmtree(destination, ignore_errors=True)
    with contextlib.suppress(ModelError):
        describe_npz(path)


if __name__ == "__main__":
    run(test_one_input)
