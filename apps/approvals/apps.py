from typing import Any

from django.apps import AppConfig


class ApprovalsConfig(AppConfig):
    name = "apps.approvals"
    label = "approvals"

    def ready(self) -> None:
        # The pipeline announces finished runs; approvals evaluates gates and tells people.
        from apps.approvals import services
        from apps.pipeline import events

        def on_ready(sender: Any, version: Any, **kwargs: Any) -> None:
            services.version_ready(version)

        def on_failed(sender: Any, version: Any, reason: str, **kwargs: Any) -> None:
            services.version_failed(version, reason)

        events.version_ready.connect(on_ready, dispatch_uid="approvals.version_ready", weak=False)
        events.version_failed.connect(on_failed, dispatch_uid="approvals.version_failed", weak=False)

        # A team admin changed the four-eyes rule; approvals applies it to the team's versions.
        from apps.accounts import events as account_events

        def on_four_eyes(sender: Any, team: Any, actor: Any, enabled: bool, **kwargs: Any) -> None:
            services.four_eyes_changed(team, actor, enabled)

        account_events.four_eyes_changed.connect(on_four_eyes, dispatch_uid="approvals.four_eyes", weak=False)
