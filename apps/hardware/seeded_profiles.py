"""The hardware profiles every installation starts with, as plain data.

One definition for the migrations that seed them, the tests that put them back after a
truncating test, and the benches that build as the pipeline does for `x86-cpu`. Importing
this module needs no Django: the benches run without a configured project.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# The runtimes x86-cpu's matrix shows for reference (options.report_backends).
REFERENCE_COLUMNS = ("litert", "rknn", "executorch")

PROFILES: tuple[Mapping[str, Any], ...] = (
    {
        "slug": "x86-cpu",
        "name": "x86-64 CPU",
        "description": "Servers with x86-64 CPUs (AVX2/AVX-512/VNNI where present): ONNX Runtime and OpenVINO.",
        "device_kind": "cpu",
        "backends": ["onnxruntime", "openvino"],
        # bf16 is built only where the CPU computes in it natively (AMX, AVX512-BF16).
        "precisions": ["fp32", "bf16", "int8"],
        "queue": "cpu",
        "requirements": {"arch": ["x86_64"]},
        "options": {
            "batch_sizes": [1, 8],
            "concurrency": [1, 4],
            "max_seconds_per_point": 5,
            "max_abs_error": 1e-3,
            "min_cosine": 0.99,
            "min_top1_agreement": 0.99,
            # Reference columns of the op-support matrix: what the phone, NPU and on-device
            # runtimes would say of the model, checked by their own toolchains, never built here.
            "report_backends": list(REFERENCE_COLUMNS),
        },
    },
    {
        "slug": "nvidia-gpu",
        "name": "NVIDIA GPU",
        "description": "NVIDIA GPUs: TensorRT engines, ONNX Runtime FP16 models, PyTorch CUDA.",
        "device_kind": "gpu",
        "backends": ["tensorrt", "onnxruntime", "torch_cuda"],
        "precisions": ["fp32", "fp16", "int8"],
        "queue": "gpu",
        "requirements": {"accelerator": "cuda"},
        "options": {
            "batch_sizes": [1, 8, 32, 128],
            "concurrency": [1, 4, 16],
            "max_abs_error": 1e-2,
            "min_cosine": 0.99,
        },
    },
    {
        "slug": "arm-cpu-mnn",
        "name": "ARM CPU (mobile/embedded)",
        "description": "ARM devices running the embedded runtimes MNN and ncnn.",
        "device_kind": "cpu",
        "backends": ["mnn", "ncnn"],
        "precisions": ["fp32", "fp16", "int8-weights"],
        # Its own queue: only an aarch64 machine may measure for it (migration 0005 moved it off "cpu").
        "queue": "arm64",
        "requirements": {"arch": ["aarch64"]},
        "options": {"batch_sizes": [1], "concurrency": [1], "max_abs_error": 1e-2, "min_cosine": 0.99},
    },
    {
        "slug": "mobile-litert",
        "name": "Phones (LiteRT)",
        "description": "Android and iOS phones and ARM boards running LiteRT (TensorFlow Lite) with XNNPACK.",
        "device_kind": "cpu",
        "backends": ["litert"],
        "precisions": ["fp32", "fp16", "int8"],
        # Measured on the phone or board itself (a device agent) or an aarch64 worker; the .tflite
        # files are built by the cluster's CPU workers, whose converter environment has onnx2tf.
        "queue": "arm64",
        "requirements": {"arch": ["aarch64"]},
        "options": {"batch_sizes": [1], "concurrency": [1], "max_abs_error": 1e-2, "min_cosine": 0.99},
    },
    {
        "slug": "mobile-executorch",
        "name": "Phones and boards (ExecuTorch)",
        "description": (
            "Android and iOS phones and ARM boards running ExecuTorch with the XNNPACK delegate: FP32 and INT8 .pte "
            "programs exported from the model through PyTorch."
        ),
        "device_kind": "cpu",
        "backends": ["executorch"],
        "precisions": ["fp32", "int8"],
        # Measured on the phone or board (a device agent with ExecuTorch's runtime); the .pte files
        # are built by the cluster's CPU workers, whose exporter environment has ExecuTorch's.
        "queue": "arm64",
        "requirements": {"arch": ["aarch64"]},
        "options": {"batch_sizes": [1], "concurrency": [1], "max_abs_error": 1e-2, "min_cosine": 0.99},
    },
    {
        "slug": "rk3588-npu",
        "name": "Rockchip RK3588 NPU",
        "description": (
            "Rockchip RK3588 boards' NPU through RKNN: op support, INT8/FP16 .rknn files and parity from "
            "RKNN-Toolkit2 and its simulator on the workers; timings only from a board running a device agent "
            "with rknn-toolkit-lite2."
        ),
        "device_kind": "cpu",
        "backends": ["rknn"],
        "precisions": ["int8", "fp16"],
        # The benchmark goes to boards (device agents); validate and parity run on the workers'
        # simulator (RKNNBackend.simulated_on_builders).
        "queue": "rk3588",
        "requirements": {"arch": ["aarch64"], "npu": "rk3588"},
        "options": {
            "rknn_platform": "rk3588",
            "batch_sizes": [1],
            "concurrency": [1],
            "max_abs_error": 5e-2,
            "min_cosine": 0.98,
        },
    },
)


def profile(slug: str) -> Mapping[str, Any]:
    """The seeded profile `slug`; KeyError for a slug that is not seeded."""
    for item in PROFILES:
        if item["slug"] == slug:
            return item
    raise KeyError(f"No seeded hardware profile '{slug}'; seeded are {', '.join(p['slug'] for p in PROFILES)}.")


def seed(model: Any) -> None:
    """Create or update the seeded profiles with `model`, the HardwareProfile class of the
    caller: a migration's historical model gets only the fields it has."""
    fields = {field.name for field in model._meta.get_fields()}
    for item in PROFILES:
        defaults = {key: value for key, value in item.items() if key in fields and key != "slug"}
        model.objects.update_or_create(slug=item["slug"], defaults=defaults)


def add_seeded(apps: Any, slug: str) -> None:
    """A migration's step that adds (or updates) the seeded profile `slug`."""
    HardwareProfile = apps.get_model("runtimes", "HardwareProfile")
    fields = {field.name for field in HardwareProfile._meta.get_fields()}
    item = profile(slug)
    HardwareProfile.objects.update_or_create(
        slug=slug, defaults={key: value for key, value in item.items() if key in fields and key != "slug"}
    )


def remove_seeded(apps: Any, slug: str) -> None:
    """The reverse of `add_seeded`."""
    apps.get_model("runtimes", "HardwareProfile").objects.filter(slug=slug).delete()
