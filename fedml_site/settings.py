"""FedML settings: every value comes from the environment (django-environ).

A bad value stops start-up with an ImproperlyConfigured error naming the variable.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from urllib.parse import urlparse

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env") if (BASE_DIR / ".env").exists() else None

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
_HOST_PORT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):(\d{1,5})$", re.ASCII)


def _bool(name: str, default: bool) -> bool:
    raw = env.str(name, default=str(default)).strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (true/false/1/0), got {raw!r}")


def _int(name: str, default: int, *, minimum: int = 0, maximum: int | None = None) -> int:
    raw = env.str(name, default=str(default)).strip()
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum or (maximum is not None and value > maximum):
        raise ImproperlyConfigured(f"{name} must be between {minimum} and {maximum}, got {value}")
    return value


def _float(name: str, default: float, *, minimum: float = 0.0) -> float:
    raw = env.str(name, default=str(default)).strip()
    try:
        value = float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, got {raw!r}") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name} must be >= {minimum}, got {value}")
    return value


def _address(name: str, default: str) -> str:
    raw = env.str(name, default=default).strip()
    match = _HOST_PORT.match(raw)
    if not match or not 0 < int(match.group(2)) < 65536:
        raise ImproperlyConfigured(f"{name} must be host:port, got {raw!r}")
    return raw


def _path(name: str, default: Path) -> Path:
    raw = env.str(name, default=str(default)).strip()
    if not raw:
        raise ImproperlyConfigured(f"{name} must be a path, got an empty value")
    return Path(raw).expanduser().resolve()


def _port_range(name: str, default: str) -> tuple[int, int]:
    raw = env.str(name, default=default).strip()
    match = re.fullmatch(r"(\d{1,5})-(\d{1,5})", raw)
    if not match or not 0 < int(match.group(1)) <= int(match.group(2)) < 65536:
        raise ImproperlyConfigured(f"{name} must be a port range like 9200-9299, got {raw!r}")
    return int(match.group(1)), int(match.group(2))


def _origins(name: str) -> list[str]:
    origins = [o.strip() for o in env.str(name, default="").split(",") if o.strip()]
    for origin in origins:
        parsed = urlparse(origin)
        if parsed.scheme not in {"http", "https"} or not parsed.netloc or parsed.path not in {"", "/"}:
            raise ImproperlyConfigured(f"{name} must list origins like https://host:port, got {origin!r}")
    return [o.rstrip("/") for o in origins]


DEBUG = _bool("DJANGO_DEBUG", False)
_DEV_SECRET_KEY = "fedml-insecure-development-key-change-me-in-production"
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default=_DEV_SECRET_KEY)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

# FEDML_PRODUCTION=true turns on everything `manage.py check --deploy` asks for. The embedded
# default serves plain HTTP on localhost, where secure-only cookies would make signing in impossible.
PRODUCTION = _bool("FEDML_PRODUCTION", False)
if PRODUCTION and DEBUG:
    raise ImproperlyConfigured("DJANGO_DEBUG must be false when FEDML_PRODUCTION is true")
if PRODUCTION and (SECRET_KEY == _DEV_SECRET_KEY or len(SECRET_KEY) < 50 or len(set(SECRET_KEY)) < 5):
    raise ImproperlyConfigured("DJANGO_SECRET_KEY must be a random value of at least 50 characters in production")
SECURE_SSL_REDIRECT = _bool("DJANGO_SECURE_SSL_REDIRECT", PRODUCTION)
SESSION_COOKIE_SECURE = _bool("DJANGO_SECURE_COOKIES", PRODUCTION)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SESSION_COOKIE_HTTPONLY = True
SECURE_HSTS_SECONDS = _int("DJANGO_SECURE_HSTS_SECONDS", 31_536_000 if PRODUCTION else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = _bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", PRODUCTION)
SECURE_HSTS_PRELOAD = _bool("DJANGO_SECURE_HSTS_PRELOAD", PRODUCTION)
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
# Behind a TLS-terminating proxy that sets X-Forwarded-Proto (and strips it from clients):
# DJANGO_BEHIND_TLS_PROXY=true. Never set it when clients can reach Daphne directly.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if _bool("DJANGO_BEHIND_TLS_PROXY", False) else None

# --- FedML ------------------------------------------------------------------
DATA_DIR = _path("FEDML_DATA_DIR", BASE_DIR / "var")
LOG_DIR = _path("FEDML_LOG_DIR", BASE_DIR / "logs")
FLWR_HOME_ROOT = _path("FEDML_FLWR_HOME", DATA_DIR / "flwr_home")
FLOWER_APP_DIR = _path("FEDML_FLOWER_APP_DIR", BASE_DIR / "flower_app")
CERTIFICATES_DIR = _path("FEDML_CERTIFICATES_DIR", DATA_DIR / "certificates")
ARTIFACTS_DIR = _path("FEDML_ARTIFACTS_DIR", DATA_DIR / "artifacts")
# Where flower-superlink, flower-supernode and flwr live (default: beside this Python).
FLOWER_BIN_DIR = _path("FEDML_FLOWER_BIN_DIR", Path(sys.executable).parent)
# Flower's SuperLink defaults to 127.0.0.1:8000, which is Daphne's usual port.
SUPERLINK_ADDRESS = _address("FEDML_SUPERLINK_ADDRESS", "127.0.0.1:9191")
SUPERNODE_BASE_PORT = _int("FEDML_SUPERNODE_BASE_PORT", 9401, minimum=1, maximum=65000)
# How long a start request waits for the supervisor to spawn the process.
START_WAIT_SECONDS = _float("FEDML_START_WAIT_SECONDS", 10.0, minimum=0.5)
# A supervisor whose heartbeat is older than this is considered dead.
SUPERVISOR_STALE_SECONDS = _float("FEDML_SUPERVISOR_STALE_SECONDS", 6.0, minimum=1.0)
# SIGTERM, then SIGKILL after this many seconds.
STOP_TIMEOUT_SECONDS = _float("FEDML_STOP_TIMEOUT_SECONDS", 15.0, minimum=0.5)
# API request bodies are small JSON objects; anything bigger is refused (400, field "body").
FEDML_MAX_BODY_BYTES = _int("FEDML_MAX_BODY_BYTES", 64 * 1024, minimum=1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = FEDML_MAX_BODY_BYTES
# Newest lines kept in the log_stream column (the full log is the log_lines table).
LOG_TAIL_LINES = _int("FEDML_LOG_TAIL_LINES", 200, minimum=1)

PROJECT_SLUG = env.str("PROJECT_SLUG", default="fed-project")
if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,99}", PROJECT_SLUG):
    raise ImproperlyConfigured(f"PROJECT_SLUG must be a lowercase slug, got {PROJECT_SLUG!r}")
PROJECT_NAME = env.str("PROJECT_NAME", default="Federated Project")
COORDINATOR_NODE_ID = env.str("COORDINATOR_NODE_ID", default="coordinator")
COORDINATOR_NODE_NAME = env.str("COORDINATOR_NODE_NAME", default="Coordinator")
PARTICIPANT_NODE_ID = env.str("PARTICIPANT_NODE_ID", default="participant")
PARTICIPANT_NODE_NAME = env.str("PARTICIPANT_NODE_NAME", default="Participant")
for _name, _value in (("COORDINATOR_NODE_ID", COORDINATOR_NODE_ID), ("PARTICIPANT_NODE_ID", PARTICIPANT_NODE_ID)):
    if not _value.strip() or len(_value) > 200:
        raise ImproperlyConfigured(f"{_name} must be a non-empty identifier of at most 200 characters")
SUPABASE_URL = env.str("SUPABASE_URL", default="")
# Supabase Auth access tokens are verified locally: HS256 with the project's JWT secret, or its JWKS.
SUPABASE_JWT_SECRET = env.str("SUPABASE_JWT_SECRET", default="")
SUPABASE_JWKS_URL = env.str("SUPABASE_JWKS_URL", default="")
SUPABASE_JWT_AUDIENCE = env.str("SUPABASE_JWT_AUDIENCE", default="authenticated")
if SUPABASE_JWKS_URL and urlparse(SUPABASE_JWKS_URL).scheme != "https":
    raise ImproperlyConfigured(f"SUPABASE_JWKS_URL must be an https URL, got {SUPABASE_JWKS_URL!r}")
SUPABASE_KEY = env.str("SUPABASE_KEY", default="")
if SUPABASE_URL and urlparse(SUPABASE_URL).scheme not in {"http", "https"}:
    raise ImproperlyConfigured(f"SUPABASE_URL must be an http(s) URL, got {SUPABASE_URL!r}")
# A verified token for a subject FedML has not seen creates that person (and a Django user).
SUPABASE_AUTO_PROVISION = _bool("SUPABASE_AUTO_PROVISION", True)
# The dashboard's Supabase session cookie (`sb-<ref>-auth-token`) is accepted when FedML is reached
# on the dashboard's origin; unsafe methods it authenticates need an Origin listed here.
DASHBOARD_ORIGINS = _origins("FEDML_DASHBOARD_ORIGINS")
# FedML can serve the part of Supabase Auth's HTTP API the dashboard signs in with (/auth/v1/...)
# for its own users, issuing HS256 tokens with SUPABASE_JWT_SECRET. Off unless enabled.
EMBEDDED_AUTH = _bool("FEDML_EMBEDDED_AUTH", False)
EMBEDDED_AUTH_TOKEN_SECONDS = _int("FEDML_EMBEDDED_AUTH_TOKEN_SECONDS", 3600, minimum=60, maximum=86400)
if EMBEDDED_AUTH and (len(SUPABASE_JWT_SECRET) < 32 or SUPABASE_JWKS_URL):
    raise ImproperlyConfigured(
        "FEDML_EMBEDDED_AUTH needs SUPABASE_JWT_SECRET (at least 32 characters) and no SUPABASE_JWKS_URL"
    )
# Who may create projects: any signed-in person (the dashboard's behaviour) or admins only.
PROJECT_CREATORS = env.str("FEDML_PROJECT_CREATORS", default="any").strip()
if PROJECT_CREATORS not in {"any", "admin"}:
    raise ImproperlyConfigured(f"FEDML_PROJECT_CREATORS must be 'any' or 'admin', got {PROJECT_CREATORS!r}")
# Which work a supervisor claims: every project (one host runs them all) or only the configured nodes.
SUPERVISOR_SCOPE = env.str("FEDML_SUPERVISOR_SCOPE", default="all").strip()
if SUPERVISOR_SCOPE not in {"all", "configured"}:
    raise ImproperlyConfigured(f"FEDML_SUPERVISOR_SCOPE must be 'all' or 'configured', got {SUPERVISOR_SCOPE!r}")
# Projects other than the default get SuperLink ports from this range (first free port).
SUPERLINK_PORT_RANGE = _port_range("FEDML_SUPERLINK_PORT_RANGE", "9200-9299")

# --- Django -----------------------------------------------------------------
INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "corsheaders",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # the Swagger UI's files, served locally (sites may have no internet)
    "channels",
    "core",
    "accounts",
    "orchestration",
    "participants",
    "portal",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "fedml_site.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
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
WSGI_APPLICATION = "fedml_site.wsgi.application"
ASGI_APPLICATION = "fedml_site.asgi.application"

try:
    _db = env.db_url("DATABASE_URL", default=f"sqlite:///{DATA_DIR / 'fedml.sqlite3'}")
except Exception as exc:  # django-environ raises several types for a bad URL
    raise ImproperlyConfigured(f"DATABASE_URL is not a valid database URL: {exc}") from None
if _db.get("ENGINE") not in {"django.db.backends.sqlite3", "django.db.backends.postgresql"}:
    raise ImproperlyConfigured(f"DATABASE_URL must be sqlite:// or postgres://, got engine {_db.get('ENGINE')!r}")
if _db["ENGINE"] == "django.db.backends.sqlite3":
    Path(_db["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    # The supervisor and the web server write the same file at once: WAL lets readers
    # run beside a writer, IMMEDIATE takes the write lock up front so the busy timeout
    # applies (a deferred upgrade fails at once with "database is locked").
    _db["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
    }
    # Tests spawn a supervisor and a server in other processes: they need a file.
    _db["TEST"] = {"NAME": str(DATA_DIR / "test-fedml.sqlite3")}
else:
    # Keep connections: websocket consumers and the supervisor query often, and a new
    # PostgreSQL connection per query costs milliseconds of latency and CPU.
    _db["CONN_MAX_AGE"] = _int("DATABASE_CONN_MAX_AGE", 60)
    _db["CONN_HEALTH_CHECKS"] = True
DATABASES = {"default": _db}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    if urlparse(REDIS_URL).scheme not in {"redis", "rediss", "unix"}:
        raise ImproperlyConfigured(f"REDIS_URL must be a redis:// or rediss:// URL, got {REDIS_URL!r}")
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [REDIS_URL]}}}
    # Shared by every worker: the sign-in rate limit counts failures across processes.
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    # Single-machine default. It cannot cross processes, so it is only ever a doorbell.
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

CORS_ALLOWED_ORIGINS = _origins("ADMIN_CORS")
CORS_ALLOW_CREDENTIALS = True

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
STATIC_ROOT = _path("FEDML_STATIC_ROOT", DATA_DIR / "static")
# WhiteNoise warns about a missing STATIC_ROOT on every request (and warnings are errors in tests).
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Serve straight from the app directories so `daphne` works without collectstatic.
WHITENOISE_USE_FINDERS = True

REST_FRAMEWORK = {
    "EXCEPTION_HANDLER": "core.exception_handlers.fedml_exception_handler",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["core.parsers.LimitedJSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # Bearer first: its WWW-Authenticate header makes unauthenticated requests a 401.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.BearerAuthentication",
        # The dashboard's Supabase session cookie; unsafe methods need a dashboard Origin.
        "accounts.authentication.SupabaseCookieAuthentication",
        "rest_framework.authentication.SessionAuthentication",  # enforces CSRF
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
}

SPECTACULAR_SETTINGS = {
    "TITLE": "FedML API",
    "DESCRIPTION": "Coordinator and participant control of a Flower federation. Authenticate with "
    "`Authorization: Bearer <FedML API token or Supabase access token>` or a Django session.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("FEDML_LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
