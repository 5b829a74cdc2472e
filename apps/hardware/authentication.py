"""`Authorization: Device sld_<id>_<secret>`: how a device's agent authenticates (apps/hardware/devices.py).

A device is not a user: its requests carry no user (`request.user` is anonymous) and reach
only the agent's endpoints, which ask for a device (`IsDevice`); a device credential is
refused everywhere else, as a user's token is refused on the agent's endpoints.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AnonymousUser
from rest_framework import authentication, exceptions, permissions
from rest_framework.request import Request

from apps.core.middleware import current_context
from apps.hardware import devices
from apps.hardware.models import Device


class DeviceAuthentication(authentication.BaseAuthentication):
    keyword = "Device"

    def authenticate(self, request: Request) -> tuple[Any, Device] | None:
        header = authentication.get_authorization_header(request).decode("latin-1")
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "device":
            return None
        try:
            device = devices.authenticate(value.strip())
        except devices.DeviceRefused as refused:
            raise exceptions.AuthenticationFailed(refused.message) from None
        if (ctx := current_context()) is not None:
            ctx.via = f"device:{device.key_id}"
        return AnonymousUser(), device

    def authenticate_header(self, request: Request) -> str:
        return self.keyword


class IsDevice(permissions.BasePermission):
    message = "Only a registered device may call this: send its credential as 'Authorization: Device <credential>'."

    def has_permission(self, request: Request, view: Any) -> bool:
        return isinstance(request.auth, Device)
