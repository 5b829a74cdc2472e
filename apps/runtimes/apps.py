from django.apps import AppConfig


class RuntimesConfig(AppConfig):
    name = "apps.runtimes"
    label = "runtimes"
