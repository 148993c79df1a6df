"""Helpers of the front door interop suite: keys, JWT minting, the JWKS host, the registry
and the server process. The fixtures that wire them together are in ``conftest.py``; the module
has its own name so it never collides with another suite's ``conftest`` module."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

STARTUP_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
HTTP_TIMEOUT_S = 30

CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
TOKEN_EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
ID_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:id_token"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"

# Issuers the server is configured with (API.md §5 #12 compares `iss` with these exactly).
CIS2_ISSUER = (
    "https://cis2.example.nhs.uk:443/"
    "openam/oauth2/realms/NHSIdentity/realms/Healthcare"
)
NHS_LOGIN_ISSUER = "https://auth.sandpit.signin.nhs.uk"
# Where the suite's JWKS server publishes the identity providers' keys.
CIS2_JWKS_PATH = "/cis2/jwks"
NHS_LOGIN_JWKS_PATH = "/nhs-login/jwks"

HELLO_APP_SCOPE = "urn:nhsd:apim:app:level3:hello-world"
HELLO_CIS2_SCOPE = "urn:nhsd:apim:user-nhs-cis2:aal3:hello-world"
HELLO_P9_SCOPE = "urn:nhsd:apim:user-nhs-login:P9:hello-world"
ALL_HELLO_SCOPES = [HELLO_APP_SCOPE, HELLO_CIS2_SCOPE, HELLO_P9_SCOPE]

# Sentinel: pass as a claim or header value to leave that claim/header out of the JWT.
OMIT = object()


# --------------------------------------------------------------------------------------------
# Keys
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RsaKey:
    """An RSA key pair with the key id it is published under."""

    kid: str
    private_key: rsa.RSAPrivateKey

    @classmethod
    def generate(cls, kid: str, bits: int = 2048) -> RsaKey:
        return cls(kid, rsa.generate_private_key(public_exponent=65537, key_size=bits))

    @property
    def private_pem(self) -> str:
        """PEM text, as an integrator reads it from ``jwtRS512.key``."""
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        ).decode("ascii")

    def jwk(self, alg: str | None = "RS512") -> dict[str, Any]:
        """The public JWK as the NHS guide publishes it: kty, n, e, alg, kid, use."""
        numbers = self.private_key.public_key().public_numbers()
        out = {"kty": "RSA", "n": _b64_uint(numbers.n), "e": _b64_uint(numbers.e)}
        if alg is not None:
            out["alg"] = alg
        out["kid"] = self.kid
        out["use"] = "sig"
        return out


def _b64_uint(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return jwt.utils.base64url_encode(raw).decode("ascii")


def jwks(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"keys": list(entries)}


# --------------------------------------------------------------------------------------------
# JWT minting
# --------------------------------------------------------------------------------------------


def _apply(base: dict[str, Any], overrides: dict[str, Any] | None) -> dict[str, Any]:
    out = dict(base)
    for name, value in (overrides or {}).items():
        if value is OMIT:
            out.pop(name, None)
        else:
            out[name] = value
    return out


def make_client_assertion(
    client_id: str,
    private_key_pem: str,
    kid: str | None,
    token_url: str,
    *,
    algorithm: str = "RS512",
    claims: dict[str, Any] | None = None,
    headers: dict[str, Any] | None = None,
) -> str:
    """A client assertion minted the way NHS England's signed-JWT guide tells integrators to.

    claims: iss = sub = client_id, aud = the token URL, jti = a fresh UUID, exp = now + 300;
    header: kid (PyJWT adds ``typ: JWT`` and ``alg``). ``claims``/``headers`` override or,
    with ``OMIT``, drop entries; ``kid=None`` sends no kid.
    """
    base_claims = {
        "sub": client_id,
        "iss": client_id,
        "jti": str(uuid.uuid4()),
        "aud": token_url,
        "exp": int(time.time()) + 300,  # 5 mins in the future
    }
    additional_headers = {} if kid is None else {"kid": kid}
    return jwt.encode(
        _apply(base_claims, claims),
        private_key_pem,
        algorithm=algorithm,
        headers=_apply(additional_headers, headers),
    )


def make_cis2_id_token(
    key: RsaKey,
    *,
    algorithm: str = "RS256",
    issuer: str = CIS2_ISSUER,
    aal: str = "3",
    claims: dict[str, Any] | None = None,
) -> str:
    """A CIS2 ID token (API.md §5 claim list; CIS2 signs with RS256, the IDS tests with RS512).

    ``authentication_assurance_level`` and ``id_assurance_level`` are strings, as CIS2 sends them.
    """
    now = int(time.time())
    base = {
        "sub": "555254240100",
        "iss": issuer,
        "aud": "969567331415.apps.national",
        "azp": "969567331415.apps.national",
        "exp": now + 300,
        "iat": now - 10,
        "auth_time": now - 20,
        "acr": f"AAL{aal}_ANY",
        "amr": ["N3_SMARTCARD"],
        "authentication_assurance_level": aal,
        "id_assurance_level": "3",
        "tokenName": "id_token",
        "tokenType": "JWTToken",
        "realm": "/NHSIdentity/Healthcare",
    }
    return jwt.encode(_apply(base, claims), key.private_pem, algorithm=algorithm, headers={"kid": key.kid})


def make_nhs_login_id_token(
    key: RsaKey,
    *,
    proofing_level: str = "P9",
    issuer: str = NHS_LOGIN_ISSUER,
    claims: dict[str, Any] | None = None,
) -> str:
    """An NHS login ID token: header kid, typ JWT, alg RS512 and the claims API.md §5 lists."""
    now = int(time.time())
    base = {
        "sub": "49f470a1-cc52-49b7-beba-0f9cec937c46",
        "iss": issuer,
        "aud": "openspine-frontdoor-tests",
        "exp": now + 600,
        "iat": now - 10,
        "auth_time": now - 20,
        "jti": str(uuid.uuid4()),
        "vot": f"{proofing_level}.Cp.Cd",
        "vtm": "https://auth.sandpit.signin.nhs.uk/trustmark/auth.sandpit.signin.nhs.uk",
        "identity_proofing_level": proofing_level,
        "nhs_number": "9912003071",
        "id_status": "verified",
        "token_use": "id",
    }
    return jwt.encode(_apply(base, claims), key.private_pem, algorithm="RS512", headers={"kid": key.kid})


# --------------------------------------------------------------------------------------------
# The JWKS host
# --------------------------------------------------------------------------------------------


@dataclass
class JwksRequest:
    method: str
    path: str
    headers: dict[str, str]


class JwksServer:
    """Loopback HTTP server: one JSON document (or status) per path, changeable at run time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._docs: dict[str, tuple[int, bytes]] = {}
        self.requests: list[JwksRequest] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 - http.server naming
                path = self.path.split("?", 1)[0]
                with owner._lock:
                    owner.requests.append(JwksRequest("GET", path, {k.lower(): v for k, v in self.headers.items()}))
                    status, body = owner._docs.get(path, (404, b'{"error": "not found"}'))
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="jwks-server", daemon=True)
        self._thread.start()

    def url(self, path: str) -> str:
        return self.base_url + path

    def set_json(self, path: str, document: Any, status: int = 200) -> None:
        with self._lock:
            self._docs[path] = (status, json.dumps(document).encode("utf-8"))

    def set_status(self, path: str, status: int) -> None:
        with self._lock:
            self._docs[path] = (status, b'{"error": "unavailable"}')

    def requests_for(self, path: str) -> list[JwksRequest]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------


def hello_product(scopes: list[str]) -> dict[str, Any]:
    return {"name": "hello-world-app", "apis": ["hello-world"], "scopes": list(scopes)}


@dataclass(frozen=True)
class AppSpec:
    """One registry line. ``jwks``: "url" (own path on the JWKS server), "inline", "none",
    "closed-port" (a loopback port nobody listens on) or "http-500" (the JWKS host errors)."""

    scopes: tuple[str, ...] = tuple(ALL_HELLO_SCOPES)
    jwks: str = "url"
    quota_per_minute: int | None = None
    status: str = "approved"
    key_bits: int = 2048


# Every app the tests use; the key is the client_id. One app per concern keeps tests order-free.
APP_SPECS: dict[str, AppSpec] = {
    # 4096-bit, as the NHS guide generates keys (`openssl genrsa -out jwtRS512.key 4096`).
    "fd-cc-happy": AppSpec(key_bits=4096),
    "fd-cc-errors": AppSpec(),
    "fd-jti-replay": AppSpec(),
    "fd-inline-jwks": AppSpec(jwks="inline"),
    "fd-no-jwks": AppSpec(jwks="none"),
    "fd-jwks-closed-port": AppSpec(jwks="closed-port"),
    "fd-jwks-http-500": AppSpec(jwks="http-500"),
    "fd-jwks-rotate": AppSpec(),
    "fd-jwks-user-agent": AppSpec(),
    "fd-user-scopes-only": AppSpec(scopes=(HELLO_CIS2_SCOPE, HELLO_P9_SCOPE)),
    "fd-cis2": AppSpec(),
    "fd-cis2-refresh": AppSpec(),
    "fd-nhs-login": AppSpec(),
    "fd-p9-only": AppSpec(scopes=(HELLO_P9_SCOPE,)),
    "fd-bearer": AppSpec(),
    "fd-quota": AppSpec(quota_per_minute=5),
}


@dataclass
class App:
    client_id: str
    client_secret: str
    name: str
    asid: str
    key: RsaKey
    jwks_path: str | None
    spec: AppSpec
    registry_line: dict[str, Any] = field(default_factory=dict)


def registry_line(app: App, jwks_server: JwksServer, closed_port: int) -> dict[str, Any]:
    line: dict[str, Any] = {
        "client_id": app.client_id,
        "name": app.name,
        "status": app.spec.status,
        "client_secret": app.client_secret,
    }
    kind = app.spec.jwks
    if kind in ("url", "http-500"):
        line["jwks_url"] = jwks_server.url(app.jwks_path)
    elif kind == "closed-port":
        line["jwks_url"] = f"http://127.0.0.1:{closed_port}/apps/{app.client_id}/jwks.json"
    elif kind == "inline":
        line["jwks"] = jwks(app.key.jwk())
    elif kind != "none":
        raise ValueError(f"unknown jwks kind {kind!r}")
    line["asid"] = app.asid
    line["products"] = [hello_product(list(app.spec.scopes))]
    if app.spec.quota_per_minute is not None:
        line["rate_limits"] = {
            "hello-world": {
                "quota": {
                    "limit": app.spec.quota_per_minute,
                    "interval": "1",
                    "timeunit": "minute",
                    "enabled": True,
                }
            }
        }
    return line


# --------------------------------------------------------------------------------------------
# The server under test
# --------------------------------------------------------------------------------------------


def _tail(path: Path, limit: int = 6000) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<could not read {path}: {exc}>"
    return text if len(text) <= limit else "...\n" + text[-limit:]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """The binary under test; stdout/stderr go to files so a full pipe never blocks it."""

    def __init__(self, argv: list[str], workdir: Path):
        self.argv = argv
        self.stdout_path = workdir / "openspine.stdout.log"
        self.stderr_path = workdir / "openspine.stderr.log"
        self._stdout = open(self.stdout_path, "wb")  # noqa: SIM115 - closed in stop()
        self._stderr = open(self.stderr_path, "wb")  # noqa: SIM115 - closed in stop()
        try:
            self.proc = subprocess.Popen(
                argv, stdout=self._stdout, stderr=self._stderr, stdin=subprocess.DEVNULL, cwd=workdir
            )
        except OSError as exc:
            self._close_logs()
            pytest.fail(f"could not start {' '.join(argv)}: {exc}", pytrace=False)

    def wait_until_pinging(self, ping_url: str, timeout_s: float = STARTUP_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        last = "no attempt made"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._fail(f"exited with status {self.proc.returncode} before {ping_url} answered 200")
            try:
                response = requests.get(ping_url, timeout=2)
                if response.status_code == 200:
                    return
                last = f"HTTP {response.status_code}: {response.text[:200]}"
            except requests.RequestException as exc:
                last = repr(exc)
            time.sleep(0.2)
        self.stop()
        self._fail(f"did not answer 200 on {ping_url} within {timeout_s:.0f} s (last: {last})")

    def _fail(self, why: str) -> None:
        if not self._stderr.closed:
            self._stderr.flush()
        pytest.fail(
            f"openspine {why}\ncommand: {' '.join(self.argv)}\n"
            f"--- stderr ({self.stderr_path}) ---\n{_tail(self.stderr_path)}\n"
            f"--- stdout ({self.stdout_path}) ---\n{_tail(self.stdout_path, 2000)}",
            pytrace=False,
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM first
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=STOP_TIMEOUT_S)
        self._close_logs()

    def _close_logs(self) -> None:
        for handle in (self._stdout, self._stderr):
            if not handle.closed:
                handle.close()


class FrontDoor:
    """What the tests drive: the server's URLs, the apps, the IdP keys and request helpers."""

    def __init__(self, base_url: str, apps: dict[str, App], idp_keys: dict[str, RsaKey], jwks_server: JwksServer):
        self.base_url = base_url
        self.token_url = f"{base_url}/oauth2/token"
        self.apps = apps
        self.idp_keys = idp_keys
        self.jwks_server = jwks_server
        self.http = requests.Session()
        self.http.trust_env = False  # no proxy from the environment for loopback calls

    # ---- client assertions ------------------------------------------------------------

    def assertion(
        self,
        client_id: str,
        *,
        key: RsaKey | None = None,
        kid: str | None | object = OMIT,
        algorithm: str = "RS512",
        claims: dict[str, Any] | None = None,
        headers: dict[str, Any] | None = None,
    ) -> str:
        """A client assertion for a registered app (or any ``client_id``), signed with the app's
        key unless ``key`` is given; ``kid`` defaults to the signing key's kid."""
        app = self.apps.get(client_id)
        signing_key = key or (app.key if app else self.apps["fd-cc-errors"].key)
        use_kid = signing_key.kid if kid is OMIT else kid
        return make_client_assertion(
            client_id,
            signing_key.private_pem,
            use_kid,  # type: ignore[arg-type]
            self.token_url,
            algorithm=algorithm,
            claims=claims,
            headers=headers,
        )

    # ---- token endpoint ----------------------------------------------------------------

    def post_token(self, data: dict[str, Any], **kwargs: Any) -> requests.Response:
        """POST a form (``application/x-www-form-urlencoded``, as requests sends ``data=``)."""
        return self.http.post(self.token_url, data=data, timeout=HTTP_TIMEOUT_S, **kwargs)

    def client_credentials(self, client_id: str, assertion: str | None = None, **extra: Any) -> requests.Response:
        data = {
            "grant_type": "client_credentials",
            "client_assertion_type": CLIENT_ASSERTION_TYPE,
            "client_assertion": assertion if assertion is not None else self.assertion(client_id),
        }
        data.update(extra)
        return self.post_token(data)

    def app_token(self, client_id: str) -> str:
        response = self.client_credentials(client_id)
        assert response.status_code == 200, f"client credentials for {client_id}: {response.status_code} {response.text}"
        return response.json()["access_token"]

    def token_exchange(self, client_id: str, subject_token: str, **extra: Any) -> requests.Response:
        data = {
            "grant_type": TOKEN_EXCHANGE_GRANT,
            "subject_token_type": ID_TOKEN_TYPE,
            "subject_token": subject_token,
            "client_assertion_type": CLIENT_ASSERTION_TYPE,
            "client_assertion": self.assertion(client_id),
        }
        data.update(extra)
        return self.post_token(data)

    def refresh(self, client_id: str, refresh_token: str, *, client_secret: str | None = None) -> requests.Response:
        return self.post_token(
            {
                "grant_type": "refresh_token",
                "client_id": client_id,
                "client_secret": client_secret if client_secret is not None else self.apps[client_id].client_secret,
                "refresh_token": refresh_token,
            }
        )

    # ---- ID tokens from the suite's own identity providers -----------------------------

    def cis2_id_token(self, *, algorithm: str = "RS256", **kwargs: Any) -> str:
        key = self.idp_keys["cis2-rs512" if algorithm == "RS512" else "cis2"]
        return make_cis2_id_token(key, algorithm=algorithm, **kwargs)

    def nhs_login_id_token(self, **kwargs: Any) -> str:
        return make_nhs_login_id_token(self.idp_keys["nhs-login"], **kwargs)

    # ---- the protected Hello World API --------------------------------------------------

    def get(self, path: str, token: str | None = None, headers: dict[str, str] | None = None) -> requests.Response:
        all_headers = dict(headers or {})
        if token is not None:
            all_headers["Authorization"] = f"Bearer {token}"
        return self.http.get(self.base_url + path, headers=all_headers, timeout=HTTP_TIMEOUT_S)
