"""A webhook delivery end to end: an event emitted in a transaction, a real Celery worker
process POSTing to a real HTTP server on 127.0.0.1 that fails once, the retry after backoff,
the signature checked with the secret, and both attempts in the delivery log."""

from __future__ import annotations

import json

import pytest
from django.db import transaction

from apps.webhooks import services
from apps.webhooks.models import DeliveryStatus, WebhookDelivery
from apps.webhooks.signing import verify
from tests.apps.test_webhooks import Receiver
from tests.factories import MembershipFactory, TeamFactory, UserFactory
from tests.integration.conftest import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_a_failed_attempt_is_retried_by_the_worker_and_the_second_succeeds(transactional_db, celery_worker_process):
    team = TeamFactory(slug="vision")
    admin = UserFactory(username="ada")
    MembershipFactory(team=team, user=admin, role="admin")
    with Receiver([500, 200]) as receiver:
        # The receiver is on the loopback address: a team admin allows that for this webhook.
        _, secret = services.create_webhook(
            team=team,
            user=admin,
            name="ci",
            url=receiver.url,
            events=["version.approved"],
            allow_private=True,
        )
        with transaction.atomic():
            (delivery,) = services.emit(team, "version.approved", {"version": {"id": 42, "model": "resnet"}})

        def finished() -> WebhookDelivery | None:
            row = WebhookDelivery.objects.get(pk=delivery.pk)
            return row if row.status != DeliveryStatus.PENDING else None

        done = wait_for(finished, timeout=60, what="the webhook delivery to finish")

    assert done.status == DeliveryStatus.SUCCEEDED, (done.error, done.attempt_log)
    assert done.attempts == 2 and done.last_response_code == 200 and done.delivered_at is not None
    assert [(a["attempt"], a["status_code"]) for a in done.attempt_log] == [(1, 500), (2, 200)]
    assert done.attempt_log[0]["error"] == "The receiver answered 500."

    assert len(receiver.requests) == 2
    first, second = receiver.requests
    assert second.at - first.at >= 0.45  # backoff base 1 s: the retry waited half to all of it
    for request in receiver.requests:
        headers = request.headers
        assert headers["X-Slipway-Event"] == "version.approved"
        assert headers["X-Slipway-Delivery"] == str(delivery.pk)
        assert verify(secret, headers["X-Slipway-Timestamp"], request.body, headers["X-Slipway-Signature"])
        assert not verify("whsec_wrong", headers["X-Slipway-Timestamp"], request.body, headers["X-Slipway-Signature"])
    body = json.loads(second.body)
    assert body["id"] == str(delivery.event_id) and body["data"] == {"version": {"id": 42, "model": "resnet"}}
