"""Op-support remediation: rewrites that keep what a model computes and let a runtime that
refuses one of its operators run it.

A runtime's converter or frontend knows a fixed set of operators. Many of the ones it
refuses are defined by ONNX itself as a small graph of simpler operators (a *function
body*: Mish is x * tanh(softplus(x)), Swish is x * sigmoid(alpha * x), GroupNormalization a
reshape, mean and variance...), and others only feed constants that can be computed once.
The rewrites, each exact up to float rounding:

- `expand-functions`: the model's own local functions inlined, and every node of a refused
  operator that ONNX defines by a function body replaced by that body (its attributes,
  defaults included, substituted). Where the body is written for a newer opset than the
  model's, the model is first converted up to that opset (onnx's version converter).
- `fold-constants`: onnxscript's optimizer: constant folding (in If/Loop bodies too), an If
  whose condition folds replaced by its branch, dead nodes removed.
- `convert-opset`: the model converted to an opset the runtimes of the embedded profiles
  read well (13 or 17), for a refusal that is about an operator's version, not its kind.

`find` tries the chains in order of how little they change, asks the backend again after
each (`check_support`, the same question validate asks), and keeps the first chain after
which the backend takes the whole model. It then runs the original and the rewritten model
in onnxruntime on generated inputs and refuses a rewrite whose outputs moved, so a rewrite
never reaches a variant unless it computes the same thing. `apply` replays a chain found by
`find` (the optimize step builds the variants of that backend from the result, and parity
judges each against the original model's outputs as usual).
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workers.engine.backends._onnx_graph import default_opset, walk_nodes
from workers.engine.errors import runtime_cause

if TYPE_CHECKING:
    import onnx

    from workers.engine.backends.base import Backend, SupportReport

log = logging.getLogger(__name__)

EXPAND = "expand-functions"
FOLD = "fold-constants"
CONVERT = "convert-opset"
# Opsets the embedded runtimes' converters were written against (MNN and ncnn read 13 best).
CONVERT_TARGETS = (13, 17)
# The chains tried, in order of how little they change the model.
CHAINS: tuple[tuple[str, ...], ...] = (
    (EXPAND,),
    (FOLD,),
    (EXPAND, FOLD),
    *((f"{CONVERT}:{target}",) for target in CONVERT_TARGETS),
    *((EXPAND, f"{CONVERT}:{target}") for target in CONVERT_TARGETS),
)
# Outputs of the rewritten model must match the original's this closely (relative to the
# output's own scale): the rewrites are exact, so what is left is float rounding.
MAX_RELATIVE_ERROR = 1e-3
DEFAULT_BUDGET_SECONDS = 300.0
_EXPANDED_DOMAIN = "slipway.expanded"


class RewriteFailed(RuntimeError):
    """A rewrite could not be applied to this model; the message says why, in a sentence."""


@dataclass(frozen=True)
class Step:
    """One rewrite as applied: its name and what it did, in a sentence."""

    rewrite: str
    detail: str


@dataclass
class Remediation:
    """What `find` tried for one backend and what it found."""

    backend: str
    refused: list[dict[str, Any]]  # the ops the backend refused: domain, op_type, nodes
    rewrites: list[str] = field(default_factory=list)  # the chain that works, [] when none did
    steps: list[dict[str, str]] = field(default_factory=list)
    verdict_after: str = ""
    fixed: list[dict[str, str]] = field(default_factory=list)  # refused ops the chain made run
    max_relative_error: float | None = None
    tried: list[dict[str, Any]] = field(default_factory=list)  # every chain: rewrites, outcome
    notes: list[str] = field(default_factory=list)

    @property
    def found(self) -> bool:
        return bool(self.rewrites)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        """One sentence for the report."""
        if not self.found:
            return (
                f"No rewrite Slipway knows made {self.backend} take the model "
                f"(tried {len(self.tried)}: {'; '.join(_tried_text(t) for t in self.tried) or 'none applied'})."
            )
        ops = ", ".join(f"{op['op_type']}" for op in self.fixed) or "the refused ops"
        return (
            f"{self.backend} runs the model after rewrite {' + '.join(self.rewrites)}: "
            f"{'; '.join(step['detail'] for step in self.steps)}. It now takes {ops}; the rewritten model's "
            f"outputs match the original's within {_error_text(self.max_relative_error)} in onnxruntime."
        )


def _tried_text(tried: Mapping[str, Any]) -> str:
    return f"{' + '.join(tried['rewrites'])}: {tried['outcome']}"


def _error_text(value: float | None) -> str:
    return "float rounding" if value is None else f"a relative error of {value:.1e}"


# ---- the rewrites --------------------------------------------------------------------------


def refused_ops(report: SupportReport | Mapping[str, Any]) -> set[tuple[str, str]]:
    """(domain, op_type) of every op a support report marks unsupported."""
    ops = report["ops"] if isinstance(report, Mapping) else [asdict(op) for op in report.ops]
    return {(op.get("domain") or "", op["op_type"]) for op in ops if op["status"] == "unsupported"}


def _onnx_domain(domain: str) -> bool:
    return domain in ("", "ai.onnx")


def expand_functions(model: onnx.ModelProto, refused: set[tuple[str, str]]) -> tuple[onnx.ModelProto, str]:
    """The model with its local functions inlined and each node of a `refused` ONNX operator
    that has a function body replaced by it. Raises RewriteFailed when there is nothing to expand."""
    import onnx
    import onnx.inliner

    wanted = {op for domain, op in refused if _onnx_domain(domain)}
    model = copy.deepcopy(model)
    local = len(model.functions)
    before = target = default_opset(model)
    bodies: dict[int, tuple[onnx.NodeProto, onnx.FunctionProto]] = {}
    counts: dict[str, int] = {}
    for index, node in enumerate(model.graph.node):
        if node.op_type not in wanted or not _onnx_domain(node.domain):
            continue
        body = _function_body(node, model)
        if body is None:
            continue
        bodies[index] = (node, body)
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
        target = max(target, _body_opset(body))
    if not bodies and not local:
        raise RewriteFailed(
            "none of the refused operators has a function body in ONNX, and the model has no local functions"
        )
    if target > default_opset(model):
        model = _converted(model, target)
        # The converter may have renumbered nothing, but its nodes are new objects: find them again.
        for index, (old, _) in list(bodies.items()):
            node = model.graph.node[index]
            if node.op_type != old.op_type or list(node.output) != list(old.output):
                raise RewriteFailed(f"the opset conversion to {target} changed node {old.name or old.op_type}")
            bodies[index] = (node, _function_body(node, model) or bodies[index][1])
    for index, (node, body) in bodies.items():
        function = copy.deepcopy(body)
        function.domain = _EXPANDED_DOMAIN
        function.name = f"{node.op_type}_{index}"
        _fill_defaults(node, function)
        node.domain = _EXPANDED_DOMAIN
        node.op_type = function.name
        model.functions.append(function)
    if bodies and not any(opset.domain == _EXPANDED_DOMAIN for opset in model.opset_import):
        model.opset_import.append(onnx.helper.make_opsetid(_EXPANDED_DOMAIN, 1))
    # A body written for an older opset than the model's is converted up as it is inlined.
    try:
        expanded = onnx.inliner.inline_local_functions(model, convert_version=True)
    except Exception as exc:  # the inliner raises whatever its version adapters raise
        raise RewriteFailed(f"onnx's inliner could not expand the functions: {_text(exc)}") from exc
    if expanded.functions:
        left = ", ".join(sorted(f"{function.domain}.{function.name}" for function in expanded.functions))
        raise RewriteFailed(f"onnx's inliner left functions it could not expand ({left})")
    # The inliner leaves the domain import behind; nothing uses it any more.
    kept = [opset for opset in expanded.opset_import if opset.domain != _EXPANDED_DOMAIN]
    del expanded.opset_import[:]
    expanded.opset_import.extend(kept)
    parts = [f"{count} {op} node{'s' if count > 1 else ''}" for op, count in sorted(counts.items())]
    if local:
        parts.append(f"{local} local function{'s' if local > 1 else ''}")
    detail = f"expanded {', '.join(parts)} into ONNX's own definition"
    if target > before:
        detail += f" (converting the model from opset {before} to {target}, the opset of that definition)"
    return expanded, detail


def _function_body(node: onnx.NodeProto, model: onnx.ModelProto) -> onnx.FunctionProto | None:
    """ONNX's function body for `node` at the model's opset, or the oldest one newer than it
    (the caller converts the model up); None when ONNX defines none for its operator."""
    import onnx
    import onnx.defs

    opset = default_opset(model)
    schema: Any  # onnx's stubs lack the function-version accessors the schema has
    try:
        schema = onnx.defs.get_schema(node.op_type, opset, "")
    except onnx.defs.SchemaError:
        try:
            schema = onnx.defs.get_schema(node.op_type, onnx.defs.onnx_opset_version(), "")
        except onnx.defs.SchemaError:
            return None
    plain = sorted(schema.function_opset_versions)
    dependent = sorted(schema.context_dependent_function_opset_versions)
    for versions, contextual in ((plain, False), (dependent, True)):
        if not versions:
            continue
        usable = [v for v in versions if v <= opset]
        version = usable[-1] if usable else versions[0]
        if contextual:
            types = _input_types(node, model)
            if types is None:
                continue
            data = schema.get_context_dependent_function_with_opset_version(
                version, node.SerializeToString(), [t.SerializeToString() for t in types]
            )
        else:
            data = schema.get_function_with_opset_version(version)
        if not data:
            continue
        function = onnx.FunctionProto()
        function.ParseFromString(data)
        if not function.opset_import:
            function.opset_import.append(onnx.helper.make_opsetid("", version))
        return function
    return None


def _body_opset(function: onnx.FunctionProto) -> int:
    return max((opset.version for opset in function.opset_import if _onnx_domain(opset.domain)), default=0)


def _input_types(node: onnx.NodeProto, model: onnx.ModelProto) -> list[onnx.TypeProto] | None:
    """The type of each of `node`'s inputs, from the model's inputs, initializers and inferred
    value infos; None when one is unknown (a context-dependent body needs them all)."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # inference raises whatever its op's inference raises
        inferred = model
    types: dict[str, onnx.TypeProto] = {}
    graph = inferred.graph
    for info in [*graph.input, *graph.value_info, *graph.output]:
        if info.type.HasField("tensor_type") and info.type.tensor_type.elem_type:
            types[info.name] = info.type
    for init in graph.initializer:
        types[init.name] = onnx.helper.make_tensor_type_proto(init.data_type, list(init.dims))
    result = []
    for name in node.input:
        if not name:
            result.append(onnx.TypeProto())
            continue
        if name not in types:
            return None
        result.append(types[name])
    return result


def _fill_defaults(node: onnx.NodeProto, function: onnx.FunctionProto) -> None:
    """Give `node` every attribute its operator's schema defaults and the body refers to,
    so the inliner substitutes a value for each reference."""
    import onnx.defs

    schema = onnx.defs.get_schema(node.op_type, onnx.defs.onnx_opset_version(), "")
    present = {attribute.name for attribute in node.attribute}
    for name, attribute in schema.attributes.items():
        if name in present or name not in function.attribute:
            continue
        default = attribute.default_value
        if default is None or not default.type:
            continue
        value = copy.deepcopy(default)
        value.name = name
        node.attribute.append(value)


def _converted(model: onnx.ModelProto, target: int) -> onnx.ModelProto:
    import onnx
    from onnx import version_converter

    try:
        converted = version_converter.convert_version(model, target)
        onnx.checker.check_model(converted)
    except Exception as exc:  # the converter raises whatever its adapters raise
        raise RewriteFailed(
            f"onnx's version converter could not take the model to opset {target}: {_text(exc)}"
        ) from exc
    return converted


def fold_constants(model: onnx.ModelProto) -> tuple[onnx.ModelProto, str]:
    """onnxscript's optimizer over the model. Raises RewriteFailed when it changes nothing."""
    import onnx

    try:
        import onnxscript.optimizer
    except ImportError as exc:
        raise RewriteFailed("onnxscript (its ONNX optimizer) is not installed on this worker") from exc
    before = _count_nodes(model.graph)
    try:
        result = onnxscript.optimizer.optimize(copy.deepcopy(model))
        onnx.checker.check_model(result)
    except Exception as exc:  # the optimizer raises whatever its passes raise
        raise RewriteFailed(f"the optimizer failed: {_text(exc)}") from exc
    after = _count_nodes(result.graph)
    if after >= before and _op_types(result.graph) == _op_types(model.graph):
        raise RewriteFailed("the optimizer found nothing to fold or remove")
    return result, f"folded constants and removed dead nodes ({before} nodes to {after})"


def convert_opset(model: onnx.ModelProto, target: int) -> tuple[onnx.ModelProto, str]:
    before = default_opset(model)
    if before == target:
        raise RewriteFailed(f"the model is already at opset {target}")
    return _converted(model, target), f"converted from opset {before} to {target}"


def _count_nodes(graph: onnx.GraphProto) -> int:
    """Nodes of the graph and of its subgraphs (If, Loop, Scan bodies)."""
    return sum(1 for _ in walk_nodes(graph))


def _op_types(graph: onnx.GraphProto) -> set[tuple[str, str]]:
    return {(node.domain, node.op_type) for node in graph.node}


def _text(exc: BaseException) -> str:
    """A tool's error as one line (`errors.runtime_cause`: source locations dropped)."""
    return runtime_cause(exc) or type(exc).__name__


def rewrite(model: onnx.ModelProto, name: str, refused: set[tuple[str, str]]) -> tuple[onnx.ModelProto, str]:
    """Apply one rewrite by name ("expand-functions", "fold-constants", "convert-opset:13")."""
    if name == EXPAND:
        return expand_functions(model, refused)
    if name == FOLD:
        return fold_constants(model)
    if name.startswith(f"{CONVERT}:"):
        return convert_opset(model, int(name.split(":", 1)[1]))
    raise RewriteFailed(f"Slipway has no rewrite named {name!r}")


def apply(
    model_path: Path, rewrites: Sequence[str], refused: Iterable[Sequence[str]], out_path: Path
) -> tuple[Path, list[Step]]:
    """Replay the chain `rewrites` on the model (as `find` found it) and save the result to
    `out_path`. Raises RewriteFailed when a step no longer applies."""
    import onnx

    model = onnx.load(str(model_path))
    wanted = {(str(domain), str(op)) for domain, op in refused}
    steps = []
    for name in rewrites:
        model, detail = rewrite(model, name, wanted)
        steps.append(Step(name, detail))
    _save(model, out_path)
    return out_path, steps


def _save(model: onnx.ModelProto, path: Path) -> None:
    import onnx

    path.parent.mkdir(parents=True, exist_ok=True)
    large = model.ByteSize() > 1_500_000_000
    onnx.save(model, str(path), save_as_external_data=large, location=f"{path.name}.data" if large else None)


# ---- the search ----------------------------------------------------------------------------


def find(
    model_path: Path,
    backend: Backend,
    report: SupportReport,
    workdir: Path,
    *,
    budget_seconds: float = DEFAULT_BUDGET_SECONDS,
    progress: Callable[[str], None] | None = None,
) -> Remediation | None:
    """The first rewrite chain after which `backend` takes the whole model that `report`
    says it refuses (see the module docstring); None when the report refuses nothing."""
    import onnx

    refused = refused_ops(report)
    if not refused or not report.installed:
        return None
    result = Remediation(
        backend=report.backend,
        refused=[
            {"domain": op.domain, "op_type": op.op_type, "nodes": list(op.nodes)}
            for op in report.ops
            if op.status == "unsupported"
        ],
    )
    try:
        original = onnx.load(str(model_path))
    except Exception as exc:  # a model validate could read but onnx can't load in full
        result.notes.append(f"Slipway could not read the model to rewrite it: {_text(exc)}.")
        return result
    started = time.monotonic()
    seen: set[bytes] = set()
    for chain in CHAINS:
        if time.monotonic() - started > budget_seconds:
            result.notes.append(
                f"Stopped after {len(result.tried)} rewrite chains: the {budget_seconds:.0f} s budget for "
                "rewrites was spent."
            )
            break
        model = original
        steps: list[Step] = []
        try:
            for name in chain:
                model, detail = rewrite(model, name, refused)
                steps.append(Step(name, detail))
        except RewriteFailed as exc:
            result.tried.append({"rewrites": list(chain), "outcome": f"not applicable: {exc}"})
            continue
        digest = model.SerializeToString(deterministic=True)
        if digest in seen:
            continue  # an earlier chain already gave this very model
        seen.add(digest)
        if progress:
            progress(f"asking {report.backend} after rewrite {' + '.join(chain)}")
        candidate = workdir / f"rewrite-{len(result.tried)}.onnx"
        _save(model, candidate)
        try:
            after = backend.check_support(candidate)
        except Exception as exc:  # a backend's check raises what its runtime raises
            result.tried.append({"rewrites": list(chain), "outcome": f"the check failed: {_text(exc)}"})
            continue
        still = refused_ops(after)
        if after.verdict != "full":
            why = (
                f"{report.backend} still refuses {', '.join(sorted(op for _, op in still))}"
                if still
                else f"{report.backend} still can't take it ({after.error or after.verdict})"
            )
            result.tried.append({"rewrites": list(chain), "outcome": why})
            continue
        error, why = _output_change(model_path, candidate)
        if why:
            result.tried.append({"rewrites": list(chain), "outcome": why})
            continue
        result.tried.append({"rewrites": list(chain), "outcome": f"{report.backend} takes the whole model"})
        result.rewrites = list(chain)
        result.steps = [asdict(step) for step in steps]
        result.verdict_after = after.verdict
        result.fixed = [{"domain": domain, "op_type": op} for domain, op in sorted(refused)]
        result.max_relative_error = error
        break
    for path in workdir.glob("rewrite-*.onnx*"):
        path.unlink(missing_ok=True)
    return result


def _output_change(original: Path, rewritten: Path) -> tuple[float | None, str]:
    """The largest relative difference between the two models' outputs in onnxruntime on
    generated inputs, and why the rewrite is refused ("" when it isn't). (None, "") when
    onnxruntime can't run the original (then parity is the only judge)."""
    import numpy as np
    import onnxruntime

    from workers.engine.parity import evidence_inputs

    try:
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        first = onnxruntime.InferenceSession(str(original), options, providers=["CPUExecutionProvider"])
    except Exception:  # onnxruntime can't run it either: the variants' parity decides
        return None, ""
    try:
        # Generated as parity generates them when the user uploads no validation set.
        feeds = evidence_inputs(original, samples=2).feeds
    except Exception as exc:  # the planner refuses inputs it can't generate
        log.info("remediation: no generated inputs for the check: %s", exc)
        return None, ""
    try:
        second = onnxruntime.InferenceSession(str(rewritten), options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        return None, f"refused: onnxruntime can't load the rewritten model ({_text(exc)})"
    worst = 0.0
    for feed in feeds:
        for a, b in zip(first.run(None, feed), second.run(None, feed), strict=True):
            a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
            if a.shape != b.shape:
                return None, f"refused: the rewritten model's output shape {b.shape} differs from {a.shape}"
            scale = max(float(np.max(np.abs(a))) if a.size else 0.0, 1e-6)
            diff = float(np.max(np.abs(a - b))) if a.size else 0.0
            if not np.isfinite(diff):
                return None, "refused: the rewritten model gives NaN or inf where the original does not"
            worst = max(worst, diff / scale)
    if worst > MAX_RELATIVE_ERROR:
        return worst, (
            f"refused: the rewritten model's outputs differ from the original's by {worst:.1e} of their scale "
            f"(at most {MAX_RELATIVE_ERROR:.0e} allowed)"
        )
    return worst, ""
