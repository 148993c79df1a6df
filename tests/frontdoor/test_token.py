"""The OAuth2 front door as an NHS API integrator meets it (shared/frontdoor/API.md).

Error responses are compared the way NHS England's own identity-service tests compare them:
status, ``error`` and ``error_description`` exactly; ``message_id`` must be there, its value is
ignored (API.md §3). Each test uses its own app from ``conftest.APP_SPECS``.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable

import pytest
import requests

from frontdoor_support import (
    ACCESS_TOKEN_TYPE,
    CLIENT_ASSERTION_TYPE,
    HELLO_P9_SCOPE,
    ID_TOKEN_TYPE,
    OMIT,
    TOKEN_EXCHANGE_GRANT,
    FrontDoor,
    RsaKey,
    jwks,
)

HELLO_WORLD = "/hello-world/hello/world"
HELLO_APPLICATION = "/hello-world/hello/application"
HELLO_USER = "/hello-world/hello/user"

# API.md §4.2 / §5 / §6 texts.
UNAUTHORIZED_CLIENT_TEXT = (
    "you have tried to request authorization but your application is not configured to use this "
    "authorization grant type"
)
JWKS_UNREACHABLE_TEXT = "The JWKS endpoint, for your client_assertion can't be reached"
NO_MATCHING_KID_TEXT = "Invalid 'kid' header in client_assertion JWT - no matching public key"

# API.md §8: the canary-style 401 bodies.
EMPTY_TOKEN_FAULT = {
    "fault": {"faultstring": "Invalid access token", "detail": {"errorcode": "oauth.v2.InvalidAccessToken"}}
}
UNKNOWN_TOKEN_FAULT = {
    "fault": {
        "faultstring": "Invalid Access Token",
        "detail": {"errorcode": "keymanagement.service.invalid_access_token"},
    }
}


def assert_oauth_error(response: requests.Response, status: int, error: str, description: str) -> None:
    context = f"{response.request.method} {response.url} -> {response.status_code} {response.text[:500]}"
    assert response.status_code == status, context
    body = response.json()
    assert body.get("error") == error, context
    assert body.get("error_description") == description, context
    assert isinstance(body.get("message_id"), str) and body["message_id"], f"no message_id: {context}"


def assert_ok(response: requests.Response) -> dict:
    assert response.status_code == 200, f"{response.url} -> {response.status_code} {response.text[:500]}"
    return response.json()


def assert_opaque_token(token: object) -> None:
    assert isinstance(token, str) and token, token
    assert not re.search(r"\s", token), token
    assert len(token.split(".")) != 3, f"access token looks like a JWT, expected an opaque string: {token}"


@pytest.fixture(scope="module")
def stranger_key() -> RsaKey:
    """A key no app registered; carries whatever kid a test gives it."""
    return RsaKey.generate("stranger-1")


# ============================================================================================
# Client credentials (API.md §4)
# ============================================================================================


def test_client_credentials_issues_an_opaque_bearer_token_that_opens_the_application_endpoint(fd: FrontDoor):
    before_ms = int(time.time() * 1000)
    body = assert_ok(fd.client_credentials("fd-cc-happy"))
    after_ms = int(time.time() * 1000)

    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == "599"
    assert isinstance(body["issued_at"], str) and body["issued_at"].isdigit(), body
    assert before_ms - 60_000 <= int(body["issued_at"]) <= after_ms + 60_000, "issued_at is epoch milliseconds"
    assert_opaque_token(body["access_token"])
    assert "refresh_token" not in body, "client credentials issue no refresh token (API.md §4.4)"

    hello = fd.get(HELLO_APPLICATION, token=body["access_token"])
    assert hello.status_code == 200, hello.text
    assert hello.json() == {"message": "Hello Application!"}


def test_access_token_expiry_ms_shortens_the_token_lifetime(fd: FrontDoor):
    body = assert_ok(fd.client_credentials("fd-cc-happy", _access_token_expiry_ms="100000"))
    assert isinstance(body["expires_in"], str) and body["expires_in"].isdigit(), body
    assert 0 < int(body["expires_in"]) <= 100, body
    assert fd.get(HELLO_APPLICATION, token=body["access_token"]).status_code == 200


def test_access_token_expiry_ms_cannot_lengthen_the_token_lifetime(fd: FrontDoor):
    body = assert_ok(fd.client_credentials("fd-cc-happy", _access_token_expiry_ms="1000000"))
    assert isinstance(body["expires_in"], str) and body["expires_in"].isdigit(), body
    assert 0 < int(body["expires_in"]) <= 600, body


def test_a_scope_parameter_is_ignored(fd: FrontDoor):
    body = assert_ok(fd.client_credentials("fd-cc-happy", scope="openid nonsense"))
    assert fd.get(HELLO_APPLICATION, token=body["access_token"]).status_code == 200


def test_an_app_with_an_inline_jwks_gets_a_token(fd: FrontDoor):
    body = assert_ok(fd.client_credentials("fd-inline-jwks"))
    assert body["expires_in"] == "599"
    assert fd.get(HELLO_APPLICATION, token=body["access_token"]).status_code == 200


def test_a_jti_used_twice_is_refused_the_second_time(fd: FrontDoor):
    assertion = fd.assertion("fd-jti-replay")
    assert_ok(fd.client_credentials("fd-jti-replay", assertion=assertion))
    assert_oauth_error(
        fd.client_credentials("fd-jti-replay", assertion=assertion),
        400,
        "invalid_request",
        "Non-unique 'jti' claim in client_assertion JWT",
    )


# Each case: how to build the form for app fd-cc-errors, then the expected status/error/text.
FormBuilder = Callable[[FrontDoor, RsaKey], dict]


def _cc_form(fd: FrontDoor, assertion: str | None = None, **overrides) -> dict:
    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": CLIENT_ASSERTION_TYPE,
        "client_assertion": assertion if assertion is not None else fd.assertion("fd-cc-errors"),
    }
    for name, value in overrides.items():
        if value is OMIT:
            form.pop(name, None)
        else:
            form[name] = value
    return form


CLIENT_ASSERTION_ERRORS: list[tuple[str, FormBuilder, int, str, str]] = [
    (
        "missing client_assertion_type",
        lambda fd, _k: _cc_form(fd, client_assertion_type=OMIT),
        400,
        "invalid_request",
        "Missing or invalid client_assertion_type - must be "
        "'urn:ietf:params:oauth:client-assertion-type:jwt-bearer'",
    ),
    (
        "wrong client_assertion_type",
        lambda fd, _k: _cc_form(fd, client_assertion_type="urn:ietf:params:oauth:client-assertion-type:saml2-bearer"),
        400,
        "invalid_request",
        "Missing or invalid client_assertion_type - must be "
        "'urn:ietf:params:oauth:client-assertion-type:jwt-bearer'",
    ),
    (
        "missing client_assertion",
        lambda fd, _k: _cc_form(fd, client_assertion=OMIT),
        400,
        "invalid_request",
        "Missing client_assertion",
    ),
    (
        "client_assertion is no JWT",
        lambda fd, _k: _cc_form(fd, assertion="not-a-jwt"),
        400,
        "invalid_request",
        "Malformed JWT in client_assertion",
    ),
    (
        "RS256 instead of RS512",
        lambda fd, _k: _cc_form(fd, fd.assertion("fd-cc-errors", algorithm="RS256")),
        400,
        "invalid_request",
        "Invalid 'alg' header in client_assertion JWT - unsupported JWT algorithm - must be 'RS512'",
    ),
    (
        "exp in the past",
        lambda fd, _k: _cc_form(fd, fd.assertion("fd-cc-errors", claims={"exp": int(time.time()) - 60})),
        400,
        "invalid_request",
        "Invalid 'exp' claim in client_assertion JWT - JWT has expired",
    ),
    (
        "no kid header",
        lambda fd, _k: _cc_form(fd, fd.assertion("fd-cc-errors", kid=None)),
        400,
        "invalid_request",
        "Missing 'kid' header in client_assertion JWT",
    ),
    (
        "iss differs from sub",
        lambda fd, _k: _cc_form(fd, fd.assertion("fd-cc-errors", claims={"iss": "fd-cc-happy"})),
        400,
        "invalid_request",
        "Missing or non-matching 'iss'/'sub' claims in client_assertion JWT",
    ),
    (
        "no jti",
        lambda fd, _k: _cc_form(fd, fd.assertion("fd-cc-errors", claims={"jti": OMIT})),
        400,
        "invalid_request",
        "Missing 'jti' claim in client_assertion JWT",
    ),
    (
        "exp 10 minutes ahead",
        lambda fd, _k: _cc_form(fd, fd.assertion("fd-cc-errors", claims={"exp": int(time.time()) + 600})),
        400,
        "invalid_request",
        "Invalid 'exp' claim in client_assertion JWT - more than 5 minutes in future",
    ),
    (
        "unknown client id",
        lambda fd, _k: _cc_form(fd, fd.assertion("fd-no-such-app")),
        401,
        "invalid_request",
        "Invalid 'iss'/'sub' claims in client_assertion JWT",
    ),
    (
        "kid not in the app's JWKS",
        lambda fd, _k: _cc_form(fd, fd.assertion("fd-cc-errors", kid="no-such-kid")),
        401,
        "invalid_request",
        NO_MATCHING_KID_TEXT,
    ),
    (
        "aud is another token URL",
        lambda fd, _k: _cc_form(
            fd, fd.assertion("fd-cc-errors", claims={"aud": "https://api.service.nhs.uk/oauth2/token"})
        ),
        401,
        "invalid_request",
        "Missing or invalid 'aud' claim in client_assertion JWT",
    ),
    (
        "signed with another key under the app's kid",
        lambda fd, stranger: _cc_form(
            fd, fd.assertion("fd-cc-errors", key=stranger, kid=fd.apps["fd-cc-errors"].key.kid)
        ),
        401,
        "public_key error",
        "JWT signature verification failed",
    ),
]


@pytest.mark.parametrize(
    ("build", "status", "error", "description"),
    [case[1:] for case in CLIENT_ASSERTION_ERRORS],
    ids=[case[0] for case in CLIENT_ASSERTION_ERRORS],
)
def test_client_credentials_rejects_a_bad_request(
    fd: FrontDoor, stranger_key: RsaKey, build: FormBuilder, status: int, error: str, description: str
):
    assert_oauth_error(fd.post_token(build(fd, stranger_key)), status, error, description)


def test_a_form_sent_as_json_is_refused_with_415(fd: FrontDoor):
    response = fd.http.post(fd.token_url, json=_cc_form(fd), timeout=30)
    assert_oauth_error(
        response, 415, "invalid_request", "Content-Type header must be application/x-www-form-urlencoded"
    )


def test_an_unsupported_grant_type_is_refused(fd: FrontDoor):
    assert_oauth_error(
        fd.post_token(_cc_form(fd, grant_type="password")),
        400,
        "unsupported_grant_type",
        "grant_type is invalid",
    )


def test_a_request_without_grant_type_is_refused(fd: FrontDoor):
    assert_oauth_error(
        fd.post_token(_cc_form(fd, grant_type=OMIT)), 400, "invalid_request", "grant_type is missing"
    )


def test_token_exchange_with_another_subject_token_type_is_refused(fd: FrontDoor):
    form = _cc_form(
        fd,
        grant_type=TOKEN_EXCHANGE_GRANT,
        subject_token_type="urn:ietf:params:oauth:token-type:access_token",
        subject_token=fd.cis2_id_token(),
    )
    assert_oauth_error(
        fd.post_token(form),
        400,
        "invalid_request",
        "missing or invalid subject_token_type - must be 'urn:ietf:params:oauth:token-type:id_token'",
    )


def test_get_on_the_token_endpoint_is_405(fd: FrontDoor):
    assert fd.http.get(fd.token_url, timeout=30).status_code == 405


def test_an_app_without_a_public_key_is_told_to_register_one(fd: FrontDoor):
    assert_oauth_error(
        fd.client_credentials("fd-no-jwks"),
        403,
        "public_key error",
        "You need to register a public key to use this authentication method - please contact support to configure",
    )


@pytest.mark.parametrize(
    "client_id",
    ["fd-jwks-closed-port", "fd-jwks-http-500"],
    ids=["nothing listens on the JWKS port", "JWKS host answers 500"],
)
def test_an_unreachable_jwks_endpoint_is_a_403(fd: FrontDoor, client_id: str):
    assert_oauth_error(fd.client_credentials(client_id), 403, "public_key error", JWKS_UNREACHABLE_TEXT)


def test_an_app_without_application_scopes_cannot_use_client_credentials(fd: FrontDoor):
    assert_oauth_error(fd.client_credentials("fd-user-scopes-only"), 401, "unauthorized_client", UNAUTHORIZED_CLIENT_TEXT)


def test_the_jwks_is_cached_so_a_rotated_key_is_not_seen_at_once(fd: FrontDoor):
    """API.md §4.3: the JWKS is cached per URL for an hour and not refetched for a missing kid."""
    app = fd.apps["fd-jwks-rotate"]
    assert_ok(fd.client_credentials(app.client_id))  # the server now holds the JWKS
    fetches = len(fd.jwks_server.requests_for(app.jwks_path))
    assert fetches >= 1, "the app's JWKS URL was never fetched"

    new_key = RsaKey.generate(f"{app.client_id}-key-2")
    fd.jwks_server.set_json(app.jwks_path, jwks(new_key.jwk()))

    assert_oauth_error(
        fd.client_credentials(app.client_id, assertion=fd.assertion(app.client_id, key=new_key)),
        401,
        "invalid_request",
        NO_MATCHING_KID_TEXT,
    )
    # The cached set still holds the old key, so the old key still works.
    assert_ok(fd.client_credentials(app.client_id))
    assert len(fd.jwks_server.requests_for(app.jwks_path)) == fetches, "the JWKS was fetched again"


def test_the_jwks_is_fetched_with_user_agent_apim(fd: FrontDoor):
    app = fd.apps["fd-jwks-user-agent"]
    assert_ok(fd.client_credentials(app.client_id))
    fetches = fd.jwks_server.requests_for(app.jwks_path)
    assert fetches, "the app's JWKS URL was never fetched"
    assert [r.headers.get("user-agent") for r in fetches] == ["APIM"] * len(fetches)


# ============================================================================================
# Token exchange and refresh (API.md §5, §6)
# ============================================================================================


def _assert_user_token_response(body: dict) -> None:
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == "599"
    assert body["issued_token_type"] == ACCESS_TOKEN_TYPE
    assert body["refresh_count"] == "0"
    assert_opaque_token(body["access_token"])
    assert isinstance(body["refresh_token"], str) and body["refresh_token"], body
    assert body["refresh_token"] != body["access_token"]
    assert isinstance(body["refresh_token_expires_in"], str) and body["refresh_token_expires_in"].isdigit(), body


@pytest.mark.parametrize("algorithm", ["RS256", "RS512"])
def test_cis2_id_token_is_exchanged_for_a_user_token(fd: FrontDoor, algorithm: str):
    body = assert_ok(fd.token_exchange("fd-cis2", fd.cis2_id_token(algorithm=algorithm)))
    _assert_user_token_response(body)
    assert body["refresh_token_expires_in"] == "43199"

    hello = fd.get(HELLO_USER, token=body["access_token"])
    assert hello.status_code == 200, hello.text
    assert hello.json() == {"message": "Hello User!"}


def test_a_refresh_token_works_once(fd: FrontDoor):
    first = assert_ok(fd.token_exchange("fd-cis2-refresh", fd.cis2_id_token()))

    refreshed = assert_ok(fd.refresh("fd-cis2-refresh", first["refresh_token"]))
    assert refreshed["token_type"] == "Bearer"
    assert refreshed["expires_in"] == "599"
    assert refreshed["refresh_count"] == "1"
    assert_opaque_token(refreshed["access_token"])
    assert refreshed["refresh_token"] and refreshed["refresh_token"] != first["refresh_token"]
    assert fd.get(HELLO_USER, token=refreshed["access_token"]).status_code == 200

    assert_oauth_error(
        fd.refresh("fd-cis2-refresh", first["refresh_token"]), 401, "invalid_grant", "refresh_token is invalid"
    )

    again = assert_ok(fd.refresh("fd-cis2-refresh", refreshed["refresh_token"]))
    assert again["refresh_count"] == "2"


def test_refresh_with_a_wrong_client_secret_is_refused(fd: FrontDoor):
    body = assert_ok(fd.token_exchange("fd-cis2-refresh", fd.cis2_id_token()))
    assert_oauth_error(
        fd.refresh("fd-cis2-refresh", body["refresh_token"], client_secret="not-the-secret"),
        401,
        "invalid_client",
        "client_id or client_secret is invalid",
    )


@pytest.mark.parametrize(
    ("missing", "status", "description"),
    [("client_id", 401, "client_id is missing"), ("refresh_token", 400, "refresh_token is missing")],
)
def test_refresh_with_a_missing_field_is_refused(fd: FrontDoor, missing: str, status: int, description: str):
    body = assert_ok(fd.token_exchange("fd-cis2-refresh", fd.cis2_id_token()))
    form = {
        "grant_type": "refresh_token",
        "client_id": "fd-cis2-refresh",
        "client_secret": fd.apps["fd-cis2-refresh"].client_secret,
        "refresh_token": body["refresh_token"],
    }
    del form[missing]
    assert_oauth_error(fd.post_token(form), status, "invalid_request", description)


def test_nhs_login_p9_id_token_is_exchanged_for_a_user_token(fd: FrontDoor):
    body = assert_ok(fd.token_exchange("fd-nhs-login", fd.nhs_login_id_token(proofing_level="P9")))
    _assert_user_token_response(body)

    hello = fd.get(HELLO_USER, token=body["access_token"])
    assert hello.status_code == 200, hello.text
    assert hello.json() == {"message": "Hello User!"}


def test_nhs_login_p5_user_gets_no_token_from_an_app_with_only_p9_scopes(fd: FrontDoor):
    assert fd.apps["fd-p9-only"].spec.scopes == (HELLO_P9_SCOPE,)
    assert_oauth_error(
        fd.token_exchange("fd-p9-only", fd.nhs_login_id_token(proofing_level="P5")),
        401,
        "unauthorized_client",
        UNAUTHORIZED_CLIENT_TEXT,
    )


def test_a_subject_token_from_an_unknown_issuer_is_refused(fd: FrontDoor):
    token = fd.cis2_id_token(issuer="https://login.example.org/not-cis2")
    assert_oauth_error(
        fd.token_exchange("fd-cis2", token),
        400,
        "invalid_request",
        "Missing or non-matching 'iss' claim in subject_token JWT",
    )


def test_a_subject_token_signed_with_an_unknown_key_is_refused(fd: FrontDoor, stranger_key: RsaKey):
    from frontdoor_support import make_cis2_id_token

    token = make_cis2_id_token(stranger_key)
    assert_oauth_error(
        fd.token_exchange("fd-cis2", token),
        401,
        "invalid_request",
        "Invalid 'kid' header in subject_token JWT - no matching public key",
    )


def test_token_exchange_without_a_subject_token_is_refused(fd: FrontDoor):
    form = {
        "grant_type": TOKEN_EXCHANGE_GRANT,
        "subject_token_type": ID_TOKEN_TYPE,
        "client_assertion_type": CLIENT_ASSERTION_TYPE,
        "client_assertion": fd.assertion("fd-cis2"),
    }
    assert_oauth_error(fd.post_token(form), 400, "invalid_request", "Missing subject_token")


# ============================================================================================
# The protected API: bearer check, headers, quota (API.md §8, §9)
# ============================================================================================


def test_the_open_endpoint_needs_no_token(fd: FrontDoor):
    response = fd.get(HELLO_WORLD)
    assert response.status_code == 200, response.text
    assert response.json() == {"message": "Hello World!"}


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer "}],
    ids=["no Authorization header", "empty bearer token"],
)
def test_no_access_token_is_a_401(fd: FrontDoor, headers: dict):
    response = fd.get(HELLO_APPLICATION, headers=headers)
    assert response.status_code == 401, response.text
    assert response.json() == EMPTY_TOKEN_FAULT


def test_an_unknown_access_token_is_a_401(fd: FrontDoor):
    response = fd.get(HELLO_APPLICATION, token="Gzjxmf2rBoy8Amyba_I8R2njcOU")
    assert response.status_code == 401, response.text
    assert response.json() == UNKNOWN_TOKEN_FAULT


def test_request_and_correlation_ids_come_back_on_success_and_on_401(fd: FrontDoor):
    token = fd.app_token("fd-bearer")
    for use_token, status in ((token, 200), (None, 401)):
        ids = {"X-Request-ID": str(uuid.uuid4()), "X-Correlation-ID": f"corr-{uuid.uuid4()}"}
        response = fd.get(HELLO_APPLICATION, token=use_token, headers=ids)
        assert response.status_code == status, response.text
        assert response.headers.get("X-Request-ID") == ids["X-Request-ID"]
        assert response.headers.get("X-Correlation-ID") == ids["X-Correlation-ID"]


def test_an_application_token_cannot_open_the_user_endpoint(fd: FrontDoor):
    token = fd.app_token("fd-bearer")
    assert fd.get(HELLO_APPLICATION, token=token).status_code == 200
    response = fd.get(HELLO_USER, token=token)
    assert response.status_code == 401, response.text


def test_the_sixth_call_in_a_minute_over_a_quota_of_five_is_429(fd: FrontDoor):
    token = fd.app_token("fd-quota")
    # Keep the six calls inside one clock minute, should the quota window be minute-aligned.
    if time.time() % 60 > 50:
        time.sleep(61 - time.time() % 60)
    statuses = [fd.get(HELLO_APPLICATION, token=token).status_code for _ in range(6)]
    assert statuses == [200] * 5 + [429]
