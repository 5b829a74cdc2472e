"""The Celery application. Named celery_app.py so it never shadows the `celery` package."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.dev")

app = Celery(
    "slipway",
    include=[
        "workers.tasks.pipeline",
        "workers.tasks.maintenance",
        "workers.tasks.worker_registry",
        "workers.tasks.notifications",
        "workers.tasks.webhooks",
        "workers.tasks.deployments",
        "workers.tasks.trials",
    ],
)
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.update(
    task_serializer="json",
    accept_content=["json"],
    result_serializer="json",
    task_ignore_result=True,  # PostgreSQL holds every job's state; no result backend
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_default_queue="default",
    task_create_missing_queues=True,
    broker_connection_retry_on_startup=True,
    # A web request that enqueues must not hang on a dead broker: give up fast and let the
    # reconciler re-send (the job row is already committed).
    task_publish_retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.5, "interval_max": 1},
    broker_connection_timeout=3,
    worker_hijack_root_logger=False,
    timezone="UTC",
)


@app.on_after_finalize.connect
def _schedule_periodic(sender: Celery, **_: object) -> None:
    from django.conf import settings

    schedule = [
        (settings.RECONCILE_INTERVAL_SECONDS, "slipway.jobs.reconcile", "reconcile stuck jobs"),
        (settings.RECONCILE_INTERVAL_SECONDS, "slipway.webhooks.sweep", "re-send lost webhook deliveries"),
        (settings.RECONCILE_INTERVAL_SECONDS, "slipway.deployments.reconcile", "take back stuck deployments"),
        (settings.TARGET_HEALTH_INTERVAL_SECONDS, "slipway.deployments.check_targets", "check serving targets' health"),
        (3600, "slipway.core.expire_idempotency_keys", "forget expired idempotency keys"),
    ]
    for seconds, task, name in schedule:
        sender.add_periodic_task(float(seconds), sender.signature(task, queue="default"), name=name)
