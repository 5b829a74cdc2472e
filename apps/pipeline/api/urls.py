"""Routes of the pipeline: two versions or variants compared; a waiting profile dropped from a run;
the queues' depth; the playground's trials."""

from django.urls import path

from apps.pipeline.api.compare import Compare
from apps.pipeline.api.queues import QueueList
from apps.pipeline.api.trials import TrialDetail, VersionTrialDefaults, VersionTrials
from apps.pipeline.api.views import VersionProfileDrop

urlpatterns = [
    path("compare/", Compare.as_view(), name="compare"),
    path("versions/<int:pk>/profiles/<slug:profile>/drop/", VersionProfileDrop.as_view(), name="version-profile-drop"),
    path("queues/", QueueList.as_view(), name="queue-list"),
    path("versions/<int:pk>/trials/", VersionTrials.as_view(), name="version-trials"),
    path("versions/<int:pk>/trials/defaults/", VersionTrialDefaults.as_view(), name="version-trial-defaults"),
    path("trials/<int:pk>/", TrialDetail.as_view(), name="trial-detail"),
]
