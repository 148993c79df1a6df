"""Self-checks of the suite's own tooling; they need no server (OPENSPINE_BIN may be unset).

A client assertion or ID token the suite mints must verify with PyJWT against the JWKS the
suite serves, fetched over HTTP by PyJWT's own JWKS client, so a failure in test_token.py points
at the server, not at the tokens.
"""

from __future__ import annotations

import json
import socket
import time
import uuid

import jwt
import pytest
import requests

from frontdoor_support import (
    CIS2_ISSUER,
    CIS2_JWKS_PATH,
    NHS_LOGIN_ISSUER,
    NHS_LOGIN_JWKS_PATH,
    App,
    JwksServer,
    RsaKey,
    jwks,
    make_client_assertion,
    make_cis2_id_token,
    make_nhs_login_id_token,
)

TOKEN_URL = "http://127.0.0.1:9/oauth2/token"


def _verify(token: str, jwks_url: str, algorithms: list[str], audience: str | None) -> tuple[dict, dict]:
    signing_key = jwt.PyJWKClient(jwks_url, cache_keys=False).get_signing_key_from_jwt(token)
    options = {"verify_aud": audience is not None}
    claims = jwt.decode(token, signing_key.key, algorithms=algorithms, audience=audience, options=options)
    return jwt.get_unverified_header(token), claims


def test_client_assertions_verify_against_the_served_jwks(apps: dict[str, App], jwks_server: JwksServer):
    app = apps["fd-cc-happy"]
    assert app.key.private_key.key_size == 4096
    token = make_client_assertion(app.client_id, app.key.private_pem, app.key.kid, TOKEN_URL)

    header, claims = _verify(token, jwks_server.url(app.jwks_path), ["RS512"], TOKEN_URL)
    assert header == {"alg": "RS512", "kid": app.key.kid, "typ": "JWT"}
    assert set(claims) == {"iss", "sub", "aud", "jti", "exp"}
    assert claims["iss"] == claims["sub"] == app.client_id
    assert claims["aud"] == TOKEN_URL
    assert str(uuid.UUID(claims["jti"])) == claims["jti"]
    assert isinstance(claims["exp"], int) and 295 <= claims["exp"] - time.time() <= 301

    jwk = requests.get(jwks_server.url(app.jwks_path), timeout=5).json()["keys"][0]
    assert set(jwk) == {"kty", "n", "e", "alg", "kid", "use"}
    assert (jwk["kty"], jwk["alg"], jwk["use"], jwk["e"]) == ("RSA", "RS512", "sig", "AQAB")


def test_a_second_assertion_has_a_fresh_jti(apps: dict[str, App]):
    app = apps["fd-cc-errors"]
    one, two = (
        jwt.decode(make_client_assertion(app.client_id, app.key.private_pem, app.key.kid, TOKEN_URL),
                   options={"verify_signature": False})
        for _ in range(2)
    )
    assert one["jti"] != two["jti"]


def test_another_key_does_not_verify(apps: dict[str, App], jwks_server: JwksServer):
    app = apps["fd-cc-errors"]
    stranger = RsaKey.generate(app.key.kid)
    token = make_client_assertion(app.client_id, stranger.private_pem, app.key.kid, TOKEN_URL)
    with pytest.raises(jwt.InvalidSignatureError):
        _verify(token, jwks_server.url(app.jwks_path), ["RS512"], TOKEN_URL)


@pytest.mark.parametrize(("kind", "algorithm"), [("cis2", "RS256"), ("cis2-rs512", "RS512")])
def test_cis2_id_tokens_verify_against_the_cis2_jwks(
    idp_keys: dict[str, RsaKey], jwks_server: JwksServer, kind: str, algorithm: str
):
    token = make_cis2_id_token(idp_keys[kind], algorithm=algorithm)
    header, claims = _verify(token, jwks_server.url(CIS2_JWKS_PATH), [algorithm], None)
    assert header["alg"] == algorithm and header["typ"] == "JWT"
    assert claims["iss"] == CIS2_ISSUER
    assert claims["authentication_assurance_level"] == "3" and claims["acr"] == "AAL3_ANY"
    assert {"sub", "aud", "exp", "iat", "amr", "id_assurance_level"} <= set(claims)


def test_nhs_login_id_tokens_verify_against_the_nhs_login_jwks(idp_keys: dict[str, RsaKey], jwks_server: JwksServer):
    token = make_nhs_login_id_token(idp_keys["nhs-login"], proofing_level="P5")
    header, claims = _verify(token, jwks_server.url(NHS_LOGIN_JWKS_PATH), ["RS512"], None)
    assert header == {"alg": "RS512", "kid": "nhs-login-1", "typ": "JWT"}
    assert claims["iss"] == NHS_LOGIN_ISSUER
    assert claims["identity_proofing_level"] == "P5" and claims["vot"].startswith("P5.")
    assert {"sub", "aud", "exp", "iat", "jti", "vtm", "nhs_number", "id_status", "token_use"} <= set(claims)


def test_the_jwks_server_serves_changes_statuses_and_logs_requests(jwks_server: JwksServer):
    path = f"/scratch/{uuid.uuid4()}/jwks.json"
    assert requests.get(jwks_server.url(path), timeout=5).status_code == 404
    jwks_server.set_json(path, jwks({"kid": "a"}))
    assert requests.get(jwks_server.url(path), timeout=5).json() == {"keys": [{"kid": "a"}]}
    jwks_server.set_json(path, jwks({"kid": "b"}))
    response = requests.get(jwks_server.url(path), headers={"User-Agent": "APIM"}, timeout=5)
    assert response.json() == {"keys": [{"kid": "b"}]}
    assert response.headers["Content-Type"] == "application/json"
    jwks_server.set_status(path, 500)
    assert requests.get(jwks_server.url(path), timeout=5).status_code == 500
    seen = jwks_server.requests_for(path)
    assert len(seen) == 4 and seen[2].headers["user-agent"] == "APIM"


def test_the_closed_port_refuses_connections(closed_port: int):
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", closed_port), timeout=2):
        pass


def test_registry_lines_match_the_documented_shape(apps: dict[str, App], jwks_server: JwksServer):
    for app in apps.values():
        line = json.loads(json.dumps(app.registry_line))
        assert {"client_id", "name", "status", "client_secret", "asid", "products"} <= set(line), line
        assert line["status"] in ("approved", "revoked")
        assert not ({"jwks_url", "jwks"} <= set(line)), "one of jwks_url / jwks, not both"
        for product in line["products"]:
            assert set(product) == {"name", "apis", "scopes"} and product["apis"] == ["hello-world"]
        if "jwks_url" in line:
            assert line["jwks_url"].startswith("http://127.0.0.1:")
    assert apps["fd-quota"].registry_line["rate_limits"] == {
        "hello-world": {"quota": {"limit": 5, "interval": "1", "timeunit": "minute", "enabled": True}}
    }
    assert apps["fd-inline-jwks"].registry_line["jwks"]["keys"][0]["kid"] == apps["fd-inline-jwks"].key.kid
    assert "jwks" not in apps["fd-no-jwks"].registry_line and "jwks_url" not in apps["fd-no-jwks"].registry_line
