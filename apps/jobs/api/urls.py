"""Routes of the pipeline's results: two versions or variants compared."""

from django.urls import path

from apps.jobs.api.compare import Compare

urlpatterns = [
    path("compare/", Compare.as_view(), name="compare"),
]
