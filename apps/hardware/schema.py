"""How the OpenAPI schema describes a device's credential (imported by HardwareConfig.ready)."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class DeviceCredentialScheme(OpenApiAuthenticationExtension):
    target_class = "apps.hardware.authentication.DeviceAuthentication"
    name = "deviceCredential"

    def get_security_definition(self, auto_schema: object) -> dict[str, str]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "'Device sld_<id>_<secret>': the credential a device's agent got when it registered "
            "(POST /api/v1/agent/register/ with an enrollment token a team admin made).",
        }
