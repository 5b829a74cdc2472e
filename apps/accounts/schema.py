"""How the OpenAPI schema describes Slipway's API tokens (imported by AccountsConfig.ready)."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class ApiTokenScheme(OpenApiAuthenticationExtension):
    target_class = "apps.accounts.authentication.ApiTokenAuthentication"
    name = "apiToken"

    def get_security_definition(self, auto_schema: object) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "slw_<id>_<secret>",
            "description": "An API token created in Slipway (POST /api/v1/tokens/), scoped to read, upload, "
            "approve, deploy or admin.",
        }
