from django.apps import AppConfig


class HardwareConfig(AppConfig):
    """Hardware profiles and the machines (workers) that serve them. The label stays "runtimes",
    the app's name before it was named for what it holds: tables and migrations keep theirs."""

    name = "apps.hardware"
    label = "runtimes"

    def ready(self) -> None:
        from apps.hardware import schema  # noqa: F401 - registers the OpenAPI description of device credentials
