"""ARM builds against x86 builds (issue 18): where do MNN's and ncnn's ARM kernels compute
differently from their x86 kernels on the same variant files?

For each reference model of bench/optimize.py (ResNet-18, a Transformer encoder, the PP-OCRv4
text detector), builds the `arm-cpu-mnn` profile's variants here (MNN and ncnn, FP32, FP16 and
8-bit weights: the files are the same whichever machine builds them), then runs the original
model (onnxruntime) and every variant on the same inputs twice: with the runtimes' x86_64
wheels on this machine, and with their aarch64 wheels in the arm64 root filesystem under QEMU
user emulation (scripts/arm64_rootfs.sh), which executes the ARM kernels (NEON, FP16
arithmetic, dot products) instruction by instruction. Per variant: each build against the
original on its own architecture (cosine, max abs error), and the ARM output against the x86
output of the same file. Timings under emulation mean nothing and are not taken.

Writes the "## ARM builds against x86 builds" section of BENCHMARKS.md unless --no-write.

    python bench/arm_parity.py                 # 3 models, 2 inputs each: about 5 minutes
    python bench/arm_parity.py --models cnn --samples 1 --no-write
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SECTION = "ARM builds against x86 builds"
PROFILE = "arm-cpu-mnn"
DEFAULT_MODELS = ("cnn", "transformer", "ocr")
ARM_BUILT = "@arm-built"


# ---- the runner: the same script, run on each architecture ------------------------------------


def run_outputs(root: Path) -> None:
    """Run the original and every variant of `root/spec.json` on its inputs; write
    outputs-<arch>.npz (`<variant>__s<sample>__o<output>`) and runtimes-<arch>.json."""
    import platform

    import numpy as np

    from workers.engine.backends.registry import get_backend, installed_backends

    spec = json.loads((root / "spec.json").read_text())
    inputs = np.load(root / "inputs.npz")
    names = list(inputs.files)
    samples = inputs[names[0]].shape[0]
    arch = platform.machine()
    found: dict[str, Any] = {}
    errors: dict[str, str] = {}
    entries = [{"name": "original", "backend": "onnxruntime", "path": spec["original"]}, *spec["variants"]]
    if arch == "aarch64":
        # The same variants built here, on ARM, from the same ONNX file: are they the files the
        # x86 build made, as far as the device can tell (they compute the same outputs)?
        entries += _built_here(root, spec)
    for entry in entries:
        try:
            session = get_backend(entry["backend"]).load(root / entry["path"])
            for s in range(samples):
                outputs = session.run({n: inputs[n][s : s + 1] for n in names})
                for o, key in enumerate(sorted(outputs)):
                    found[f"{entry['name']}__s{s}__o{o}"] = np.asarray(outputs[key], dtype=np.float64)
            session.close()
        except Exception as exc:
            errors[entry["name"]] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    np.savez(root / f"outputs-{arch}.npz", **found)
    versions = {k: v for k, v in installed_backends().items() if v}
    (root / f"runtimes-{arch}.json").write_text(json.dumps({"versions": versions, "errors": errors}))


def _built_here(root: Path, spec: dict[str, Any]) -> list[dict[str, str]]:
    from workers.engine.backends.base import HardwareProfile
    from workers.engine.backends.registry import get_backend

    profile = HardwareProfile(**{**spec["profile"], "backends": tuple(spec["profile"]["backends"]),
                                 "precisions": tuple(spec["profile"]["precisions"])})  # fmt: skip
    built = []
    for backend in profile.backends:
        out = root / "arm-built" / backend
        for variant in get_backend(backend).build_variants(root / spec["original"], profile, None, out):
            name = f"{variant.name}{ARM_BUILT}"
            built.append({"name": name, "backend": backend, "path": str(variant.path.relative_to(root))})
    return built


# ---- the driver ---------------------------------------------------------------------------------


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _compare(a: Any, b: Any) -> dict[str, float]:
    import numpy as np

    x, y = a.ravel(), b.ravel()
    if x.shape != y.shape:
        return {"cosine": float("nan"), "max_abs": float("inf")}
    denominator = float(np.linalg.norm(x) * np.linalg.norm(y))
    cosine = float(np.dot(x, y) / denominator) if denominator else (1.0 if np.array_equal(x, y) else 0.0)
    return {"cosine": cosine, "max_abs": float(np.max(np.abs(x - y))) if x.size else 0.0}


def _worst(pairs: list[dict[str, float]]) -> dict[str, float]:
    return {"cosine": min(p["cosine"] for p in pairs), "max_abs": max(p["max_abs"] for p in pairs)}


def build(key: str, scratch: Path, samples: int) -> dict[str, Any]:
    """The model, its inputs and its ARM profile's variants, in `scratch`."""
    from workers.engine.child import stdout_to_stderr

    with stdout_to_stderr():
        return _build(key, scratch, samples)


def _build(key: str, scratch: Path, samples: int) -> dict[str, Any]:
    from dataclasses import asdict

    import numpy as np

    from apps.hardware import seeded_profiles
    from bench.optimize import CASES
    from workers.engine.backends.base import HardwareProfile
    from workers.engine.backends.registry import get_backend

    case = CASES[key]
    made = case.make(scratch / "model.onnx")
    np.savez(scratch / "inputs.npz", **case.samples(np.random.default_rng(7), samples))
    seeded = seeded_profiles.profile(PROFILE)
    profile = HardwareProfile(
        name=PROFILE,
        device_kind="cpu",
        backends=tuple(seeded["backends"]),
        precisions=tuple(seeded["precisions"]),
        queue=seeded["queue"],
        options=dict(seeded["options"]),
    )
    variants, notes = [], []
    for backend in profile.backends:
        started = time.perf_counter()
        built = get_backend(backend).build_variants(scratch / "model.onnx", profile, None, scratch / backend)
        log(f"  {key}: {backend} built {len(built)} variant(s) in {time.perf_counter() - started:.1f} s")
        notes += list(built.notes)
        variants += [{"name": v.name, "backend": backend, "path": str(v.path.relative_to(scratch))} for v in built]
    spec = {"original": "model.onnx", "variants": variants, "profile": asdict(profile)}
    (scratch / "spec.json").write_text(json.dumps(spec))
    return {"title": case.title(), "made": made, "variants": variants, "notes": notes}


def run_both(scratch: Path, rootfs: Path) -> float:
    """Run the runner here and in the arm64 root filesystem; seconds the emulated run took."""
    here = [sys.executable, str(Path(__file__).resolve()), "--run", str(scratch)]
    subprocess.run(here, check=True, cwd=REPO, stdout=subprocess.DEVNULL)
    started = time.perf_counter()
    inside = ["bash", str(REPO / "scripts" / "in_arm64.sh"), str(rootfs), "--bind", f"{scratch}:/work"]
    inside += ["--chdir", "/slipway", "--", "python", "bench/arm_parity.py", "--run", "/work"]
    subprocess.run(inside, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def judge(scratch: Path, info: dict[str, Any], samples: int) -> dict[str, Any]:
    import numpy as np

    x86, arm = np.load(scratch / "outputs-x86_64.npz"), np.load(scratch / "outputs-aarch64.npz")
    runtimes = {
        "x86_64": json.loads((scratch / "runtimes-x86_64.json").read_text()),
        "aarch64": json.loads((scratch / "runtimes-aarch64.json").read_text()),
    }
    rows = []
    for variant in info["variants"]:
        name = variant["name"]
        row: dict[str, Any] = {"name": name, "backend": variant["backend"]}
        for arch, outputs in (("x86_64", x86), ("aarch64", arm)):
            error = runtimes[arch]["errors"].get(name)
            if error:
                row[arch] = {"error": error}
                continue
            keys = [k for k in outputs.files if k.startswith(f"{name}__")]
            row[arch] = _worst([_compare(outputs[k], outputs[k.replace(name, "original", 1)]) for k in keys])
        if "error" not in row["x86_64"] and "error" not in row["aarch64"]:
            keys = [k for k in x86.files if k.startswith(f"{name}__")]
            row["arm_vs_x86"] = _worst([_compare(arm[k], x86[k]) for k in keys])
        rebuilt = [k for k in arm.files if k.startswith(f"{name}{ARM_BUILT}__")]
        if rebuilt and "error" not in row["aarch64"]:
            # Both files run on ARM: the one built here on x86 and the one built on ARM.
            row["built_on_arm_vs_x86"] = _worst([_compare(arm[k], arm[k.replace(ARM_BUILT, "", 1)]) for k in rebuilt])
        rows.append(row)
    original = _worst([_compare(arm[k], x86[k]) for k in x86.files if k.startswith("original__")])
    return {**info, "rows": rows, "original_arm_vs_x86": original, "samples": samples, "runtimes": runtimes}


def _cell(figures: dict[str, Any]) -> str:
    if "error" in figures:
        return f"does not run: {figures['error']}"
    if figures["cosine"] != figures["cosine"]:  # NaN: the outputs hold NaN or infinities
        return "**NaN in the outputs**"
    return f"{figures['cosine']:.6f} / {figures['max_abs']:.2g}"


def write(results: dict[str, Any]) -> None:
    from bench._benchmarks_md import cpu_line, write_section

    stamp = results["rootfs"]
    lines = [
        f"## {SECTION}",
        "",
        f"`python bench/arm_parity.py`: the `{PROFILE}` profile's variants, built once on {cpu_line()}, run on the "
        "same inputs by the runtimes' x86_64 wheels on that machine and by their aarch64 wheels under QEMU user "
        f"emulation ({stamp['debian']} arm64, Python {stamp['python']}; the emulated CPU offers asimd, asimddp, "
        "fphp/asimdhp, i8mm and sve, so the ARM kernels with FP16 arithmetic and dot products run). Figures are the "
        "worst over the outputs and inputs: cosine / max abs error. Emulation executes ARM instructions exactly; only "
        "its timings mean nothing, and none are shown. The last column builds the same variants on ARM (the "
        "converters' aarch64 wheels, from the same ONNX file) and runs both files on ARM: whether building on the "
        "device would change what it computes.",
        "",
    ]
    packages = {name.lower(): version for name, version in stamp["packages"].items()}
    arm = ", ".join(f"{name} {packages.get(name.lower(), '?')}" for name in ("MNN", "ncnn", "onnxruntime"))
    lines += [f"The aarch64 wheels: {arm}; the x86_64 ones are the same versions (pinned alike).", ""]
    for key, model in results["models"].items():
        lines += [
            f"### `{key}`: {model['title']}",
            "",
            f"{model['samples']} input(s). The original model in onnxruntime, ARM against x86: "
            f"{_cell(model['original_arm_vs_x86'])}.",
            "",
            "| variant | x86 build vs original (x86) | ARM build vs original (ARM) | ARM vs x86, same file | "
            "built on ARM vs built on x86, both run on ARM |",
            "|---|---|---|---|---|",
        ]
        for row in model["rows"]:
            across = _cell(row["arm_vs_x86"]) if "arm_vs_x86" in row else "-"
            rebuilt = _cell(row["built_on_arm_vs_x86"]) if "built_on_arm_vs_x86" in row else "-"
            lines.append(f"| {row['name']} | {_cell(row['x86_64'])} | {_cell(row['aarch64'])} | {across} | {rebuilt} |")
        if model["notes"]:
            lines += ["", "Not built: " + " ".join(model["notes"])]
        lines.append("")
    parted = [
        f"{row['name']} on `{key}` ({_cell(row['aarch64'])} against the original on ARM, {_cell(row['x86_64'])} on x86)"
        for key, model in results["models"].items()
        for row in model["rows"]
        if _parts(row)
    ]
    rebuilt = [
        row["built_on_arm_vs_x86"]["max_abs"]
        for model in results["models"].values()
        for row in model["rows"]
        if "built_on_arm_vs_x86" in row
        and row["built_on_arm_vs_x86"]["max_abs"] == row["built_on_arm_vs_x86"]["max_abs"]
    ]
    if rebuilt:
        worst = max(rebuilt)
        if worst <= 1e-5:
            verdict = (
                f"Built on ARM or on x86, the files compute the same on ARM: the largest difference over "
                f"{len(rebuilt)} variants is {worst:.2g} (max abs). So the ARM profile's variants are built by the "
                "cluster's CPU workers and only measured on the device (docs/adr/0016)."
            )
        else:
            verdict = (
                f"Built on ARM, some files compute otherwise than the x86-built ones do on ARM: up to {worst:.2g} "
                "(max abs) over "
                f"{len(rebuilt)} variants. Building them on the device would change the results (docs/adr/0016)."
            )
        lines += [verdict, ""]
    lines += [
        "Where the ARM build parts from the x86 build of the same file (its error against the original more than "
        "twice the x86 one and above 1e-3, or not finite): "
        + ("; ".join(parted) if parted else "nowhere")
        + ". A profile's parity is only the device's when the device's build of the runtime computed it, which "
        "is why the ARM profile's parity runs on the device's agent (docs/adr/0016).",
        "",
    ]
    write_section(REPO / "BENCHMARKS.md", SECTION, "\n".join(lines))


def _parts(row: dict[str, Any]) -> bool:
    arm, x86 = row.get("aarch64", {}), row.get("x86_64", {})
    if "error" in arm or "error" in x86:
        return "error" in arm and "error" not in x86
    if arm["cosine"] != arm["cosine"]:
        return True  # not finite on ARM
    # FP32 kernels differ in the last bits on every pair of CPUs; above 1e-3 it is another arithmetic.
    return bool(arm["max_abs"] > max(2 * x86["max_abs"], 1e-3))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS))
    parser.add_argument("--samples", type=int, default=2)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--from-json", type=Path, help="write the section from a run's printed JSON")
    args = parser.parse_args()
    if args.run:
        run_outputs(args.run)
        return
    if args.from_json:
        write(json.loads(args.from_json.read_text()))
        return
    rootfs_dir = Path(os.environ.get("SLIPWAY_EMULATION_DIR") or Path.home() / ".cache/slipway/emulation")
    built = subprocess.run(
        ["bash", str(REPO / "scripts" / "arm64_rootfs.sh"), str(rootfs_dir / "arm64-bookworm")],
        capture_output=True,
        text=True,
    )
    if built.returncode != 0:
        raise SystemExit(f"no arm64 root filesystem: {built.stderr.strip().splitlines()[-1]}")
    rootfs = Path(built.stdout.strip()).parent
    results: dict[str, Any] = {"models": {}, "rootfs": json.loads((rootfs / ".slipway-rootfs.json").read_text())}
    for key in [m.strip() for m in args.models.split(",") if m.strip()]:
        scratch = Path(tempfile.mkdtemp(prefix=f"slipway-arm-parity-{key}-"))
        scratch.chmod(0o755)
        info = build(key, scratch, args.samples)
        seconds = run_both(scratch, rootfs)
        results["models"][key] = {**judge(scratch, info, args.samples), "emulated_seconds": round(seconds, 1)}
        log(f"  {key}: ran under emulation in {seconds:.0f} s")
        for row in results["models"][key]["rows"]:
            log(f"    {row}")
    if not args.no_write:
        write(results)
    print(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
