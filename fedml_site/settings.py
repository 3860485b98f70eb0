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

from fedml_site import envs
from orchestration.private_files import private_dirs

BASE_DIR = Path(__file__).resolve().parent.parent

env = envs.env
environ.Env.read_env(BASE_DIR / ".env") if (BASE_DIR / ".env").exists() else None

DEBUG = envs.boolean("DJANGO_DEBUG", False)
_DEV_SECRET_KEY = "fedml-insecure-development-key-change-me-in-production"
# Unset means the development key, which is public: only for a FedML serving this machine alone
# (refused below otherwise; core.checks warns whenever it is in use).
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="") or _DEV_SECRET_KEY
DEVELOPMENT_SECRET_KEY = SECRET_KEY == _DEV_SECRET_KEY
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

# FEDML_PRODUCTION=true turns on everything `manage.py check --deploy` asks for. The embedded
# default serves plain HTTP on localhost, where secure-only cookies would make signing in impossible.
PRODUCTION = envs.boolean("FEDML_PRODUCTION", False)
if PRODUCTION and DEBUG:
    raise ImproperlyConfigured("DJANGO_DEBUG must be false when FEDML_PRODUCTION is true")
if PRODUCTION and (SECRET_KEY == _DEV_SECRET_KEY or len(SECRET_KEY) < 50 or len(set(SECRET_KEY)) < 5):
    raise ImproperlyConfigured("DJANGO_SECRET_KEY must be a random value of at least 50 characters in production")
SECURE_SSL_REDIRECT = envs.boolean("DJANGO_SECURE_SSL_REDIRECT", PRODUCTION)
SESSION_COOKIE_SECURE = envs.boolean("DJANGO_SECURE_COOKIES", PRODUCTION)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SESSION_COOKIE_HTTPONLY = True
SECURE_HSTS_SECONDS = envs.integer("DJANGO_SECURE_HSTS_SECONDS", 31_536_000 if PRODUCTION else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = envs.boolean("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", PRODUCTION)
SECURE_HSTS_PRELOAD = envs.boolean("DJANGO_SECURE_HSTS_PRELOAD", PRODUCTION)
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
# Behind a TLS-terminating proxy that sets X-Forwarded-Proto (and strips it from clients):
# DJANGO_BEHIND_TLS_PROXY=true. Never set it when clients can reach Daphne directly.
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https") if envs.boolean("DJANGO_BEHIND_TLS_PROXY", False) else None
)


# With DEBUG off, a FedML reached under other names than this machine's (its hosts, the origins a
# proxy forwards, a TLS proxy) must sign with a secret key: the development key is in the repository.
if DEVELOPMENT_SECRET_KEY and not DEBUG:
    _elsewhere = [h for h in ALLOWED_HOSTS if not envs.local_host(h)] + [
        o for o in CSRF_TRUSTED_ORIGINS if not envs.local_host(urlparse(o).hostname or "")
    ]
    if _elsewhere or SECURE_PROXY_SSL_HEADER:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY must be a random value of at least 50 characters, not unset or the public "
            "development key, when DJANGO_DEBUG is false and FedML serves other hosts than this machine "
            f"({', '.join(_elsewhere) or 'DJANGO_BEHIND_TLS_PROXY'})"
        )


# --- FedML ------------------------------------------------------------------
DATA_DIR = envs.path_value("FEDML_DATA_DIR", BASE_DIR / "var")
LOG_DIR = envs.path_value("FEDML_LOG_DIR", BASE_DIR / "logs")
FLWR_HOME_ROOT = envs.path_value("FEDML_FLWR_HOME", DATA_DIR / "flwr_home")
FLOWER_APP_DIR = envs.path_value("FEDML_FLOWER_APP_DIR", BASE_DIR / "flower_app")
CERTIFICATES_DIR = envs.path_value("FEDML_CERTIFICATES_DIR", DATA_DIR / "certificates")
ARTIFACTS_DIR = envs.path_value("FEDML_ARTIFACTS_DIR", DATA_DIR / "artifacts")
# Where flower-superlink, flower-supernode and flwr live (default: beside this Python).
FLOWER_BIN_DIR = envs.path_value("FEDML_FLOWER_BIN_DIR", Path(sys.executable).parent)
# Flower's SuperLink defaults to 127.0.0.1:8000, which is Daphne's usual port.
SUPERLINK_ADDRESS = envs.address("FEDML_SUPERLINK_ADDRESS", "127.0.0.1:9191")
# How long a start request waits for the supervisor to spawn the process.
START_WAIT_SECONDS = envs.number("FEDML_START_WAIT_SECONDS", 10.0, minimum=0.5)
# A supervisor whose heartbeat is older than this is considered dead.
SUPERVISOR_STALE_SECONDS = envs.number("FEDML_SUPERVISOR_STALE_SECONDS", 6.0, minimum=1.0)
# SIGTERM, then SIGKILL after this many seconds.
STOP_TIMEOUT_SECONDS = envs.number("FEDML_STOP_TIMEOUT_SECONDS", 15.0, minimum=0.5)
# API request bodies are small JSON objects; anything bigger is refused (400, field "body").
FEDML_MAX_BODY_BYTES = envs.integer("FEDML_MAX_BODY_BYTES", 64 * 1024, minimum=1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = FEDML_MAX_BODY_BYTES
# JSON from clients (bodies, the dashboard's cookie, websocket messages) nested deeper than this is
# refused (400, field "body"); Python's parser would raise RecursionError near 1,000 levels.
FEDML_MAX_JSON_DEPTH = envs.integer("FEDML_MAX_JSON_DEPTH", 32, minimum=2, maximum=200)
# Newest lines kept in the log_stream column (the full log is the log_lines table).
LOG_TAIL_LINES = envs.integer("FEDML_LOG_TAIL_LINES", 200, minimum=1)
# Control requests (start, stop, enroll, revoke, joins, project creation) per person (or client
# address) in a fixed window: the whole allowance may be spent at once, the next one answers 429
# with Retry-After. Counted in the cache (Redis when REDIS_URL is set). `off` turns it off.
RATE_CONTROL = envs.rate("FEDML_RATE_CONTROL", "30/min")

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
SUPABASE_AUTO_PROVISION = envs.boolean("SUPABASE_AUTO_PROVISION", True)
# The dashboard's Supabase session cookie (`sb-<ref>-auth-token`) is accepted when FedML is reached
# on the dashboard's origin; unsafe methods it authenticates need an Origin listed here.
DASHBOARD_ORIGINS = envs.origins("FEDML_DASHBOARD_ORIGINS")
# FedML can serve the part of Supabase Auth's HTTP API the dashboard signs in with (/auth/v1/...)
# for its own users, issuing HS256 tokens with SUPABASE_JWT_SECRET. Off unless enabled.
EMBEDDED_AUTH = envs.boolean("FEDML_EMBEDDED_AUTH", False)
EMBEDDED_AUTH_TOKEN_SECONDS = envs.integer("FEDML_EMBEDDED_AUTH_TOKEN_SECONDS", 3600, minimum=60, maximum=86400)
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
SUPERLINK_PORT_RANGE = envs.port_range("FEDML_SUPERLINK_PORT_RANGE", "9200-9299")
# The port policy (orchestration/ports.py): SuperLinks and SuperNodes listen only on these hosts
# and ports (and a SuperNode never on a SuperLink's). Loopback by default; a deployment whose
# SuperNodes dial in from other hosts lists the SuperLink's interface address, or 0.0.0.0 / ::.
SUPERLINK_BIND_HOSTS = envs.bind_hosts("FEDML_SUPERLINK_BIND_HOSTS", "127.0.0.1,::1,localhost")
SUPERNODE_BIND_HOSTS = envs.bind_hosts("FEDML_SUPERNODE_BIND_HOSTS", "127.0.0.1,::1,localhost")
SUPERNODE_PORT_RANGE = envs.port_range("FEDML_SUPERNODE_PORT_RANGE", "9400-9699")
for _name, (_first, _) in (
    ("FEDML_SUPERLINK_PORT_RANGE", SUPERLINK_PORT_RANGE),
    ("FEDML_SUPERNODE_PORT_RANGE", SUPERNODE_PORT_RANGE),
):
    if _first < 1024:
        raise ImproperlyConfigured(f"{_name} must not include privileged ports (below 1024), got {_first}")
if SUPERNODE_PORT_RANGE[0] <= SUPERLINK_PORT_RANGE[1] and SUPERLINK_PORT_RANGE[0] <= SUPERNODE_PORT_RANGE[1]:
    raise ImproperlyConfigured("FEDML_SUPERNODE_PORT_RANGE must not overlap FEDML_SUPERLINK_PORT_RANGE")
if SUPERNODE_PORT_RANGE[0] <= int(SUPERLINK_ADDRESS.rsplit(":", 1)[1]) <= SUPERNODE_PORT_RANGE[1]:
    raise ImproperlyConfigured("FEDML_SUPERNODE_PORT_RANGE must not include the port of FEDML_SUPERLINK_ADDRESS")
if env.str("FEDML_SUPERNODE_BASE_PORT", default=""):
    raise ImproperlyConfigured("FEDML_SUPERNODE_BASE_PORT is replaced by FEDML_SUPERNODE_PORT_RANGE (e.g. 9400-9699)")

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
    "core.middleware.DatabaseUnavailableMiddleware",  # an API request the database cannot serve: JSON 503
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

# PostgreSQL connections per process, and how long a request waits for one (see below).
DB_POOL_MAX = envs.integer("FEDML_DB_POOL_MAX", 20, minimum=0, maximum=1000)
DB_POOL_TIMEOUT = envs.number("FEDML_DB_POOL_TIMEOUT", 10.0, minimum=0.1)
try:
    _db = env.db_url("DATABASE_URL", default=f"sqlite:///{DATA_DIR / 'fedml.sqlite3'}")
except Exception as exc:  # django-environ raises several types for a bad URL
    raise ImproperlyConfigured(f"DATABASE_URL is not a valid database URL: {exc}") from None
if _db.get("ENGINE") not in {"django.db.backends.sqlite3", "django.db.backends.postgresql"}:
    raise ImproperlyConfigured(f"DATABASE_URL must be sqlite:// or postgres://, got engine {_db.get('ENGINE')!r}")
if _db["ENGINE"] == "django.db.backends.sqlite3":
    private_dirs(Path(_db["NAME"]).parent)
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
    # Under ASGI each concurrent request runs in a thread of its own with a connection of its own,
    # and a persistent connection outlives its thread: CONN_MAX_AGE > 0 leaks one per request, and
    # a burst opens one per request in flight (PostgreSQL refuses past max_connections, 100 by
    # default). So each process (Daphne, the supervisor) borrows from a bounded pool and gives the
    # connection back when a request ends; one that waits longer than FEDML_DB_POOL_TIMEOUT for a
    # connection answers 503 with Retry-After. FEDML_DB_POOL_MAX=0: no pool.
    _db["CONN_MAX_AGE"] = envs.integer("DATABASE_CONN_MAX_AGE", 0)
    _db["CONN_HEALTH_CHECKS"] = True
    if DB_POOL_MAX:
        if _db["CONN_MAX_AGE"]:
            raise ImproperlyConfigured("DATABASE_CONN_MAX_AGE must be 0 while FEDML_DB_POOL_MAX is not 0 (the pool)")
        _db["OPTIONS"] = {
            **_db.get("OPTIONS", {}),
            "pool": {"min_size": min(2, DB_POOL_MAX), "max_size": DB_POOL_MAX, "timeout": DB_POOL_TIMEOUT},
        }
DATABASES = {"default": _db}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    if urlparse(REDIS_URL).scheme not in {"redis", "rediss", "unix"}:
        raise ImproperlyConfigured(f"REDIS_URL must be a redis:// or rediss:// URL, got {REDIS_URL!r}")
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [REDIS_URL]}}}
    # Shared by every worker: the sign-in and control rate limits count across processes.
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    # Single-machine default. It cannot cross processes, so it is only ever a doorbell.
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

CORS_ALLOWED_ORIGINS = envs.origins("ADMIN_CORS")
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
STATIC_ROOT = envs.path_value("FEDML_STATIC_ROOT", DATA_DIR / "static")
# WhiteNoise warns about a missing STATIC_ROOT on every request (and warnings are errors in tests).
private_dirs(DATA_DIR)  # before STATIC_ROOT's parents, which would be made 0755
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
