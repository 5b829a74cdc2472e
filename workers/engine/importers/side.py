"""Importers whose framework runs in an environment of its own: Caffe, MXNet, PaddlePaddle.

Each format is several files (Caffe: a prototxt and its caffemodel; MXNet: a symbol and its
params; Paddle: a program and its params), so each arrives as one zip; the importer knows its
format by the zip's members, picks each file's role, and leaves the framework's part to its
side module in the framework's environment (`workers.engine.framework_envs`): convert, and
run the original as the reference. What must be trusted is done here, with Slipway's own
libraries: the full ONNX checker, the generated or uploaded parity inputs, onnxruntime's run
and the comparison, and the report.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workers.engine import archive, framework_envs
from workers.engine.errors import ModelError
from workers.engine.importers.base import Importer, ImportOptions, ImportReport, InputSpec, ProgressCallback
from workers.engine.importers.parity import check_onnx, check_parity, default_opset, save_onnx

if TYPE_CHECKING:
    import numpy as np

_IGNORED = ("__MACOSX/",)


@dataclass(frozen=True)
class Role:
    """One file a format needs: its role in the side's protocol, and how its name ends."""

    name: str
    what: str  # for people: "the network definition (.prototxt)"
    suffixes: tuple[str, ...]

    def matches(self, member: str) -> bool:
        return member.lower().endswith(self.suffixes)


class SideImporter(Importer):
    """A zip of a framework's files, converted and checked by its side in its own environment."""

    env_name = ""
    package = ""  # the distribution whose version is the framework's
    roles: tuple[Role, ...] = ()
    export_advice = ""  # how to save the files this importer wants

    @property
    def env(self) -> framework_envs.FrameworkEnv:
        return framework_envs.get(self.env_name)

    def framework_version(self) -> str | None:
        if not framework_envs.is_ready(self.env_name):
            return None
        built = framework_envs.stamp(self.env) or {}
        packages = {name.lower(): version for name, version in built.get("packages", {}).items()}
        return str(packages.get(self.package.lower(), "unknown"))

    install_hint = "Build the framework environments on the worker: make framework-envs, then restart it."

    @classmethod
    def sniff(cls, path: Path) -> bool:
        """A zip with a member for every role."""
        names = archive.zip_names(path)
        return names is not None and all(cls._members(names, role) for role in cls.roles)

    @classmethod
    def incomplete(cls, names: Sequence[str]) -> str | None:
        """When a zip holds some of this format's files but not all: what is missing, for the user."""
        found = [role for role in cls.roles if cls._members(names, role)]
        if not found or len(found) == len(cls.roles):
            return None
        missing = [role for role in cls.roles if role not in found]
        return (
            f"The zip holds {found[0].what} but not {' or '.join(role.what for role in missing)}, so it can't be "
            f"imported as a {cls.framework} model. {cls.export_advice}"
        )

    @classmethod
    def _members(cls, names: Sequence[str], role: Role) -> list[str]:
        members = [name for name in names if not name.startswith(_IGNORED) and not name.endswith("/")]
        return [name for name in members if role.matches(name) and cls._accept(role, name)]

    @classmethod
    def _accept(cls, role: Role, member: str) -> bool:
        """A member ending like `role` that really is one (e.g. not a solver .prototxt)."""
        return True

    def pick(self, names: Sequence[str]) -> tuple[dict[str, str], list[str]]:
        """Each role's member, and notes on any choice made. Raises ModelError("archive_layout")
        when a role has several candidates and nothing tells which."""
        chosen: dict[str, str] = {}
        notes: list[str] = []
        for role in self.roles:
            members = self._members(names, role)
            if not members:
                raise ModelError(
                    "archive_layout",
                    f"The zip holds no {role.what}. {self.export_advice}",
                )
            member = self.choose(role, members, chosen, notes) if len(members) > 1 else members[0]
            chosen[role.name] = member
        return chosen, notes

    def choose(self, role: Role, members: list[str], chosen: Mapping[str, str], notes: list[str]) -> str:
        raise ModelError(
            "archive_layout",
            f"The zip holds several files that could be {role.what}: {', '.join(sorted(members))}. Upload a zip "
            f"with one of them. {self.export_advice}",
        )

    def convert(self, source: Path, out_dir: Path, options: ImportOptions, progress: ProgressCallback) -> ImportReport:
        """Unpack, let the framework's side convert, check the ONNX model here, then compare it
        with the framework (the side runs the original) on the same inputs."""
        import numpy as np
        import onnx

        env = framework_envs.require(self.env_name)
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=f"{self.env_name}-", dir=out_dir) as tmp:
            progress(0.05, f"unpacking the {self.framework} files")
            unpacked = Path(tmp) / "model"
            roles, pick_notes = self.pick(archive.extract_zip(source, unpacked))
            model = {role: str(unpacked / member) for role, member in roles.items()}

            progress(0.15, f"converting with {self.framework} (in its own environment)")
            answer = framework_envs.run_side(
                self.env_name,
                {
                    "action": "convert",
                    "model": model,
                    "out_dir": str(Path(tmp) / "converted"),
                    "opset": options.opset,
                    "inputs": [asdict(spec) for spec in options.inputs],
                },
                Path(tmp) / "side",
            )
            progress(0.5, "checking the ONNX model")
            converted = Path(answer["onnx"])
            if not converted.resolve().is_relative_to(Path(tmp).resolve()) or not converted.is_file():
                raise ModelError("conversion_failed", f"The {self.framework} converter wrote no ONNX model.")
            check_onnx(converted)
            proto = onnx.load(str(converted))
            onnx_path, files = save_onnx(proto, out_dir)
            specs = [_spec(entry) for entry in answer["inputs"]]
            outputs = tuple(str(name) for name in answer["outputs"])
            graph_outputs = tuple(output.name for output in proto.graph.output)
            if outputs != graph_outputs:
                raise ModelError(
                    "conversion_failed",
                    f"The converter named outputs {list(outputs)} but the ONNX graph has {list(graph_outputs)}. "
                    "Report the model to Slipway.",
                )

            ran_with = ""

            def reference_all(feed_sets: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
                """The original on every input set, in one start of the framework."""
                nonlocal ran_with
                batches = []
                for index, feeds in enumerate(feed_sets):
                    batch = {
                        "feeds": str(Path(tmp) / f"feeds-{index}.npz"),
                        "outputs": str(Path(tmp) / f"out-{index}.npz"),
                    }
                    np.savez(batch["feeds"], **feeds)  # type: ignore[arg-type]
                    batches.append(batch)
                ran = framework_envs.run_side(
                    self.env_name,
                    {
                        "action": "run",
                        "model": model,
                        "inputs": answer["inputs"],
                        "batches": batches,
                        "output_names": list(outputs),
                    },
                    Path(tmp) / "side",
                )
                ran_with = str(ran.get("reference", ""))
                results = []
                for batch in batches:
                    with np.load(batch["outputs"], allow_pickle=False) as data:
                        results.append({name: np.asarray(data[name]) for name in data.files})
                return results

            progress(0.6, f"comparing {self.framework} with onnxruntime")
            parity, parity_assumptions = check_parity(
                specs, onnx_path, outputs, None, options, reference_all=reference_all
            )

        progress(1.0, "done")
        return self._report(
            {**answer, "reference": ran_with},
            proto,
            onnx_path,
            files,
            specs,
            outputs,
            parity,
            parity_assumptions,
            pick_notes,
            env,
        )

    def _report(
        self,
        answer: Mapping[str, Any],
        proto: Any,
        onnx_path: Path,
        files: tuple[Path, ...],
        specs: Sequence[InputSpec],
        outputs: tuple[str, ...],
        parity: Any,
        parity_assumptions: Sequence[str],
        pick_notes: Sequence[str],
        env: framework_envs.FrameworkEnv,
    ) -> ImportReport:
        import onnx
        import onnxruntime

        reference = str(answer.get("reference", ""))
        return ImportReport(
            format=self.format,
            framework=self.framework,
            framework_version=str(answer.get("framework_version", "")),
            converter=str(answer.get("converter", "")),
            converter_version=str(answer.get("converter_version", "")),
            method=str(answer.get("method", "")),
            onnx_path=onnx_path,
            files=files,
            opset=default_opset(proto),
            inputs=tuple(specs),
            outputs=outputs,
            parity=parity,
            assumptions=(*[str(a) for a in answer.get("assumptions", [])], *parity_assumptions),
            notes=(
                *pick_notes,
                *[str(n) for n in answer.get("notes", [])],
                f"Converted and compared in the worker's {env.framework} environment ({env.why}).",
                *([f"Parity reference: {reference}."] if reference else []),
            ),
            tool_versions={
                **{str(k): str(v) for k, v in answer.get("tool_versions", {}).items()},
                "onnx (checker)": str(onnx.__version__),
                "onnxruntime": str(onnxruntime.__version__),
                "environment": env.name,
            },
        )


def _spec(entry: Mapping[str, Any]) -> InputSpec:
    shape = tuple(dim if isinstance(dim, int | str) or dim is None else int(dim) for dim in entry["shape"])
    return InputSpec(str(entry["name"]), shape, str(entry.get("dtype", "float32")))


class CaffeImporter(SideImporter):
    """A Caffe network: its deploy prototxt and trained caffemodel, converted by caffe2onnx and
    compared with OpenCV's Caffe reader (Caffe itself has no installable build)."""

    format = "caffe"
    framework = "caffe"
    env_name = "caffe"
    package = "caffe2onnx"
    roles = (
        Role("prototxt", "a network definition (.prototxt)", (".prototxt",)),
        Role("caffemodel", "trained weights (.caffemodel)", (".caffemodel",)),
    )
    export_advice = "Zip the deploy .prototxt and the .caffemodel trained with it together, and upload the zip."

    @classmethod
    def _accept(cls, role: Role, member: str) -> bool:
        return not (role.name == "prototxt" and "solver" in member.rsplit("/", 1)[-1].lower())

    def choose(self, role: Role, members: list[str], chosen: Mapping[str, str], notes: list[str]) -> str:
        if role.name == "prototxt":
            deploy = [m for m in members if "deploy" in m.rsplit("/", 1)[-1].lower()]
            if len(deploy) == 1:
                notes.append(f"The zip holds several .prototxt files; used {deploy[0]} (the deploy network).")
                return deploy[0]
        return super().choose(role, members, chosen, notes)


class MxnetImporter(SideImporter):
    """An MXNet model as `export()` saves it: `<prefix>-symbol.json` and `<prefix>-<epoch>.params`,
    converted by MXNet's own ONNX exporter in an environment with the numpy it needs."""

    format = "mxnet"
    framework = "mxnet"
    env_name = "mxnet"
    package = "mxnet"
    roles = (
        Role("symbol", "a network symbol (-symbol.json)", ("-symbol.json",)),
        Role("params", "its parameters (.params)", (".params",)),
    )
    export_advice = (
        "Save the model with HybridBlock.export(prefix) (or mx.model.save_checkpoint), zip "
        "<prefix>-symbol.json with one <prefix>-NNNN.params, and upload the zip."
    )

    def choose(self, role: Role, members: list[str], chosen: Mapping[str, str], notes: list[str]) -> str:
        if role.name == "params" and "symbol" in chosen:
            prefix = chosen["symbol"][: -len("-symbol.json")]
            epochs = {m: _epoch(m, prefix) for m in members}
            matching = sorted((epoch, m) for m, epoch in epochs.items() if epoch is not None)
            if matching:
                member = matching[-1][1]
                notes.append(f"The zip holds parameters of several epochs; used the last one, {member}.")
                return member
        return super().choose(role, members, chosen, notes)


def _epoch(member: str, prefix: str) -> int | None:
    match = re.fullmatch(re.escape(prefix) + r"-(\d+)\.params", member)
    return int(match.group(1)) if match else None


class PaddleImporter(SideImporter):
    """A Paddle inference model as paddle.jit.save writes it: the program (`.json` in Paddle 3's
    PIR format, `.pdmodel` before) and `.pdiparams`, converted by paddle2onnx and compared with
    Paddle's own inference predictor."""

    format = "paddle"
    framework = "paddlepaddle"
    env_name = "paddle"
    package = "paddlepaddle"
    roles = (
        Role("model", "a Paddle program (.json or .pdmodel)", (".json", ".pdmodel")),
        Role("params", "its parameters (.pdiparams)", (".pdiparams",)),
    )
    export_advice = (
        "Save the model with paddle.jit.save(layer, prefix, input_spec=[...]), zip the program file "
        "(<prefix>.json or <prefix>.pdmodel) with <prefix>.pdiparams, and upload the zip."
    )

    @classmethod
    def incomplete(cls, names: Sequence[str]) -> str | None:
        if not cls._members(names, cls.roles[1]) and not [n for n in names if n.lower().endswith(".pdmodel")]:
            return None  # a zip with some .json is not a Paddle model
        return super().incomplete(names)

    def choose(self, role: Role, members: list[str], chosen: Mapping[str, str], notes: list[str]) -> str:
        if role.name == "model":
            # The program beside the one .pdiparams, if the zip has exactly one.
            names = [m for m in members if m.lower().endswith(".pdmodel")] or members
            if len(names) == 1:
                return names[0]
        if role.name == "params" and "model" in chosen:
            stem = chosen["model"].rsplit(".", 1)[0]
            same = [m for m in members if m.rsplit(".", 1)[0] == stem]
            if len(same) == 1:
                return same[0]
        return super().choose(role, members, chosen, notes)

    def pick(self, names: Sequence[str]) -> tuple[dict[str, str], list[str]]:
        # Pick the params first, then the program with the same stem: a zip may hold other JSON files.
        params = self._members(names, self.roles[1])
        if len(params) == 1:
            stem = params[0].rsplit(".", 1)[0]
            programs = [m for m in self._members(names, self.roles[0]) if m.rsplit(".", 1)[0] == stem]
            if len(programs) == 1:
                return {"model": programs[0], "params": params[0]}, []
        return super().pick(names)


SIDE_IMPORTERS: tuple[type[SideImporter], ...] = (CaffeImporter, MxnetImporter, PaddleImporter)


def incomplete_upload(names: Sequence[str]) -> str | None:
    """What a zip that holds part of a multi-file model lacks, if it does."""
    for importer in SIDE_IMPORTERS:
        message = importer.incomplete(names)
        if message:
            return message
    return None


__all__ = ["SIDE_IMPORTERS", "CaffeImporter", "MxnetImporter", "PaddleImporter", "SideImporter", "incomplete_upload"]
