"""The framework importers, found by format; content sniffing for uploads; import queues.

Each importer gets its own Celery queue, `import-<format>`: a worker subscribes only to the
queues of the importers whose framework it has installed, so a worker without TensorFlow
never takes a Keras job.
"""

from __future__ import annotations

from pathlib import Path

from workers.engine.errors import ModelError
from workers.engine.importers.base import Importer
from workers.engine.importers.gbdt import LightGBMImporter, XGBoostImporter
from workers.engine.importers.pytorch import ExportedProgramImporter, TorchScriptImporter
from workers.engine.importers.side import CaffeImporter, MxnetImporter, PaddleImporter, incomplete_upload
from workers.engine.importers.sklearn import SkopsImporter, refuse_pickle
from workers.engine.importers.tensorflow import KerasImporter, SavedModelImporter, TfliteImporter

# Most specific first: several formats are zips, and sniffers look at different members.
IMPORTERS: tuple[type[Importer], ...] = (
    ExportedProgramImporter,
    TorchScriptImporter,
    SavedModelImporter,
    CaffeImporter,
    MxnetImporter,
    PaddleImporter,
    KerasImporter,
    SkopsImporter,
    TfliteImporter,
    XGBoostImporter,
    LightGBMImporter,
)
FORMATS: dict[str, type[Importer]] = {importer.format: importer for importer in IMPORTERS}


def sniff_format(path: Path) -> str | None:
    """The importer format of a file from its content, or None when no importer claims it.

    Pickles are refused here (ModelError), before any importer could be tempted to load one.
    """
    refuse_pickle(path)
    for importer in IMPORTERS:
        if importer.sniff(path):
            return importer.format
    return None


def detect_upload_format(path: Path) -> str:
    """The format of an uploaded file from its content: a framework format an importer
    claims, else ONNX (`onnx` or `onnx-zip`). Raises ModelError saying what is accepted."""
    from workers.engine.archive import check_directory_size, check_zip_directory
    from workers.engine.formats import EMPTY_ZIP_MAGIC, ZIP_MAGIC, detect_format

    with path.open("rb") as stream:
        head = stream.read(4)
    # Each sniffer lists a zip's members, and zipfile builds the whole listing in memory: a zip
    # with millions of tiny entries would cost the web process that many times over. zipfile
    # opens anything with a central directory, whatever its first bytes (found by fuzzing), so
    # every upload's directory size is checked; one that starts like a zip must also be readable.
    advice = "Upload a smaller model."
    if head in (ZIP_MAGIC, EMPTY_ZIP_MAGIC):
        check_zip_directory(path, entries_advice=advice)
    else:
        check_directory_size(path, entries_advice=advice)
    fmt = sniff_format(path)
    if fmt is not None:
        return fmt
    try:
        return detect_format(path)
    except ModelError as exc:
        # A zip with part of a multi-file model (a prototxt without its caffemodel) is better
        # told what it lacks than that it holds no .onnx file.
        if exc.code in ("archive_layout", "not_a_model") and head in (ZIP_MAGIC, EMPTY_ZIP_MAGIC):
            from workers.engine.archive import zip_names

            missing = incomplete_upload(zip_names(path) or [])
            if missing:
                raise ModelError("archive_layout", missing) from None
        raise


def get_importer(fmt: str) -> Importer:
    try:
        return FORMATS[fmt]()
    except KeyError:
        known = ", ".join(sorted(FORMATS))
        raise KeyError(f"There is no importer for format '{fmt}'; known formats: {known}.") from None


def framework_of(fmt: str) -> str:
    return FORMATS[fmt].framework


def import_queue(fmt: str) -> str:
    return f"import-{fmt}"


def available_import_queues() -> list[str]:
    """The import queues this worker can serve: one per importer whose framework is installed."""
    return [import_queue(importer.format) for importer in IMPORTERS if importer().available()]


def require_available(importer: Importer) -> None:
    if not importer.available():
        raise ModelError(
            "framework_not_installed",
            f"This worker has no {importer.framework} installed, so it can't import {importer.format} files. "
            f"{importer.install_hint}".strip(),
        )
