"""No verdict without evidence (docs/adr/0009): a recommendation with nothing measured behind it
fails its step (a benchmark that measured nothing fails in `workers.engine.work`)."""

from __future__ import annotations

from typing import Any

from workers.engine.errors import ModelError
from workers.engine.work import measured, why_not_measured


def require_recommendation_evidence(profile: str, recommendation: dict[str, Any], baseline: dict[str, Any]) -> None:
    """Fail the recommend step rather than advise keeping an original model nobody measured:
    with no winner, "keep the original" is only a verdict when the original has numbers."""
    if recommendation.get("winner") or measured(baseline):
        return
    lost = [recommendation.get("runner_up"), *(recommendation.get("others") or [])]
    causes = " ".join(f"{o['name']}: {str(o.get('reason') or '').rstrip('. ')}." for o in lost if o)
    raise ModelError(
        "nothing_measured",
        f"There is no recommendation for {profile}: no variant that passes the accuracy check was measured, "
        f"and the original model was not measured either ({why_not_measured(baseline)}), so not even keeping "
        f"it is a measured choice. {causes} Fix the cause and re-run the pipeline.".replace("  ", " "),
    )
