from typing import Any

from django.apps import AppConfig


class PipelineConfig(AppConfig):
    """The pipeline: runs, their jobs (one per step and hardware profile), the plan, and the
    events a version's end sends. The label stays "jobs", the app's name before it was named for
    what it is: tables, migrations and admin URLs keep theirs."""

    name = "apps.pipeline"
    label = "jobs"

    def ready(self) -> None:
        # The registry announces each new version; the pipeline starts its run.
        from apps.pipeline import services
        from apps.registry import events

        def on_created(sender: Any, version: Any, user: Any, **kwargs: Any) -> None:
            services.start_pipeline(version, user)

        events.version_created.connect(on_created, dispatch_uid="jobs.version_created", weak=False)
