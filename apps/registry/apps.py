from pathlib import Path

from django.apps import AppConfig
from django.conf import settings


class RegistryConfig(AppConfig):
    name = "apps.registry"
    label = "registry"

    def ready(self) -> None:
        # Uploads stream into this folder; it must exist before the first request.
        Path(settings.FILE_UPLOAD_TEMP_DIR).mkdir(parents=True, exist_ok=True)
