"""Slipway's Django configuration package (import name `config`)."""

from config.celery_app import app as celery_app

__all__ = ["celery_app"]
