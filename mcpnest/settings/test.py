"""Test settings: the base settings with fast hashing and a fixed encryption key.

DATABASE_URL / REDIS_URL still come from the environment, so CI runs the same suite on
PostgreSQL and Redis; without them the embedded defaults are used.
"""

import os

os.environ.setdefault("DEBUG", "0")
os.environ.setdefault("SECRET_KEY", "test-only-" + "x" * 60)
# A Fernet key used only by the test suite.
os.environ.setdefault("MCPNEST_ENCRYPTION_KEYS", "dGVzdC1vbmx5LWtleS0wMDAwMDAwMDAwMDAwMDAwMDA=")
os.environ.setdefault("MCPNEST_AUDIT_KEYS", "test-only-audit-key-" + "a" * 40)
# OAuth documents and the gateway's 401 answers name this origin (tests/oauth/flow.py).
os.environ.setdefault("MCPNEST_PUBLIC_URL", "http://127.0.0.1:8000")

from mcpnest.settings.base import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
SECURE_SSL_REDIRECT = False
SESSION_COOKIE_SECURE = False
CSRF_COOKIE_SECURE = False
ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]
STORAGES["staticfiles"]["BACKEND"] = "django.contrib.staticfiles.storage.StaticFilesStorage"  # noqa: F405
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
LOGGING["root"]["level"] = "WARNING"  # noqa: F405

# One test database per test run (the pid), so runs in parallel never share one.
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    # A file, not shared-cache memory: concurrency tests need real SQLite locking.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-{os.getpid()}.sqlite3")}  # noqa: F405
else:
    DATABASES["default"]["TEST"] = {"NAME": f"test_mcpnest_{os.getpid()}"}  # noqa: F405

# Serve static files from the finders, as in development; no collectstatic for tests.
WHITENOISE_AUTOREFRESH = True
WHITENOISE_USE_FINDERS = True

# Connections opened in worker threads (the gateway's loaders, the audit recorder) close
# after each job, so the test database can be dropped at the end.
DATABASES["default"]["CONN_MAX_AGE"] = 0  # noqa: F405

# Tasks run in-process in tests even when REDIS_URL is set: no worker is running.
CELERY_TASK_ALWAYS_EAGER = True

# Tests never reach GitHub, nor use a developer's token: each test points the client at its
# own local server.
MCPNEST_GITHUB_API_URL = "http://127.0.0.1:9"
MCPNEST_GITHUB_TOKEN = ""

# The generator uses the template path in tests unless a test points it at its own server.
ANTHROPIC_API_KEY = ""
ANTHROPIC_BASE_URL = ""
