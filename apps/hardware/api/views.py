"""Hardware profiles (shared reference data every signed-in user can list), the worker fleet, and
the devices outside the cluster: enrolling, listing and revoking them, and the agent's own calls."""

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import generics, status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.api.scoping import TeamScoped
from apps.core.api.schema import query
from apps.core.idempotency import SecretShownOnce, idempotent
from apps.hardware import devices
from apps.hardware.api.serializers import (
    BeatInput,
    DeviceSerializer,
    EnrollmentInput,
    EnrollmentSerializer,
    HardwareProfileSerializer,
    RegisteredSerializer,
    RegisterInput,
    WorkerSerializer,
)
from apps.hardware.authentication import DeviceAuthentication, IsDevice
from apps.hardware.models import Device, HardwareProfile, Worker
from apps.registry.services import resolve_team_for_new_model


class HardwareProfileList(generics.ListAPIView):
    """The hardware profiles variants can be built and benchmarked for."""

    serializer_class = HardwareProfileSerializer
    pagination_class = None

    def get_queryset(self) -> QuerySet[HardwareProfile]:
        return HardwareProfile.objects.order_by("slug")


class WorkerList(generics.ListAPIView):
    """Workers with their hardware, installed runtimes and importers, queues and heartbeat.

    `status` is online, stale (no heartbeat for SLIPWAY_WORKER_STALE_AFTER_SECONDS) or stopped.
    """

    serializer_class = WorkerSerializer
    pagination_class = None

    def get_queryset(self) -> QuerySet[Worker]:
        return Worker.objects.order_by("stopped_at", "-last_heartbeat_at")


# ---- devices: the fleet outside the cluster (apps/hardware/devices.py) --------------------


def _device_rows() -> QuerySet[Device]:
    return Device.objects.select_related("team").prefetch_related("profiles")


def _register_command(server: str, token: str) -> str:
    """The shell commands that register a device with `token`, run on the device from a Slipway
    checkout: its own hardware probe, then the registration, which answers with its credential."""
    # JSON in single quotes, left open for the device's host name and its probe file.
    body = f'{{"token": "{token}", "name": "\'$(hostname)\'", "hardware": \'"$(cat probe.json)"\'}}'
    return (
        "python3 -m workers.engine.hardware > probe.json && "
        f"curl -sS -X POST {server}/api/v1/agent/register/ -H 'Content-Type: application/json' -d '{body}'"
    )


class DeviceEnrollmentCreate(APIView):
    """Make a one-time enrollment token for one device (team admins): the device's agent
    registers with it and may then serve the profiles named here that its hardware meets."""

    token_scopes = {"POST": "admin"}

    @extend_schema(request=EnrollmentInput, responses={201: EnrollmentSerializer})
    @idempotent
    def post(self, request: Request) -> Response:
        form = EnrollmentInput(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        team = resolve_team_for_new_model(request.user, data.get("team"))
        enrollment, token = devices.create_enrollment(team, request.user, data["profiles"], data["name"], data["hours"])
        server = request.build_absolute_uri("/").rstrip("/")
        body = EnrollmentSerializer(
            {
                "id": enrollment.pk,
                "team": team,
                "name": enrollment.name,
                "profiles": sorted(p.slug for p in enrollment.profiles.all()),
                "expires_at": enrollment.expires_at,
                "token": token,
                "connect": _register_command(server, token),
            }
        ).data
        return SecretShownOnce(
            body,
            status=status.HTTP_201_CREATED,
            replay_message=f"This request already made enrollment token {enrollment.pk} for team {team.slug}. "
            "The token was shown once, in that answer, and is not kept; make a new one if it was lost.",
        )


@extend_schema_view(get=extend_schema(parameters=[query("team", "Team slug")]))
class DeviceList(TeamScoped, generics.ListAPIView):
    """The devices of your teams: their hardware as they probe it, their runtimes, whether they are
    online, and each profile they were enrolled for with whether their hardware meets it."""

    serializer_class = DeviceSerializer
    ordering_fields = ["id", "name", "last_seen_at"]

    def rows(self) -> QuerySet[Device]:
        return _device_rows()


class DeviceRevoke(TeamScoped, APIView):
    """Revoke a device (team admins): its credential stops working at once."""

    token_scopes = {"POST": "admin"}

    def rows(self) -> QuerySet[Device]:
        return _device_rows()

    @extend_schema(request=None, responses={200: DeviceSerializer})
    @idempotent
    def post(self, request: Request, pk: int) -> Response:
        device = devices.revoke(self.one(pk), request.user)
        return Response(DeviceSerializer(device).data)


class AgentRegister(APIView):
    """A device's agent registers with its enrollment token (no other credential): the answer
    holds the device credential, shown once."""

    authentication_classes: list[type] = []
    permission_classes = [AllowAny]

    @extend_schema(request=RegisterInput, responses={201: RegisteredSerializer})
    @idempotent
    def post(self, request: Request) -> Response:
        form = RegisterInput(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        device, credential = devices.register(
            data["token"], data["name"], data["hardware"], data.get("runtimes"), data["agent_version"]
        )
        device = _device_rows().get(pk=device.pk)
        return Response(
            RegisteredSerializer({"device": device, "credential": credential}).data, status=status.HTTP_201_CREATED
        )


class AgentBeat(APIView):
    """A device's heartbeat (device credential): it is alive, and what it reports of its hardware
    and runtimes replaces what it did. The answer says what it may serve."""

    authentication_classes = [DeviceAuthentication]
    permission_classes = [IsDevice]

    @extend_schema(request=BeatInput, responses={200: DeviceSerializer})
    @idempotent
    def post(self, request: Request) -> Response:
        form = BeatInput(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        assert isinstance(request.auth, Device)
        device = devices.beat(request.auth, data.get("hardware"), data.get("runtimes"), data.get("agent_version"))
        return Response(DeviceSerializer(_device_rows().get(pk=device.pk)).data)
