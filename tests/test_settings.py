"""Settings come only from the environment; production refuses weak secrets."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.conf import settings

from apps.common.crypto import UnreadableSecret, decrypt, encrypt

pytestmark = pytest.mark.core

STRONG_KEY = "k" * 20 + "Xy9-_Zq8Wm3LpR7tVb2NcF5hJ0dGsEaU4oI6"
FERNET_KEY = "n0Jt3cS0bG8m0F9r1sD2o8gYbQ1h1Xb3r8uE5gqg4lQ="


def _manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "DEBUG"}}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=settings.BASE_DIR,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_prints_no_warning_with_debug_off() -> None:
    # As production runs it: none of the test run's relaxations.
    relaxed = {"HTTPS_ONLY", "DJANGO_ALLOW_ASYNC_UNSAFE", "DEBUG", "SECRET_KEY"}
    env = {k: v for k, v in os.environ.items() if k not in relaxed}
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=settings.BASE_DIR,
        env={**env, "DEBUG": "false", "SECRET_KEY": STRONG_KEY, "FIELD_ENCRYPTION_KEY": FERNET_KEY},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_it_refuses_to_start_without_a_secret_key() -> None:
    result = _manage("check", DEBUG="false")
    assert result.returncode != 0
    assert "SECRET_KEY (or SECRET_KEY_FILE) is required" in result.stderr


def test_it_refuses_a_weak_secret_key() -> None:
    result = _manage("check", DEBUG="false", SECRET_KEY="django-insecure-changeme")
    assert result.returncode != 0
    assert "SECRET_KEY is too weak" in result.stderr


def test_secrets_can_come_from_files(tmp_path: object) -> None:
    from pathlib import Path

    key_file = Path(str(tmp_path)) / "secret"
    key_file.write_text(STRONG_KEY + "\n")
    result = _manage("check", DEBUG="false", SECRET_KEY_FILE=str(key_file))
    assert result.returncode == 0, result.stderr


def test_a_bad_boolean_is_a_clear_error() -> None:
    result = _manage("check", DEBUG="maybe")
    assert result.returncode != 0
    assert "DEBUG='maybe' is not a boolean" in result.stderr


def test_secrets_are_encrypted_at_rest_and_round_trip() -> None:
    token = encrypt("kubeconfig: secret")
    assert "secret" not in token
    assert decrypt(token) == "kubeconfig: secret"
    with pytest.raises(UnreadableSecret):
        decrypt("not-a-token")
