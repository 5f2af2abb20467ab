"""Stand-ins for a company's IdP: an OpenID Connect provider on a local HTTP server, and a
SAML 2.0 IdP's signed responses. Both speak the real formats; only the keys are made up."""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import SplitResult, parse_qs, urlencode

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from onelogin.saml2.utils import OneLogin_Saml2_Utils

from tests.local_http import LocalServer

KID = "test-key-1"


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


# --- OpenID Connect -------------------------------------------------------------------------


@dataclass
class Grant:
    client_id: str
    redirect_uri: str
    nonce: str | None
    code_challenge: str | None


@dataclass
class OidcIdP(LocalServer):
    """An OpenID Connect provider: discovery, JWKS, authorize, token, userinfo.

    ``claims`` are the person the next sign-in is for. ``authorize`` (what a browser does
    at the IdP) issues a code for the request it is given; ``/token`` checks the client's
    secret, the code and its PKCE verifier, and answers with an RS256 ``id_token``.
    """

    client_id: str
    client_secret: str
    claims: dict[str, Any]
    key: rsa.RSAPrivateKey = field(default_factory=rsa_key)
    id_token_overrides: dict[str, Any] = field(default_factory=dict)
    grants: dict[str, Grant] = field(default_factory=dict)
    access_tokens: dict[str, dict[str, Any]] = field(default_factory=dict)
    token_requests: list[dict[str, list[str]]] = field(default_factory=list)

    def authorize(self, query: dict[str, list[str]]) -> str:
        """The redirect back to the client, as the IdP sends after the person signs in."""
        assert query["response_type"] == ["code"]
        code = secrets.token_urlsafe(16)
        self.grants[code] = Grant(
            client_id=query["client_id"][0],
            redirect_uri=query["redirect_uri"][0],
            nonce=(query.get("nonce") or [None])[0],
            code_challenge=(query.get("code_challenge") or [None])[0],
        )
        return f"{query['redirect_uri'][0]}?{urlencode({'code': code, 'state': query['state'][0]})}"

    def _json(self, status: int, body: Any) -> tuple[int, dict[str, str], bytes]:
        return status, {"Content-Type": "application/json"}, json.dumps(body).encode()

    def respond(self, method: str, url: SplitResult, headers: dict[str, str], body: bytes):
        if url.path == "/.well-known/openid-configuration":
            return self._json(
                200,
                {
                    "issuer": self.url,
                    "authorization_endpoint": f"{self.url}/authorize",
                    "token_endpoint": f"{self.url}/token",
                    "userinfo_endpoint": f"{self.url}/userinfo",
                    "jwks_uri": f"{self.url}/jwks",
                    "response_types_supported": ["code"],
                    "subject_types_supported": ["public"],
                    "id_token_signing_alg_values_supported": ["RS256"],
                    "scopes_supported": ["openid", "email", "profile"],
                    "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
                    "code_challenge_methods_supported": ["S256"],
                    "claims_supported": ["sub", "email", "email_verified", "name", "groups"],
                },
            )
        if url.path == "/jwks":
            jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
            return self._json(200, {"keys": [{**jwk, "kid": KID, "alg": "RS256", "use": "sig"}]})
        if url.path == "/token" and method == "POST":
            return self._token(parse_qs(body.decode()))
        if url.path == "/userinfo":
            info = self.access_tokens.get(headers.get("authorization", "").removeprefix("Bearer "))
            if info is None:
                return self._json(401, {"error": "invalid_token"})
            return self._json(200, info)
        return self._json(404, {"error": "not_found"})

    def _token(self, form: dict[str, list[str]]):
        self.token_requests.append(form)
        one = {name: values[0] for name, values in form.items()}
        if one.get("client_id") != self.client_id or one.get("client_secret") != self.client_secret:
            return self._json(401, {"error": "invalid_client"})
        grant = self.grants.pop(one.get("code", ""), None)
        if (
            grant is None
            or one.get("grant_type") != "authorization_code"
            or one.get("redirect_uri") != grant.redirect_uri
        ):
            return self._json(400, {"error": "invalid_grant"})
        if grant.code_challenge is not None:
            verifier = one.get("code_verifier", "")
            challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
            if challenge != grant.code_challenge:
                return self._json(400, {"error": "invalid_grant", "error_description": "PKCE"})
        now = int(time.time())
        id_claims = {
            "iss": self.url,
            "aud": self.client_id,
            "iat": now,
            "exp": now + 300,
            "jti": uuid.uuid4().hex,
            **({"nonce": grant.nonce} if grant.nonce else {}),
            **self.claims,
            **self.id_token_overrides,
        }
        access_token = secrets.token_urlsafe(24)
        self.access_tokens[access_token] = dict(self.claims)
        id_token = jwt.encode(id_claims, pem(self.key), algorithm="RS256", headers={"kid": KID})
        return self._json(
            200, {"access_token": access_token, "token_type": "Bearer", "expires_in": 300, "id_token": id_token}
        )


# --- SAML 2.0 -------------------------------------------------------------------------------


@dataclass
class SamlIdP:
    """A SAML IdP's signing identity: a key and its self-signed certificate."""

    entity_id: str
    sso_url: str
    key: rsa.RSAPrivateKey = field(default_factory=rsa_key)

    def __post_init__(self) -> None:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "idp.acme.test")])
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=365))
            .sign(self.key, hashes.SHA256())
        )
        self.cert_pem = self.cert.public_bytes(serialization.Encoding.PEM).decode()

    def response(
        self,
        *,
        acs_url: str,
        audience: str,
        in_response_to: str | None,
        email: str,
        groups: list[str] = (),
        tamper: dict[str, str] | None = None,
    ) -> str:
        """A base64 SAMLResponse whose Assertion is signed with this IdP's key.

        ``tamper`` replaces text in the assertion after it is signed, as an attacker on the
        way would.
        """

        def instant(seconds: int = 0) -> str:
            moment = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=seconds)
            return moment.strftime("%Y-%m-%dT%H:%M:%SZ")

        reply_to = f' InResponseTo="{in_response_to}"' if in_response_to else ""
        group_values = "".join(
            f'<saml:AttributeValue xsi:type="xs:string">{group}</saml:AttributeValue>' for group in groups
        )
        group_attribute = f'<saml:Attribute Name="groups">{group_values}</saml:Attribute>' if groups else ""
        assertion = (
            '<saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" '
            'xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
            f'ID="_a{uuid.uuid4().hex}" Version="2.0" IssueInstant="{instant()}">'
            f"<saml:Issuer>{self.entity_id}</saml:Issuer>"
            "<saml:Subject>"
            f'<saml:NameID Format="urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress">{email}</saml:NameID>'
            '<saml:SubjectConfirmation Method="urn:oasis:names:tc:SAML:2.0:cm:bearer">'
            f'<saml:SubjectConfirmationData NotOnOrAfter="{instant(300)}" Recipient="{acs_url}"{reply_to}/>'
            "</saml:SubjectConfirmation>"
            "</saml:Subject>"
            f'<saml:Conditions NotBefore="{instant(-60)}" NotOnOrAfter="{instant(300)}">'
            f"<saml:AudienceRestriction><saml:Audience>{audience}</saml:Audience></saml:AudienceRestriction>"
            "</saml:Conditions>"
            f'<saml:AuthnStatement AuthnInstant="{instant()}" SessionIndex="_s{uuid.uuid4().hex}">'
            "<saml:AuthnContext><saml:AuthnContextClassRef>"
            "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"
            "</saml:AuthnContextClassRef></saml:AuthnContext>"
            "</saml:AuthnStatement>"
            "<saml:AttributeStatement>"
            '<saml:Attribute Name="urn:oid:0.9.2342.19200300.100.1.3">'
            f'<saml:AttributeValue xsi:type="xs:string">{email}</saml:AttributeValue>'
            "</saml:Attribute>"
            f"{group_attribute}"
            "</saml:AttributeStatement>"
            "</saml:Assertion>"
        )
        signed = OneLogin_Saml2_Utils.add_sign(assertion, pem(self.key), self.cert_pem)
        signed = signed.decode() if isinstance(signed, bytes) else signed
        signed = signed.split("?>", 1)[-1].strip()  # drop the XML declaration before embedding
        for old, new in (tamper or {}).items():
            assert old in signed
            signed = signed.replace(old, new)
        response = (
            '<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" '
            'xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" '
            f'ID="_r{uuid.uuid4().hex}" Version="2.0" IssueInstant="{instant()}" Destination="{acs_url}"{reply_to}>'
            f"<saml:Issuer>{self.entity_id}</saml:Issuer>"
            '<samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Success"/></samlp:Status>'
            f"{signed}"
            "</samlp:Response>"
        )
        return base64.b64encode(response.encode()).decode()
