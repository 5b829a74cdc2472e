"""No verdict without evidence (docs/adr/0009): a benchmark that measured nothing, or a
recommendation with nothing measured behind it, fails its step."""

from __future__ import annotations

from typing import Any

from workers.engine.errors import ModelError


def _measured(entry: dict[str, Any] | None) -> bool:
    return bool((entry or {}).get("points"))


def _why_not_measured(entry: dict[str, Any] | None) -> str:
    return str((entry or {}).get("error") or "it has no benchmark points").rstrip(". ")


def require_measurement(profile: str, baseline: dict[str, Any], variants: dict[str, dict[str, Any]]) -> None:
    """Fail the benchmark step when it measured nothing, the original model included: a step
    that 'succeeded' with every entry failed let the version go ready on no numbers at all.
    The sentence keeps every entry's own reason, so the cause (usually inputs the model can't
    take) is read where the failure is shown."""
    if _measured(baseline) or any(_measured(entry) for entry in variants.values()):
        return
    causes = [f"the original model (onnxruntime): {_why_not_measured(baseline)}."]
    causes += [f"{name}: {_why_not_measured(entry)}." for name, entry in variants.items()]
    raise ModelError(
        "nothing_measured",
        f"Nothing could be measured on {profile}: every benchmark failed, the original model's included. "
        + " ".join(causes)
        + " Fix the cause (often inputs the model can't take: declare their shapes and values at upload) "
        "and re-run the pipeline.",
    )


def require_recommendation_evidence(profile: str, recommendation: dict[str, Any], baseline: dict[str, Any]) -> None:
    """Fail the recommend step rather than advise keeping an original model nobody measured:
    with no winner, "keep the original" is only a verdict when the original has numbers."""
    if recommendation.get("winner") or _measured(baseline):
        return
    lost = [recommendation.get("runner_up"), *(recommendation.get("others") or [])]
    causes = " ".join(f"{o['name']}: {str(o.get('reason') or '').rstrip('. ')}." for o in lost if o)
    raise ModelError(
        "nothing_measured",
        f"There is no recommendation for {profile}: no variant that passes the accuracy check was measured, "
        f"and the original model was not measured either ({_why_not_measured(baseline)}), so not even keeping "
        f"it is a measured choice. {causes} Fix the cause and re-run the pipeline.".replace("  ", " "),
    )
