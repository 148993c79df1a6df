"""Fixtures for the OAuth2 front door interop suite (shared/frontdoor/API.md).

The suite plays every party around OpenSpine's NHS-England-style identity service:

* the *integrator*: client apps that authenticate with a signed JWT (RS512) exactly as NHS
  England's guide "Application-restricted RESTful APIs - signed JWT authentication" shows,
  with PyJWT: ``jwt.encode(claims, private_key_pem, algorithm="RS512", headers={"kid": kid})``;
* the apps' *public key hosting*: a loopback HTTP server (``JwksServer``) that serves one JWKS
  document per path; tests may change a document while the suite runs (key rotation) and read
  which requests the server under test made;
* the *identity providers*: CIS2 and NHS login, whose ID tokens the suite mints with its own
  RSA keys and whose JWKS it serves on the same loopback server.

``OPENSPINE_BIN`` names the server binary. It is started once per session:

    $OPENSPINE_BIN serve --listen 127.0.0.1:PORT --data-dir TMP \\
        --frontdoor-registry TMP/registry.jsonl \\
        --cis2-issuer CIS2_ISSUER --cis2-jwks-url http://127.0.0.1:JWKSPORT/cis2/jwks \\
        --nhs-login-issuer NHS_LOGIN_ISSUER --nhs-login-jwks-url http://127.0.0.1:JWKSPORT/nhs-login/jwks

and must answer ``GET /oauth2/_ping`` with 200 within 30 s (else the test fails showing the tail
of its stderr). It is stopped with SIGTERM, then SIGKILL after 10 s.

Every app the tests use is written to the registry before the server starts (``APP_SPECS``),
one app per concern, so the tests are independent of each other and of their order.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from frontdoor_support import (
    APP_SPECS,
    CIS2_ISSUER,
    CIS2_JWKS_PATH,
    NHS_LOGIN_ISSUER,
    NHS_LOGIN_JWKS_PATH,
    App,
    FrontDoor,
    JwksServer,
    RsaKey,
    ServerProcess,
    free_port,
    registry_line,
    jwks,
)


# --------------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------------


def pytest_report_header(config: pytest.Config) -> str:
    binary = os.environ.get("OPENSPINE_BIN")
    return f"front door under test: {binary or '<OPENSPINE_BIN not set>'}"


@pytest.fixture(scope="session")
def jwks_server() -> Iterator[JwksServer]:
    server = JwksServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def closed_port() -> Iterator[int]:
    """A loopback port that is bound (so nobody else takes it) but never listens: connect is refused."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


@pytest.fixture(scope="session")
def idp_keys(jwks_server: JwksServer) -> dict[str, RsaKey]:
    """The test identity providers' signing keys, published at /cis2/jwks and /nhs-login/jwks.
    CIS2 has an RS256 key (as CIS2 signs) and an RS512 one (as the NHS identity-service tests
    sign); NHS login an RS512 key."""
    keys = {
        "cis2": RsaKey.generate("cis2-rs256-1"),
        "cis2-rs512": RsaKey.generate("cis2-rs512-1"),
        "nhs-login": RsaKey.generate("nhs-login-1"),
    }
    jwks_server.set_json(CIS2_JWKS_PATH, jwks(keys["cis2"].jwk("RS256"), keys["cis2-rs512"].jwk("RS512")))
    jwks_server.set_json(NHS_LOGIN_JWKS_PATH, jwks(keys["nhs-login"].jwk("RS512")))
    return keys


@pytest.fixture(scope="session")
def apps(jwks_server: JwksServer, closed_port: int) -> dict[str, App]:
    """Every app of ``APP_SPECS`` with its own key and JWKS path, the JWKS documents published."""
    out: dict[str, App] = {}
    for index, (client_id, spec) in enumerate(APP_SPECS.items()):
        key = RsaKey.generate(f"{client_id}-key-1", bits=spec.key_bits)
        jwks_path = f"/apps/{client_id}/jwks.json" if spec.jwks in ("url", "http-500") else None
        app = App(
            client_id=client_id,
            client_secret=f"secret-{uuid.uuid4()}",
            name=f"Front door test app {client_id}",
            asid=f"2000000{index:05d}",
            key=key,
            jwks_path=jwks_path,
            spec=spec,
        )
        if spec.jwks == "url":
            jwks_server.set_json(jwks_path, jwks(key.jwk()))
        elif spec.jwks == "http-500":
            jwks_server.set_status(jwks_path, 500)
        app.registry_line = registry_line(app, jwks_server, closed_port)
        out[client_id] = app
    return out


@pytest.fixture(scope="session")
def frontdoor(
    tmp_path_factory: pytest.TempPathFactory,
    jwks_server: JwksServer,
    apps: dict[str, App],
    idp_keys: dict[str, RsaKey],
) -> Iterator[FrontDoor]:
    """The server under test, started once with the registry of every app and both IdPs."""
    binary = os.environ.get("OPENSPINE_BIN")
    if not binary:
        pytest.fail(
            "OPENSPINE_BIN is not set: point it at the openspine binary, e.g. "
            "OPENSPINE_BIN=target/release/openspine",
            pytrace=False,
        )
    binary = str(Path(binary).resolve())

    workdir = tmp_path_factory.mktemp("frontdoor")
    data_dir = workdir / "data"
    data_dir.mkdir()
    registry = workdir / "registry.jsonl"
    registry.write_text("".join(json.dumps(app.registry_line) + "\n" for app in apps.values()))

    port = free_port()
    argv = [
        binary,
        "serve",
        "--listen",
        f"127.0.0.1:{port}",
        "--data-dir",
        str(data_dir),
        "--frontdoor-registry",
        str(registry),
        "--cis2-issuer",
        CIS2_ISSUER,
        "--cis2-jwks-url",
        jwks_server.url(CIS2_JWKS_PATH),
        "--nhs-login-issuer",
        NHS_LOGIN_ISSUER,
        "--nhs-login-jwks-url",
        jwks_server.url(NHS_LOGIN_JWKS_PATH),
    ]
    base_url = f"http://127.0.0.1:{port}"
    server = ServerProcess(argv, workdir)
    try:
        server.wait_until_pinging(f"{base_url}/oauth2/_ping")
        front = FrontDoor(base_url, apps, idp_keys, jwks_server)
        yield front
        front.http.close()
    finally:
        server.stop()


@pytest.fixture
def fd(frontdoor: FrontDoor) -> FrontDoor:
    """Short name for the session's front door."""
    return frontdoor
