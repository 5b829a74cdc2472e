"""ONNX's reference evaluator (`onnx.reference`): what the specification computes, op by op.

The reference evaluator is the ONNX project's own Python implementation of every operator of
the standard domains: slow, single-threaded, and the arbiter when runtimes disagree. As a
backend it answers two questions no optimizing runtime answers: does the model use only
operators the specification defines (`check_support`), and what should the outputs be (its
one variant, the model as uploaded, run by the evaluator for parity and benchmark beside the
optimized runtimes).

`check_support` builds an evaluator for the whole model; when that fails, each distinct
operator is loaded on its own in a one-node model, and the evaluator's error says why a node
is refused (a custom domain, an opset it has no implementation for). Model-local functions
are supported when every node of their body is.

This module is the whole plug-in: the registry finds it, and its class declares what the rest
of Slipway needs to know about the runtime.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workers.engine.backends._onnx_graph import label_nodes, load_graph, probe_model
from workers.engine.backends.base import (
    Backend,
    BackendNotInstalled,
    Calibration,
    HardwareProfile,
    SupportReport,
    SupportStatus,
    Variant,
)
from workers.engine.onnx_walk import DEFAULT_DOMAIN

if TYPE_CHECKING:
    import numpy as np
    from onnx import ModelProto, NodeProto

VARIANT = "onnx-reference-fp32"
COPY_STEP = "reference-copy"
_DEVICE = "reference"
_SUPPORT_NOTE = (
    "Support is the ONNX reference evaluator's (onnx.reference): an operator is supported when the "
    "specification's own Python implementation of it exists for the model's opset."
)


@dataclass(frozen=True)
class _Node:
    """A node as the support report names it."""

    label: str
    domain: str
    op_type: str
    top_level: bool
    node: NodeProto


class ReferenceSession:
    """A model loaded in the ONNX reference evaluator."""

    def __init__(self, model_path: Path) -> None:
        from onnx.reference import ReferenceEvaluator

        self._evaluator: Any = ReferenceEvaluator(str(model_path))
        self.input_names = tuple(self._evaluator.input_names)
        self.output_names = tuple(self._evaluator.output_names)

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model on `inputs` (input name -> array); returns output name -> array."""
        if self._evaluator is None:
            raise RuntimeError("This session is closed; load the model again to run it.")
        values = self._evaluator.run(None, inputs)
        return dict(zip(self.output_names, values, strict=True))

    def close(self) -> None:
        """Free the evaluator; `run` fails afterwards."""
        self._evaluator = None


class OnnxReferenceBackend(Backend):
    """The ONNX reference evaluator: the specification's own implementation, in Python."""

    name = "onnx_reference"
    # Pure Python on numpy: it runs wherever onnx installs, and takes no thread count.
    architectures = ("x86_64", "aarch64", "armv7l")
    serving_requirements = ("numpy", "onnx")

    def runtime_version(self) -> str | None:
        """The onnx package's version (it ships the evaluator), or None without onnx."""
        try:
            import onnx
        except ImportError:
            return None
        return str(onnx.__version__)

    def check_support(self, model_path: Path) -> SupportReport:
        """Which operators of the model the reference evaluator implements.

        Raises ModelError "invalid_model" when the file cannot be parsed as ONNX.
        """
        version = self.runtime_version()
        if version is None:
            return self.not_installed_report()
        from onnx.reference import ReferenceEvaluator

        model = load_graph(model_path)
        nodes = [
            _Node(item.label, item.node.domain or DEFAULT_DOMAIN, item.node.op_type, item.top_level, item.node)
            for item in label_nodes(model, lambda node: list(node.input))
        ]
        try:
            ReferenceEvaluator(model)
        except Exception as exc:  # the evaluator raises NotImplementedError, ValueError, TypeError...
            statuses = self._probe(model, nodes)
            notes = [_SUPPORT_NOTE, f"The whole model does not load: {self.error_text(exc)}"]
            return self.report_from_statuses(version, "probe", nodes, statuses, notes, refused_partitions=True)
        statuses = {node.label: ("supported", _DEVICE, "") for node in nodes}
        return self.report_from_statuses(version, "runtime", nodes, statuses, [_SUPPORT_NOTE], refused_partitions=True)

    def _probe(self, model: ModelProto, nodes: list[_Node]) -> dict[str, tuple[SupportStatus, str, str]]:
        """Each node's status from loading its operator alone (once per domain and op type)."""
        from onnx import helper
        from onnx.reference import ReferenceEvaluator

        verdicts: dict[tuple[str, str], tuple[SupportStatus, str, str]] = {}
        statuses: dict[str, tuple[SupportStatus, str, str]] = {}
        for node in nodes:
            key = (node.domain, node.op_type)
            if key not in verdicts:
                inputs = [helper.make_empty_tensor_value_info(name) for name in node.node.input if name]
                probe = probe_model(model, node.node, inputs, [], {})
                try:
                    ReferenceEvaluator(probe)
                    verdicts[key] = ("supported", _DEVICE, "")
                except Exception as exc:  # as above: any error is the evaluator refusing the operator
                    verdicts[key] = ("unsupported", "", self.error_text(exc))
            statuses[node.label] = verdicts[key]
        return statuses

    def build(
        self,
        model_path: Path,
        profile: HardwareProfile,
        calibration: Calibration | None,
        out_dir: Path,
        notes: list[str],
    ) -> list[Variant]:
        """The model as uploaded, weights inline, as "onnx-reference-fp32" when the profile
        asks for fp32: the evaluator computes what the model says and nothing else."""
        import onnx

        load_graph(model_path)  # a file that is not ONNX is the user's to fix
        others = [precision for precision in profile.precisions if precision != "fp32"]
        if others:
            notes.append(
                f"onnx_reference runs the model as it is, in fp32; {', '.join(others)} variants were not built."
            )
        if calibration is not None:
            notes.append("onnx_reference does not quantize, so the calibration data was not used.")
        if "fp32" not in profile.precisions:
            return []
        target = out_dir / f"{VARIANT}.onnx"
        onnx.save(onnx.load(str(model_path)), str(target))
        return [
            Variant(
                name=VARIANT,
                backend=self.name,
                path=target,
                format="onnx",
                precision="fp32",
                pass_name=COPY_STEP,
                options={"transform": "none: the model as uploaded, run by the ONNX reference evaluator"},
                tool_versions={"onnx": str(onnx.__version__)},
                files=(target,),
            )
        ]

    def load(self, variant_path: Path) -> ReferenceSession:
        """Load a model (a variant or the original) in the reference evaluator."""
        if not self.available():
            raise BackendNotInstalled(self.not_installed_text())
        return ReferenceSession(variant_path)
