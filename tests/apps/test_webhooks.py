"""Team webhooks: who may manage them, the secret shown once, signing, emitting events, and
delivery with retries against a real HTTP server on 127.0.0.1 (the worker is called directly)."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.contrib import admin as django_admin
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from apps.accounts.models import ApiToken
from apps.audit.models import AuditEvent
from apps.core import outbound
from apps.core.crypto import Secret
from apps.webhooks import delivery as deliveries
from apps.webhooks import services
from apps.webhooks.models import DeliveryStatus, Webhook, WebhookDelivery
from apps.webhooks.signing import sign, verify
from tests.conftest import client_for
from tests.factories import MembershipFactory, UserFactory

# --- a real receiver ----------------------------------------------------------------------


class Receiver:
    """An HTTP server on 127.0.0.1 (a free port, its own thread) that answers POSTs from a
    script of statuses (the last one repeats) and records every request it got."""

    def __init__(self, script: list[Any], delay: float = 0.0):
        self.script = list(script)
        self.delay = delay
        self.requests: list[SimpleNamespace] = []
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/slipway"

    def _next(self) -> tuple[int, dict[str, str]]:
        with self._lock:
            step = self.script[min(len(self.requests) - 1, len(self.script) - 1)]
        return step if isinstance(step, tuple) else (step, {})

    def __enter__(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._lock:
                    receiver.requests.append(
                        SimpleNamespace(path=self.path, headers=dict(self.headers), body=body, at=time.monotonic())
                    )
                code, headers = receiver._next()
                if receiver.delay:
                    time.sleep(receiver.delay)
                answer = f"answer {code}".encode()
                self.send_response(code)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- fixtures -----------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def public_dns(monkeypatch):
    """Host names resolve to a public address (no DNS in tests); literal addresses to themselves."""

    def resolve(host: str, port: int) -> list[str]:
        try:
            return [str(ipaddress.ip_address(host))]
        except ValueError:
            return ["93.184.216.34"]

    monkeypatch.setattr(outbound, "_resolve", resolve)


@pytest.fixture
def sent(broker):
    """Deliveries sent to workers: (delivery id, countdown)."""
    return broker.view(lambda m: (m.object_id, m.countdown), tasks=[deliveries.DELIVER_TASK])


@pytest.fixture
def people(personas):
    """The personas plus an approver and an admin of `team`."""
    for attr, username, role in (("approver", "april", "approver"), ("admin", "ada", "admin")):
        if getattr(personas, attr, None) is None:
            user = UserFactory(username=username)
            MembershipFactory(team=personas.team, user=user, role=role)
            setattr(personas, attr, user)
    return personas


@pytest.fixture
def fast_retries(settings):
    settings.WEBHOOK_BACKOFF_BASE_SECONDS = 0
    settings.WEBHOOK_MAX_ATTEMPTS = 3
    settings.WEBHOOK_CONNECT_TIMEOUT_SECONDS = 2
    settings.WEBHOOK_READ_TIMEOUT_SECONDS = 2


def _hook(people, url="https://hooks.example.com/slipway", events=("version.approved",), **kw) -> tuple[Webhook, str]:
    return services.create_webhook(
        team=people.team, user=people.admin, name=kw.pop("name", "ci"), url=url, events=list(events), **kw
    )


def _due_now(delivery: WebhookDelivery) -> None:
    WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())


# --- signing and backoff ------------------------------------------------------------------


def test_signature_is_hmac_sha256_of_timestamp_dot_body():
    body = b'{"event":"ping"}'
    expected = hmac.new(b"s3cret", b"1767225600." + body, hashlib.sha256).hexdigest()
    assert sign("s3cret", 1767225600, body) == f"sha256={expected}"


def test_verify_accepts_a_fresh_authentic_request_and_nothing_else():
    body, now = b'{"a":1}', 1767225600
    signature = sign("s3cret", now, body)
    assert verify("s3cret", str(now), body, signature, now=now + 299)
    assert not verify("s3cret", now, body + b" ", signature, now=now)  # tampered body
    assert not verify("other", now, body, signature, now=now)  # wrong secret
    assert not verify("s3cret", now, body, signature, now=now + 301)  # replayed later
    assert not verify("s3cret", now, body, signature, now=now - 301)  # from the future
    assert not verify("s3cret", "yesterday", body, signature, now=now)
    assert not verify("s3cret", now, body, "", now=now)


def test_backoff_doubles_to_the_cap_with_jitter_between_half_and_all():
    full = [deliveries.backoff_seconds(n, base=10, cap=100, rand=lambda: 1.0) for n in range(1, 7)]
    half = [deliveries.backoff_seconds(n, base=10, cap=100, rand=lambda: 0.0) for n in range(1, 7)]
    assert full == [10, 20, 40, 80, 100, 100]
    assert half == [5, 10, 20, 40, 50, 50]
    for n in range(1, 7):
        assert half[n - 1] <= deliveries.backoff_seconds(n, base=10, cap=100) <= full[n - 1]


# --- permissions --------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["viewer", "owner", "approver"])
def test_members_who_are_not_admins_get_a_403_sentence_for_every_write_and_read(people, role, sent):
    hook, _ = _hook(people)
    client = client_for(getattr(people, role))
    calls = [
        client.post(
            "/api/v1/webhooks/", {"team": "vision", "name": "x", "url": "https://e.com/", "events": []}, format="json"
        ),
        client.patch(f"/api/v1/webhooks/{hook.pk}/", {"active": False}, format="json"),
        client.delete(f"/api/v1/webhooks/{hook.pk}/"),
        client.post(f"/api/v1/webhooks/{hook.pk}/rotate-secret/"),
        client.post(f"/api/v1/webhooks/{hook.pk}/ping/"),
        client.get(f"/api/v1/webhooks/{hook.pk}/"),
        client.get(f"/api/v1/webhooks/{hook.pk}/deliveries/"),
        client.get("/api/v1/webhooks/?team=vision"),
    ]
    for response in calls:
        assert response.status_code == 403, response.json()
        body = response.json()
        assert body["code"] == "forbidden"
        assert "managing the team (members, policies, targets, webhooks) needs admin" in body["message"]
    assert client.get("/api/v1/webhooks/").json()["results"] == []
    assert Webhook.objects.get(pk=hook.pk).active and not WebhookDelivery.objects.exists()


def test_outsiders_get_404_for_another_teams_webhooks(people, sent):
    hook, _ = _hook(people)
    delivery = services.ping(hook, people.admin)
    WebhookDelivery.objects.filter(pk=delivery.pk).update(status=DeliveryStatus.FAILED)
    client = client_for(people.outsider)
    for response in [
        client.get(f"/api/v1/webhooks/{hook.pk}/"),
        client.patch(f"/api/v1/webhooks/{hook.pk}/", {"active": False}, format="json"),
        client.delete(f"/api/v1/webhooks/{hook.pk}/"),
        client.post(f"/api/v1/webhooks/{hook.pk}/rotate-secret/"),
        client.post(f"/api/v1/webhooks/{hook.pk}/ping/"),
        client.get(f"/api/v1/webhooks/{hook.pk}/deliveries/"),
        client.post(f"/api/v1/webhooks/{hook.pk}/deliveries/{delivery.pk}/redeliver/"),
        client.get("/api/v1/webhooks/?team=vision"),
        client.post(
            "/api/v1/webhooks/", {"team": "vision", "name": "x", "url": "https://e.com/", "events": []}, format="json"
        ),
    ]:
        assert response.status_code == 404, response.json()
    assert client.get("/api/v1/webhooks/").json()["results"] == []
    assert Webhook.objects.filter(pk=hook.pk).exists()


def test_admin_manages_the_whole_lifecycle_and_each_change_is_audited(people, sent, django_capture_on_commit_callbacks):
    client = client_for(people.admin)
    created = client.post(
        "/api/v1/webhooks/",
        {"team": "vision", "name": "CI", "url": "https://hooks.example.com/slipway", "events": ["version.approved"]},
        format="json",
    )
    assert created.status_code == 201, created.json()
    pk = created.json()["id"]
    assert client.get("/api/v1/webhooks/").json()["results"][0]["id"] == pk
    patched = client.patch(
        f"/api/v1/webhooks/{pk}/", {"events": ["version.ready", "deployment.live"], "name": "CI bot"}, format="json"
    )
    assert patched.status_code == 200 and patched.json()["events"] == ["version.ready", "deployment.live"]
    assert client.post(f"/api/v1/webhooks/{pk}/rotate-secret/").status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        ping = client.post(f"/api/v1/webhooks/{pk}/ping/")
    assert ping.status_code == 202 and ping.json()["event"] == "ping" and sent == [(ping.json()["id"], 0)]
    assert client.delete(f"/api/v1/webhooks/{pk}/").status_code == 204
    assert not Webhook.objects.filter(pk=pk).exists()

    events = list(AuditEvent.objects.filter(object_type="webhook", object_id=str(pk)).order_by("id"))
    assert [e.action for e in events] == [
        "webhook.created",
        "webhook.updated",
        "webhook.secret_rotated",
        "webhook.pinged",
        "webhook.deleted",
    ]
    assert all(e.actor == "ada" and e.team == "vision" for e in events)
    updated = events[1]
    assert updated.before["name"] == "CI" and updated.after["name"] == "CI bot"
    trail = json.dumps([[e.before, e.after, e.object_repr] for e in events])
    assert created.json()["secret"] not in trail and "/slipway" not in trail  # no secret, no URL path


def test_api_tokens_need_the_admin_scope_even_to_read(people):
    hook, _ = _hook(people)
    _, read_only = ApiToken.issue(people.admin, "ci", ["read"])
    _, admin_scope = ApiToken.issue(people.admin, "ops", ["admin"])
    refused = APIClient(HTTP_AUTHORIZATION=f"Bearer {read_only}").get(f"/api/v1/webhooks/{hook.pk}/")
    assert refused.status_code == 403 and refused.json()["code"] == "token_scope"
    assert "needs 'admin'" in refused.json()["message"]
    assert APIClient(HTTP_AUTHORIZATION=f"Bearer {admin_scope}").get(f"/api/v1/webhooks/{hook.pk}/").status_code == 200


# --- the secret ---------------------------------------------------------------------------


def test_the_secret_is_returned_once_at_creation_and_once_per_rotation(people):
    client = client_for(people.admin)
    created = client.post(
        "/api/v1/webhooks/",
        {"team": "vision", "name": "CI", "url": "https://hooks.example.com/x", "events": ["version.ready"]},
        format="json",
    ).json()
    secret = created["secret"]
    assert secret.startswith("whsec_") and len(secret) > 40 and "not shown again" in created["secret_notice"]
    hook = Webhook.objects.get(pk=created["id"])
    assert hook.secret.reveal() == secret

    pages = [
        client.get("/api/v1/webhooks/").content,
        client.get(f"/api/v1/webhooks/{hook.pk}/").content,
        client.patch(f"/api/v1/webhooks/{hook.pk}/", {"name": "CI 2"}, format="json").content,
    ]
    for page in pages:
        assert secret.encode() not in page and b'"secret"' not in page

    rotated = client.post(f"/api/v1/webhooks/{hook.pk}/rotate-secret/").json()["secret"]
    assert rotated != secret and Webhook.objects.get(pk=hook.pk).secret.reveal() == rotated
    assert rotated.encode() not in client.get(f"/api/v1/webhooks/{hook.pk}/").content
    assert secret not in repr(hook) and secret not in str(hook.__dict__)


def test_admin_pages_render_without_the_secret(people, sent):
    hook, secret = _hook(people)
    services.ping(hook, people.admin)
    assert {Webhook, WebhookDelivery} <= set(django_admin.site._registry)
    client = Client()
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    for url in [
        "/admin/webhooks/webhook/",
        f"/admin/webhooks/webhook/{hook.pk}/change/",
        "/admin/webhooks/webhookdelivery/",
        f"/admin/webhooks/webhookdelivery/{WebhookDelivery.objects.get().pk}/change/",
    ]:
        page = client.get(url)
        assert page.status_code == 200, url
        assert secret.encode() not in page.content
        stored = Webhook.objects.values_list("secret", flat=True).get(pk=hook.pk)
        assert stored.token().encode() not in page.content


# --- input checks -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "code", "words"),
    [
        ({"url": "ftp://example.com/x"}, 400, "invalid_url", "not an http or https URL"),
        ({"url": "http://127.0.0.1:9000/x"}, 400, "private_address", "a team admin can allow it"),
        ({"url": "http://169.254.169.254/latest"}, 400, "private_address", "link-local"),
        ({"events": ["version.deployed"]}, 400, "unknown_event", "Webhooks can subscribe to: version.ready"),
        ({"events": ["ping"]}, 400, "unknown_event", "sent on request"),
        ({"events": []}, 400, "no_events", "at least one event"),
        ({"name": " "}, 400, "invalid_name", "Give the webhook a name"),
        ({"team": "fraud"}, 404, "unknown_team", "not a member of a team called 'fraud'"),
    ],
)
def test_bad_input_is_a_4xx_sentence(people, body, status, code, words):
    data = {"team": "vision", "name": "CI", "url": "https://hooks.example.com/x", "events": ["version.ready"], **body}
    response = client_for(people.admin).post("/api/v1/webhooks/", data, format="json")
    assert response.status_code == status, response.json()
    assert response.json()["code"] == code and words in response.json()["message"]
    assert not Webhook.objects.exists()


def test_duplicate_names_conflict(people):
    _hook(people)
    response = client_for(people.admin).post(
        "/api/v1/webhooks/",
        {"team": "vision", "name": "ci", "url": "https://hooks.example.com/y", "events": ["version.ready"]},
        format="json",
    )
    assert response.status_code == 409 and "already has a webhook called 'ci'" in response.json()["message"]


def test_a_private_target_needs_an_admins_allow_private_which_is_recorded(people):
    client = client_for(people.admin)
    body = {"team": "vision", "name": "local", "url": "http://10.0.0.8/hook", "events": ["version.ready"]}
    assert client.post("/api/v1/webhooks/", body, format="json").status_code == 400
    created = client.post("/api/v1/webhooks/", {**body, "allow_private": True}, format="json")
    assert created.status_code == 201, created.json()
    assert created.json()["allow_private"] is True and created.json()["allow_private_by"] == "ada"
    assert created.json()["allow_private_at"]
    # Turning the flag off again re-checks the URL and refuses.
    off = client.patch(f"/api/v1/webhooks/{created.json()['id']}/", {"allow_private": False}, format="json")
    assert off.status_code == 400 and off.json()["code"] == "private_address"


def test_the_operator_setting_allows_private_targets_everywhere(people, settings):
    settings.ALLOW_PRIVATE_OUTBOUND = True
    hook, _ = _hook(people, url="http://127.0.0.1:9000/hook")
    assert hook.allow_private is False


# --- emitting -----------------------------------------------------------------------------


def test_emit_queues_one_delivery_per_active_subscribed_webhook_after_commit(
    people, sent, django_capture_on_commit_callbacks
):
    wanted, _ = _hook(people, name="a", events=["version.approved", "version.rejected"])
    _hook(people, name="b", events=["version.ready"])
    _hook(people, name="off", events=["version.approved"], active=False)
    services.create_webhook(
        team=people.other_team,
        user=UserFactory(is_superuser=True),
        name="theirs",
        url="https://hooks.example.com/z",
        events=["version.approved"],
    )
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        made = services.emit(people.team, "version.approved", {"version": {"id": 7}, "at": timezone.now()})
        assert sent == []  # nothing leaves before the caller's transaction commits
    for callback in callbacks:
        callback()
    assert [d.webhook_id for d in made] == [wanted.pk] and sent == [(made[0].pk, 0)]
    payload = made[0].payload
    assert payload["event"] == "version.approved" and payload["team"] == "vision" and payload["id"]
    assert payload["data"]["version"] == {"id": 7} and isinstance(payload["data"]["at"], str)
    assert services.emit(people.team, "deployment.live", {}) == []
    with pytest.raises(ValueError, match="Unknown webhook event"):
        services.emit(people.team, "version.exploded", {})


# --- delivering ---------------------------------------------------------------------------


def test_a_5xx_is_retried_with_backoff_and_the_next_attempt_succeeds(
    people, sent, settings, django_capture_on_commit_callbacks
):
    settings.WEBHOOK_BACKOFF_BASE_SECONDS = 30
    with Receiver([500, 200]) as receiver:
        _, secret = _hook(people, url=receiver.url, allow_private=True)
        (delivery,) = services.emit(people.team, "version.approved", {"version": 3})

        with django_capture_on_commit_callbacks(execute=True):
            assert deliveries.deliver(delivery.pk) == "retrying"
        delivery.refresh_from_db()
        assert delivery.status == DeliveryStatus.PENDING and delivery.attempts == 1
        assert delivery.last_response_code == 500 and delivery.error == "The receiver answered 500."
        wait = (delivery.next_attempt_at - timezone.now()).total_seconds()
        assert 14 < wait <= 30
        assert sent[-1][0] == delivery.pk and 15 <= sent[-1][1] <= 30
        assert deliveries.deliver(delivery.pk) == "not claimed"  # not due yet

        _due_now(delivery)
        assert deliveries.deliver(delivery.pk) == "succeeded"
        assert deliveries.deliver(delivery.pk) == "not claimed"  # a duplicate message sends nothing

    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SUCCEEDED and delivery.attempts == 2 and delivery.delivered_at
    assert [(a["attempt"], a["status_code"]) for a in delivery.attempt_log] == [(1, 500), (2, 200)]
    assert delivery.last_response_body == "answer 200" and delivery.error == ""
    assert len(receiver.requests) == 2
    first, second = receiver.requests
    assert first.body == second.body  # the same bytes on every attempt
    headers = second.headers
    assert headers["X-Slipway-Event"] == "version.approved"
    assert headers["X-Slipway-Delivery"] == str(delivery.pk)
    assert headers["Content-Type"] == "application/json"
    assert verify(secret, headers["X-Slipway-Timestamp"], second.body, headers["X-Slipway-Signature"])
    assert json.loads(second.body)["data"] == {"version": 3}


@pytest.mark.parametrize(
    ("script", "outcome", "attempts", "error"),
    [
        ([404], DeliveryStatus.FAILED, 1, "The receiver answered 404."),
        ([410], DeliveryStatus.FAILED, 1, "The receiver answered 410."),
        ([429, 200], DeliveryStatus.SUCCEEDED, 2, ""),
        ([408, 200], DeliveryStatus.SUCCEEDED, 2, ""),
        ([503], DeliveryStatus.FAILED, 3, "Gave up after 3 attempts. Last: The receiver answered 503."),
        ([(302, {"Location": "https://elsewhere.example/"})], DeliveryStatus.FAILED, 1, "don't follow redirects"),
    ],
)
def test_what_is_retried_and_what_is_not(people, sent, fast_retries, script, outcome, attempts, error):
    with Receiver(script) as receiver:
        hook, _ = _hook(people, url=receiver.url, allow_private=True)
        delivery = services.ping(hook, people.admin)
        for _ in range(5):
            _due_now(delivery)
            deliveries.deliver(delivery.pk)
    delivery.refresh_from_db()
    assert delivery.status == outcome and delivery.attempts == attempts and len(receiver.requests) == attempts
    assert error in delivery.error
    assert len(delivery.attempt_log) == attempts


def test_a_timeout_is_retried(people, sent, fast_retries, settings):
    settings.WEBHOOK_READ_TIMEOUT_SECONDS = 1
    with Receiver([200], delay=1.5) as receiver:
        hook, _ = _hook(people, url=receiver.url, allow_private=True)
        delivery = services.ping(hook, people.admin)
        assert deliveries.deliver(delivery.pk) == "retrying"
    delivery.refresh_from_db()
    assert "No answer within the timeouts" in delivery.error and delivery.last_response_code is None
    assert delivery.attempt_log[0]["duration_ms"] >= 900


def test_a_connection_error_is_retried(people, sent, fast_retries):
    with Receiver([200]) as receiver:
        url = receiver.url
    hook, _ = _hook(people, url=url, allow_private=True)  # nothing listens there any more
    delivery = services.ping(hook, people.admin)
    assert deliveries.deliver(delivery.pk) == "retrying"
    delivery.refresh_from_db()
    assert delivery.error.startswith("Could not connect")


def test_the_address_is_checked_again_at_delivery_time(people, sent, fast_retries, monkeypatch):
    with Receiver([200]) as receiver:
        hook, _ = _hook(people, url=receiver.url.replace("127.0.0.1", "receiver.example"))
        delivery = services.ping(hook, people.admin)
        # The name now resolves to the loopback address: DNS changed after the webhook was saved.
        monkeypatch.setattr(outbound, "_resolve", lambda host, port: ["127.0.0.1"])
        assert deliveries.deliver(delivery.pk) == "failed"
    delivery.refresh_from_db()
    assert "a loopback address" in delivery.error and receiver.requests == []


def test_the_connection_itself_is_checked_against_rebinding(people, sent, fast_retries, monkeypatch):
    with Receiver([200]) as receiver:
        hook, _ = _hook(people, url=receiver.url.replace("127.0.0.1", "localhost"))
        delivery = services.ping(hook, people.admin)
        # The check sees a public address, the connection goes to 127.0.0.1.
        monkeypatch.setattr(outbound, "_resolve", lambda host, port: ["93.184.216.34"])
        assert deliveries.deliver(delivery.pk) == "failed"
    delivery.refresh_from_db()
    assert "refused before sending" in delivery.error and receiver.requests == []


def test_deliveries_of_a_deactivated_webhook_are_not_sent(people, sent, fast_retries):
    with Receiver([200]) as receiver:
        hook, _ = _hook(people, url=receiver.url, allow_private=True)
        (delivery,) = services.emit(people.team, "version.approved", {})
        services.update_webhook(hook, people.admin, active=False)
        assert deliveries.deliver(delivery.pk) == "failed"
    assert receiver.requests == []
    assert "deactivated" in WebhookDelivery.objects.get(pk=delivery.pk).error


def test_the_sweep_resends_lost_messages_and_fails_abandoned_last_attempts(
    people, sent, settings, django_capture_on_commit_callbacks
):
    settings.WEBHOOK_SWEEP_AFTER_SECONDS = 60
    hook, _ = _hook(people)
    lost, fresh, abandoned, held = (services.ping(hook, people.admin) for _ in range(4))
    long_ago = timezone.now() - timedelta(minutes=10)
    WebhookDelivery.objects.filter(pk__in=[lost.pk, abandoned.pk, held.pk]).update(
        enqueued_at=long_ago, next_attempt_at=long_ago
    )
    WebhookDelivery.objects.filter(pk=abandoned.pk).update(attempts=3, max_attempts=3, locked_until=long_ago)
    WebhookDelivery.objects.filter(pk=held.pk).update(locked_until=timezone.now() + timedelta(minutes=1))
    sent.clear()
    with django_capture_on_commit_callbacks(execute=True):
        report = deliveries.sweep()
    assert report == deliveries.SweepReport(resent_lost=1, failed_abandoned=1)
    assert sent == [(lost.pk, 0)]
    assert WebhookDelivery.objects.get(pk=abandoned.pk).status == DeliveryStatus.FAILED
    assert WebhookDelivery.objects.get(pk=fresh.pk).status == DeliveryStatus.PENDING
    with django_capture_on_commit_callbacks(execute=True):
        assert deliveries.sweep().resent_lost == 0  # just re-sent: not again until it seems lost again


# --- delivery log and redelivery ----------------------------------------------------------


def test_deliveries_are_listed_newest_first_with_a_cursor(people, sent):
    hook, _ = _hook(people)
    made = [services.ping(hook, people.admin) for _ in range(3)]
    client = client_for(people.admin)
    page = client.get(f"/api/v1/webhooks/{hook.pk}/deliveries/?page_size=2").json()
    assert [d["id"] for d in page["results"]] == [made[2].pk, made[1].pk]
    assert page["results"][0]["payload"]["event"] == "ping" and page["results"][0]["attempt_log"] == []
    rest = client.get(page["next"]).json()
    assert [d["id"] for d in rest["results"]] == [made[0].pk]
    assert client.get(f"/api/v1/webhooks/{hook.pk}/deliveries/?status=failed").json()["results"] == []
    bad = client.get(f"/api/v1/webhooks/{hook.pk}/deliveries/?status=lost")
    assert bad.status_code == 400 and "use one of pending, succeeded, failed" in bad.json()["message"]


def test_redeliver_sends_the_same_event_again_once_the_first_finished(people, sent, django_capture_on_commit_callbacks):
    hook, _ = _hook(people)
    (original,) = services.emit(people.team, "version.approved", {"version": 1})
    client = client_for(people.admin)
    url = f"/api/v1/webhooks/{hook.pk}/deliveries/{original.pk}/redeliver/"
    busy = client.post(url)
    assert busy.status_code == 409 and "wait for it to finish" in busy.json()["message"]

    WebhookDelivery.objects.filter(pk=original.pk).update(status=DeliveryStatus.FAILED)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url)
    assert response.status_code == 202, response.json()
    again = WebhookDelivery.objects.get(pk=response.json()["id"])
    assert again.pk != original.pk and again.event_id == original.event_id and again.payload == original.payload
    assert again.redelivery_of_id == original.pk and again.requested_by == people.admin
    assert sent[-1] == (again.pk, 0)
    assert AuditEvent.objects.filter(action="webhook.redelivered", object_id=str(hook.pk)).exists()
    other_hook, _ = _hook(people, name="other")
    assert client.post(f"/api/v1/webhooks/{other_hook.pk}/deliveries/{original.pk}/redeliver/").status_code == 404


# --- the Celery side ----------------------------------------------------------------------


def test_the_tasks_are_named_late_acked_and_the_sweep_is_scheduled():
    from config.celery_app import app
    from workers.tasks import webhooks as tasks

    assert tasks.deliver.name == "slipway.webhooks.deliver" and tasks.sweep.name == "slipway.webhooks.sweep"
    assert tasks.deliver.acks_late and tasks.deliver.reject_on_worker_lost and tasks.deliver.time_limit
    app.finalize(auto=True)
    schedule = {entry["task"]: entry for entry in app.conf.beat_schedule.values()}
    assert schedule["slipway.webhooks.sweep"]["options"]["queue"] == "default"
    assert "workers.tasks.webhooks" in app.conf.include


@pytest.mark.django_db
def test_a_message_carries_only_the_delivery_id_on_the_default_queue(monkeypatch, django_capture_on_commit_callbacks):
    from config.celery_app import app

    calls: list[tuple[str, dict]] = []
    monkeypatch.setattr(app, "send_task", lambda name, **kw: calls.append((name, kw)))
    with django_capture_on_commit_callbacks(execute=True):
        deliveries.enqueue_on_commit(17, countdown=2.5)
        deliveries.enqueue_on_commit(18)
        assert calls == []  # after commit only
    assert calls == [
        ("slipway.webhooks.deliver", {"args": [17], "queue": "default", "countdown": 2.5}),
        ("slipway.webhooks.deliver", {"args": [18], "queue": "default"}),
    ]


def test_a_secret_that_no_longer_decrypts_fails_the_delivery_with_a_sentence(people, sent):
    hook, _ = _hook(people)
    # Written under a key that is no longer configured (a plain string would be encrypted).
    Webhook.objects.filter(pk=hook.pk).update(secret=Secret(token=Fernet(Fernet.generate_key()).encrypt(b"x").decode()))
    delivery = services.ping(hook, people.admin)
    assert deliveries.deliver(delivery.pk) == "failed"
    assert "can't be decrypted" in WebhookDelivery.objects.get(pk=delivery.pk).error
