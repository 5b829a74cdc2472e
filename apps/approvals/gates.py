"""Policy gates: what each kind of policy checks, evaluated on a version's evidence snapshot.

A gate is evaluated per hardware profile it applies to and gives one `GateResult` each:
passed or not, the measured value beside the threshold, and a sentence. A gate whose
evidence is missing (no recommendation, no benchmark at that batch) fails: a missing number
never counts as a good one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from apps.approvals.models import Policy, PolicyKind
from apps.core.api.errors import ApiError
from workers.engine.targets.base import OptionSpec, TargetError

# max_accuracy_drift: the recommended variant's worst metric against the FP32 original.
DRIFT_LIMITS = {
    "max_abs_error": "max",
    "max_rel_error": "max",
    "p99_abs_error": "max",
    "min_cosine": "min",
    "min_top1_agreement": "min",
}
_DRIFT_METRIC = {
    "max_abs_error": "max_abs_error",
    "max_rel_error": "max_rel_error",
    "p99_abs_error": "p99_abs_error",
    "min_cosine": "cosine",
    "min_top1_agreement": "top1_agreement",
}

PARAM_HELP: dict[str, str] = {
    PolicyKind.MAX_ACCURACY_DRIFT: "one or more of max_abs_error, max_rel_error, p99_abs_error, min_cosine, "
    'min_top1_agreement, e.g. {"min_cosine": 0.999}',
    PolicyKind.MAX_P99_LATENCY: 'max_ms, and optionally batch and concurrency (default 1), e.g. {"max_ms": 20}',
    PolicyKind.REQUIRED_BACKENDS: 'backends, e.g. {"backends": ["onnxruntime", "openvino"]}',
    PolicyKind.NO_CPU_FALLBACK: "no parameters ({})",
}

# What each kind's params are, declared once: check_params checks them, GET /policies/kinds/
# describes them, and the team page's form is built from them (as serving targets' options).
PARAM_SPECS: dict[str, tuple[OptionSpec, ...]] = {
    PolicyKind.MAX_ACCURACY_DRIFT: (
        OptionSpec("max_abs_error", "number", "the largest absolute error allowed", minimum=0, example="0.01"),
        OptionSpec("max_rel_error", "number", "the largest relative error allowed", minimum=0, example="0.05"),
        OptionSpec("p99_abs_error", "number", "the largest 99th-percentile absolute error", minimum=0, example="0.005"),
        OptionSpec(
            "min_cosine", "number", "the smallest cosine similarity allowed", minimum=0, maximum=1, example="0.999"
        ),
        OptionSpec(
            "min_top1_agreement",
            "number",
            "the smallest share of top-1 agreement",
            minimum=0,
            maximum=1,
            example="0.99",
        ),
    ),
    PolicyKind.MAX_P99_LATENCY: (
        # above 0, which an inclusive bound can't say: check_params refuses 0 itself
        OptionSpec("max_ms", "number", "the p99 latency allowed, in milliseconds, above 0", required=True, minimum=0),
        OptionSpec("batch", "integer", "the batch size the p99 is read at", default=1, minimum=1),
        OptionSpec("concurrency", "integer", "the concurrency the p99 is read at", default=1, minimum=1),
    ),
    PolicyKind.REQUIRED_BACKENDS: (
        OptionSpec(
            "backends",
            "string_list",
            "the backends that must run every operator of the model",
            required=True,
            example="onnxruntime, openvino",
        ),
    ),
    PolicyKind.NO_CPU_FALLBACK: (),
}
# Kinds whose params are each optional, but at least one must be given.
AT_LEAST_ONE: frozenset[str] = frozenset({PolicyKind.MAX_ACCURACY_DRIFT})


@dataclass(frozen=True)
class GateResult:
    policy_id: int | None  # None for the built-in measured-evidence gate
    name: str
    kind: str
    profile: str
    passed: bool
    value: Any
    threshold: Any
    message: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def check_params(kind: str, params: Any) -> dict[str, Any]:
    """The params, checked against the kind's specs (PARAM_SPECS); a 400 saying what a valid value looks like."""

    def bad(detail: str) -> ApiError:
        return ApiError(
            "invalid_policy", f"{detail} A {PolicyKind(kind).label.lower()} policy takes {PARAM_HELP[kind]}."
        )

    if kind not in PolicyKind.values:
        raise ApiError("invalid_policy", f"Unknown policy kind '{kind}'; use one of {', '.join(PolicyKind.values)}.")
    if not isinstance(params, dict):
        raise bad("The params must be a JSON object.")
    specs = {spec.key: spec for spec in PARAM_SPECS[kind]}
    if not specs and params:
        raise bad("This kind takes no parameters.")
    unknown = sorted(set(params) - set(specs))
    if unknown:
        raise bad(f"Unknown setting(s) {', '.join(unknown)}.")
    missing = [key for key, spec in specs.items() if spec.required and key not in params]
    if missing:
        raise bad(f"'{missing[0]}' is required: {specs[missing[0]].help}.")
    if kind in AT_LEAST_ONE and not params:
        raise bad("No limit given.")
    checked: dict[str, Any] = {}
    for key, value in params.items():
        try:
            checked[key] = specs[key].check(value, where="setting")
        except TargetError as exc:
            raise bad(exc.message) from None
    if kind == PolicyKind.MAX_P99_LATENCY and checked["max_ms"] == 0:
        raise bad("The setting max_ms must be above 0: no measured p99 is 0 ms.")
    return checked


def _accuracy_drift(policy: Policy, profile: str, evidence: dict[str, Any]) -> GateResult:
    rec = evidence["recommendation"]
    winner = rec.get("winner")
    if winner is None:
        if rec.get("use_baseline"):
            return _result(
                policy, profile, True, 0.0, policy.params, "The original FP32 model is recommended: no drift."
            )
        return _result(policy, profile, False, None, policy.params, "There is no recommendation to judge.")
    measured = winner.get("parity") or {}
    problems, values = [], {}
    for key, limit in policy.params.items():
        value = measured.get(_DRIFT_METRIC[key])
        values[key] = value
        if not _number(value):
            problems.append(f"{_DRIFT_METRIC[key]} was not measured")
        elif DRIFT_LIMITS[key] == "max" and value > limit:
            problems.append(f"{_DRIFT_METRIC[key]} {value:.3g} is above {limit:g}")
        elif DRIFT_LIMITS[key] == "min" and value < limit:
            problems.append(f"{_DRIFT_METRIC[key]} {value:.6g} is below {limit:g}")
    name = winner["name"]
    if problems:
        return _result(policy, profile, False, values, policy.params, f"{name}: " + "; ".join(problems) + ".")
    return _result(policy, profile, True, values, policy.params, f"{name} is within every accuracy limit.")


def _p99_latency(policy: Policy, profile: str, evidence: dict[str, Any]) -> GateResult:
    batch, concurrency = policy.params.get("batch", 1), policy.params.get("concurrency", 1)
    limit = policy.params["max_ms"]
    winner = evidence["recommendation"].get("winner")
    points = winner["benchmark"] if winner else evidence.get("baseline_benchmark") or []
    what = winner["name"] if winner else "the original model"
    point = next((p for p in points if p.get("batch") == batch and p.get("concurrency") == concurrency), None)
    where = f"batch {batch}, concurrency {concurrency}"
    if point is not None and point.get("p99_ms") is None and _number(point.get("max_ms")):
        return _p99_bounded(policy, profile, point, what, where, limit)
    if point is None or not _number(point.get("p99_ms")):
        return _result(policy, profile, False, None, limit, f"{what} has no p99 measured at {where}.")
    p99 = point["p99_ms"]
    ok = p99 <= limit
    verb = "within" if ok else "over"
    return _result(policy, profile, ok, p99, limit, f"{what}: p99 {p99:.3g} ms at {where}, {verb} {limit:g} ms.")


def _p99_bounded(
    policy: Policy, profile: str, point: dict[str, Any], what: str, where: str, limit: float
) -> GateResult:
    """Too few samples for a p99: the slowest request is an upper bound of the p99, so a slowest
    request within the limit passes; one over it decides nothing and fails with what to do."""
    slowest = point["max_ms"]
    why = str(point.get("p99_note") or "not enough samples for p99")
    if slowest <= limit:
        message = (
            f"{what}: p99 not reported at {where} ({why}), but the slowest request took {slowest:.3g} ms, "
            f"so the p99 is within {limit:g} ms."
        )
        return _result(policy, profile, True, slowest, limit, message)
    message = (
        f"{what}: p99 not reported at {where} ({why}) and the slowest request took {slowest:.3g} ms, over "
        f"{limit:g} ms, so the samples can't show the p99 within it: measure longer (the profile's or the "
        "upload's max_seconds_per_point) and re-run the pipeline."
    )
    return _result(policy, profile, False, None, limit, message)


def _required_backends(policy: Policy, profile: str, evidence: dict[str, Any]) -> GateResult:
    support = evidence.get("support") or {}
    verdicts = {b: (support.get(b) or {}).get("verdict", "not checked") for b in policy.params["backends"]}
    failing = {b: v for b, v in verdicts.items() if v != "full"}
    if failing:
        detail = ", ".join(f"{b} is {v}" for b, v in failing.items())
        return _result(policy, profile, False, verdicts, "full", f"Not fully supported: {detail}.")
    return _result(policy, profile, True, verdicts, "full", f"Fully supported by {', '.join(verdicts)}.")


def _no_cpu_fallback(policy: Policy, profile: str, evidence: dict[str, Any]) -> GateResult:
    if evidence["hardware_profile"]["device_kind"] != "gpu":
        return _result(policy, profile, True, None, None, "Not a GPU profile: the gate does not apply.")
    winner = evidence["recommendation"].get("winner")
    if winner is None:
        return _result(
            policy, profile, False, None, [], "No GPU variant is recommended: the model would run on the CPU."
        )
    support = (evidence.get("support") or {}).get(winner["backend"]) or {}
    fallback = support.get("fallback_ops") or []
    cpu = [d for d in support.get("devices", []) if "cpu" in d.lower()]
    if fallback or cpu:
        ops = ", ".join(fallback) or "some nodes"
        return _result(policy, profile, False, fallback, [], f"{winner['backend']} runs {ops} on the CPU.")
    return _result(policy, profile, True, [], [], f"{winner['backend']} runs every op on the GPU.")


_CHECKS = {
    PolicyKind.MAX_ACCURACY_DRIFT: _accuracy_drift,
    PolicyKind.MAX_P99_LATENCY: _p99_latency,
    PolicyKind.REQUIRED_BACKENDS: _required_backends,
    PolicyKind.NO_CPU_FALLBACK: _no_cpu_fallback,
}


def _result(policy: Policy, profile: str, passed: bool, value: Any, threshold: Any, message: str) -> GateResult:
    return GateResult(policy.pk, policy.name, policy.kind, profile, passed, value, threshold, message)


MEASURED_EVIDENCE = "measured_evidence"


def evidence_gates(evidence: dict[str, Any]) -> list[GateResult]:
    """The built-in gate no policy can turn off: a profile without measured evidence fails it,
    with the reason. The team's policies are not evaluated on that profile: with nothing
    measured their verdicts would only repeat that (docs/adr/0009)."""
    results = []
    for slug, profile in sorted((evidence.get("profiles") or {}).items()):
        missing = profile.get("evidence_missing")
        if missing:
            results.append(GateResult(None, "Measured evidence", MEASURED_EVIDENCE, slug, False, None, None, missing))
    return results


def evaluate(policies: Iterable[Policy], evidence: dict[str, Any]) -> list[GateResult]:
    """The built-in evidence gate, then every enabled policy on every profile it applies to."""
    results = evidence_gates(evidence)
    unmeasured = {gate.profile for gate in results}
    profiles: dict[str, Any] = evidence.get("profiles") or {}
    for policy in policies:
        if not policy.enabled:
            continue
        wanted = [policy.profile.slug] if policy.profile is not None else sorted(profiles)
        for slug in wanted:
            if slug in unmeasured:
                continue
            if slug not in profiles:
                results.append(
                    _result(policy, slug, False, None, None, f"The version was not built for the {slug} profile.")
                )
                continue
            results.append(_CHECKS[PolicyKind(policy.kind)](policy, slug, profiles[slug]))
    return results
