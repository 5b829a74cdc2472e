"""What each pipeline step does on a worker, between the claimed Job and the engine: one module
per step, named like the flow (`import_`, `inspect`, `validate`, `optimize`, `parity`,
`benchmark`, `recommend`), what they share in `common`, and the rule that no verdict goes
out without evidence in `evidence`.

A step receives the claimed job and a progress callback and returns a `StepOutcome`; it
raises `ModelError` / `SandboxError` for failures the user should read.
"""

from __future__ import annotations

from collections.abc import Callable

from apps.pipeline.models import Job, JobKind
from apps.pipeline.services import StepOutcome
from workers.tasks.steps.benchmark import run_benchmark
from workers.tasks.steps.common import ProgressCallback, sandboxed
from workers.tasks.steps.import_ import run_import
from workers.tasks.steps.inspect import run_inspect
from workers.tasks.steps.optimize import run_optimize
from workers.tasks.steps.parity import run_parity
from workers.tasks.steps.recommend import run_recommend
from workers.tasks.steps.validate import run_validate

STEPS: dict[str, Callable[[Job, ProgressCallback], StepOutcome]] = {
    JobKind.IMPORT: sandboxed(run_import),
    JobKind.INSPECT: sandboxed(run_inspect),
    JobKind.VALIDATE: sandboxed(run_validate),
    JobKind.OPTIMIZE: sandboxed(run_optimize),
    JobKind.PARITY: sandboxed(run_parity),
    JobKind.BENCHMARK: sandboxed(run_benchmark),
    JobKind.RECOMMEND: run_recommend,
}
