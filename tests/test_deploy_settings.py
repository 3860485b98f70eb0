"""`manage.py check --deploy` passes under production settings, and production refuses weak ones."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.stack import ROOT

PRODUCTION = {
    "FEDML_PRODUCTION": "true",
    "DJANGO_SECRET_KEY": "x7!Qm2#pL9@vR4$tZ8^wK1&nB6*cF3(hJ5)sD0-gY2+eU7=aT9?oI4",
    "DJANGO_ALLOWED_HOSTS": "fedml.example.org",
    "DJANGO_BEHIND_TLS_PROXY": "true",
}


def _manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "FEDML_PRODUCTION"))}
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env={**base, **env}, capture_output=True, text=True, timeout=120
    )


def test_check_deploy_passes_under_production_settings() -> None:
    result = _manage("check", "--deploy", "--fail-level", "WARNING", **PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr


def test_check_deploy_warns_on_the_embedded_development_defaults() -> None:
    result = _manage("check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode != 0
    assert "security.W004" in result.stderr + result.stdout  # no HSTS outside production


def test_production_refuses_the_development_secret_key_and_debug() -> None:
    result = _manage("check", **{**PRODUCTION, "DJANGO_SECRET_KEY": "short"})
    assert result.returncode != 0 and "DJANGO_SECRET_KEY" in result.stderr
    result = _manage("check", **{**PRODUCTION, "DJANGO_DEBUG": "true"})
    assert result.returncode != 0 and "DJANGO_DEBUG" in result.stderr


DEVELOPMENT_KEY = "fedml-insecure-development-key-change-me-in-production"


@pytest.mark.parametrize(
    "elsewhere",
    [
        {"DJANGO_ALLOWED_HOSTS": "localhost,fedml.example.org"},
        {"DJANGO_ALLOWED_HOSTS": "fedml.example.org", "DJANGO_SECRET_KEY": DEVELOPMENT_KEY},
        {"DJANGO_CSRF_TRUSTED_ORIGINS": "https://fedml.example.org"},
        {"DJANGO_BEHIND_TLS_PROXY": "true"},
    ],
)
def test_debug_off_refuses_the_development_key_where_fedml_serves_other_hosts(elsewhere: dict[str, str]) -> None:
    result = _manage("check", **elsewhere)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and "DJANGO_SECRET_KEY" in result.stderr.splitlines()[-1]


def test_the_development_key_starts_on_this_machine_alone_or_with_debug_with_a_warning() -> None:
    result = _manage("check", DJANGO_ALLOWED_HOSTS="localhost,127.0.0.1,[::1]")
    assert result.returncode == 0, result.stderr
    assert "fedml.W001" in result.stderr and "DJANGO_SECRET_KEY is unset" in result.stderr
    result = _manage("check", DJANGO_DEBUG="true", DJANGO_ALLOWED_HOSTS="fedml.example.org")
    assert result.returncode == 0, result.stderr
    assert "fedml.W001" in result.stderr
    secret = _manage(
        "check", DJANGO_SECRET_KEY=PRODUCTION["DJANGO_SECRET_KEY"], DJANGO_ALLOWED_HOSTS="fedml.example.org"
    )
    assert secret.returncode == 0, secret.stderr
    assert "fedml.W001" not in secret.stderr + secret.stdout
