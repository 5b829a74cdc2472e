"""factory_boy factories for the domain model."""

from __future__ import annotations

import factory
from django.contrib.auth import get_user_model

from apps.accounts.models import Membership, Team
from apps.registry.models import ModelVersion, RegisteredModel


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.django.Password("pw-for-tests")


class TeamFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Team
        django_get_or_create = ("slug",)

    slug = factory.Sequence(lambda n: f"team-{n}")
    name = factory.LazyAttribute(lambda o: o.slug.title())


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    team = factory.SubFactory(TeamFactory)
    user = factory.SubFactory(UserFactory)
    role = "data_scientist"


class RegisteredModelFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = RegisteredModel

    team = factory.SubFactory(TeamFactory)
    name = factory.Sequence(lambda n: f"model {n}")
    slug = factory.Sequence(lambda n: f"model-{n}")
    created_by = factory.SubFactory(UserFactory)


class ModelVersionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ModelVersion

    model = factory.SubFactory(RegisteredModelFactory)
    number = factory.Sequence(lambda n: n + 1)
    framework = "onnx"
    # the team's rule now, read from the database as an upload does
    four_eyes = factory.LazyAttribute(
        lambda o: Team.objects.values_list("four_eyes", flat=True).get(pk=o.model.team_id)
    )
    created_by = factory.SubFactory(UserFactory)
