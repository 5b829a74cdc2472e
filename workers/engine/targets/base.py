"""The contracts between the platform and the serving-target drivers.
It is over 600 lines because it is the one contract module that every driver and the
platform import, and the checks its settings and specs run on themselves (repository folders,
python paths, model names, tensors, batching, a kind's options) belong with the types they guard.

The platform describes a target once (`TargetSettings`: where the server answers, where its
model repository lives, how models run there) and each deployment as a `DeploymentSpec`:
which variant file, under which Triton model name and version, with which tensors (from the
inspection report's IO signature), batching, instances, and the reference inputs and
outputs its smoke test compares against. Drivers answer with frozen results (`PushResult`,
`SmokeResult`, `TargetHealth`, `DeployOutcome`) or raise `TargetError`, whose `message` is a
sentence the user can act on and whose `detail` keeps the server's own words. What a kind
takes besides (its options and credentials) each driver declares as `OptionSpec`s, which
check a target's settings and describe the kind to the API and the browser's form.

Everything here is plain data: importing it loads neither numpy nor an HTTP client.
"""

from __future__ import annotations

import json
import math
import re
import site
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, get_args

from workers.engine.parity import Tolerance, VariantParity

if TYPE_CHECKING:
    from workers.engine.inspection import TensorSpec

# How a Triton server runs the variant: with its own backend for the format ("native":
# onnxruntime_onnx, tensorrt_plan, openvino), or in its python backend through Slipway's
# engine backends ("python"), for Triton builds that lack the native backend.
BackendMode = Literal["native", "python"]
InstanceKind = Literal["CPU", "GPU"]

# numpy's dtype name -> the KServe v2 (and Triton) datatype. Triton's config names are
# "TYPE_" + this, except BYTES, which the config calls TYPE_STRING.
SERVING_DTYPES: dict[str, str] = {
    "bool": "BOOL",
    "uint8": "UINT8",
    "uint16": "UINT16",
    "uint32": "UINT32",
    "uint64": "UINT64",
    "int8": "INT8",
    "int16": "INT16",
    "int32": "INT32",
    "int64": "INT64",
    "float16": "FP16",
    "float32": "FP32",
    "float64": "FP64",
    "bfloat16": "BF16",
    "string": "BYTES",  # the inspection report's name for ONNX strings
    "object": "BYTES",  # numpy's name for the same
    "bytes": "BYTES",
}

# A Triton model name becomes a directory and a URL path segment: letters, digits, "_" and
# "-" only, starting with a letter or digit. Dots are left out so that names like ".." or a
# hidden directory can never be formed, and so that ".candidate" suffixes are Slipway's own.
MODEL_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}")

# Triton keeps versions as int64; more than this is certainly a mistake.
MAX_VERSION = 2**53

# A target's metrics_url that turns reading its metrics off.
METRICS_OFF = "off"


class TargetError(Exception):
    """A deployment step failed, told as a sentence the user can act on.

    `code` is a stable identifier for the platform and the API ("target_unreachable",
    "repository_not_writable", "load_rejected", "smoke_mismatch", ...); `message` is shown
    to the user as is; `detail` holds the server's own error text, verbatim, when there is
    one. `transient` is True when trying again later may succeed (the server was down or
    busy), so a task may retry with backoff; anything else needs a change first. `smoke`
    is the failed smoke test, for "smoke_mismatch" and "smoke_failed".
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        detail: str = "",
        transient: bool = False,
        smoke: SmokeResult | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.detail = detail
        self.transient = transient
        self.smoke = smoke

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"TargetError({self.code!r}, {self.message!r})"


# --- where the target is -----------------------------------------------------------------


@dataclass(frozen=True)
class RepositoryLocation:
    """A model repository: a local directory, or a prefix in an S3-compatible bucket.

    `uri` is what the server is started with: an absolute path, "s3://bucket/prefix", or
    Triton's form for a private S3 endpoint, "s3://host:port/bucket/prefix".
    """

    uri: str
    kind: Literal["local", "s3"]
    path: Path | None = None  # local
    bucket: str = ""  # s3
    prefix: str = ""  # s3, without leading or trailing "/"
    endpoint: str = ""  # s3 "host:port" of a private endpoint, else ""

    @classmethod
    def parse(cls, uri: str) -> RepositoryLocation:
        """The location named by `uri`; raises TargetError("invalid_target") when it names none."""
        text = uri.strip()
        if text.startswith("s3://"):
            parts = [part for part in text.removeprefix("s3://").split("/") if part]
            endpoint = ""
            if parts and ":" in parts[0]:
                endpoint = parts.pop(0)
            if not parts:
                raise TargetError(
                    "invalid_target",
                    f"The model repository '{uri}' names no bucket; write it as s3://bucket/prefix "
                    "(or s3://host:port/bucket/prefix for a private S3 endpoint).",
                )
            return cls(uri=text, kind="s3", bucket=parts[0], prefix="/".join(parts[1:]), endpoint=endpoint)
        if "://" in text:
            raise TargetError(
                "invalid_target",
                f"The model repository '{uri}' is neither a local directory nor an s3:// URL; "
                "Slipway writes Triton repositories to those two only.",
            )
        path = Path(text)
        if not path.is_absolute():
            raise TargetError(
                "invalid_target",
                f"The model repository '{uri}' is a relative path; give the absolute path the worker "
                "and the server both see (for example a shared volume).",
            )
        return cls(uri=text, kind="local", path=path)


# Folders the system itself lives in. A model repository is never one of these, nor inside
# the ones in SYSTEM_TREES, whatever an administrator allowed: Slipway writes and removes
# entries there.
SYSTEM_FOLDERS = frozenset(
    {"/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib32", "/lib64", "/libx32", "/media", "/mnt",
     "/opt", "/proc", "/root", "/run", "/sbin", "/srv", "/sys", "/usr", "/var", "/var/lib",
     "/tmp", "/var/tmp"}  # noqa: S108 - named here to be refused
)  # fmt: skip
SYSTEM_TREES = ("/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/root", "/run",
                "/sbin", "/sys", "/usr")  # fmt: skip


def _code_folders() -> tuple[Path, ...]:
    """Slipway's own code: this checkout, and the Python installation that runs it."""
    folders = [Path(__file__).resolve().parents[3], Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve()]
    return tuple(dict.fromkeys(folders))


def _within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_repository_folder(path: str | Path, allowed_roots: Sequence[str | Path] | None) -> Path:
    """The local model repository `path` with symbolic links resolved, if Slipway may write there.

    It must be inside one of `allowed_roots` (the administrator's SLIPWAY_TARGET_ROOTS; None:
    no such list, for tools that pick their own folder), and never a system folder or a
    folder of Slipway's own code, nor one that holds them. Raises
    TargetError("repository_not_allowed") with a sentence naming the allowed folders.
    """
    roots = None if allowed_roots is None else [Path(root).resolve() for root in allowed_roots]
    if roots is None:
        allowed = "Give the model repository a folder of its own."
    elif roots:
        allowed = (
            "Slipway writes model repositories only inside the folders an administrator allowed "
            f"(SLIPWAY_TARGET_ROOTS): {', '.join(str(root) for root in roots)}."
        )
    else:
        allowed = "No folder is allowed for model repositories; an administrator sets them in SLIPWAY_TARGET_ROOTS."
    given = Path(path)
    if not given.is_absolute():
        raise TargetError("repository_not_allowed", f"The model repository '{path}' is not an absolute path. {allowed}")
    resolved = given.resolve()
    shown = f"'{path}'" if str(resolved) == str(path) else f"'{path}' (which leads to {resolved})"
    tree = next((tree for tree in SYSTEM_TREES if _within(resolved, Path(tree))), None)
    if str(resolved) in SYSTEM_FOLDERS or tree is not None:
        where = "a system folder" if str(resolved) in SYSTEM_FOLDERS else f"inside the system folder {tree}"
        raise TargetError("repository_not_allowed", f"The model repository {shown} is {where}. {allowed}")
    for code in _code_folders():
        # Inside the code only where an administrator allowed a folder there (the default data
        # folder of a checkout, say); never the code's own folder or one that holds it.
        allowed_inside = any(code in root.parents and _within(resolved, root) for root in roots or ())
        if _within(code, resolved) or (code in resolved.parents and not allowed_inside):
            raise TargetError(
                "repository_not_allowed",
                f"The model repository {shown} is in or around Slipway's own code ({code}). {allowed}",
            )
    if roots is not None and not any(_within(resolved, root) for root in roots):
        raise TargetError(
            "repository_not_allowed", f"The model repository {shown} is outside the allowed folders. {allowed}"
        )
    return resolved


def default_python_paths() -> tuple[str, ...]:
    """The import path a Triton python-backend model needs to run Slipway's engine here.

    This worker's site-packages (numpy, onnxruntime, ...) and the directory that holds the
    `workers` package. Right when the server runs on this machine with this checkout (tests,
    a single-host install); a remote server needs its own paths in `TargetSettings`.
    """
    paths = [str(Path(__file__).resolve().parents[3])]
    # In a virtualenv this is the virtualenv's site-packages only, which is what the stub lacks.
    for directory in site.getsitepackages():
        if Path(directory).is_dir() and directory not in paths:
            paths.append(directory)
    return tuple(paths)


@dataclass(frozen=True)
class TargetSettings:
    """A registered serving target, as the driver needs it.

    `url` is the server's HTTP endpoint ("http://triton.internal:8000"); `repository` the
    model repository the server was started with, as the worker reaches it (see
    `RepositoryLocation`). `backend_mode` says how Triton runs variants. `python_paths` are
    the sys.path entries the python backend needs on the server (empty: this worker's own,
    `default_python_paths()`). `headers` go with every request (for example an API gateway
    token). `repository_options` configure the S3 client (endpoint_url, region_name, ...).
    `allowed_roots` are the folders a local repository must be inside (the platform passes
    SLIPWAY_TARGET_ROOTS; None: no such list), checked again before every write
    (`check_repository_folder`). `metrics_url` is where the server's Prometheus metrics are
    ("": the kind's default, e.g. Triton's port 8002 on the server's host; "off": none).
    """

    name: str
    url: str
    repository: str
    kind: str = "triton"
    backend_mode: BackendMode = "native"
    python_paths: tuple[str, ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    request_timeout_seconds: float = 30.0
    load_timeout_seconds: float = 300.0
    repository_options: tuple[tuple[str, str], ...] = ()
    allowed_roots: tuple[str, ...] | None = None
    metrics_url: str = ""

    def __post_init__(self) -> None:
        if not re.fullmatch(r"https?://[^/\s]+/?", self.url.strip()):
            raise TargetError(
                "invalid_target",
                f"The target URL '{self.url}' is not an http:// or https:// address of a server "
                "(host and port, no path), such as http://triton.internal:8000.",
            )
        if self.backend_mode not in ("native", "python"):
            raise TargetError(
                "invalid_target", f"The backend mode must be 'native' or 'python', not {self.backend_mode!r}."
            )
        for timeout in (self.request_timeout_seconds, self.load_timeout_seconds):
            if not (isinstance(timeout, int | float) and timeout > 0 and math.isfinite(timeout)):
                raise TargetError("invalid_target", f"Timeouts must be positive numbers of seconds, not {timeout!r}.")
        for path in self.python_paths:
            check_python_path(path)
        RepositoryLocation.parse(self.repository)
        check_metrics_url(self.metrics_url)

    @property
    def location(self) -> RepositoryLocation:
        """The parsed model repository."""
        return RepositoryLocation.parse(self.repository)

    @property
    def effective_python_paths(self) -> tuple[str, ...]:
        """`python_paths`, or this worker's own when none are set."""
        return self.python_paths or default_python_paths()


def check_metrics_url(value: str) -> None:
    """Raise TargetError("invalid_options") unless `value` is "" (the kind's default), "off", or an
    http:// or https:// URL with a host (a path allowed, e.g. http://triton.internal:8002/metrics)."""
    text = value.strip()
    if text.lower() in ("", METRICS_OFF) or re.fullmatch(r"https?://[^/\s?#@]+(/[^\s#]*)?", text, re.IGNORECASE):
        return
    raise TargetError(
        "invalid_options",
        f"The option metrics_url must be an http:// or https:// URL such as http://triton.internal:8002/metrics, "
        f"or off for a server that exports no metrics, not '{value}'.",
    )


def check_python_path(path: str) -> None:
    """Raise TargetError("invalid_target") for a sys.path entry the python model can't carry.

    Entries travel in config.pbtxt joined by ":", in a quoted string, so they must be
    absolute and free of ":", quotes, backslashes and line breaks.
    """
    if not path.startswith("/") or re.search(r'[:"\\\n\r]', path):
        raise TargetError(
            "invalid_target",
            f"The python path '{path}' must be an absolute directory without ':', quotes, backslashes or line breaks.",
        )


# --- what to deploy ----------------------------------------------------------------------


@dataclass(frozen=True)
class TensorSignature:
    """An input or output as the server declares it.

    `dtype` is numpy's name ("float32"); `dims` are the full dims, batch included, with -1
    for any size (a symbolic dimension of the inspection report).
    """

    name: str
    dtype: str
    dims: tuple[int, ...]

    @classmethod
    def from_spec(cls, spec: TensorSpec | Mapping[str, Any]) -> TensorSignature:
        """From an inspection report's tensor (`TensorSpec` or its JSON: name, dtype, shape)."""
        if isinstance(spec, Mapping):
            name, dtype, shape = spec.get("name"), spec.get("dtype"), spec.get("shape")
        else:
            name, dtype, shape = spec.name, spec.dtype, spec.shape
        if not name or not dtype:
            raise TargetError(
                "invalid_spec",
                f"Tensor '{name or '?'}' has no element type in the inspection report, so the server can't "
                "declare it; only tensors (not sequences or maps) can be served.",
            )
        if shape is None:
            raise TargetError(
                "invalid_spec",
                f"Tensor '{name}' has no known rank in the inspection report; the server needs the number "
                "of dimensions. Export the model with static ranks.",
            )
        dims = tuple(dim if isinstance(dim, int) and not isinstance(dim, bool) and dim >= 0 else -1 for dim in shape)
        return cls(str(name), str(dtype), dims)


def signature_from_report(specs: Iterable[TensorSpec | Mapping[str, Any]]) -> tuple[TensorSignature, ...]:
    """Every tensor of an inspection report's inputs or outputs, symbolic dims as -1."""
    return tuple(TensorSignature.from_spec(spec) for spec in specs)


@dataclass(frozen=True)
class DynamicBatching:
    """Triton's dynamic batcher: wait up to `max_queue_delay_microseconds` to form a batch,
    preferring the sizes in `preferred_batch_sizes` (empty: as large as allowed)."""

    preferred_batch_sizes: tuple[int, ...] = ()
    max_queue_delay_microseconds: int = 0


@dataclass(frozen=True)
class InstanceGroup:
    """How many copies of the model run, and where: `count` on CPU, or on each GPU in
    `gpus` (all GPUs when empty) for kind GPU."""

    count: int = 1
    kind: InstanceKind = "CPU"
    gpus: tuple[int, ...] = ()


@dataclass(frozen=True)
class DeploymentSpec:
    """One variant to deploy as one version of one model on a target.

    `model_file` is the variant's main file on this worker; `extra_files` its companions
    (external weights, an OpenVINO .bin, a TensorRT stamp). `engine_backend` names the
    Slipway backend that built it ("onnxruntime", "openvino", "tensorrt", ...) and
    `model_format` its format ("onnx", "openvino-ir", "tensorrt-plan", ...) and `precision`
    the variant's ("fp32", "bf16", "int8", ...; "" when unknown). `inputs` and
    `outputs` come from the inspection report (`signature_from_report`). With
    `max_batch_size` > 0 the first dim of every tensor is the batch and must be -1.

    `reference_inputs` are the smoke test's feeds (name -> array, one dict per request) and
    `reference_outputs` what the variant must answer to them within `tolerance` (for
    example the parity step's reference outputs); with no outputs, the smoke test only
    checks that every output comes back with the declared name.
    """

    model_name: str
    version: int
    model_file: Path
    engine_backend: str
    model_format: str
    inputs: tuple[TensorSignature, ...]
    outputs: tuple[TensorSignature, ...]
    max_batch_size: int = 0
    dynamic_batching: DynamicBatching | None = None
    instance_group: InstanceGroup = field(default_factory=InstanceGroup)
    extra_files: tuple[Path, ...] = ()
    reference_inputs: tuple[Mapping[str, Any], ...] = ()
    reference_outputs: tuple[Mapping[str, Any], ...] = ()
    tolerance: Tolerance = field(default_factory=Tolerance)
    precision: str = ""

    def __post_init__(self) -> None:
        check_model_name(self.model_name)
        if isinstance(self.version, bool) or not isinstance(self.version, int) or not 1 <= self.version <= MAX_VERSION:
            raise TargetError("invalid_spec", f"The version must be a whole number of 1 or more, not {self.version!r}.")
        if not self.inputs or not self.outputs:
            raise TargetError(
                "invalid_spec", "A served model needs at least one input and one output from its IO signature."
            )
        for tensor in (*self.inputs, *self.outputs):
            _check_tensor(tensor)
        names = [tensor.name for tensor in self.inputs] + [tensor.name for tensor in self.outputs]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise TargetError("invalid_spec", f"Tensor names must be unique; repeated: {', '.join(duplicates)}.")
        _check_batching(self)
        if self.instance_group.count < 1 or self.instance_group.kind not in ("CPU", "GPU"):
            raise TargetError(
                "invalid_spec",
                "The instance group needs a count of 1 or more and kind CPU or GPU, not "
                f"{self.instance_group.count} x {self.instance_group.kind!r}.",
            )
        if self.reference_outputs and len(self.reference_outputs) != len(self.reference_inputs):
            raise TargetError(
                "invalid_spec",
                f"There are {len(self.reference_outputs)} reference outputs for {len(self.reference_inputs)} "
                "reference inputs; give one output dict per input dict.",
            )

    @property
    def files(self) -> tuple[Path, ...]:
        """Every file of the variant, main file first."""
        return (self.model_file, *(path for path in self.extra_files if path != self.model_file))


def check_model_name(name: str) -> None:
    """Raise TargetError("invalid_spec") unless `name` is safe as a directory and URL segment."""
    if not isinstance(name, str) or not MODEL_NAME_PATTERN.fullmatch(name):
        raise TargetError(
            "invalid_spec",
            f"The model name {name!r} can't be used on the server: use 1 to 100 letters, digits, '_' or '-', "
            "starting with a letter or digit (it becomes a directory and part of the URL).",
        )


def _check_tensor(tensor: TensorSignature) -> None:
    if not tensor.name or any(ord(char) < 32 for char in tensor.name):
        raise TargetError("invalid_spec", f"Tensor name {tensor.name!r} is empty or holds control characters.")
    if tensor.dtype not in SERVING_DTYPES:
        raise TargetError(
            "invalid_spec",
            f"Tensor '{tensor.name}' has element type '{tensor.dtype}', which the KServe v2 protocol can't carry; "
            f"servable types are {', '.join(sorted(SERVING_DTYPES))}.",
        )
    if any(isinstance(dim, bool) or not isinstance(dim, int) or dim < -1 for dim in tensor.dims):
        raise TargetError(
            "invalid_spec", f"Tensor '{tensor.name}' has dims {list(tensor.dims)}; each must be a size or -1."
        )


def _check_batching(spec: DeploymentSpec) -> None:
    if isinstance(spec.max_batch_size, bool) or not isinstance(spec.max_batch_size, int) or spec.max_batch_size < 0:
        raise TargetError(
            "invalid_spec", f"max_batch_size must be 0 (no batching) or more, not {spec.max_batch_size!r}."
        )
    if spec.max_batch_size > 0:
        for tensor in (*spec.inputs, *spec.outputs):
            if not tensor.dims or tensor.dims[0] != -1:
                raise TargetError(
                    "not_batchable",
                    f"Tensor '{tensor.name}' has dims {list(tensor.dims)}: its first dimension is not a free "
                    "batch dimension, so the server can't batch requests. Set max_batch_size to 0, or export "
                    "the model with a dynamic batch dimension.",
                )
    batching = spec.dynamic_batching
    if batching is None:
        return
    if spec.max_batch_size == 0:
        raise TargetError(
            "invalid_spec", "Dynamic batching needs max_batch_size above 0; set one, or turn dynamic batching off."
        )
    wrong = [size for size in batching.preferred_batch_sizes if not 1 <= size <= spec.max_batch_size]
    if wrong:
        raise TargetError(
            "invalid_spec",
            f"Preferred batch sizes {wrong} are outside 1..{spec.max_batch_size} (the max_batch_size).",
        )
    if not 0 <= batching.max_queue_delay_microseconds <= 10_000_000:
        raise TargetError(
            "invalid_spec",
            f"The queue delay must be between 0 and 10 s (10000000 us), not {batching.max_queue_delay_microseconds}.",
        )


# --- what happened -----------------------------------------------------------------------


@dataclass(frozen=True)
class PushResult:
    """A version written to the model repository.

    `location` is the version directory (a path or an s3:// URL); `files` the paths written
    there, relative to it; `reused` is True when an identical version was already there (a
    retried task), so nothing was written.
    """

    model_name: str
    version: int
    location: str
    files: tuple[str, ...]
    bytes_written: int
    config_text: str
    reused: bool = False


@dataclass(frozen=True)
class SmokeResult:
    """A smoke inference against a loaded version.

    `compared` is False when the spec had no reference outputs (then `passed` only says that
    every output came back). `parity` holds the per-output numbers (max abs/rel error,
    cosine, top-1) from parity's comparison; `latencies_ms` one round trip per request.
    """

    model_name: str
    version: int
    passed: bool
    compared: bool
    samples: int
    latencies_ms: tuple[float, ...]
    reasons: tuple[str, ...]
    parity: VariantParity | None = None
    error: str = ""


@dataclass(frozen=True)
class TargetHealth:
    """Whether the server answers (`reachable`), is up (`live`) and ready, and what it is.

    A Triton server under `--strict-readiness` (its default) reports not ready once a
    model's load failed, until a model of that name loads again, even after the failed one
    was removed; `failed_models` names those still in its repository ("name: reason").
    Deploys need a live server only.
    """

    reachable: bool
    live: bool
    ready: bool
    server_name: str = ""
    server_version: str = ""
    extensions: tuple[str, ...] = ()
    failed_models: tuple[str, ...] = ()
    error: str = ""


@dataclass(frozen=True)
class ModelCounters:
    """One model version's counters as its server reported them at one moment.

    They count since the server (or the version) started, so only the difference between two
    readings means anything: a rate, or a mean duration per request. None: the server does
    not export that counter (or gave NaN). `request_quantiles_us` are the server's own latency
    quantiles over its recent requests ((0.5, 771.0), ...), where it exports them (Triton:
    --metrics-config summary_latencies=true).
    """

    model_name: str
    model_version: str
    request_success: float | None = None
    request_failure: float | None = None
    inference_count: float | None = None
    execution_count: float | None = None
    request_duration_us: float | None = None
    queue_duration_us: float | None = None
    compute_input_duration_us: float | None = None
    compute_infer_duration_us: float | None = None
    compute_output_duration_us: float | None = None
    request_quantiles_us: tuple[tuple[float, float], ...] = ()


@dataclass(frozen=True)
class ServingMetrics:
    """What a target's metrics endpoint (`source`, a URL) reported: one `ModelCounters` per
    model version, or `error`, a sentence saying why there are none. `notes` say what was
    skipped (lines that broke the format)."""

    source: str
    models: tuple[ModelCounters, ...] = ()
    error: str = ""
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class DeployOutcome:
    """A version that now serves: `live_version` replaced `previous_version` (None on the
    first deploy), after `candidate_smoke` (before any traffic reached it; None when a retried
    deploy found the version already pushed) and `live_smoke` (the instances that now
    serve). `steps` say what was done, in order, for the job log."""

    model_name: str
    live_version: int
    previous_version: int | None
    push: PushResult | None  # None for a rollback: nothing was written
    candidate_smoke: SmokeResult | None
    live_smoke: SmokeResult | None  # None for a rollback without a spec to check against
    seconds: float
    steps: tuple[str, ...] = ()


# --- what a kind takes: its options and credentials --------------------------------------

# What an option's value is. "string": text (one of `choices` when set); "url": an http:// or
# https:// address; "integer" and "number": between `minimum` and `maximum` when set;
# "boolean"; "path_list": absolute directories; "string_list": one or more non-empty texts
# (each one of `choices` when set); "text_map": names to text (an object); "headers": HTTP
# header names to single-line values (an object).
OptionType = Literal["string", "url", "integer", "number", "boolean", "path_list", "string_list", "text_map", "headers"]
OPTION_TYPES: tuple[OptionType, ...] = get_args(OptionType)
OptionValue = str | int | float | bool | None
OPTION_KEY_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,62}")
_URL_PATTERN = re.compile(r"https?://[^/\s?#]+(/\S*)?", re.IGNORECASE)


@dataclass(frozen=True)
class OptionSpec:
    """One setting a serving-target kind takes, in a target's `options` (not secret) or its
    `credentials` (secret, write-only), declared once on the driver (`option_specs`,
    `credential_specs`).

    The same declaration checks what a user gives (`check_settings`, which the platform runs
    before a target is saved), describes the kind to the API (GET /targets/kinds/ and the
    OpenAPI schema, `settings_schema`) and builds the browser's form, so the three can't
    disagree. `type` is one of OPTION_TYPES; `default` is what the driver uses when the key is
    absent (None: nothing); `choices` are a "string"'s allowed values; `minimum` and `maximum`
    bound an "integer" or "number"; `secret_keys` are keys of a "text_map" that are secrets and
    are refused there (they belong in the credentials); `example` is a value to show as a hint.
    A spec checks itself when made, so a driver can't declare one its own check would refuse.
    """

    key: str
    type: OptionType
    help: str
    required: bool = False
    default: OptionValue = None
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    secret_keys: tuple[str, ...] = ()
    example: str = ""

    def __post_init__(self) -> None:
        where = f"The option spec '{self.key}'"
        if not OPTION_KEY_PATTERN.fullmatch(self.key):
            raise ValueError(f"{where} needs a key of lower-case letters, digits and '_', starting with a letter.")
        if self.type not in OPTION_TYPES:
            raise ValueError(f"{where} has type {self.type!r}; use one of {', '.join(OPTION_TYPES)}.")
        if not self.help.strip():
            raise ValueError(f"{where} needs a help sentence saying what it is for.")
        if self.choices and self.type not in ("string", "string_list"):
            raise ValueError(f"{where} lists choices, which only a 'string' or 'string_list' option takes.")
        bounded = self.minimum is not None or self.maximum is not None
        if bounded and self.type not in ("integer", "number"):
            raise ValueError(f"{where} has bounds, which only an 'integer' or 'number' option takes.")
        if self.minimum is not None and self.maximum is not None and self.minimum > self.maximum:
            raise ValueError(f"{where} has a minimum above its maximum.")
        if self.secret_keys and self.type != "text_map":
            raise ValueError(f"{where} lists secret keys, which only a 'text_map' option takes.")
        if self.required and self.default is not None:
            raise ValueError(f"{where} is required and has a default; a default makes it optional.")
        if self.default is not None:
            self.check(self.default, where="option")

    def check(self, value: Any, *, where: Literal["option", "credential", "setting"] = "option") -> Any:
        """`value` as the driver takes it; TargetError("invalid_options" or "invalid_credentials")
        with a sentence saying what it must be (a python path that can't be carried:
        "invalid_target", from `check_python_path`). `where` names the value in the sentence:
        a target's option or credential, or a setting of something else declared with specs
        (a policy's parameters)."""
        code = "invalid_credentials" if where == "credential" else "invalid_options"
        name = f"The {where} {self.key}"
        if self.type in ("string", "url"):
            if not isinstance(value, str) or not value.strip():
                raise TargetError(code, f"{name} must be non-empty text{self._hint()}.")
            # A secret is kept as given; a setting loses the spaces a paste brings.
            value = value.strip() if where == "option" else value
            if self.choices and value not in self.choices:
                raise TargetError(code, f"{name} must be one of {', '.join(self.choices)}, not '{value}'.")
            if self.type == "url" and not _URL_PATTERN.fullmatch(value):
                raise TargetError(code, f"{name} must be an http:// or https:// URL{self._hint()}, not '{value}'.")
            return value
        if self.type in ("integer", "number"):
            whole = self.type == "integer"
            fits = isinstance(value, int) if whole else isinstance(value, int | float) and math.isfinite(value)
            low, high = self.minimum, self.maximum
            if (
                isinstance(value, bool)
                or not fits
                or (low is not None and value < low)
                or (high is not None and value > high)
            ):
                raise TargetError(code, f"{name} must be {'a whole number' if whole else 'a number'}{self._range()}.")
            return value
        if self.type == "boolean":
            if not isinstance(value, bool):
                raise TargetError(code, f"{name} must be true or false.")
            return value
        if self.type == "string_list":
            if (
                not isinstance(value, list)
                or not value
                or not all(isinstance(item, str) and item.strip() for item in value)
            ):
                raise TargetError(code, f"{name} must be a list of one or more non-empty texts{self._hint()}.")
            items = [item.strip() for item in value]
            wrong = [item for item in items if self.choices and item not in self.choices]
            if wrong:
                raise TargetError(
                    code, f"{name} takes only {', '.join(self.choices)}; {', '.join(wrong)} is not one of them."
                )
            return items
        if self.type == "path_list":
            if not isinstance(value, list) or not all(isinstance(path, str) for path in value):
                raise TargetError(code, f"{name} must be a list of absolute directories.")
            for path in value:
                check_python_path(path)
            return list(value)
        if self.type == "headers":
            if not isinstance(value, Mapping) or not all(
                isinstance(k, str) and isinstance(v, str) and k.strip() and ":" not in k and "\n" not in k + v
                for k, v in value.items()
            ):
                raise TargetError(code, f"{name} must be an object of header names to values, both single-line text.")
            return dict(value)
        if not isinstance(value, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            raise TargetError(code, f"{name} must be an object of names to text values{self._hint()}.")
        secret = sorted(set(value) & set(self.secret_keys))
        if secret:
            raise TargetError(
                code,
                f"{', '.join(secret)} is a secret: give it in 'credentials', which is encrypted and never shown, "
                "not in the options.",
            )
        return dict(value)

    def json_schema(self) -> dict[str, Any]:
        """The spec as an OpenAPI (JSON Schema) property."""
        shapes: dict[str, dict[str, Any]] = {
            "string": {"type": "string", "minLength": 1},
            "url": {"type": "string", "format": "uri"},
            "integer": {"type": "integer"},
            "number": {"type": "number"},
            "boolean": {"type": "boolean"},
            "path_list": {"type": "array", "items": {"type": "string"}},
            "string_list": {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1},
            "text_map": {"type": "object", "additionalProperties": {"type": "string"}},
            "headers": {"type": "object", "additionalProperties": {"type": "string"}},
        }
        schema = dict(shapes[self.type])
        if self.choices and self.type == "string_list":
            schema["items"] = {**schema["items"], "enum": list(self.choices)}
        elif self.choices:
            schema["enum"] = list(self.choices)
        if self.minimum is not None:
            schema["minimum"] = self.minimum
        if self.maximum is not None:
            schema["maximum"] = self.maximum
        if self.example and self.type in ("string", "url"):
            schema["example"] = self.example
        # The default goes in words: generated clients read a schema `default` as "always
        # present", which would make every defaulted option one a request must send.
        default = f" (default {json.dumps(self.default)})" if self.default is not None else ""
        return {**schema, "description": self.help + default}

    def _hint(self) -> str:
        return f", e.g. {self.example}" if self.example else ""

    def _range(self) -> str:
        if self.minimum is not None and self.maximum is not None:
            return f" from {self.minimum:g} to {self.maximum:g}"
        if self.minimum is not None:
            return f" of {self.minimum:g} or more"
        return f" of {self.maximum:g} or less" if self.maximum is not None else ""


def option_specs(driver: type) -> tuple[OptionSpec, ...]:
    """The options a driver class takes: its `option_specs`, or, for a driver that declares
    only `option_keys` (key -> what for), text options of those keys."""
    declared = getattr(driver, "option_specs", None)
    if declared is not None:
        return tuple(declared)
    return tuple(OptionSpec(key, "string", what) for key, what in getattr(driver, "option_keys", {}).items())


def credential_specs(driver: type) -> tuple[OptionSpec, ...]:
    """The credentials a driver class takes: its `credential_specs`, or text secrets of its `credential_keys`."""
    declared = getattr(driver, "credential_specs", None)
    if declared is not None:
        return tuple(declared)
    return tuple(OptionSpec(key, "string", what) for key, what in getattr(driver, "credential_keys", {}).items())


def described(specs: Sequence[OptionSpec]) -> dict[str, str]:
    """key -> help of each spec: a driver's `option_keys` and `credential_keys`, made from its specs."""
    return {spec.key: spec.help for spec in specs}


def check_settings(
    specs: Sequence[OptionSpec], given: Mapping[str, Any], *, label: str, where: Literal["option", "credential"]
) -> dict[str, Any]:
    """`given` options (or credentials) of a `label` target, checked against the kind's `specs`:
    no key it doesn't take, every required one present, each value as its spec says. Raises
    TargetError("invalid_options" or "invalid_credentials") with a sentence naming the key."""
    code = "invalid_options" if where == "option" else "invalid_credentials"
    known = {spec.key: spec for spec in specs}
    unknown = sorted(str(key) for key in given if key not in known)
    if unknown:
        takes = ", ".join(known) or "none"
        raise TargetError(code, f"Unknown {where} {', '.join(unknown)} for a {label} target; it takes: {takes}.")
    missing = [spec for spec in specs if spec.required and given.get(spec.key) in (None, "")]
    if missing:
        needed = "; ".join(f"{spec.key} ({spec.help}{spec._hint()})" for spec in missing)
        many = "s" if len(missing) > 1 else ""
        raise TargetError(code, f"A {label} target needs the {where}{many} {needed}; add {'them' if many else 'it'}.")
    return {key: known[key].check(value, where=where) for key, value in given.items()}


def settings_schema(specs: Sequence[OptionSpec], *, title: str) -> dict[str, Any]:
    """The OpenAPI (JSON Schema) object of a kind's options or credentials."""
    schema: dict[str, Any] = {
        "type": "object",
        "title": title,
        "properties": {spec.key: spec.json_schema() for spec in specs},
        "additionalProperties": False,
    }
    required = [spec.key for spec in specs if spec.required]
    if required:
        schema["required"] = required
    return schema


# --- the driver contract -----------------------------------------------------------------


class TargetDriver(Protocol):
    """What a serving-target kind implements; `targets.registry` finds the kinds (DRIVERS).

    The class attributes are what the platform needs without a worker: the kind's name and
    label, the non-secret options it takes and the secrets it may hold, each declared once as
    an `OptionSpec` (`option_specs`, `credential_specs`: type, required, default, help), from
    which `option_keys` and `credential_keys` (name -> what for) are made with `described`. A
    driver that declares only the keys takes text for each (`option_specs()`). A driver is
    made from the target's `TargetSettings` on a worker. `deploy` takes a version through the
    kind's own way to traffic (Triton: candidate entry, smoke test, switch; see `triton`):
    push, load, ready, smoke and switch are one call because their order and what is undone
    on failure differ between kinds.
    Every method raises `TargetError` with a sentence.
    """

    kind: ClassVar[str]
    label: ClassVar[str]
    option_specs: ClassVar[tuple[OptionSpec, ...]]
    credential_specs: ClassVar[tuple[OptionSpec, ...]]
    option_keys: ClassVar[dict[str, str]]
    credential_keys: ClassVar[dict[str, str]]

    def __init__(self, settings: TargetSettings) -> None: ...

    def health(self) -> TargetHealth:
        """Whether the server is live and ready, and what it is."""
        ...

    def deploy(self, spec: DeploymentSpec, previous_version: int | None = None) -> DeployOutcome:
        """Push, load, smoke-test and switch traffic to `spec`'s version; the previous one
        keeps serving until the new one passed, and is put back on any failure."""
        ...

    def rollback(
        self, model_name: str, to_version: int, current_version: int | None, spec: DeploymentSpec | None = None
    ) -> DeployOutcome:
        """Serve `to_version` again in place of `current_version` (smoke-tested with `spec`'s references)."""
        ...

    def served_versions(self, model_name: str) -> tuple[int, ...]:
        """The versions the target holds for the model (live or kept for a rollback)."""
        ...

    def retire(self, model_name: str, version: int) -> tuple[str, ...]:
        """Remove a version that no longer serves; sentences on what was left in place."""
        ...

    def remove_model(self, model_name: str) -> tuple[str, ...]:
        """Stop serving the model and remove what Slipway wrote for it (undeploy)."""
        ...


def describe_reasons(reasons: Sequence[str], limit: int = 3) -> str:
    """The first `limit` reasons as one text, saying how many more there are."""
    shown = " ".join(reasons[:limit])
    more = len(reasons) - limit
    return f"{shown} (and {more} more)" if more > 0 else shown
