"""Production: secrets must be given (and strong), HTTPS assumed behind a proxy, secure cookies.

`manage.py check --deploy` is clean with these settings (tests/apps/test_security.py runs it)."""

from config.env import envbool, envint, envsecret
from config.settings.base import *  # noqa: F403

DEBUG = False
# A short, placeholder or repetitive key is refused at start (ImproperlyConfigured), not warned about.
SECRET_KEY = envsecret("SLIPWAY_SECRET_KEY")
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = envbool("SLIPWAY_SSL_REDIRECT", True)
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SECURE_HSTS_SECONDS = envint("SLIPWAY_HSTS_SECONDS", 3600, minimum=0)
# Whether every subdomain is HTTPS-only too, and whether the domain may go on browsers' preload
# list, are the domain owner's decisions (both are hard to undo), so both are off unless asked
# for; Django's deploy check, which warns about each (W005, W021), is told that this is deliberate.
SECURE_HSTS_INCLUDE_SUBDOMAINS = envbool("SLIPWAY_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = envbool("SLIPWAY_HSTS_PRELOAD", False)
SILENCED_SYSTEM_CHECKS = [
    *([] if SECURE_HSTS_INCLUDE_SUBDOMAINS else ["security.W005"]),
    *([] if SECURE_HSTS_PRELOAD else ["security.W021"]),
]
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
