"""Hardware profiles (shared reference data every signed-in user can list), the worker fleet, and
the devices outside the cluster: enrolling, listing and revoking them, and the agent's own calls."""

import shlex
from typing import Any

from django.db.models import QuerySet
from django.http import FileResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import generics, serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.api.scoping import TeamScoped
from apps.accounts.permissions import Action
from apps.accounts.scoping import resolve_team
from apps.core.api.schema import query
from apps.core.errors import DomainError
from apps.core.idempotency import SecretShownOnce, idempotent
from apps.hardware import devices
from apps.hardware.api.serializers import (
    BeatInput,
    DeviceSerializer,
    EnrollmentInput,
    EnrollmentSerializer,
    HardwareProfileSerializer,
    LeaseInput,
    LeaseProgressInput,
    LeaseRecordedSerializer,
    LeaseResultInput,
    LeaseSerializer,
    RegisteredSerializer,
    RegisterInput,
    RotatedSerializer,
    WorkerSerializer,
)
from apps.hardware.authentication import DeviceAuthentication, IsDevice
from apps.hardware.models import Device, HardwareProfile, Worker
from apps.pipeline import leases
from apps.registry.storage import artifact_storage


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


def _register_command(server: str, token: str, name: str = "") -> str:
    """The shell commands that connect a device with `token`, run on the device where the agent
    is installed (README, "Connect a device"): register (its own probe goes with it; the
    credential is kept at mode 0600), then lease and run work until stopped."""
    named = f" --name {shlex.quote(name)}" if name else ""
    return (
        f"python3 -m slipway_agent register --server {shlex.quote(server)} --token {token}{named} && "
        "python3 -m slipway_agent run"
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
        team = resolve_team(request.user, data.get("team"), Action.MANAGE)
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
                "connect": _register_command(server, token, enrollment.name),
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


def _device(request: Request) -> Device:
    assert isinstance(request.auth, Device)
    return request.auth


class AgentView(APIView):
    """An agent's call with its device credential: reading the body also counts as the device's
    sign of life."""

    authentication_classes = [DeviceAuthentication]
    permission_classes = [IsDevice]

    def read(self, request: Request, form_class: type[serializers.Serializer]) -> tuple[Device, dict[str, Any]]:
        form = form_class(data=request.data)
        form.is_valid(raise_exception=True)
        return devices.beat(_device(request)), dict(form.validated_data)


class AgentLease(AgentView):
    """A device's agent asks for work (device credential): the oldest ready step of its team, for
    a profile its probe meets, as a work order; waits up to `wait` seconds (a long poll), then
    answers 204 when there is none. When this web process already has its share of waiting
    agents (SLIPWAY_LEASE_WAITERS), the 204 comes at once with Retry-After. The lease is the
    order's job and attempt."""

    @extend_schema(request=LeaseInput, responses={200: LeaseSerializer, 204: None})
    @idempotent
    def post(self, request: Request) -> Response:
        device, data = self.read(request, LeaseInput)
        leased = leases.lease(device, data.get("kinds") or [], data["wait"])
        if leased.order is None:
            answer = Response(status=status.HTTP_204_NO_CONTENT)
            if leased.retry_after:
                # Every waiting slot of this web process is taken: ask again after this long.
                answer["Retry-After"] = str(max(1, round(leased.retry_after)))
            return answer
        return Response(LeaseSerializer({"order": leases.order_dict(leased.order)}).data)


class AgentLeaseProgress(AgentView):
    """The agent's progress on a lease, which is also its heartbeat; 409 once the device no
    longer holds the job at that attempt (then it drops the job)."""

    @extend_schema(request=LeaseProgressInput, responses={200: LeaseRecordedSerializer})
    @idempotent
    def post(self, request: Request, job: int) -> Response:
        device, data = self.read(request, LeaseProgressInput)
        leases.progress(device, job, data["attempt"], data["progress"], data["message"])
        return Response({"job": job, "attempt": data["attempt"], "status": "running"})


class AgentLeaseResult(AgentView):
    """The agent posts what its lease produced: the step's report (read by type) or why it could
    not run. Bound to the job and attempt: a late or replayed post is refused (409); the same
    post repeated after its answer was lost is answered as recorded."""

    @extend_schema(request=LeaseResultInput, responses={200: LeaseRecordedSerializer})
    @idempotent
    def post(self, request: Request, job: int) -> Response:
        device, data = self.read(request, LeaseResultInput)
        if "result" in data:
            done = leases.complete(device, job, data["attempt"], data["result"], data["log"])
        else:
            error = data["error"]
            done = leases.fail(device, job, data["attempt"], error.get("code", ""), error["message"], data["log"])
        done.refresh_from_db(fields=["status"])
        return Response({"job": job, "attempt": data["attempt"], "status": done.status})


class AgentLeaseArtifact(AgentView):
    """Download an artifact the lease reads (device credential, the lease's job and attempt), as
    bytes; the agent checks them against the order's sha256, also sent as X-Content-SHA256."""

    @extend_schema(
        parameters=[query("attempt", "The lease's attempt.", int)],
        responses={(200, "application/octet-stream"): OpenApiTypes.BINARY},
    )
    def get(self, request: Request, job: int, artifact: int) -> FileResponse:
        try:
            attempt = int(request.query_params.get("attempt", ""))
        except ValueError:
            raise DomainError("invalid_attempt", "Say which attempt of the lease this is: ?attempt=N.") from None
        found = leases.artifact(_device(request), job, attempt, artifact)
        response = FileResponse(
            artifact_storage().open(found.storage_key, "rb"), content_type="application/octet-stream"
        )
        response["Content-Length"] = str(found.size)
        response["X-Content-SHA256"] = found.sha256
        return response


class AgentRotate(AgentView):
    """The agent replaces its device credential: the answer holds the new one, shown once."""

    @extend_schema(request=None, responses={201: RotatedSerializer})
    @idempotent
    def post(self, request: Request) -> Response:
        device, _ = self.read(request, serializers.Serializer)  # no fields; a malformed body is still a 400
        credential = devices.rotate(device)
        return Response({"credential": credential}, status=status.HTTP_201_CREATED)
