"""A Triton model's config.pbtxt: what Slipway serves a variant with, and how it is written.

`model_config` turns a `DeploymentSpec` into a `TritonModelConfig` (the native backend that
serves the variant's format, or Slipway's python backend with its sys.path entries in the
parameter `slipway_sys_path`), rendered as config.pbtxt text with a version policy. It is
the protobuf-text half of `triton_repository`, which decides where files go and writes them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from workers.engine.backends.base import TritonNative
from workers.engine.backends.registry import triton_native_formats
from workers.engine.targets.base import (
    SERVING_DTYPES,
    BackendMode,
    DeploymentSpec,
    DynamicBatching,
    InstanceGroup,
    TargetError,
    TensorSignature,
    check_python_path,
)

# Every config.pbtxt Slipway writes starts with this line (an entry written before markers
# is known as Slipway's by it).
CONFIG_HEADER = "# Written by Slipway."
SYS_PATH_PARAMETER = "slipway_sys_path"

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
        native = native_format(spec)
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


def native_format(spec: DeploymentSpec) -> TritonNative:
    """How Triton serves `spec`'s format natively; TargetError when it can't, or not on the instance kind asked for."""
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
