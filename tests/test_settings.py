"""Settings come from the environment and fail loudly, naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.stack import ROOT


def _load_settings(**env: str) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    full_env.update(env)
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from django.conf import settings; print(settings.CHANNEL_LAYERS['default']['BACKEND']); print(settings.DATABASES['default']['ENGINE'])",
        ],
        env={**full_env, "DJANGO_SETTINGS_MODULE": "fedml_site.settings"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DATABASE_URL", "mysql://root@localhost/x"),
        ("DATABASE_URL", "not a url"),
        ("REDIS_URL", "http://127.0.0.1:6379"),
        ("FEDML_SUPERLINK_ADDRESS", "9191"),
        ("FEDML_SUPERNODE_BASE_PORT", "9401"),  # replaced by FEDML_SUPERNODE_PORT_RANGE: never silently ignored
        ("FEDML_SUPERNODE_PORT_RANGE", "many"),
        ("FEDML_SUPERNODE_PORT_RANGE", "22-2000"),  # privileged ports
        ("FEDML_SUPERNODE_PORT_RANGE", "9290-9400"),  # overlaps FEDML_SUPERLINK_PORT_RANGE's default
        ("FEDML_SUPERNODE_PORT_RANGE", "9100-9195"),  # holds FEDML_SUPERLINK_ADDRESS's 9191
        ("FEDML_SUPERLINK_PORT_RANGE", "80-99"),
        ("FEDML_SUPERNODE_BIND_HOSTS", "127.0.0.1,example.org"),  # a name DNS would answer for
        ("FEDML_SUPERLINK_BIND_HOSTS", "127.0.0.1,"),
        ("FEDML_START_WAIT_SECONDS", "soon"),
        ("FEDML_MAX_JSON_DEPTH", "1000"),  # Python's parser would raise RecursionError before that
        ("FEDML_MAX_JSON_DEPTH", "deep"),
        ("DJANGO_DEBUG", "maybe"),
        ("ADMIN_CORS", "dashboard.example.org"),
        ("PROJECT_SLUG", "Not A Slug"),
        ("SUPABASE_URL", "ftp://x"),
    ],
)
def test_bad_environment_value_stops_startup_naming_the_variable(variable: str, value: str) -> None:
    result = _load_settings(**{variable: value})
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert variable in result.stderr.splitlines()[-1]


def test_defaults_are_the_embedded_sqlite_and_in_memory_layer() -> None:
    result = _load_settings()
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["channels.layers.InMemoryChannelLayer", "django.db.backends.sqlite3"]


def test_redis_and_postgres_urls_select_channels_redis_and_postgresql() -> None:
    result = _load_settings(
        DATABASE_URL="postgres://postgres@127.0.0.1:5432/postgres", REDIS_URL="redis://127.0.0.1:6379/0"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["channels_redis.core.RedisChannelLayer", "django.db.backends.postgresql"]


def test_admin_cors_lists_the_allowed_origins() -> None:
    code = "import django; django.setup(); from django.conf import settings; print(','.join(settings.CORS_ALLOWED_ORIGINS))"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "fedml_site.settings",
        "ADMIN_CORS": "https://a.example.org, http://localhost:3000/",
    }
    result = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "https://a.example.org,http://localhost:3000"
