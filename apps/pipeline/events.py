"""What the pipeline tells other apps, as Django signals: a version's run finished with
evidence (`version_ready`) or without (`version_failed`).

The pipeline doesn't know who listens. Approvals subscribes in its AppConfig.ready() (gates,
notifications, webhooks), so this app never imports approvals and approvals may import the
pipeline freely. Receivers run inside the transaction that records the outcome: whatever
they send out must wait for the commit (`transaction.on_commit`), and an exception they raise
rolls the outcome back with them, as a direct call would.
"""

from __future__ import annotations

from django.dispatch import Signal

# sender: the ModelVersion class; kwargs: version (the ModelVersion, now ready for review).
version_ready = Signal()
# sender: the ModelVersion class; kwargs: version, reason (a sentence, as the version shows it).
version_failed = Signal()
