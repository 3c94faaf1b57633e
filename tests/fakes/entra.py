"""A fake Microsoft Entra ID (Azure AD) token service for the client-credentials flow MSAL runs.

MSAL only talks to an https authority, so the fake serves TLS with a self-signed certificate made
at start-up; point ``REQUESTS_CA_BUNDLE`` at ``fake.ca_file`` so MSAL's HTTP client trusts it.

Routes, as Entra ID answers them for ``https://HOST/{tenant}``:

* ``GET /{tenant}/v2.0/.well-known/openid-configuration``: the endpoints (tenant discovery);
* ``POST /{tenant}/oauth2/v2.0/token`` with ``grant_type=client_credentials``, ``client_id``,
  ``client_secret`` and ``scope``: ``{"token_type": "Bearer", "expires_in": 3599, "access_token"}``
  for a registered app and secret; otherwise HTTP 401 ``invalid_client`` with Entra's AADSTS
  message (``AADSTS7000215`` for a wrong secret, ``AADSTS700016`` for an unknown app), or 400
  ``invalid_scope`` for a scope other than the Bot Framework's.
"""

from __future__ import annotations

import base64
import datetime
import json
import ssl
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.fakes.server import LocalServer

BOT_FRAMEWORK_SCOPE = "https://api.botframework.com/.default"


@dataclass
class FakeEntraID(LocalServer):
    apps: dict[str, str] = field(default_factory=dict)  # client id -> secret
    token_requests: list[dict[str, str]] = field(default_factory=list)
    _dir: tempfile.TemporaryDirectory | None = None

    def add_app(self, client_id: str, secret: str) -> None:
        self.apps[client_id] = secret

    @property
    def url(self) -> str:
        """The authority host, for HERALD_TEAMS_AUTHORITY_URL."""
        return f"https://127.0.0.1:{self.port}"

    @property
    def ca_file(self) -> str:
        assert self._dir is not None
        return str(Path(self._dir.name) / "cert.pem")

    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/{tenant}/v2.0/.well-known/openid-configuration", self._discovery)
        app.router.add_post("/{tenant}/oauth2/v2.0/token", self._token)
        return app

    def ssl_context(self) -> ssl.SSLContext:
        self._dir = tempfile.TemporaryDirectory(prefix="fake-entra-")
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(*_self_signed(Path(self._dir.name)))
        return context

    async def stop(self) -> None:
        await super().stop()
        if self._dir is not None:
            self._dir.cleanup()

    async def _discovery(self, request: web.Request) -> web.Response:
        base = f"{self.url}/{request.match_info['tenant']}"
        return web.json_response({
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "issuer": f"{base}/v2.0",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
        })

    async def _token(self, request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        auth = request.headers.get("Authorization", "")
        if auth.lower().startswith("basic "):
            client_id, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
            form.setdefault("client_id", client_id)
            form.setdefault("client_secret", secret)
        self.token_requests.append({k: v for k, v in form.items() if k != "client_secret"})
        client_id = form.get("client_id", "")
        if form.get("grant_type") != "client_credentials":
            return _error(400, "unsupported_grant_type", "AADSTS70003: The app requested an unsupported grant type.")
        if client_id not in self.apps:
            return _error(400, "unauthorized_client", f"AADSTS700016: Application with identifier '{client_id}' "
                                                      "was not found in the directory.")
        if form.get("client_secret") != self.apps[client_id]:
            return _error(401, "invalid_client", "AADSTS7000215: Invalid client secret provided. Ensure the "
                                                 "secret being sent in the request is the client secret value.")
        if form.get("scope") != BOT_FRAMEWORK_SCOPE:
            return _error(400, "invalid_scope", f"AADSTS1002012: The provided value for scope "
                                                f"{form.get('scope')} is not valid.")
        header = base64.urlsafe_b64encode(b'{"alg":"none"}').rstrip(b"=").decode()
        claims = base64.urlsafe_b64encode(json.dumps({"appid": client_id}).encode()).rstrip(b"=").decode()
        return web.json_response({"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599,
                                  "access_token": f"{header}.{claims}.c2lnbmF0dXJl"})


def _error(status: int, error: str, description: str) -> web.Response:
    return web.json_response({"error": error, "error_description": description, "error_codes": [int(
        description[6:description.index(":")])]}, status=status)


def _self_signed(directory: Path) -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    import ipaddress

    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_file), str(key_file)
