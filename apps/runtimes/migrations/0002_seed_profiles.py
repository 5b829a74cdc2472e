"""Seed the three hardware profiles every installation starts with."""

from django.db import migrations

PROFILES = [
    {
        "slug": "x86-cpu",
        "name": "x86-64 CPU",
        "description": "Servers with x86-64 CPUs (AVX2/AVX-512/VNNI where present): ONNX Runtime and OpenVINO.",
        "device_kind": "cpu",
        "backends": ["onnxruntime", "openvino"],
        "precisions": ["fp32", "int8"],
        "queue": "cpu",
        "options": {
            "batch_sizes": [1, 8],
            "concurrency": [1, 4],
            "max_seconds_per_point": 5,
            "max_abs_error": 1e-3,
            "min_cosine": 0.99,
            "min_top1_agreement": 0.99,
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
        "options": {"batch_sizes": [1, 8, 32, 128], "concurrency": [1, 4, 16], "max_abs_error": 1e-2, "min_cosine": 0.99},
    },
    {
        "slug": "arm-cpu-mnn",
        "name": "ARM CPU (mobile/embedded)",
        "description": "ARM devices running the embedded runtimes MNN and ncnn.",
        "device_kind": "cpu",
        "backends": ["mnn", "ncnn"],
        "precisions": ["fp32", "fp16", "int8-weights"],
        "queue": "cpu",
        "options": {"batch_sizes": [1], "concurrency": [1], "max_abs_error": 1e-2, "min_cosine": 0.99},
    },
]


def seed(apps, schema_editor):
    HardwareProfile = apps.get_model("runtimes", "HardwareProfile")
    for profile in PROFILES:
        HardwareProfile.objects.update_or_create(slug=profile["slug"], defaults=profile)


def unseed(apps, schema_editor):
    apps.get_model("runtimes", "HardwareProfile").objects.filter(slug__in=[p["slug"] for p in PROFILES]).delete()


class Migration(migrations.Migration):
    dependencies = [("runtimes", "0001_initial")]
    operations = [migrations.RunPython(seed, unseed)]
