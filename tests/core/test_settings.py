"""Settings come from the environment only; production refuses to start half-configured."""

from __future__ import annotations

import os
import runpy
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

from mcpnest.settings.env import env_bool, env_int, env_list, env_required, env_str

ROOT = Path(__file__).resolve().parents[2]
CONFIG_VARS = [
    "DEBUG",
    "SECRET_KEY",
    "ALLOWED_HOSTS",
    "MCPNEST_ENCRYPTION_KEYS",
    "MCPNEST_AUDIT_KEYS",
    "MCPNEST_GATEWAY_WHEN_DATABASE_DOWN",
    "DATABASE_URL",
    "REDIS_URL",
    "SECURE_SSL_REDIRECT",
    "MCPNEST_BEHIND_TLS_PROXY",
]


def production_env(tmp_path: Path) -> dict[str, str]:
    return {
        "DEBUG": "0",
        "SECRET_KEY": secrets.token_urlsafe(64),
        "ALLOWED_HOSTS": "mcpnest.example.com",
        "MCPNEST_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "MCPNEST_AUDIT_KEYS": secrets.token_urlsafe(48),
        "MCPNEST_VAR_DIR": str(tmp_path),
        "MCPNEST_PUBLIC_URL": "https://mcpnest.example.com",
    }


@pytest.fixture
def load_settings(monkeypatch, tmp_path):
    """Evaluate mcpnest/settings/base.py afresh under the given environment (in-process, fast)."""

    def load(**env: str) -> dict:
        for name in CONFIG_VARS:
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("MCPNEST_VAR_DIR", str(tmp_path))
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        return runpy.run_path(str(ROOT / "mcpnest" / "settings" / "base.py"), run_name="settings_probe")

    return load


def test_check_deploy_reports_no_issues_with_production_values(tmp_path):
    env = {"PATH": os.environ.get("PATH", ""), **production_env(tmp_path)}
    env["DJANGO_SETTINGS_MODULE"] = "mcpnest.settings.base"
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_production_without_a_secret_key_refuses_to_start(load_settings, tmp_path):
    env = production_env(tmp_path)
    del env["SECRET_KEY"]
    with pytest.raises(ImproperlyConfigured, match="Set the SECRET_KEY environment variable"):
        load_settings(**env)
    assert not (tmp_path / "dev-secret-key").exists()


def test_production_without_encryption_keys_refuses_to_start(load_settings, tmp_path):
    env = production_env(tmp_path)
    del env["MCPNEST_ENCRYPTION_KEYS"]
    with pytest.raises(ImproperlyConfigured, match="MCPNEST_ENCRYPTION_KEYS"):
        load_settings(**env)


def test_production_without_audit_keys_refuses_to_start(load_settings, tmp_path):
    env = production_env(tmp_path)
    del env["MCPNEST_AUDIT_KEYS"]
    with pytest.raises(ImproperlyConfigured, match="MCPNEST_AUDIT_KEYS"):
        load_settings(**env)


def test_the_database_outage_behaviour_is_one_of_two(load_settings, tmp_path):
    env = production_env(tmp_path)
    assert load_settings(**env)["MCPNEST_GATEWAY_WHEN_DATABASE_DOWN"] == "serve"
    assert load_settings(**env, MCPNEST_GATEWAY_WHEN_DATABASE_DOWN="refuse")["MCPNEST_GATEWAY_WHEN_DATABASE_DOWN"] == (
        "refuse"
    )
    with pytest.raises(ImproperlyConfigured, match="serve or refuse"):
        load_settings(**env, MCPNEST_GATEWAY_WHEN_DATABASE_DOWN="maybe")


def test_production_values(load_settings, tmp_path):
    env = production_env(tmp_path)
    config = load_settings(**env, DATABASE_URL="postgres://mcp:pw@db.internal:5432/mcpnest")
    assert config["DEBUG"] is False and config["SECRET_KEY"] == env["SECRET_KEY"]
    assert config["ALLOWED_HOSTS"] == ["mcpnest.example.com"]
    assert config["SESSION_COOKIE_SECURE"] and config["CSRF_COOKIE_SECURE"] and config["SECURE_SSL_REDIRECT"]
    assert config["SECURE_HSTS_SECONDS"] >= 60 * 60 * 24 * 365
    assert config["SECURE_PROXY_SSL_HEADER"] == ("HTTP_X_FORWARDED_PROTO", "https")
    database = config["DATABASES"]["default"]
    assert (database["ENGINE"], database["HOST"], database["NAME"]) == (
        "django.db.backends.postgresql",
        "db.internal",
        "mcpnest",
    )


def test_production_allows_no_host_by_default(load_settings, tmp_path):
    env = production_env(tmp_path)
    del env["ALLOWED_HOSTS"]
    assert load_settings(**env)["ALLOWED_HOSTS"] == []


def test_debug_without_secret_key_keeps_a_private_dev_key(load_settings, tmp_path):
    first = load_settings(DEBUG="1")
    path = tmp_path / "dev-secret-key"
    assert first["SECRET_KEY"] == path.read_text().strip() and len(first["SECRET_KEY"]) >= 50
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_settings(DEBUG="1")["SECRET_KEY"] == first["SECRET_KEY"]  # sessions survive restarts
    assert first["ALLOWED_HOSTS"] == ["127.0.0.1", "localhost"]
    assert first["MCPNEST_ENCRYPTION_KEYS"] == []
    assert first["DATABASES"]["default"]["NAME"] == str(tmp_path / "mcpnest.sqlite3")


def test_without_redis_everything_runs_embedded(load_settings):
    config = load_settings(DEBUG="1")
    assert config["CACHES"]["default"]["BACKEND"].endswith("LocMemCache")
    assert config["CHANNEL_LAYERS"]["default"]["BACKEND"] == "channels.layers.InMemoryChannelLayer"
    assert config["CELERY_TASK_ALWAYS_EAGER"] is True and config["CELERY_BROKER_URL"] == "memory://"


def test_redis_url_switches_cache_channels_and_celery(load_settings):
    url = "redis://redis.internal:6379/2"
    config = load_settings(DEBUG="1", REDIS_URL=url)
    assert config["CACHES"]["default"] == {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": url,
    }
    assert config["CHANNEL_LAYERS"]["default"]["BACKEND"] == "channels_redis.core.RedisChannelLayer"
    assert config["CHANNEL_LAYERS"]["default"]["CONFIG"] == {"hosts": [url]}
    assert (config["CELERY_BROKER_URL"], config["CELERY_TASK_ALWAYS_EAGER"]) == (url, False)
    assert config["CELERY_TASK_SERIALIZER"] == "json" and config["CELERY_ACCEPT_CONTENT"] == ["json"]


def test_a_bad_boolean_is_a_configuration_error(load_settings):
    with pytest.raises(ImproperlyConfigured, match="DEBUG must be one of"):
        load_settings(DEBUG="maybe")


# --- env helpers ----------------------------------------------------------------------


def test_env_str(monkeypatch):
    monkeypatch.delenv("MCPNEST_T", raising=False)
    assert env_str("MCPNEST_T") is None and env_str("MCPNEST_T", "d") == "d"
    monkeypatch.setenv("MCPNEST_T", "")
    assert env_str("MCPNEST_T", "d") == ""  # set-but-empty is a value, not "unset"


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1", True), ("true", True), (" Yes ", True), ("ON", True), ("0", False), ("false", False), ("", False)],
)
def test_env_bool(monkeypatch, value, expected):
    monkeypatch.setenv("MCPNEST_T", value)
    assert env_bool("MCPNEST_T", not expected) is expected


def test_env_bool_default_and_garbage(monkeypatch):
    monkeypatch.delenv("MCPNEST_T", raising=False)
    assert env_bool("MCPNEST_T", True) is True
    monkeypatch.setenv("MCPNEST_T", "2")
    with pytest.raises(ImproperlyConfigured, match="MCPNEST_T must be one of"):
        env_bool("MCPNEST_T")


def test_env_int(monkeypatch):
    monkeypatch.delenv("MCPNEST_T", raising=False)
    assert env_int("MCPNEST_T", 7) == 7
    monkeypatch.setenv("MCPNEST_T", " ")
    assert env_int("MCPNEST_T", 7) == 7
    monkeypatch.setenv("MCPNEST_T", "42")
    assert env_int("MCPNEST_T", 7) == 42
    monkeypatch.setenv("MCPNEST_T", "4.2")
    with pytest.raises(ImproperlyConfigured, match="whole number"):
        env_int("MCPNEST_T", 7)


def test_env_list(monkeypatch):
    monkeypatch.delenv("MCPNEST_T", raising=False)
    assert env_list("MCPNEST_T") == [] and env_list("MCPNEST_T", ["a"]) == ["a"]
    monkeypatch.setenv("MCPNEST_T", " a.example.com, ,b.example.com ,")
    assert env_list("MCPNEST_T", ["x"]) == ["a.example.com", "b.example.com"]
    monkeypatch.setenv("MCPNEST_T", "")
    assert env_list("MCPNEST_T", ["x"]) == []


def test_env_required(monkeypatch):
    monkeypatch.setenv("MCPNEST_T", "value")
    assert env_required("MCPNEST_T") == "value"
    for unset in (None, ""):
        if unset is None:
            monkeypatch.delenv("MCPNEST_T")
        else:
            monkeypatch.setenv("MCPNEST_T", unset)
        with pytest.raises(ImproperlyConfigured, match="Set the MCPNEST_T environment variable"):
            env_required("MCPNEST_T")


# --- manage.py as the README writes it (issue #7, item 9) -------------------------------------


def _manage(tmp_path: Path, *args: str, python: str = sys.executable, **env: str) -> subprocess.CompletedProcess:
    clean = {"PATH": os.environ.get("PATH", ""), "MCPNEST_VAR_DIR": str(tmp_path), **env}
    return subprocess.run(  # noqa: S603 - our own interpreter and manage.py
        [python, "manage.py", *args], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=60
    )


def test_missing_configuration_is_one_line_not_a_traceback(tmp_path):
    result = _manage(tmp_path, "check")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "mcpnest: configuration error: Set the SECRET_KEY environment variable (required when DEBUG is off)."
    )


def test_after_make_run_commands_work_as_written_even_outside_the_virtualenv(tmp_path):
    (tmp_path / "dev-secret-key").write_text("k" * 64)  # what `make run` leaves in var/
    system_python = shutil.which("python3", path="/usr/bin")
    for python in filter(None, [sys.executable, system_python]):
        result = _manage(tmp_path, "check", python=python)
        assert result.returncode == 0, (python, result.stderr)
        assert "System check identified no issues" in result.stdout
