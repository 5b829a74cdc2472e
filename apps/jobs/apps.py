from typing import Any

from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "apps.jobs"
    label = "jobs"

    def ready(self) -> None:
        # The registry announces each new version; the pipeline starts its run.
        from apps.jobs import services
        from apps.registry import events

        def on_created(sender: Any, version: Any, user: Any, **kwargs: Any) -> None:
            services.start_pipeline(version, user)

        events.version_created.connect(on_created, dispatch_uid="jobs.version_created", weak=False)
