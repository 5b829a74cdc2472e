"""Importing Caffe, MXNet and PaddlePaddle models (issue 19): how long a ResNet-class network takes
to become a checked ONNX model, and how close the ONNX model is to the framework.

Each framework builds its own ResNet-18 here (tests/framework_models/<name>_models.py, in its
framework environment: random weights, nothing downloaded), zipped as a user would upload it.
Each is imported with Slipway's importer as the import step runs it (the framework's side
converts in its own environment, the ONNX checker and onnxruntime run here, parity on 4
generated inputs), in rounds that interleave the frameworks with the reference: the same
ResNet-18 written in PyTorch, saved as TorchScript and imported by the TorchScript importer.
Figures per framework: import wall time (median and range over rounds, and its ratio to the
reference's median in the same run), the parity errors the import report gives (worst output),
the ONNX model's opset and size.

Writes the "## Framework imports" section of BENCHMARKS.md unless --no-write.

    python bench/framework_import.py                # 3 rounds: about 3 minutes
    python bench/framework_import.py --rounds 1 --no-write
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SECTION = "Framework imports"
FRAMEWORKS = ("caffe", "mxnet", "paddle")
REFERENCE = "torchscript"
SHAPE = (1, 3, 224, 224)


def _progress(fraction: float, message: str) -> None:
    pass


def torchscript_resnet18(path: Path) -> Path:
    """ResNet-18 (He et al.: 7x7 stem, four stages of two basic blocks, global pool, 1000 logits)
    in plain torch, eval mode, seeded weights; saved with torch.jit.save."""
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.down = (
                nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                if stride != 1 or cin != cout
                else nn.Identity()
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = torch.relu(self.bn1(self.conv1(x)))
            return torch.relu(self.bn2(self.conv2(y)) + self.down(x))

    torch.manual_seed(0)
    layers: list[nn.Module] = [
        nn.Conv2d(3, 64, 7, 2, 3, bias=False),
        nn.BatchNorm2d(64),
        nn.ReLU(),
        nn.MaxPool2d(3, 2, 1),
    ]
    cin = 64
    for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        layers += [Block(cin, cout, stride), Block(cout, cout, 1)]
        cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, 1000)]
    model = nn.Sequential(*layers).eval()
    torch.jit.save(torch.jit.script(model), str(path))
    return path


def sources(scratch: Path) -> dict[str, Path]:
    from tests.framework_envs import framework_model

    found = {name: framework_model(name, "resnet", scratch / name) for name in FRAMEWORKS}
    found[REFERENCE] = torchscript_resnet18(scratch / "resnet18.pt")
    return found


def import_once(name: str, source: Path, out: Path) -> dict[str, Any]:
    from workers.engine.importers.base import ImportOptions, InputSpec
    from workers.engine.importers.pytorch import TorchScriptImporter
    from workers.engine.importers.side import CaffeImporter, MxnetImporter, PaddleImporter

    importer = {
        "caffe": CaffeImporter,
        "mxnet": MxnetImporter,
        "paddle": PaddleImporter,
        REFERENCE: TorchScriptImporter,
    }[name]()
    from workers.engine import framework_envs

    declared = (InputSpec("data" if name == "mxnet" else "x", SHAPE),) if name in ("mxnet", REFERENCE) else ()
    # Where the time goes: the framework's side, per action (each a process of its own).
    side = {"convert": 0.0, "run": 0.0}
    real_run_side = framework_envs.run_side

    def timed(env: str, request: dict[str, Any], workdir: Path) -> dict[str, Any]:
        began = time.perf_counter()
        try:
            return real_run_side(env, request, workdir)
        finally:
            side[request["action"]] += time.perf_counter() - began

    framework_envs.run_side = timed  # type: ignore[assignment]
    started = time.perf_counter()
    try:
        report = importer.convert(source, out, ImportOptions(inputs=declared), _progress)
    finally:
        framework_envs.run_side = real_run_side
    seconds = time.perf_counter() - started
    worst = max(report.parity, key=lambda item: item.max_abs_error)
    return {
        "seconds": seconds,
        "side_convert": side["convert"],
        "side_runs": side["run"],
        "max_abs": worst.max_abs_error,
        "max_rel": worst.max_rel_error,
        "cosine": min(item.cosine for item in report.parity),
        "output": worst.name,
        "outputs": len(report.parity),
        "opset": report.opset,
        "onnx_bytes": sum(path.stat().st_size for path in report.files),
        "converter": f"{report.converter} {report.converter_version}",
        "framework": f"{report.framework} {report.framework_version}",
        "reference": next((note for note in report.notes if note.startswith("Parity reference")), ""),
    }


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run(rounds: int) -> dict[str, Any]:
    from workers.engine import framework_envs

    with tempfile.TemporaryDirectory(prefix="bench-framework-import-") as tmp:
        scratch = Path(tmp)
        paths = sources(scratch)
        sizes = {name: path.stat().st_size for name, path in paths.items()}
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in paths}
        order = [*FRAMEWORKS, REFERENCE]
        for index in range(rounds):
            # Each round in another order, so that no framework always follows the same one.
            rotated = order[index % len(order) :] + order[: index % len(order)]
            for name in rotated:
                result = import_once(name, paths[name], scratch / f"out-{name}-{index}")
                runs[name].append(result)
                log(f"round {index + 1}: {name} {result['seconds']:.1f} s, max abs {result['max_abs']:.2g}")
    packages = {name: (framework_envs.stamp(framework_envs.get(name)) or {}).get("packages", {}) for name in FRAMEWORKS}
    return {"rounds": rounds, "runs": runs, "upload_bytes": sizes, "packages": packages}


def write(results: dict[str, Any]) -> None:
    from bench._benchmarks_md import cpu_line, write_section

    reference = statistics.median(run["seconds"] for run in results["runs"][REFERENCE])
    lines = [
        f"## {SECTION}",
        "",
        f"`python bench/framework_import.py` on {cpu_line()}: a ResNet-18 built by each framework itself (random "
        f"weights, input 1x3x224x224), uploaded as the zip a user would make, imported as the import step does it "
        "(the framework converts in its own environment, docs/adr/0017; the full ONNX checker and onnxruntime run in "
        "Slipway's; parity on 4 generated inputs against the framework). The reference is the same network written "
        "in PyTorch, saved with torch.jit.save and imported by the TorchScript importer, in the same rounds, "
        f"interleaved. {results['rounds']} rounds; time is the import's wall time, conversion and parity together, "
        "median (min-max).",
        "",
        "| model | converter | upload | import time | ratio to TorchScript | of which: converting, running the "
        "original on 4 inputs | parity: max abs / max rel (cosine), worst output | ONNX opset, size | "
        "parity reference |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    titles = {"caffe": "Caffe", "mxnet": "MXNet", "paddle": "PaddlePaddle", REFERENCE: "TorchScript (reference)"}
    for name, runs in results["runs"].items():
        seconds = [run["seconds"] for run in runs]
        median = statistics.median(seconds)
        worst = max(runs, key=lambda run: run["max_abs"])
        side = (
            f"{statistics.median(run['side_convert'] for run in runs):.1f} s, "
            f"{statistics.median(run['side_runs'] for run in runs):.1f} s"
            if name != REFERENCE
            else "in process"
        )
        reference_text = worst["reference"].removeprefix("Parity reference: ").rstrip(".") or "PyTorch (in process)"
        lines.append(
            f"| ResNet-18, {titles[name]} | {worst['converter']} | {results['upload_bytes'][name] / 2**20:.1f} MiB | "
            f"{median:.1f} s ({min(seconds):.1f}-{max(seconds):.1f}) | {median / reference:.2f}x | {side} | "
            f"{worst['max_abs']:.2g} / "
            f"{worst['max_rel']:.2g} ({worst['cosine']:.7f}), `{worst['output']}` | {worst['opset']}, "
            f"{worst['onnx_bytes'] / 2**20:.1f} MiB | {reference_text} |"
        )
    slowest = max(FRAMEWORKS, key=lambda name: statistics.median(run["seconds"] for run in results["runs"][name]))
    runs = results["runs"][slowest]
    share = statistics.median(run["side_runs"] / run["seconds"] for run in runs)
    lines += [
        "",
        f"The original runs on the 4 parity inputs in one process of the framework's interpreter: for "
        f"{titles[slowest]}, the slowest here, that is {share:.0%} of the import. The max rel "
        "column is the worst element, which is one of the near-zero logits; the cosine is 1 to seven places "
        "everywhere. All three pass the import's default tolerance (max abs 1e-4, or max rel 1e-3 with cosine 0.9999) "
        "on max abs alone.",
        "",
    ]
    write_section(REPO / "BENCHMARKS.md", SECTION, "\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--from-json", type=Path, help="re-render a run's printed JSON instead of measuring")
    args = parser.parse_args()
    results = json.loads(args.from_json.read_text()) if args.from_json else run(args.rounds)
    print(json.dumps(results, indent=1))
    if not args.no_write:
        write(results)


if __name__ == "__main__":
    main()
