"""The version state machine refuses moves it does not allow."""

import pytest

from apps.registry import lifecycle
from apps.registry.models import VERSION_TRANSITIONS, ModelVersion, VersionStatus
from tests.factories import ModelVersionFactory

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("source", list(VersionStatus))
@pytest.mark.parametrize("target", list(VersionStatus))
def test_every_transition_is_allowed_or_refused_as_the_table_says(source, target):
    version = ModelVersionFactory(status=source)
    if target in VERSION_TRANSITIONS[source]:
        lifecycle.transition(version, target, reason="test")
        assert ModelVersion.objects.get(pk=version.pk).status == target
    else:
        with pytest.raises(lifecycle.InvalidTransition) as info:
            lifecycle.transition(version, target)
        assert "can't become" in str(info.value)
        assert ModelVersion.objects.get(pk=version.pk).status == source


def test_a_stale_in_memory_status_cannot_win_a_race():
    version = ModelVersionFactory(status=VersionStatus.PROCESSING)
    other_copy = ModelVersion.objects.get(pk=version.pk)
    lifecycle.transition(version, VersionStatus.FAILED)
    # `other_copy` still believes it is processing; the database says failed.
    with pytest.raises(lifecycle.InvalidTransition):
        lifecycle.transition(other_copy, VersionStatus.READY)
