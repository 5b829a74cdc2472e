"""Celery entry points: thin, take ids only, claim the Job, call the engine, store results."""
