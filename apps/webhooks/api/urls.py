"""Webhook routes (/api/v1/webhooks/...)."""

from django.urls import path

from apps.webhooks.api import views

urlpatterns = [
    path("webhooks/", views.WebhookListCreate.as_view(), name="webhook-list"),
    path("webhooks/<int:pk>/", views.WebhookDetail.as_view(), name="webhook-detail"),
    path("webhooks/<int:pk>/rotate-secret/", views.RotateSecret.as_view(), name="webhook-rotate-secret"),
    path("webhooks/<int:pk>/ping/", views.Ping.as_view(), name="webhook-ping"),
    path("webhooks/<int:pk>/deliveries/", views.DeliveryList.as_view(), name="webhook-deliveries"),
    path(
        "webhooks/<int:pk>/deliveries/<int:delivery_id>/redeliver/",
        views.Redeliver.as_view(),
        name="webhook-redeliver",
    ),
]
