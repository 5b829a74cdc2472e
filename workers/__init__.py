"""Background work for Slipway: Celery tasks and the framework-free model engine."""
