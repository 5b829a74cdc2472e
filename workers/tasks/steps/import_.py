"""The import step: convert an uploaded framework model to ONNX in the sandbox and store the result with its lineage."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

from django.core.files import File

from apps.pipeline.models import Job
from apps.pipeline.services import StepOutcome
from apps.registry.models import Artifact, ArtifactKind
from apps.registry.storage import materialize, put_blob, sha256_file
from workers.engine.sandbox import output_file, run_in_sandbox
from workers.tasks.steps.common import ProgressCallback, job_workdir, sandbox_limits, scaled


def store_files(files: list[Path], main: Path, fmt: str, bundle: Path, scratch: Path) -> dict[str, Any]:
    """Store one artifact's files as one blob: the file itself, or an uncompressed zip of all
    of them (a model with external data, an IR with its weights). Returns what the row needs.
    The files were named by a sandboxed child: each must be a plain file in `scratch`."""
    files = [output_file(f, scratch) for f in files]
    main = output_file(main, scratch)
    if len(files) > 1:
        bundle.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(bundle, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
            for file in files:
                archive.write(file, file.name)
        path, fmt = bundle, f"{fmt}-zip" if fmt == "onnx" else f"{fmt}+zip"
    else:
        path = main
    digest = sha256_file(path)
    with open(path, "rb") as fh:
        key, _ = put_blob(File(fh, name=path.name), digest)
    return {
        "sha256": digest,
        "size": path.stat().st_size,
        "key": key,
        "format": fmt,
        "main_file": main.name,
        "files": [f.name for f in files],
    }


def run_import(job: Job, progress: ProgressCallback) -> StepOutcome:
    """Convert the uploaded framework file to ONNX (checked, with parity) and store it."""
    version = job.run.version
    source = version.source_artifact
    assert source is not None, "a version always has its source artifact"
    with job_workdir(job) as workdir:
        progress(0.01, "fetching the uploaded file")
        local = materialize(source.storage_key, workdir / "upload.bin")
        report, log = run_in_sandbox(
            "import",
            {
                "source": str(local),
                "format": source.format,
                "out_dir": str(workdir / "onnx"),
                "inputs": version.input_spec,
                "declarations": version.input_declarations,
            },
            sandbox_limits(),
            on_progress=scaled(progress, 0.05, 0.95),
            what="the import",
            writable=[workdir],
        )
        files = [Path(f) for f in report["files"]]
        stored = store_files(files, Path(report["onnx_path"]), "onnx", workdir / "bundle.zip", workdir)
    # Paths inside the sandbox's scratch folder mean nothing to readers of the report.
    report = {**report, "onnx_path": stored["main_file"], "files": stored["files"]}

    def persist(locked: Job) -> None:
        artifact = Artifact.objects.create(
            version=version,
            kind=ArtifactKind.ONNX,
            name="onnx",
            format=stored["format"],
            sha256=stored["sha256"],
            size=stored["size"],
            storage_key=stored["key"],
            parent=source,
            job=locked,
            tool_versions=report.get("tool_versions", {}),
            metadata={
                "converter": report["converter"],
                "method": report["method"],
                "fallback_reason": report.get("fallback_reason", ""),
                "main_file": stored["main_file"],
                "files": stored["files"],
            },
        )
        report["artifact_id"] = artifact.pk

    return StepOutcome(result=report, persist=persist, log=log[-5000:] if log else "")
