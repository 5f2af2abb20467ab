"""MCPNest settings. Every value comes from the environment; see README "Configuration".

Embedded defaults (no services needed): SQLite under var/, local-memory cache, in-memory
channel layer and Celery tasks run in-process. Production sets DATABASE_URL and REDIS_URL.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import dj_database_url
from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured

from mcpnest.settings.env import env_bool, env_int, env_list, env_required, env_str

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = Path(env_str("MCPNEST_VAR_DIR", str(BASE_DIR / "var")))

DEBUG = env_bool("DEBUG", False)


def _dev_secret_key() -> str:
    # Development only: a random key kept in var/ so sessions survive restarts,
    # never a key written into the source.
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    path = VAR_DIR / "dev-secret-key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(64))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = env_str("SECRET_KEY") or (_dev_secret_key() if DEBUG else env_required("SECRET_KEY"))
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "allauth",
    "allauth.account",
    "allauth.mfa",
    "allauth.usersessions",
    "allauth.socialaccount",
    "allauth.socialaccount.providers.openid_connect",
    "allauth.socialaccount.providers.saml",
    "oauth2_provider",
    "django_scim",
    "channels",
    "apps.core",
    "apps.accounts",
    "apps.rbac",
    "apps.workspaces",
    "apps.tokens",
    "apps.audit",
    "apps.gateway",
    "apps.hosting",
    "apps.marketplace",
    "apps.configtools",
    "apps.oauth",
    "apps.sso",
    "apps.scim",
    "apps.portal",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    # Tracks each person's sessions, so deprovisioning (SCIM) can end them all at once.
    "allauth.usersessions.middleware.UserSessionsMiddleware",
]

ROOT_URLCONF = "mcpnest.urls"
ASGI_APPLICATION = "mcpnest.asgi.application"
WSGI_APPLICATION = None

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

# --- Database ---------------------------------------------------------------
DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'mcpnest.sqlite3'}",
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    # WAL lets readers work while the audit writer appends; IMMEDIATE transactions make
    # concurrent writers queue instead of failing half-way with "database is locked".
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # A database that does not answer is noticed in seconds, not after the OS's TCP timeout.
    DATABASES["default"].setdefault("OPTIONS", {})["connect_timeout"] = env_int("DATABASE_CONNECT_TIMEOUT", 3)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: cache, channel layer, Celery ---------------------------------------
REDIS_URL = env_str("REDIS_URL")
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [REDIS_URL]}}}
    CELERY_BROKER_URL = REDIS_URL
    CELERY_TASK_ALWAYS_EAGER = False
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CELERY_BROKER_URL = "memory://"
    CELERY_TASK_ALWAYS_EAGER = True  # no broker: tasks run in-process

CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULE = {
    "audit-retention": {
        "task": "apps.audit.tasks.apply_retention",
        "schedule": crontab(hour=3, minute=17),
        "options": {"expires": 60 * 60},
    },
    # Signed chain heads to MCPNEST_AUDIT_HEAD_EXPORT (read here: that setting is set further down).
    "audit-heads": {
        "task": "apps.audit.tasks.export_heads",
        "schedule": 60.0 * env_int("MCPNEST_AUDIT_HEAD_EXPORT_MINUTES", 5),
        "options": {"expires": 60 * env_int("MCPNEST_AUDIT_HEAD_EXPORT_MINUTES", 5)},
    },
    # Every approved, enabled upstream: health, and changed or new tools held for approval.
    "server-checks": {
        "task": "apps.gateway.tasks.check_servers",
        "schedule": 15 * 60.0,
        "options": {"expires": 15 * 60},
    },
    # Hosted instances whose process died: failed, their upstream disabled.
    "hosting-health": {
        "task": "apps.hosting.tasks.instance_health_sweep",
        "schedule": 60.0,
        "options": {"expires": 60},
    },
    # Dynamically registered OAuth clients idle for MCPNEST_OAUTH_IDLE_CLIENT_DAYS.
    "oauth-prune-clients": {
        "task": "apps.oauth.tasks.prune_clients",
        "schedule": crontab(hour=4, minute=41),
        "options": {"expires": 60 * 60},
    },
    # The official MCP registry: what changed since the last run.
    "registry-index": {
        "task": "apps.marketplace.tasks.registry_index",
        "schedule": crontab(minute=23),
        "options": {"expires": 60 * 60},
    },
    # GitHub: stars, last commit, licence and README of the repositories due a refresh.
    "marketplace-github": {
        "task": "apps.marketplace.tasks.github_enrich",
        "schedule": crontab(minute=41),
        "options": {"expires": 50 * 60},
    },
    # Installs of the last 7 days and the decayed sum that sorts "trending".
    "marketplace-trending": {
        "task": "apps.marketplace.tasks.trending_refresh",
        "schedule": 15 * 60.0,
        "options": {"expires": 15 * 60},
    },
    # Containers without a live instance removed; running instances without one failed.
    "hosting-reconcile": {
        "task": "apps.hosting.tasks.instance_reconcile",
        "schedule": 5 * 60.0,
        "options": {"expires": 5 * 60},
    },
}
# Hosted-server tasks wait on containers (a deploy up to MCPNEST_HOSTING_START_TIMEOUT): they
# get their own queue, so that audit and gateway work never waits behind them. Run a worker
# for it: celery -A mcpnest worker -Q hosting (or -Q celery,hosting for one worker).
CELERY_TASK_ROUTES = {"apps.hosting.tasks.*": {"queue": "hosting"}}

# --- Auth: allauth (email + password, TOTP via allauth.mfa) -------------------
AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_USER_MODEL_USERNAME_FIELD = None
# Production follows allauth's recommended settings: an address is confirmed before its
# owner can sign in (an invitation link counts as confirmation), and people are told by
# e-mail when their password or addresses change.
ACCOUNT_EMAIL_VERIFICATION = env_str("ACCOUNT_EMAIL_VERIFICATION", "optional" if DEBUG else "mandatory")
ACCOUNT_EMAIL_NOTIFICATIONS = True
ACCOUNT_LOGIN_ON_PASSWORD_RESET = False
ACCOUNT_LOGOUT_ON_PASSWORD_CHANGE = False
# Closed by default outside development: an enterprise portal admits people by invitation.
ACCOUNT_SIGNUP_OPEN = env_bool("MCPNEST_SIGNUP_OPEN", DEBUG)
ACCOUNT_ADAPTER = "apps.accounts.adapter.AccountAdapter"
MFA_SUPPORTED_TYPES = ["totp", "recovery_codes"]
MFA_TOTP_ISSUER = "MCPNest"
LOGIN_REDIRECT_URL = "portal:home"
LOGIN_URL = "account_login"

# --- Email --------------------------------------------------------------------
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "MCPNest <noreply@mcpnest.local>")

# --- REST API -----------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "apps.accounts.authentication.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.CursorPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "apps.core.api.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "MCPNest API",
    "DESCRIPTION": "Workspaces, members, invitations, gateway tokens, the gateway (servers, allowlists, policy, "
    "tool pins), the audit trail, hosted servers and the marketplace.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- Static files, i18n ---------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}
WHITENOISE_AUTOREFRESH = DEBUG  # development: serve from the finders, no collectstatic
WHITENOISE_USE_FINDERS = DEBUG
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- MCPNest ------------------------------------------------------------------
# Comma-separated Fernet keys: the first encrypts, every one decrypts (rotation).
MCPNEST_ENCRYPTION_KEYS = env_list("MCPNEST_ENCRYPTION_KEYS")
if not MCPNEST_ENCRYPTION_KEYS and not DEBUG:
    env_required("MCPNEST_ENCRYPTION_KEYS")
MCPNEST_AUDIT_RETENTION_DAYS = env_int("MCPNEST_AUDIT_RETENTION_DAYS", 90)
MCPNEST_INVITATION_DAYS = env_int("MCPNEST_INVITATION_DAYS", 7)
# How many reverse proxies in front of us append to X-Forwarded-For (0: use REMOTE_ADDR).
MCPNEST_TRUSTED_PROXY_COUNT = env_int("MCPNEST_TRUSTED_PROXY_COUNT", 0)

# --- Audit chain keys and head export ---------------------------------------------
# Comma-separated secrets (at least 32 characters each) that key the audit hash chains
# (HMAC-SHA256). Keep them outside the database: whoever holds only the database then
# cannot forge a row or a checkpoint. The first key signs new rows; every key verifies
# (rotate by prepending a new key; drop an old one only once no kept row uses it).
MCPNEST_AUDIT_KEYS = env_list("MCPNEST_AUDIT_KEYS")
if not MCPNEST_AUDIT_KEYS and not DEBUG:
    env_required("MCPNEST_AUDIT_KEYS")
# Where the periodic signed export of every chain head goes: "log" (the mcpnest.audit.heads
# logger, for a log shipper) or a file path (append-only JSON lines).
MCPNEST_AUDIT_HEAD_EXPORT = env_str("MCPNEST_AUDIT_HEAD_EXPORT", "log")
MCPNEST_AUDIT_HEAD_EXPORT_MINUTES = env_int("MCPNEST_AUDIT_HEAD_EXPORT_MINUTES", 5)

# --- Gateway limits and behaviour under faults (README "Behaviour under faults") --------
# Every answered call is first appended to this process's spool (a local append-only
# file) and replayed into the database from there, so a crash or a database outage
# loses no audit row.
MCPNEST_SPOOL_DIR = Path(env_str("MCPNEST_SPOOL_DIR", str(VAR_DIR / "spool")))
MCPNEST_SPOOL_MAX_BYTES = env_int("MCPNEST_SPOOL_MAX_BYTES", 1024 * 1024 * 1024)
# While the database is down: "serve" (cached tokens, rows wait in the spool while it has
# room, then 503) or "refuse" (503 at once).
MCPNEST_GATEWAY_WHEN_DATABASE_DOWN = env_str("MCPNEST_GATEWAY_WHEN_DATABASE_DOWN", "serve")
if MCPNEST_GATEWAY_WHEN_DATABASE_DOWN not in ("serve", "refuse"):
    raise ImproperlyConfigured(
        f"MCPNEST_GATEWAY_WHEN_DATABASE_DOWN must be serve or refuse (got {MCPNEST_GATEWAY_WHEN_DATABASE_DOWN!r})."
    )
MCPNEST_GATEWAY_MAX_BODY_BYTES = env_int("MCPNEST_GATEWAY_MAX_BODY_BYTES", 4 * 1024 * 1024)
MCPNEST_GATEWAY_MAX_RESPONSE_BYTES = env_int("MCPNEST_GATEWAY_MAX_RESPONSE_BYTES", 10 * 1024 * 1024)
# Requests one gateway process works on at once; beyond it: 503 + Retry-After.
MCPNEST_GATEWAY_MAX_IN_FLIGHT = env_int("MCPNEST_GATEWAY_MAX_IN_FLIGHT", 1000)
# Upstream calls in flight per workspace and per upstream server (per process), and how
# long a call waits for a free slot before it is refused with 503.
MCPNEST_GATEWAY_WORKSPACE_CONCURRENCY = env_int("MCPNEST_GATEWAY_WORKSPACE_CONCURRENCY", 64)
MCPNEST_GATEWAY_UPSTREAM_CONCURRENCY = env_int("MCPNEST_GATEWAY_UPSTREAM_CONCURRENCY", 32)
MCPNEST_GATEWAY_QUEUE_SECONDS = env_int("MCPNEST_GATEWAY_QUEUE_SECONDS", 5)
MCPNEST_GATEWAY_UPSTREAM_TIMEOUT = env_int("MCPNEST_GATEWAY_UPSTREAM_TIMEOUT", 60)
# Requests per minute per client IP before its workspace is known (unknown slugs, floods).
MCPNEST_GATEWAY_PREAUTH_RATE_LIMIT = env_int("MCPNEST_GATEWAY_PREAUTH_RATE_LIMIT", 600)

# --- Hosted MCP servers (apps.hosting) ----------------------------------------
# The MCP registry the marketplace indexes (hourly; manage.py index_registry by hand).
MCPNEST_REGISTRY_URL = env_str("MCPNEST_REGISTRY_URL", "https://registry.modelcontextprotocol.io")
# GitHub's REST API for stars, commits, licences and READMEs; a token lifts its rate limit
# from 60 to 5,000 requests an hour (a fine-grained token with public read access is enough).
MCPNEST_GITHUB_API_URL = env_str("MCPNEST_GITHUB_API_URL", "https://api.github.com")
MCPNEST_GITHUB_TOKEN = env_str("GITHUB_TOKEN", "")

# --- Config tools (apps.configtools) ----------------------------------------------
# The validator's endpoint check refuses private, loopback and link-local targets (no SSRF
# into the operator's network) unless this allows them (a lab, a test).
MCPNEST_TOOLS_ALLOW_PRIVATE_TARGETS = env_bool("MCPNEST_TOOLS_ALLOW_PRIVATE_TARGETS", False)
# Per client IP, for the open validate and scan APIs (DRF's rate format).
MCPNEST_TOOLS_API_RATE = env_str("MCPNEST_TOOLS_API_RATE", "30/min")
# The MCP generator: the model path when a key is set (else the template generator), the
# Anthropic API's address (a proxy, or a test server), runs per user and hour, and where
# `manage.py generator_setup` installs tsc and the TypeScript SDK the scaffolds are checked with.
ANTHROPIC_API_KEY = env_str("ANTHROPIC_API_KEY", "")
ANTHROPIC_BASE_URL = env_str("ANTHROPIC_BASE_URL", "")
MCPNEST_GENERATOR_MODEL = env_str("MCPNEST_GENERATOR_MODEL", "claude-sonnet-5-5")
MCPNEST_GENERATOR_PER_HOUR = env_int("MCPNEST_GENERATOR_PER_HOUR", 10)
MCPNEST_GENERATOR_TOOLCHAIN = env_str("MCPNEST_GENERATOR_TOOLCHAIN", str(BASE_DIR / "var" / "generator-toolchain"))

# Where hosted servers run: "process" (the bridge as a local subprocess with rlimits; NOT
# isolated, the embedded default) or "docker" (hardened containers of the runtime image on
# the Docker engine DOCKER_HOST names, or the local socket; see README "Hosted servers").
MCPNEST_HOSTING_RUNTIME = env_str("MCPNEST_HOSTING_RUNTIME", "process")
# Seconds a deploy waits for the instance's /healthz before it is marked failed.
MCPNEST_HOSTING_START_TIMEOUT = env_int("MCPNEST_HOSTING_START_TIMEOUT", 30)

# --- Identity: the public URL, the OAuth authorization server (apps.oauth) -----------
# Where people and MCP clients reach this deployment (scheme, host and any port, no path).
# Every public URL the OAuth documents carry (the issuer, each workspace's resource URL,
# the endpoints) is built from it, never from a request's Host header.
MCPNEST_PUBLIC_URL = (
    env_str("MCPNEST_PUBLIC_URL") or ("http://127.0.0.1:8000" if DEBUG else env_required("MCPNEST_PUBLIC_URL"))
).rstrip("/")
# django-oauth-toolkit, set for MCP clients: authorization code + PKCE S256 only, public
# clients registered dynamically (RFC 7591) or by metadata document (CIMD), every token
# bound to one workspace's gateway URL (RFC 8707), tokens stored as SHA-256 digests,
# refresh tokens rotated with reuse detection, and every RFC 9700 gate on.
# The toolkit's own models (its swappable settings, named so migrations can refer to them).
OAUTH2_PROVIDER_APPLICATION_MODEL = "oauth2_provider.Application"
OAUTH2_PROVIDER_ACCESS_TOKEN_MODEL = "oauth2_provider.AccessToken"  # noqa: S105 - a model name
OAUTH2_PROVIDER_REFRESH_TOKEN_MODEL = "oauth2_provider.RefreshToken"  # noqa: S105 - a model name
OAUTH2_PROVIDER_ID_TOKEN_MODEL = "oauth2_provider.IDToken"  # noqa: S105 - a model name
OAUTH2_PROVIDER_GRANT_MODEL = "oauth2_provider.Grant"
OAUTH2_PROVIDER = {
    "SCOPES": {"mcp": "Use this workspace's MCP gateway: list and call the tools you are allowed to use"},
    "DEFAULT_SCOPES": ["mcp"],
    "OIDC_ISS_ENDPOINT": MCPNEST_PUBLIC_URL,
    "OAUTH2_VALIDATOR_CLASS": "apps.oauth.validators.Validator",
    "ACCESS_TOKEN_GENERATOR": "apps.oauth.tokens.access_token",
    "REFRESH_TOKEN_GENERATOR": "apps.oauth.tokens.refresh_token",
    "ACCESS_TOKEN_EXPIRE_SECONDS": env_int("MCPNEST_OAUTH_ACCESS_TOKEN_SECONDS", 3600),
    "REFRESH_TOKEN_EXPIRE_SECONDS": env_int("MCPNEST_OAUTH_REFRESH_TOKEN_SECONDS", 30 * 24 * 3600),
    "AUTHORIZATION_CODE_EXPIRE_SECONDS": 60,
    "ROTATE_REFRESH_TOKEN": True,
    "REFRESH_TOKEN_REUSE_PROTECTION": True,
    "PKCE_REQUIRED": True,
    # Loopback redirects match on any port (RFC 8252); "localhost" counts as loopback
    # because Claude Code and the MCP Inspector register it.
    "ALLOW_LOCALHOST_LOOPBACK": True,
    # https for web clients; http for loopback only (checked at registration); the private-use
    # schemes desktop clients register.
    "ALLOWED_REDIRECT_URI_SCHEMES": ["https", "http", "cursor", "vscode", "vscode-insiders", "windsurf"],
    "OAUTH2_RESPONSE_TYPES_SUPPORTED": ["code"],
    "OAUTH2_GRANT_TYPES_SUPPORTED": ["authorization_code", "refresh_token"],
    "OAUTH2_TOKEN_ENDPOINT_AUTH_METHODS_SUPPORTED": ["none", "client_secret_post", "client_secret_basic"],
    "OAUTH2_PROTECTED_RESOURCE_AUTHORIZATION_SERVERS": [MCPNEST_PUBLIC_URL],
    "OAUTH2_PROTECTED_RESOURCE_BEARER_METHODS_SUPPORTED": ["header"],
    "OAUTH2_PROTECTED_RESOURCE_NAME": "MCPNest gateway",
    "DCR_ENABLED": True,
    "DCR_REGISTRATION_PERMISSION_CLASSES": ("apps.oauth.registration.RegistrationRateLimit",),
    "CIMD_ENABLED": True,
    "CIMD_METADATA_FETCHER": "apps.oauth.registration.MetadataFetcher",
    "REQUEST_APPROVAL_PROMPT": "force",
    "COMPLIANT_BCP_RFC9700_IMPLICIT_GRANT": True,
    "COMPLIANT_BCP_RFC9700_PASSWORD_GRANT": True,
    "COMPLIANT_BCP_RFC9700_PKCE_METHOD": True,
    "COMPLIANT_BCP_RFC9700_ACCESS_TOKEN_TRANSPORT": True,
    "COMPLIANT_BCP_RFC9700_AUTHZ_RESPONSE_ISS": True,
    "COMPLIANT_BCP_RFC9700_TOKEN_STORAGE": True,
    "COMPLIANT_BCP_RFC9700_REFRESH_TOKEN": True,
    # Off, and its warning silenced (SILENCED_SYSTEM_CHECKS): "http" stays allowed for native
    # clients' loopback redirects (RFC 8252), and registration refuses http to any other
    # host (apps.oauth.registration.redirect_uri_problem), which the toolkit cannot express.
    "COMPLIANT_BCP_RFC9700_REDIRECT_URI_SCHEME": False,
    "COMPLIANT_BCP_RFC9700_REDIRECT_URI_MATCHING": True,
    "COMPLIANT_BCP_RFC9700_PKCE_REQUIRED": True,
}
SILENCED_SYSTEM_CHECKS = ["oauth2_provider.W008"]
# Registered clients with no live token for this many days are deleted (a daily task).
MCPNEST_OAUTH_IDLE_CLIENT_DAYS = env_int("MCPNEST_OAUTH_IDLE_CLIENT_DAYS", 30)
# Dynamic client registrations per client IP and hour.
MCPNEST_OAUTH_REGISTRATIONS_PER_HOUR = env_int("MCPNEST_OAUTH_REGISTRATIONS_PER_HOUR", 20)
# Client ID Metadata Documents are fetched from public addresses only, unless this allows
# private and loopback ones (a lab, a test), and verified against the system's CAs, or
# this bundle's.
MCPNEST_OAUTH_CIMD_ALLOW_PRIVATE = env_bool("MCPNEST_OAUTH_CIMD_ALLOW_PRIVATE", False)
MCPNEST_OAUTH_CIMD_CA_FILE = env_str("MCPNEST_OAUTH_CIMD_CA_FILE", "")

# --- SSO (apps.sso) ---------------------------------------------------------------
# Every OpenID Connect or SAML app is a workspace's company IdP (apps.sso.SsoConnection, set
# up in the admin). The adapter lets an IdP vouch only for its connection's e-mail domains:
# such an address signs in (and links) the existing account that has it, and creates one
# only when the connection provisions just in time.
SOCIALACCOUNT_ADAPTER = "apps.sso.adapter.SocialAccountAdapter"
SOCIALACCOUNT_EMAIL_AUTHENTICATION = False  # the adapter decides, per connection and domain
SOCIALACCOUNT_EMAIL_AUTHENTICATION_AUTO_CONNECT = True  # a linked sign-in becomes the SSO identity
SOCIALACCOUNT_AUTO_SIGNUP = True  # JIT: no sign-up form between the IdP and the portal
SOCIALACCOUNT_LOGIN_ON_GET = False  # a sign-in starts only from a POST carrying a CSRF token
SOCIALACCOUNT_STORE_TOKENS = False  # the IdP's access tokens are not needed after sign-in
SOCIALACCOUNT_REQUESTS_TIMEOUT = env_int("SOCIALACCOUNT_REQUESTS_TIMEOUT", 5)
SOCIALACCOUNT_PROVIDERS = {
    # PKCE on every authorization code, whatever the IdP requires.
    "openid_connect": {"OAUTH_PKCE_ENABLED": True},
}

# --- SCIM (apps.scim) -------------------------------------------------------------
# django-scim2 serves /scim/v2/ through apps.scim's views and adapters: the caller is a
# workspace's IdP with a SCIM token (apps.scim.auth), and that workspace is its tenant.
SCIM_SERVICE_PROVIDER = {
    "USER_ADAPTER": "apps.scim.adapters.ScimUserAdapter",
    "GROUP_MODEL": "apps.scim.models.ScimGroup",
    "GROUP_ADAPTER": "apps.scim.adapters.ScimGroupAdapter",
    "USER_FILTER_PARSER": "apps.scim.filters.UserFilter",
    "GROUP_FILTER_PARSER": "apps.scim.filters.GroupFilter",
    "SERVICE_PROVIDER_CONFIG_MODEL": "apps.scim.adapters.ServiceProviderConfig",
    "BASE_LOCATION_GETTER": "apps.scim.adapters.base_location",
    "AUTH_CHECK_MIDDLEWARE": "apps.scim.auth.ScimBearerAuth",
    "SCHEMAS_GETTER": "apps.scim.schemas.published",
    "NETLOC": "from-the-request",  # unused: base_location answers from the request's own host
    "AUTHENTICATION_SCHEMES": [
        {
            "type": "oauthbearertoken",
            "name": "SCIM token",
            "description": "A workspace's SCIM token (mns_…), created by staff in the admin or with "
            "manage.py scim_token_create, sent as Authorization: Bearer.",
            "primary": True,
        }
    ],
    "WWW_AUTHENTICATE_HEADER": 'Bearer realm="scim"',
}

# --- Security -------------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False  # the portal's forms read nothing from it; kept default for JS-free pages
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
if not DEBUG:
    SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", True)
    CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", True)
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 60 * 60 * 24 * 365)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)
    if env_bool("MCPNEST_BEHIND_TLS_PROXY", True):
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    # httpx2 logs every request at INFO: a line per tool call through the gateway.
    # The signed audit chain heads must reach the log sink whatever LOG_LEVEL says.
    "loggers": {"httpx2": {"level": "WARNING"}, "mcpnest.audit.heads": {"level": "INFO"}},
}
