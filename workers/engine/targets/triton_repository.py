"""Triton model-repository entries: what goes on disk (or in a bucket), written atomically.

An entry is `<repository>/<model>/config.pbtxt` plus one directory per version:

    <model>/config.pbtxt
    <model>/<version>/model.onnx        native onnxruntime_onnx (external weights beside it)
    <model>/<version>/model.plan        native tensorrt_plan
    <model>/<version>/model.xml + .bin  native openvino
    <model>/<version>/model.py + the variant's files, named as built   python backend
    <model>/<version>/slipway.json      what Slipway wrote: files and their sha256, the config

`model_config` turns a `DeploymentSpec` into a `TritonModelConfig`, rendered as
config.pbtxt text with a version policy. The per-version manifest (slipway.json) keeps the
version's own config, so a rollback can restore it, and the sha256 of every file, so a
retried push recognizes its own work. In python mode the version also holds `model.py`
(a copy of `triton_python_model.py`), and config.pbtxt carries the sys.path entries the
python stub needs in the parameter `slipway_sys_path`.

Stores write atomically. On a local filesystem a directory is assembled under a hidden
name beside its final place, flushed, then renamed into place (a rename within one
filesystem is atomic), and config.pbtxt is replaced the same way; whatever fails is
removed. S3 has no rename: objects are uploaded under their final keys with the manifest
last, and removed again on failure; Triton only reads a bucket when it is asked to load,
which happens after the upload completes.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from workers.engine.backends.base import TritonNative
from workers.engine.backends.registry import triton_native_formats
from workers.engine.targets.base import (
    SERVING_DTYPES,
    BackendMode,
    DeploymentSpec,
    DynamicBatching,
    InstanceGroup,
    PushResult,
    RepositoryLocation,
    TargetError,
    TargetSettings,
    TensorSignature,
    check_python_path,
    check_repository_folder,
)

CONFIG_NAME = "config.pbtxt"
MANIFEST_NAME = "slipway.json"
MANIFEST_VERSION = 1
# Every entry Slipway writes holds this marker; it never writes into, or removes, an entry
# without it (or, for entries written before markers, a config.pbtxt under CONFIG_HEADER).
ENTRY_MARKER_NAME = "slipway-entry.json"
CONFIG_HEADER = "# Written by Slipway."
PYTHON_MODEL_NAME = "model.py"
PYTHON_MODEL_SOURCE = Path(__file__).with_name("triton_python_model.py")
SYS_PATH_PARAMETER = "slipway_sys_path"
# A model's candidate entry, loaded and smoke-tested before any traffic can reach the new
# version. Slipway's model names have no dots, so this never collides with one of them.
CANDIDATE_SUFFIX = ".candidate"

_CHUNK_BYTES = 1 << 20


# --- the config ----------------------------------------------------------------------------


# Variant format -> how Triton serves it natively, as the backends that write it declare.
NATIVE_FORMATS: Mapping[str, TritonNative] = triton_native_formats()


@dataclass(frozen=True)
class TritonModelConfig:
    """A model's config.pbtxt, less its version policy (which the switch-over sets)."""

    name: str
    platform: str
    backend: str
    max_batch_size: int
    inputs: tuple[TensorSignature, ...]
    outputs: tuple[TensorSignature, ...]
    dynamic_batching: DynamicBatching | None = None
    instance_group: InstanceGroup = field(default_factory=InstanceGroup)
    parameters: tuple[tuple[str, str], ...] = ()

    def render(self, versions: Sequence[int], *, name: str | None = None) -> str:
        """config.pbtxt text that serves exactly `versions` (under `name`, default `self.name`)."""
        lines = [
            f"{CONFIG_HEADER} Deploy again to change it; edits here are overwritten.",
            f"name: {_quote(name or self.name)}",
        ]
        if self.platform:
            lines.append(f"platform: {_quote(self.platform)}")
        if self.backend:
            lines.append(f"backend: {_quote(self.backend)}")
        lines.append(f"max_batch_size: {self.max_batch_size}")
        listed = ", ".join(str(version) for version in sorted(set(versions)))
        lines.append(f"version_policy: {{ specific: {{ versions: [ {listed} ] }} }}")
        lines.extend(self._tensors("input", self.inputs))
        lines.extend(self._tensors("output", self.outputs))
        if self.dynamic_batching is not None:
            lines.append("dynamic_batching {")
            if self.dynamic_batching.preferred_batch_sizes:
                sizes = ", ".join(str(size) for size in self.dynamic_batching.preferred_batch_sizes)
                lines.append(f"  preferred_batch_size: [ {sizes} ]")
            lines.append(f"  max_queue_delay_microseconds: {self.dynamic_batching.max_queue_delay_microseconds}")
            lines.append("}")
        group = self.instance_group
        lines.append("instance_group [")
        lines.append(f"  {{ count: {group.count} kind: KIND_{group.kind}")
        if group.kind == "GPU" and group.gpus:
            lines.append(f"    gpus: [ {', '.join(str(gpu) for gpu in group.gpus)} ]")
        lines.append("  }")
        lines.append("]")
        if self.parameters:
            lines.append("parameters [")
            for key, value in self.parameters:
                lines.append(f"  {{ key: {_quote(key)} value: {{ string_value: {_quote(value)} }} }}")
            lines.append("]")
        return "\n".join(lines) + "\n"

    def _tensors(self, kind: str, tensors: Sequence[TensorSignature]) -> list[str]:
        lines = [f"{kind} ["]
        for index, tensor in enumerate(tensors):
            # With batching, Triton's dims leave out the batch dimension it adds itself.
            dims = tensor.dims[1:] if self.max_batch_size > 0 else tensor.dims
            separator = "," if index < len(tensors) - 1 else ""
            lines.append(
                f"  {{ name: {_quote(tensor.name)} data_type: {triton_data_type(tensor.dtype)} "
                f"dims: [ {', '.join(str(dim) for dim in dims)} ] }}{separator}"
            )
        lines.append("]")
        return lines

    def to_dict(self) -> dict[str, Any]:
        """The config as JSON-ready data (for the manifest)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TritonModelConfig:
        """The config from `to_dict`'s data."""
        batching = data.get("dynamic_batching")
        return cls(
            name=str(data["name"]),
            platform=str(data.get("platform", "")),
            backend=str(data.get("backend", "")),
            max_batch_size=int(data["max_batch_size"]),
            inputs=tuple(_tensor_from_dict(item) for item in data["inputs"]),
            outputs=tuple(_tensor_from_dict(item) for item in data["outputs"]),
            dynamic_batching=(
                DynamicBatching(
                    tuple(int(size) for size in batching.get("preferred_batch_sizes", ())),
                    int(batching.get("max_queue_delay_microseconds", 0)),
                )
                if batching
                else None
            ),
            instance_group=InstanceGroup(**{**data["instance_group"], "gpus": tuple(data["instance_group"]["gpus"])}),
            parameters=tuple((str(key), str(value)) for key, value in data.get("parameters", ())),
        )


def triton_data_type(dtype: str) -> str:
    """Triton's config name for a numpy dtype name: "float32" -> "TYPE_FP32"."""
    wire = SERVING_DTYPES[dtype]
    return "TYPE_STRING" if wire == "BYTES" else f"TYPE_{wire}"


def model_config(spec: DeploymentSpec, mode: BackendMode, python_paths: Sequence[str] = ()) -> TritonModelConfig:
    """The config that serves `spec` in `mode`; raises TargetError for a format Triton can't serve so."""
    parameters: tuple[tuple[str, str], ...] = ()
    if mode == "python":
        for path in python_paths:
            check_python_path(path)
        platform, backend = "", "python"
        parameters = ((SYS_PATH_PARAMETER, ":".join(python_paths)),)
    else:
        native = _native_format(spec)
        platform, backend = native.platform, native.backend
        parameters = native_parameters(spec)
    return TritonModelConfig(
        name=spec.model_name,
        platform=platform,
        backend=backend,
        max_batch_size=spec.max_batch_size,
        inputs=spec.inputs,
        outputs=spec.outputs,
        dynamic_batching=spec.dynamic_batching,
        instance_group=spec.instance_group,
        parameters=parameters,
    )


def native_parameters(spec: DeploymentSpec) -> tuple[tuple[str, str], ...]:
    """The `parameters` Triton's native backend needs to compute as the variant was judged.

    An OpenVINO variant built for BF16 arithmetic (ov-ir-bf16) gets HINT_BF16, the backend's
    switch for the CPU plugin's bf16 inference precision. Triton's OpenVINO backend has no
    switch the other way: on a CPU with AMX the plugin's default is bf16 for FP32 variants too,
    which the deployment's smoke test measures against the original's answers.
    """
    if spec.model_format == "openvino-ir" and spec.precision == "bf16":
        return (("HINT_BF16", "YES"),)
    return ()


def _native_format(spec: DeploymentSpec) -> TritonNative:
    native = NATIVE_FORMATS.get(spec.model_format)
    if native is None:
        raise TargetError(
            "unsupported_format",
            f"Triton has no native backend for '{spec.model_format}' variants; deploy to a target in python "
            f"mode (Slipway's {spec.engine_backend} backend runs it inside Triton), or pick a variant in a format "
            f"Triton serves natively ({', '.join(sorted(NATIVE_FORMATS))}).",
        )
    if native.gpu_only and spec.instance_group.kind != "GPU":
        raise TargetError(
            "invalid_spec",
            f"A '{spec.model_format}' variant runs on a GPU only; set the instance group's kind to GPU.",
        )
    return native


def _quote(text: str) -> str:
    """A protobuf text-format string literal."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return f'"{escaped}"'


def _tensor_from_dict(data: Mapping[str, Any]) -> TensorSignature:
    return TensorSignature(str(data["name"]), str(data["dtype"]), tuple(int(dim) for dim in data["dims"]))


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
        native = _native_format(spec)
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


# --- stores --------------------------------------------------------------------------------


class RepositoryStore(ABC):
    """A model repository that entries are written to. Paths are "/"-separated, relative to its root."""

    location: RepositoryLocation

    @abstractmethod
    def uri(self, relpath: str) -> str:
        """Where `relpath` is, for people: an absolute path or an s3:// URL."""

    @abstractmethod
    def read_text(self, relpath: str) -> str | None:
        """The file's text, or None when there is no such file."""

    @abstractmethod
    def exists(self, relpath: str) -> bool:
        """Whether a file or a non-empty directory is at `relpath`."""

    @abstractmethod
    def list_dirs(self, relpath: str) -> list[str]:
        """The names of the directories directly under `relpath`."""

    @abstractmethod
    def list_files(self, relpath: str) -> list[str]:
        """Every file under `relpath` (hidden ones included), as paths relative to it."""

    @abstractmethod
    def write_directory(self, relpath: str, files: Mapping[str, Path | bytes]) -> None:
        """Create the directory `relpath` holding `files` (name, which may hold "/" -> source),
        all or nothing. Raises TargetError("version_exists") when something is already there."""

    @abstractmethod
    def write_text(self, relpath: str, text: str) -> None:
        """Replace the file at `relpath` with `text` in one step."""

    @abstractmethod
    def move_directory(self, source: str, target: str) -> None:
        """Move a directory to `target`, which must not exist."""

    @abstractmethod
    def remove(self, relpath: str) -> None:
        """Remove a file or a directory tree; nothing happens when it is not there."""

    @contextlib.contextmanager
    def lock(self, model_name: str) -> Iterator[None]:
        """Hold the model's lock while changing its entry (where the store can lock)."""
        yield


def open_store(settings: TargetSettings, *, s3_client: Any = None) -> RepositoryStore:
    """The store for the target's repository (`s3_client` replaces boto3's, for tests)."""
    location = settings.location
    if location.kind == "local":
        return LocalStore(location, settings.allowed_roots)
    return S3Store(location, dict(settings.repository_options), client=s3_client)


def _not_writable(location: str, exc: BaseException) -> TargetError:
    reason = (exc.strerror if isinstance(exc, OSError) else None) or str(exc) or type(exc).__name__
    if location.startswith("s3://"):
        hint = "Check the bucket, the endpoint and that the worker's credentials may write there."
    else:
        hint = "Check that the repository exists, is mounted on this worker and is writable by the worker's user."
    return TargetError(
        "repository_not_writable",
        f"Slipway can't write the model repository at {location}: {reason}. {hint}",
        detail=str(exc),
    )


class LocalStore(RepositoryStore):
    """A repository directory on this worker's filesystem (shared with the server).

    Before every read and write the repository is checked again (`check_repository_folder`:
    inside `allowed_roots`, never a system folder or Slipway's code, symbolic links
    resolved), and so is the path itself: a link inside the repository that leads out of
    it is refused, never followed.
    """

    def __init__(self, location: RepositoryLocation, allowed_roots: Sequence[str] | None = None) -> None:
        assert location.path is not None
        self.location = location
        self.root = location.path
        self.allowed_roots = allowed_roots

    def _path(self, relpath: str) -> Path:
        parts = PurePosixPath(relpath).parts
        if any(part in ("", ".", "..") for part in parts) or PurePosixPath(relpath).is_absolute():
            raise ValueError(f"not a path inside the repository: {relpath!r}")
        root = check_repository_folder(self.root, self.allowed_roots)
        path = self.root.joinpath(*parts)
        resolved = path.resolve()
        if resolved != root and root not in resolved.parents:
            raise TargetError(
                "repository_not_allowed",
                f"{path} leads out of the model repository {self.root} (to {resolved}) through a symbolic link; "
                "Slipway writes only inside the repository. Remove the link.",
            )
        return path

    def uri(self, relpath: str) -> str:
        return str(self._path(relpath))

    def read_text(self, relpath: str) -> str | None:
        try:
            return self._path(relpath).read_text()
        except (FileNotFoundError, NotADirectoryError):
            return None

    def exists(self, relpath: str) -> bool:
        path = self._path(relpath)
        return path.is_file() or (path.is_dir() and any(path.iterdir()))

    def list_dirs(self, relpath: str) -> list[str]:
        path = self._path(relpath) if relpath else self.root
        if not path.is_dir():
            return []
        return sorted(child.name for child in path.iterdir() if child.is_dir() and not child.name.startswith("."))

    def list_files(self, relpath: str) -> list[str]:
        path = self._path(relpath)
        if not path.is_dir():
            return []
        files: list[str] = []
        for directory, _, names in os.walk(path):
            files.extend(str((Path(directory) / name).relative_to(path)) for name in names)
        return sorted(files)

    def write_directory(self, relpath: str, files: Mapping[str, Path | bytes]) -> None:
        final = self._path(relpath)
        if self.exists(relpath):
            raise TargetError("version_exists", f"{final} already exists; Slipway never writes over it.")
        created_parent = not final.parent.exists()
        staging = final.with_name(f".{final.name}.slipway-staging-{uuid.uuid4().hex[:12]}")
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            staging.mkdir()
            for name, source in files.items():
                target = staging.joinpath(*PurePosixPath(name).parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                _write_file(target, source)
            _fsync_tree(staging)
            if final.is_dir():
                final.rmdir()  # an empty leftover: the rename below needs the name free
            os.rename(staging, final)
            _fsync_directory(final.parent)
        except BaseException as exc:
            shutil.rmtree(staging, ignore_errors=True)
            if created_parent:
                with contextlib.suppress(OSError):
                    final.parent.rmdir()
            if isinstance(exc, OSError):
                raise _not_writable(str(self.root), exc) from exc
            raise

    def write_text(self, relpath: str, text: str) -> None:
        final = self._path(relpath)
        temporary = final.with_name(f".{final.name}.slipway-tmp-{uuid.uuid4().hex[:12]}")
        try:
            _write_file(temporary, text.encode())
            os.replace(temporary, final)
            _fsync_directory(final.parent)
        except BaseException as exc:
            temporary.unlink(missing_ok=True)
            if isinstance(exc, OSError):
                raise _not_writable(str(self.root), exc) from exc
            raise

    def move_directory(self, source: str, target: str) -> None:
        destination = self._path(target)
        if self.exists(target):
            raise TargetError("version_exists", f"{destination} already exists; Slipway never writes over it.")
        try:
            destination.parent.mkdir(parents=True, exist_ok=True)
            if destination.is_dir():
                destination.rmdir()
            os.rename(self._path(source), destination)
            _fsync_directory(destination.parent)
        except OSError as exc:
            raise _not_writable(str(self.root), exc) from exc

    def remove(self, relpath: str) -> None:
        path = self._path(relpath)
        if not path.exists():
            return
        try:
            if path.is_dir():
                # Out of sight first, in one step, so the server never reads a half-removed version.
                hidden = path.with_name(f".{path.name}.slipway-removing-{uuid.uuid4().hex[:12]}")
                os.rename(path, hidden)
                shutil.rmtree(hidden)
            else:
                path.unlink()
        except OSError as exc:
            raise _not_writable(str(self.root), exc) from exc

    @contextlib.contextmanager
    def lock(self, model_name: str) -> Iterator[None]:
        """An exclusive flock on "<repository>/.<model>.slipway-lock": one deploy of a model at a time."""
        try:
            handle = self._path(f".{model_name}.slipway-lock").open("a")
        except OSError as exc:
            raise _not_writable(str(self.root), exc) from exc
        with handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def _write_file(target: Path, source: Path | bytes) -> None:
    with target.open("wb") as out:
        if isinstance(source, bytes):
            out.write(source)
        else:
            with source.open("rb") as handle:
                shutil.copyfileobj(handle, out, _CHUNK_BYTES)
        out.flush()
        os.fsync(out.fileno())


def _fsync_tree(root: Path) -> None:
    for directory, _, _ in os.walk(root):
        _fsync_directory(Path(directory))


def _fsync_directory(path: Path) -> None:
    # A rename is only durable once the directory holding it is flushed.
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class S3Store(RepositoryStore):
    """A repository under a prefix of an S3-compatible bucket, written with boto3.

    `options` go to `boto3.client("s3", ...)` (endpoint_url, region_name, ...); a private
    endpoint named in the location ("s3://host:port/bucket") becomes endpoint_url
    "http://host:port" unless `options` set one. Credentials come from boto3's usual
    sources (environment, config files, instance roles). There is no lock: the platform
    must not run two deploys of one model at once.
    """

    def __init__(self, location: RepositoryLocation, options: dict[str, str], client: Any = None) -> None:
        self.location = location
        self.bucket = location.bucket
        self.prefix = location.prefix
        if client is None:
            try:
                import boto3
            except ImportError:
                raise TargetError(
                    "repository_not_writable",
                    f"The model repository {location.uri} is in S3, and boto3 is not installed on this worker; "
                    "install boto3 (pip install boto3) on the workers that deploy.",
                ) from None
            if location.endpoint and "endpoint_url" not in options:
                options = {**options, "endpoint_url": f"http://{location.endpoint}"}
            client = boto3.client("s3", **options)
        self.client = client

    def _key(self, relpath: str) -> str:
        parts = PurePosixPath(relpath).parts
        if any(part in ("", ".", "..") for part in parts):
            raise ValueError(f"not a path inside the repository: {relpath!r}")
        return "/".join([self.prefix, relpath] if self.prefix else [relpath])

    def uri(self, relpath: str) -> str:
        return f"s3://{self.bucket}/{self._key(relpath)}"

    def _keys(self, relpath: str) -> list[str]:
        prefix = self._key(relpath) + "/"
        keys: list[str] = []
        token = None
        while True:
            page = self.client.list_objects_v2(
                Bucket=self.bucket, Prefix=prefix, **({"ContinuationToken": token} if token else {})
            )
            keys.extend(item["Key"] for item in page.get("Contents", ()))
            if not page.get("IsTruncated"):
                return keys
            token = page["NextContinuationToken"]

    def read_text(self, relpath: str) -> str | None:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self._key(relpath))
        except Exception as exc:
            if _s3_missing(exc):
                return None
            raise self._failed(exc) from exc
        return str(response["Body"].read().decode())

    def exists(self, relpath: str) -> bool:
        return self.read_text(relpath) is not None or bool(self._keys(relpath))

    def list_files(self, relpath: str) -> list[str]:
        prefix = self._key(relpath) + "/"
        return sorted(key[len(prefix) :] for key in self._keys(relpath))

    def list_dirs(self, relpath: str) -> list[str]:
        prefix = self._key(relpath) + "/" if relpath else (self.prefix + "/" if self.prefix else "")
        page = self.client.list_objects_v2(Bucket=self.bucket, Prefix=prefix, Delimiter="/")
        names = [item["Prefix"][len(prefix) :].rstrip("/") for item in page.get("CommonPrefixes", ())]
        return sorted(name for name in names if name and not name.startswith("."))

    def write_directory(self, relpath: str, files: Mapping[str, Path | bytes]) -> None:
        if self.exists(relpath):
            raise TargetError("version_exists", f"{self.uri(relpath)} already exists; Slipway never writes over it.")
        written: list[str] = []
        # The manifest goes last: a version without one is unfinished, to Slipway and to people.
        ordered = sorted(files.items(), key=lambda item: item[0].endswith(MANIFEST_NAME))
        try:
            for name, source in ordered:
                key = self._key(f"{relpath}/{name}")
                if isinstance(source, bytes):
                    self.client.put_object(Bucket=self.bucket, Key=key, Body=source)
                else:
                    # upload_file streams (multipart for large files): the model is never read whole.
                    self.client.upload_file(str(source), self.bucket, key)
                written.append(key)
        except BaseException as exc:
            self._delete(written)
            if isinstance(exc, TargetError):
                raise
            raise self._failed(exc) from exc

    def write_text(self, relpath: str, text: str) -> None:
        # One PUT replaces an object in one step.
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(relpath), Body=text.encode())
        except Exception as exc:
            raise self._failed(exc) from exc

    def move_directory(self, source: str, target: str) -> None:
        if self.exists(target):
            raise TargetError("version_exists", f"{self.uri(target)} already exists; Slipway never writes over it.")
        keys = sorted(self._keys(source), key=lambda key: key.endswith(MANIFEST_NAME))
        old_prefix, new_prefix = self._key(source), self._key(target)
        copied: list[str] = []
        try:
            for key in keys:
                new_key = new_prefix + key[len(old_prefix) :]
                self.client.copy({"Bucket": self.bucket, "Key": key}, self.bucket, new_key)
                copied.append(new_key)
        except Exception as exc:
            self._delete(copied)
            raise self._failed(exc) from exc
        self._delete(keys)

    def remove(self, relpath: str) -> None:
        keys = self._keys(relpath)
        if self.read_text(relpath) is not None:
            keys.append(self._key(relpath))
        self._delete(keys)

    def _delete(self, keys: Sequence[str]) -> None:
        for start in range(0, len(keys), 1000):  # S3's limit per request
            batch = [{"Key": key} for key in keys[start : start + 1000]]
            self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})

    def _failed(self, exc: BaseException) -> TargetError:
        return _not_writable(self.location.uri, exc)


def _s3_missing(exc: BaseException) -> bool:
    response = getattr(exc, "response", None)
    code = response.get("Error", {}).get("Code") if isinstance(response, dict) else None
    return code in ("NoSuchKey", "404", "NotFound")


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
