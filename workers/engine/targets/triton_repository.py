"""Triton model-repository entries: what goes on disk (or in a bucket), and what Slipway may change.

An entry is `<repository>/<model>/config.pbtxt` plus one directory per version:

    <model>/config.pbtxt
    <model>/<version>/model.onnx        native onnxruntime_onnx (external weights beside it)
    <model>/<version>/model.plan        native tensorrt_plan
    <model>/<version>/model.xml + .bin  native openvino
    <model>/<version>/model.py + the variant's files, named as built   python backend
    <model>/<version>/slipway.json      what Slipway wrote: files and their sha256, the config

The config.pbtxt text comes from `triton_config`. The per-version manifest (slipway.json)
keeps the version's own config, so a rollback can restore it, and the sha256 of every file,
so a retried push recognizes its own work. In python mode the version also holds `model.py`
(a copy of `triton_python_model.py`), and config.pbtxt carries the sys.path entries the
python stub needs. The files are written atomically by a store (`triton_stores`: a local
directory or an S3 bucket).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from workers.engine.targets.base import (
    BackendMode,
    DeploymentSpec,
    PushResult,
    TargetError,
    TargetSettings,
)
from workers.engine.targets.triton_config import CONFIG_HEADER, TritonModelConfig, model_config, native_format
from workers.engine.targets.triton_stores import MANIFEST_NAME, RepositoryStore

CONFIG_NAME = "config.pbtxt"
MANIFEST_VERSION = 1
# Every entry Slipway writes holds this marker; it never writes into, or removes, an entry
# without it (or, for entries written before markers, a config.pbtxt under CONFIG_HEADER).
ENTRY_MARKER_NAME = "slipway-entry.json"
PYTHON_MODEL_NAME = "model.py"
PYTHON_MODEL_SOURCE = Path(__file__).with_name("triton_python_model.py")
# A model's candidate entry, loaded and smoke-tested before any traffic can reach the new
# version. Slipway's model names have no dots, so this never collides with one of them.
CANDIDATE_SUFFIX = ".candidate"

_CHUNK_BYTES = 1 << 20


# --- one version's files -------------------------------------------------------------------


@dataclass(frozen=True)
class PreparedVersion:
    """Everything one version directory will hold, hashed, before anything is written.

    `files` maps each name in the version directory to its source file (or bytes);
    `hashes` holds their sha256, manifest excluded.
    """

    model_name: str
    version: int
    config: TritonModelConfig
    files: dict[str, Path | bytes]
    hashes: dict[str, str]
    model_file: str

    @property
    def bytes_total(self) -> int:
        """The size of every file, manifest included."""
        sizes = (len(source) if isinstance(source, bytes) else source.stat().st_size for source in self.files.values())
        return sum(sizes)


def prepare_version(spec: DeploymentSpec, settings: TargetSettings) -> PreparedVersion:
    """The version directory `spec` becomes on `settings`' target: names, hashes, manifest.

    Raises TargetError("invalid_spec") when a variant file is missing or two files would
    get the same name, and "unsupported_format" as `model_config` does.
    """
    mode = settings.backend_mode
    config = model_config(spec, mode, settings.effective_python_paths if mode == "python" else ())
    for path in spec.files:
        if not path.is_file():
            raise TargetError(
                "invalid_spec",
                f"The variant file '{path}' is not on this worker; fetch the variant's files before deploying.",
            )
    names = _version_file_names(spec, mode)
    files: dict[str, Path | bytes] = dict(names)
    if mode == "python":
        files[PYTHON_MODEL_NAME] = PYTHON_MODEL_SOURCE.read_bytes()
    hashes = {name: _sha256(source) for name, source in files.items()}
    model_file = next(name for name, source in names.items() if source == spec.model_file)
    manifest = {
        "slipway_manifest": MANIFEST_VERSION,
        "model_name": spec.model_name,
        "version": spec.version,
        "engine_backend": spec.engine_backend,
        "model_format": spec.model_format,
        "model_file": model_file,
        "files": hashes,
        "config": config.to_dict(),
    }
    files[MANIFEST_NAME] = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    return PreparedVersion(spec.model_name, spec.version, config, files, hashes, model_file)


def _version_file_names(spec: DeploymentSpec, mode: BackendMode) -> dict[str, Path]:
    """Each variant file's name in the version directory -> its source."""
    if mode == "python":
        # Slipway's own backend loads the variant, so the names it was built with stay.
        names = {path.name: path for path in spec.files}
    else:
        native = native_format(spec)
        names = {native.model_file: spec.model_file}
        new_stem = PurePosixPath(native.model_file).stem
        for path in spec.files[1:]:
            name = path.name
            if native.companions == "stem" and name.startswith(spec.model_file.stem):
                name = new_stem + name[len(spec.model_file.stem) :]
            names[name] = path
    if len(names) != len(spec.files) or {PYTHON_MODEL_NAME, MANIFEST_NAME} & set(names):
        listed = ", ".join(path.name for path in spec.files)
        raise TargetError(
            "invalid_spec",
            f"The variant's files ({listed}) can't share one version directory: two would get the same name, "
            f"or one is named {PYTHON_MODEL_NAME} or {MANIFEST_NAME}, which Slipway writes itself.",
        )
    return names


def _sha256(source: Path | bytes) -> str:
    digest = hashlib.sha256()
    if isinstance(source, bytes):
        digest.update(source)
        return digest.hexdigest()
    with source.open("rb") as handle:
        while chunk := handle.read(_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


# --- entries -------------------------------------------------------------------------------


class TritonRepository:
    """The model entries of one repository: versions, configs, manifests.

    Slipway only changes what it wrote. An entry it wrote holds its marker (ENTRY_MARKER_NAME)
    and a config.pbtxt under its header; a version it wrote holds a manifest (MANIFEST_NAME)
    listing the version's files. It never writes into an entry of the same name that lacks
    the marker ("foreign_entry"), and removing a version or an entry takes out only the files
    those list: anything else found there stays, and the removal says so in a sentence (for
    the deployment's log).
    """

    def __init__(self, store: RepositoryStore) -> None:
        self.store = store

    def versions(self, entry: str) -> tuple[int, ...]:
        """The version directories of an entry, in order."""
        return tuple(sorted(int(name) for name in self.store.list_dirs(entry) if name.isdigit()))

    def manifest(self, entry: str, version: int) -> dict[str, Any] | None:
        """What Slipway wrote into the version, or None for a version it did not write."""
        text = self.store.read_text(f"{entry}/{version}/{MANIFEST_NAME}")
        if text is None:
            return None
        try:
            data = json.loads(text)
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    def owns(self, entry: str) -> bool:
        """Whether Slipway wrote `entry`: it holds Slipway's marker, or (an entry written before
        markers) a config.pbtxt under Slipway's header."""
        if self.store.read_text(f"{entry}/{ENTRY_MARKER_NAME}") is not None:
            return True
        config = self.config_text(entry)
        return config is not None and config.startswith(CONFIG_HEADER)

    def check_not_foreign(self, entry: str) -> None:
        """Raise TargetError("foreign_entry") when something Slipway did not write is at `entry`."""
        if self.store.exists(entry) and not self.owns(entry):
            raise TargetError(
                "foreign_entry",
                f"The model repository already holds '{entry}' ({self.store.uri(entry)}), which Slipway did not "
                "write, so Slipway leaves it as it is and does not deploy over it. Rename or remove it there, or "
                "deploy to another target.",
            )

    def version_config(self, entry: str, version: int) -> TritonModelConfig:
        """The config a version was written with; TargetError("version_missing") when there is none."""
        manifest = self.manifest(entry, version)
        if manifest is None or "config" not in manifest:
            raise TargetError(
                "version_missing",
                f"Version {version} of '{entry}' is not in the model repository at {self.store.uri(entry)} "
                "(or was not written by Slipway), so it can't be served again; deploy it anew.",
            )
        return TritonModelConfig.from_dict(manifest["config"])

    def config_text(self, entry: str) -> str | None:
        """The entry's config.pbtxt as it is now."""
        return self.store.read_text(f"{entry}/{CONFIG_NAME}")

    def push(self, prepared: PreparedVersion, entry: str, serve: Sequence[int]) -> PushResult:
        """Write the version into `entry` and set its config to serve `serve`.

        A version already there with the same files is kept (`reused`); one with other files
        raises TargetError("version_exists"), and an entry Slipway did not write
        "foreign_entry". A new entry is written whole, config and marker included, in one
        step; in an existing one the version directory appears in one step, then the config
        is replaced.
        """
        self.check_not_foreign(entry)
        config_text = prepared.config.render(serve, name=entry)
        version_dir = f"{entry}/{prepared.version}"
        existing = self.manifest(entry, prepared.version)
        names = tuple(sorted(prepared.files))
        if existing is not None or self.store.exists(version_dir):
            if existing is None or existing.get("files") != prepared.hashes:
                raise TargetError(
                    "version_exists",
                    f"Version {prepared.version} of '{entry}' is already in the model repository with other "
                    f"files ({self.store.uri(version_dir)}); deploy under a new version number.",
                )
            self._mark(entry)
            self.store.write_text(f"{entry}/{CONFIG_NAME}", config_text)
            return PushResult(entry, prepared.version, self.store.uri(version_dir), names, 0, config_text, reused=True)
        if not self.store.exists(entry):
            files = {f"{prepared.version}/{name}": source for name, source in prepared.files.items()}
            marker = _entry_marker(entry).encode()
            self.store.write_directory(entry, {**files, CONFIG_NAME: config_text.encode(), ENTRY_MARKER_NAME: marker})
        else:
            self._mark(entry)
            self.store.write_directory(version_dir, prepared.files)
            self.store.write_text(f"{entry}/{CONFIG_NAME}", config_text)
        return PushResult(
            entry, prepared.version, self.store.uri(version_dir), names, prepared.bytes_total, config_text
        )

    def _mark(self, entry: str) -> None:
        """Give an entry Slipway wrote before markers existed its marker."""
        if self.store.read_text(f"{entry}/{ENTRY_MARKER_NAME}") is None:
            self.store.write_text(f"{entry}/{ENTRY_MARKER_NAME}", _entry_marker(entry))

    def serve(self, entry: str, config: TritonModelConfig, versions: Sequence[int]) -> str:
        """Replace the entry's config with `config` serving `versions`; returns the text."""
        self.check_not_foreign(entry)
        text = config.render(versions, name=entry)
        self.store.write_text(f"{entry}/{CONFIG_NAME}", text)
        return text

    def restore_config(self, entry: str, text: str | None) -> None:
        """Put back a config read earlier with `config_text` (None: there was none)."""
        if text is None:
            current = self.config_text(entry)
            if current is not None and current.startswith(CONFIG_HEADER):
                self.store.remove(f"{entry}/{CONFIG_NAME}")
        else:
            self.store.write_text(f"{entry}/{CONFIG_NAME}", text)

    def move_version(self, source_entry: str, entry: str, version: int) -> None:
        """Move a version directory from one entry to another."""
        self.check_not_foreign(entry)
        if self.store.exists(entry):
            self._mark(entry)
        else:
            self.store.write_directory(entry, {ENTRY_MARKER_NAME: _entry_marker(entry).encode()})
        self.store.move_directory(f"{source_entry}/{version}", f"{entry}/{version}")

    def remove_version(self, entry: str, version: int) -> tuple[str, ...]:
        """Remove the files Slipway wrote into a version directory (all of it, in one step,
        when nothing else is there); returns sentences on what it left in place."""
        relpath = f"{entry}/{version}"
        present = self.store.list_files(relpath)
        if not present:
            self.store.remove(relpath)  # nothing, or an empty directory
            return ()
        ours = self._version_files(entry, version)
        if ours is None:
            return (
                f"Left version {version} of '{entry}' ({self.store.uri(relpath)}) in place: Slipway did not write it "
                f"(it has no {MANIFEST_NAME}).",
            )
        return self._remove_ours(relpath, present, ours)

    def remove_entry(self, entry: str) -> tuple[str, ...]:
        """Remove what Slipway wrote of an entry (all of it, in one step, when nothing else is
        there); returns sentences on what it left in place."""
        if not self.store.exists(entry):
            self.store.remove(entry)  # nothing, or an empty directory
            return ()
        if not self.owns(entry):
            return (f"Left '{entry}' ({self.store.uri(entry)}) in place: Slipway did not write it.",)
        ours = {CONFIG_NAME, ENTRY_MARKER_NAME}
        for version in self.versions(entry):
            ours |= {f"{version}/{name}" for name in self._version_files(entry, version) or ()}
        return self._remove_ours(entry, self.store.list_files(entry), ours)

    def _version_files(self, entry: str, version: int) -> set[str] | None:
        """The files Slipway wrote into a version directory, its manifest included (None: none)."""
        manifest = self.manifest(entry, version)
        files = manifest.get("files") if manifest is not None else None
        if not isinstance(files, dict):
            return None
        return {*(str(name) for name in files), MANIFEST_NAME}

    def _remove_ours(self, relpath: str, present: Sequence[str], ours: set[str]) -> tuple[str, ...]:
        foreign = [name for name in present if name not in ours and not _slipway_leftover(name)]
        if not foreign:
            self.store.remove(relpath)
            return ()
        # Piece by piece, manifests last: an interrupted removal can still tell what is Slipway's.
        # The entry keeps its marker: it is still Slipway's, with someone else's files in it.
        mine = sorted(
            (name for name in present if name not in foreign and name != ENTRY_MARKER_NAME), key=_manifest_last
        )
        for name in mine:
            self.store.remove(f"{relpath}/{name}")
        for version in {name.split("/")[0] for name in mine if "/" in name}:
            if not self.store.list_files(f"{relpath}/{version}"):
                self.store.remove(f"{relpath}/{version}")
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        return (
            f"Removed what Slipway wrote in {self.store.uri(relpath)} and left what it did not write there: {shown}.",
        )


def _entry_marker(entry: str) -> str:
    note = (
        "Slipway wrote this entry. It removes only config.pbtxt, this file and the files each version's "
        f"{MANIFEST_NAME} lists; anything else here is left alone."
    )
    return json.dumps({"slipway_entry": MANIFEST_VERSION, "model_name": entry, "note": note}, indent=2) + "\n"


def _slipway_leftover(name: str) -> bool:
    """A file that comes of Slipway's own: a staging, temporary or half-removed one
    (".<name>.slipway-..."), or the bytecode Python caches of the python backend's model.py."""
    parts = PurePosixPath(name).parts
    return "__pycache__" in parts[:-1] or any(part.startswith(".") and ".slipway-" in part for part in parts)


def _manifest_last(name: str) -> tuple[bool, str]:
    return PurePosixPath(name).name == MANIFEST_NAME, name
