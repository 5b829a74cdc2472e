"""Settings shared by every environment. Values come from the environment through `config.env`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import dj_database_url

from config.env import envbool, envchoice, envdirs, envint, envlist, envstr
from config.runtime_files import confine_to_data_dir, switch_off_telemetry

REPO_DIR = Path(__file__).resolve().parents[3]
# Everything the platform writes at run time (SQLite file, local artifacts, the embedded
# broker's queue folder) lives under one directory so a deployment mounts one volume.
DATA_DIR = Path(envstr("SLIPWAY_DATA_DIR", str(REPO_DIR / "var"))).resolve()
# So do the files the runtimes write on their own (caches, scratch, telemetry ids): HOME, the
# XDG folders and TMPDIR of this process and its children point under DATA_DIR, and the
# runtimes' telemetry is off (config/runtime_files.py). The test settings only switch telemetry off.
if envbool("SLIPWAY_CONFINE_FILES", True):
    confine_to_data_dir(DATA_DIR)
else:
    switch_off_telemetry()

SECRET_KEY = envstr("SLIPWAY_SECRET_KEY")
DEBUG = envbool("SLIPWAY_DEBUG", False)
ALLOWED_HOSTS = envlist("SLIPWAY_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = envlist("SLIPWAY_CSRF_TRUSTED_ORIGINS", [])
# Browser-facing security headers everywhere (prod adds HSTS and secure cookies).
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
# Addresses of reverse proxies whose X-Forwarded-For is believed (for the audit trail's IPs).
TRUSTED_PROXIES = frozenset(envlist("SLIPWAY_TRUSTED_PROXIES", []))

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "apps.core",
    "apps.accounts",
    "apps.registry",
    "apps.pipeline",
    "apps.hardware",
    "apps.audit",
    "apps.approvals",
    "apps.webhooks",
    "apps.deployments",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "apps.core.middleware.RequestIdMiddleware",
    "apps.core.middleware.RejectNulBytesMiddleware",
    "apps.core.middleware.SecurityHeadersMiddleware",
    # ETags on every GET, and 304 Not Modified for a matching If-None-Match.
    "django.middleware.http.ConditionalGetMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]


def database_from_env(default_url: str) -> dict[str, Any]:
    """Parse DATABASE_URL; SQLite gets WAL and a busy timeout so web and worker can share it."""
    url = envstr("DATABASE_URL", default_url)
    try:
        config: dict[str, Any] = dict(dj_database_url.parse(url, conn_max_age=60, conn_health_checks=True))
    except ValueError as exc:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(f"DATABASE_URL is not a database URL Slipway understands: {exc}") from exc
    if config["ENGINE"] == "django.db.backends.sqlite3":
        config["CONN_MAX_AGE"] = 0
        config["OPTIONS"] = {
            "timeout": 30,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    return config


DATABASES = {"default": database_from_env(f"sqlite:///{DATA_DIR / 'slipway.sqlite3'}")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = REPO_DIR / "staticfiles"

# --- browser app ------------------------------------------------------------------------
# The Vite build of frontend/ (`make frontend`) is collected under static/app/; apps.web
# serves its index.html for /app/ and every route below it. Listed only once built, so a
# checkout without Node.js still passes Django's checks (the app page then says how to build).
FRONTEND_DIST = REPO_DIR / "frontend" / "dist"
STATICFILES_DIRS = [("app", FRONTEND_DIST)] if FRONTEND_DIST.is_dir() else []
# Vite puts a content hash in every asset's name: browsers may keep those for good.
WHITENOISE_IMMUTABLE_FILE_TEST = r"/app/assets/.+-[A-Za-z0-9_-]{8,}\.(?:js|css|svg|woff2?)$"
# The app reads the CSRF cookie to send it back in X-CSRFToken (so it is not HttpOnly);
# the session cookie stays HttpOnly. Lax: links from review emails arrive signed in.
CSRF_COOKIE_HTTPONLY = False
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
# Sign-in attempts per client address (POST /api/v1/session/).
LOGIN_RATE_LIMIT = envstr("SLIPWAY_LOGIN_RATE_LIMIT", "10/min")

# --- artifact storage -------------------------------------------------------------------
STORAGE_BACKEND = envchoice("SLIPWAY_STORAGE", "local", ("local", "s3"))
ARTIFACT_ROOT = DATA_DIR / "artifacts"
if STORAGE_BACKEND == "s3":
    _artifact_storage: dict = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": envstr("SLIPWAY_S3_BUCKET"),
            "endpoint_url": envstr("SLIPWAY_S3_ENDPOINT_URL", "") or None,
            "access_key": envstr("AWS_ACCESS_KEY_ID", "") or None,
            "secret_key": envstr("AWS_SECRET_ACCESS_KEY", "") or None,
            "file_overwrite": True,  # keys are content hashes: same key, same bytes
            "default_acl": None,
        },
    }
else:
    _artifact_storage = {
        "BACKEND": "apps.registry.storage.AtomicFileSystemStorage",
        "OPTIONS": {"location": str(ARTIFACT_ROOT)},
    }
STORAGES = {
    "default": _artifact_storage,
    "artifacts": _artifact_storage,
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# --- uploads ----------------------------------------------------------------------------
# Every file part goes straight to a temporary file on disk in 1 MiB chunks, hashed on the
# way, so an upload of any size costs the web process a constant amount of memory.
FILE_UPLOAD_HANDLERS = ["apps.registry.uploads.HashingUploadHandler"]
FILE_UPLOAD_TEMP_DIR = str(DATA_DIR / "tmp" / "uploads")
# Hardware profiles a version is built for when the upload names none.
DEFAULT_PROFILES = envlist("SLIPWAY_DEFAULT_PROFILES", ["x86-cpu"])
MAX_UPLOAD_BYTES = envint("SLIPWAY_MAX_UPLOAD_BYTES", 8 * 2**30, minimum=1)
DATA_UPLOAD_MAX_MEMORY_SIZE = 2 * 2**20  # non-file form fields only

# --- REST API ---------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "apps.accounts.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": [
        "rest_framework.permissions.IsAuthenticated",
        "apps.accounts.permissions.TokenScopePermission",
    ],
    # DRF's three parsers, with JSON nesting bounded (a 100,000-deep body is a 400, not a 500).
    "DEFAULT_PARSER_CLASSES": [
        "apps.core.api.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_PAGINATION_CLASS": "apps.core.api.pagination.DefaultPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "apps.core.api.errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_THROTTLE_CLASSES": ["apps.core.api.throttling.PerTokenRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {
        "api": envstr("SLIPWAY_API_RATE_LIMIT", "1200/min"),
        "upload": envstr("SLIPWAY_UPLOAD_RATE_LIMIT", "300/hour"),
    },
    "DEFAULT_FILTER_BACKENDS": ["rest_framework.filters.OrderingFilter"],
    "ORDERING_PARAM": "ordering",
    # ?format= is the audit export's own parameter; responses are JSON (Accept picks nothing else).
    "URL_FORMAT_OVERRIDE": None,
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Slipway API",
    "DESCRIPTION": (
        "From a trained model to a production inference server. Authenticate with a browser session "
        "or `Authorization: Bearer slw_...` API tokens. Errors always have the body {code, message, fields}."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "apps.core.api.schema.add_error_responses",
        "apps.core.api.schema.add_report_components",
    ],
    "ENUM_NAME_OVERRIDES": {
        "VersionStatusEnum": "apps.registry.models.VersionStatus",
        "JobStatusEnum": "apps.pipeline.models.JobStatus",
        "RunStatusEnum": "apps.pipeline.models.RunStatus",
        "JobKindEnum": "apps.pipeline.models.JobKind",
        "PolicyKindEnum": "apps.approvals.models.PolicyKind",
        "DecisionKindEnum": "apps.approvals.models.DecisionKind",
        "RoleEnum": "apps.accounts.models.Role",
    },
}

# Rate-limit counters (and other short-lived shared state): Redis in production so every
# web process counts together; process memory in the embedded default.
CACHE_URL = envstr("SLIPWAY_CACHE_URL", "")
if CACHE_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": CACHE_URL,
            # a Redis host that drops packets must not hang requests: give up within a second
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# How long a create request's Idempotency-Key is remembered.
IDEMPOTENCY_TTL_HOURS = envint("SLIPWAY_IDEMPOTENCY_TTL_HOURS", 24, minimum=1)

# --- background work --------------------------------------------------------------------
# Without CELERY_BROKER_URL the embedded default uses kombu's filesystem transport: a real
# worker process, no server to run. Production sets redis://.
CELERY_BROKER_URL = envstr("CELERY_BROKER_URL", "filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = DATA_DIR / "broker"
    for _folder in ("queue", "processed", "control", "quarantine"):
        (_broker_dir / _folder).mkdir(parents=True, exist_ok=True)
    # kombu's transport, except that a message file it can't read (a full disk leaves them
    # empty) is set aside in the quarantine folder instead of stopping the worker.
    CELERY_BROKER_TRANSPORT = "config.broker:Transport"
    CELERY_BROKER_TRANSPORT_OPTIONS: dict = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "quarantine_folder": str(_broker_dir / "quarantine"),
        "store_processed": False,
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": 6 * 3600,
        # ten priority levels per queue, the highest (0) served first: later steps of started
        # pipelines go ahead of new uploads' first steps (apps.pipeline.services.step_priority)
        "priority_steps": list(range(10)),
        "sep": ":",
        "queue_order_strategy": "priority",
    }
CELERY_BEAT_SCHEDULE_FILENAME = str(DATA_DIR / "celerybeat-schedule")

# How long a running job may go without a heartbeat before the reconciler takes it back,
# how long a queued job may wait before its message is presumed lost, and how many times
# a job is tried before it fails for good.
JOB_HEARTBEAT_SECONDS = envint("SLIPWAY_JOB_HEARTBEAT_SECONDS", 10, minimum=1)
JOB_STALE_AFTER_SECONDS = envint("SLIPWAY_JOB_STALE_AFTER_SECONDS", 120, minimum=5)
JOB_REQUEUE_AFTER_SECONDS = envint("SLIPWAY_JOB_REQUEUE_AFTER_SECONDS", 300, minimum=5)
JOB_MAX_ATTEMPTS = envint("SLIPWAY_JOB_MAX_ATTEMPTS", 3, minimum=1)
# A worker-wide cap on the time one benchmark point may take (0: the profile's or upload's own).
BENCHMARK_MAX_SECONDS_PER_POINT = float(os.environ.get("SLIPWAY_BENCHMARK_MAX_SECONDS_PER_POINT", "0") or 0)
# A worker-wide cap on the fresh processes (trials) that measure each variant (0: the profile's
# or upload's own, 3 by default). Each trial is a process start; a small CI worker may lower it.
BENCHMARK_MAX_TRIALS = envint("SLIPWAY_BENCHMARK_MAX_TRIALS", 0, minimum=0)
WORKER_HEARTBEAT_SECONDS = envint("SLIPWAY_WORKER_HEARTBEAT_SECONDS", 30, minimum=1)
WORKER_STALE_AFTER_SECONDS = envint("SLIPWAY_WORKER_STALE_AFTER_SECONDS", 120, minimum=5)
# Device agents' long polls (ADR 0016) each hold a web thread while they wait. At most this many
# wait at once in one web process (a quarter of its WEB_THREADS by default); the others are
# answered at once with Retry-After, so polling devices never take the threads users need.
LEASE_WAITERS = envint("SLIPWAY_LEASE_WAITERS", max(1, envint("WEB_THREADS", 8, minimum=1) // 4), minimum=0)
RECONCILE_INTERVAL_SECONDS = envint("SLIPWAY_RECONCILE_INTERVAL_SECONDS", 60, minimum=1)

# Deployments: tries of a push before it fails for good (transient errors back off from the
# base delay, doubling), and how often serving targets' health is checked.
DEPLOY_MAX_ATTEMPTS = envint("SLIPWAY_DEPLOY_MAX_ATTEMPTS", 5, minimum=1)
DEPLOY_RETRY_BASE_SECONDS = envint("SLIPWAY_DEPLOY_RETRY_BASE_SECONDS", 15, minimum=1)
TARGET_HEALTH_INTERVAL_SECONDS = envint("SLIPWAY_TARGET_HEALTH_INTERVAL_SECONDS", 60, minimum=5)
# Folders under which serving targets' local model repositories may be (comma-separated).
# Slipway writes and removes model entries there; system folders and its own code are refused
# whatever is listed (workers.engine.targets.base.check_repository_folder).
TARGET_ROOTS = envdirs("SLIPWAY_TARGET_ROOTS", [DATA_DIR / "model-repositories"])
for _root in TARGET_ROOTS:
    if (_root == REPO_DIR or _root in REPO_DIR.parents or REPO_DIR in _root.parents) and DATA_DIR not in _root.parents:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(
            f"SLIPWAY_TARGET_ROOTS lists {_root}, which is, holds or lies inside Slipway's code ({REPO_DIR}) "
            f"outside its data folder ({DATA_DIR}); list folders of their own for model repositories."
        )

# Limits for the sandboxed subprocess that opens untrusted model files.
SANDBOX_MEMORY_BYTES = envint("SLIPWAY_SANDBOX_MEMORY_BYTES", 8 * 2**30, minimum=64 * 2**20)
SANDBOX_TIMEOUT_SECONDS = envint("SLIPWAY_SANDBOX_TIMEOUT_SECONDS", 1800, minimum=1)
WORK_DIR = DATA_DIR / "work"

# --- email (review requests to approvers) ------------------------------------------------
# The console backend prints mails to the worker's log; production sets smtp and its server.
EMAIL_BACKEND = envstr("SLIPWAY_EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
EMAIL_FILE_PATH = envstr("SLIPWAY_EMAIL_FILE_PATH", str(DATA_DIR / "mail"))
EMAIL_HOST = envstr("SLIPWAY_EMAIL_HOST", "localhost")
EMAIL_PORT = envint("SLIPWAY_EMAIL_PORT", 25, minimum=1)
EMAIL_HOST_USER = envstr("SLIPWAY_EMAIL_USER", "")
EMAIL_HOST_PASSWORD = envstr("SLIPWAY_EMAIL_PASSWORD", "")
EMAIL_USE_TLS = envbool("SLIPWAY_EMAIL_USE_TLS", False)
EMAIL_TIMEOUT = envint("SLIPWAY_EMAIL_TIMEOUT", 20, minimum=1)
DEFAULT_FROM_EMAIL = envstr("SLIPWAY_EMAIL_FROM", "Slipway <slipway@localhost>")
# Where people reach the app; links in emails point here.
PUBLIC_URL = envstr("SLIPWAY_PUBLIC_URL", "http://127.0.0.1:8000")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "apps.core.middleware.RequestIdLogFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["request_id"],
        },
    },
    "root": {"handlers": ["console"], "level": envstr("SLIPWAY_LOG_LEVEL", "INFO")},
}

# --- webhooks ---------------------------------------------------------------------------
# Secrets at rest (webhook signing secrets, ...) are Fernet-encrypted with the first of these
# comma-separated keys; all of them decrypt, for rotation. Unset: a key derived from
# SECRET_KEY (apps.core.crypto). Give it as SLIPWAY_ENCRYPTION_KEY_FILE to read it from a file.
ENCRYPTION_KEY = envstr("SLIPWAY_ENCRYPTION_KEY", "")
# Whether user-given URLs (webhooks, ...) may point to loopback/private/link-local addresses
# everywhere. Off: only a team admin's per-webhook `allow_private` permits it.
ALLOW_PRIVATE_OUTBOUND = envbool("SLIPWAY_ALLOW_PRIVATE_OUTBOUND", False)
WEBHOOK_CONNECT_TIMEOUT_SECONDS = envint("SLIPWAY_WEBHOOK_CONNECT_TIMEOUT_SECONDS", 5, minimum=1)
# Keep well under the delivery task's 2-minute time limit.
WEBHOOK_READ_TIMEOUT_SECONDS = envint("SLIPWAY_WEBHOOK_READ_TIMEOUT_SECONDS", 10, minimum=1)
# Attempts per delivery. Retry n waits between half and all of base * 2**(n-1), capped
# (random jitter): by default up to 1, 2, 4, 8, 16 minutes.
WEBHOOK_MAX_ATTEMPTS = envint("SLIPWAY_WEBHOOK_MAX_ATTEMPTS", 6, minimum=1)
WEBHOOK_BACKOFF_BASE_SECONDS = envint("SLIPWAY_WEBHOOK_BACKOFF_BASE_SECONDS", 60, minimum=0)
WEBHOOK_BACKOFF_MAX_SECONDS = envint("SLIPWAY_WEBHOOK_BACKOFF_MAX_SECONDS", 3600, minimum=1)
# A due delivery whose message was sent this long ago without being picked up is re-sent by
# the sweep (which runs every SLIPWAY_RECONCILE_INTERVAL_SECONDS).
WEBHOOK_SWEEP_AFTER_SECONDS = envint("SLIPWAY_WEBHOOK_SWEEP_AFTER_SECONDS", 300, minimum=5)
