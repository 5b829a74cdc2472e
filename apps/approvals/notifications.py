"""Emails to the people a version waits for. Sent by a Celery task after the change commits,
so a slow or failing mail server never holds up (or rolls back) the pipeline."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.mail import send_mail

from apps.accounts.models import Membership, Role
from apps.core.messages import Message, send_on_commit
from apps.registry.models import ModelVersion, VersionStatus

logger = logging.getLogger(__name__)

NOTIFY_TASK = "slipway.notifications.version_ready"
REVIEWER_ROLES = (Role.APPROVER, Role.ADMIN)


def approvers_on_commit(version: ModelVersion) -> None:
    """Queue the review e-mail once the version's outcome commits; a broker outage must not fail
    the step that finished, and nothing re-sends a lost e-mail (the version page shows the review)."""
    send_on_commit(Message(NOTIFY_TASK, version.pk, "default"), if_lost="the review e-mail is not sent")


def reviewers(version: ModelVersion) -> list[Any]:
    """Approvers and admins of the version's team with an email address; under the
    four-eyes rule, not the uploader, who can't approve it anyway."""
    members = Membership.objects.filter(team=version.model.team, role__in=REVIEWER_ROLES, user__is_active=True)
    users = [m.user for m in members.select_related("user").order_by("user__username") if m.user.email]
    if version.four_eyes:
        users = [u for u in users if u.pk != version.created_by_id]
    return users


def send_review_request(version: ModelVersion) -> int:
    """Email the reviewers that the version waits for them; returns how many were sent."""
    if version.status != VersionStatus.READY:
        return 0  # reviewed (or re-run) before the email went out
    recipients = [u.email for u in reviewers(version)]
    if not recipients:
        return 0
    model, team = version.model, version.model.team
    link = f"{settings.PUBLIC_URL.rstrip('/')}/app/versions/{version.pk}"
    subject = f"[Slipway] {team.slug}/{model.slug} v{version.number} is ready for review"
    body = (
        f"Version {version.number} of {model.name} ({team.name}), uploaded by "
        f"{version.created_by.get_username()}, finished its pipeline and waits for review.\n\n"
        f"Evidence, gates and the recommendation: {link}\n\n"
        "You get this email because you are an approver or admin of the team."
    )
    return send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, recipients, fail_silently=False)
