"""Who may register a client, and how a Client ID Metadata Document is fetched.

Registration is open, as MCP clients need (they register themselves on first use), and
limited per client IP. A metadata document is fetched only from public addresses, pinned
to the address that was checked (no DNS rebinding), within the toolkit's size and time
limits; ``MCPNEST_OAUTH_CIMD_ALLOW_PRIVATE`` admits private ones for a lab or a test.
"""

from __future__ import annotations

import socket
import ssl
import time
from urllib.parse import urlsplit

import urllib3
from django.conf import settings
from django.core.cache import cache
from oauth2_provider.cimd import CIMDError, SafeMetadataFetcher, _ip_is_public, _validate_client_id_url
from oauth2_provider.settings import oauth2_settings

from apps.core.http import client_ip

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "[::1]", "::1", "localhost"})


def redirect_uri_problem(uri: str) -> str | None:
    """Why a redirect URI may not be registered, or None. OAuth 2.1: https, http to a
    loopback address only (any port, RFC 8252), or a private-use scheme a desktop client
    owns; never a fragment."""
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if parts.fragment:
        return f"{uri!r} has a fragment; redirect URIs may not."
    if scheme == "http" and (parts.hostname or "") not in LOOPBACK_HOSTS:
        return f"{uri!r} uses http on a non-loopback host; use https, or http://127.0.0.1 for a local client."
    if scheme not in oauth2_settings.ALLOWED_REDIRECT_URI_SCHEMES:
        allowed = ", ".join(oauth2_settings.ALLOWED_REDIRECT_URI_SCHEMES)
        return f"{uri!r} uses the scheme {scheme!r}; allowed: {allowed}."
    if scheme in ("http", "https") and not parts.hostname:
        return f"{uri!r} has no host."
    return None


class RegistrationRateLimit:
    """DCR permission: ``MCPNEST_OAUTH_REGISTRATIONS_PER_HOUR`` registrations per client IP."""

    def has_permission(self, request) -> bool:
        key = f"oauth:dcr:{client_ip(request) or '-'}:{int(time.time() // 3600)}"
        cache.add(key, 0, timeout=3600)
        try:
            count = cache.incr(key)
        except ValueError:  # evicted between add and incr
            cache.set(key, 1, timeout=3600)
            count = 1
        return count <= settings.MCPNEST_OAUTH_REGISTRATIONS_PER_HOUR


class MetadataFetcher(SafeMetadataFetcher):
    """The toolkit's SSRF-safe fetcher, with a configurable CA bundle and, for labs and
    tests only, private addresses."""

    # Grant types this server never issues; a client's document may list them for other
    # servers (VS Code's lists the device grant), which must not get the client refused.
    UNSERVED_GRANT_TYPES = frozenset({"urn:ietf:params:oauth:grant-type:device_code"})

    def _read_document(self, response):
        data, max_age = super()._read_document(response)
        grant_types = data.get("grant_types")
        if isinstance(grant_types, list):
            data["grant_types"] = [grant for grant in grant_types if grant not in self.UNSERVED_GRANT_TYPES]
        return data, max_age

    def fetch(self, client_id):
        parsed = _validate_client_id_url(client_id)
        port = parsed.port or 443
        ips = self._resolve(parsed.hostname, port)
        context = ssl.create_default_context(cafile=settings.MCPNEST_OAUTH_CIMD_CA_FILE or None)
        timeout = oauth2_settings.CIMD_FETCH_TIMEOUT_SECONDS
        deadline = time.monotonic() + timeout
        path = parsed.path + (f"?{parsed.query}" if parsed.query else "")
        headers = {"Host": parsed.netloc, "Accept": "application/json, application/*+json"}
        last_exc = None
        for ip in ips:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            # Connect to the address that was checked; SNI, the certificate and Host use the name.
            pool = urllib3.HTTPSConnectionPool(
                host=ip,
                port=port,
                timeout=urllib3.Timeout(connect=remaining, read=remaining, total=remaining),
                retries=False,
                maxsize=1,
                ssl_context=context,
                server_hostname=parsed.hostname,
                assert_hostname=parsed.hostname,
            )
            try:
                response = pool.urlopen("GET", path, headers=headers, redirect=False, preload_content=False)
                try:
                    return self._read_document(response)
                finally:
                    response.release_conn()
            except urllib3.exceptions.HTTPError as exc:
                last_exc = exc
            finally:
                pool.close()
        raise CIMDError(f"could not fetch client_id document: {last_exc}")

    @staticmethod
    def _resolve(hostname: str, port: int) -> list[str]:
        try:
            infos = socket.getaddrinfo(hostname, port, proto=socket.IPPROTO_TCP)
        except socket.gaierror as exc:
            raise CIMDError(f"could not resolve client_id host: {exc}") from exc
        ips = [info[4][0] for info in infos]
        if not ips:
            raise CIMDError("client_id host did not resolve to any address")
        if not settings.MCPNEST_OAUTH_CIMD_ALLOW_PRIVATE:
            for ip in ips:
                if not _ip_is_public(ip):
                    raise CIMDError(f"client_id host resolves to a non-public address ({ip})")
        return ips
