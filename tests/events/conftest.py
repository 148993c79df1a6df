"""Fixtures for the events service suite (shared/events/API.md), end to end with real parts.

One `openspine serve` for the session, with MESH, the front door and the events service:

    $OPENSPINE_BIN serve --events --frontdoor-registry TMP/registry.jsonl
        --mailboxes TMP/mailboxes.jsonl --workflows TMP/workflows.jsonl
        --events-mesh-mailbox X26EVT1 --events-nats-url $OPENSPINE_TEST_NATS_URL
        --events-webhooks --events-webhook-key-file TMP/webhook.key
        --events-retry-base-ms 100 --events-retry-max-secs 1 --events-retry-for-secs 3 ...

* apps (registry): ``publisher`` may publish ``mns-test-signal-1`` and ``pds-change-of-gp-2``;
  ``reader`` has the service's scope but no publish permission; ``stranger`` is a third app.
  Their client assertions are signed with PyJWT (RS512), as the NHS guide shows.
* MESH: X26ABC1 and X26ABC2 (password ``password``), and X26EVT1, the mailbox events come
  from; workflows TEST_WORKFLOW (X26ABC1 to X26ABC2) and OPENSPINE_EVENTS (X26EVT1 to both).
* NATS: the JetStream server the test command starts (``OPENSPINE_TEST_NATS_URL``).
* The inbox expiry is 5 s and the lifecycle sweep runs every second, so that an
  uncollected message expires while the suite waits.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from mesh_client import MeshClient

SCOPE = "urn:nhsd:apim:app:level3:multicast-notification-service"
API = "multicast-notification-service"
BASE = "/multicast-notification-service"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _b64_uint(n: int) -> str:
    import base64

    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@dataclass
class AppKey:
    client_id: str
    kid: str
    private_pem: str
    jwk: dict


def make_app(client_id: str) -> AppKey:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    numbers = key.public_key().public_numbers()
    kid = f"{client_id}-1"
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    jwk = {"kty": "RSA", "n": _b64_uint(numbers.n), "e": _b64_uint(numbers.e), "alg": "RS512", "use": "sig", "kid": kid}
    return AppKey(client_id, kid, pem, jwk)


@dataclass
class Server:
    base: str
    data_dir: Path
    apps: dict[str, AppKey]
    nats_url: str
    tokens: dict[str, str]
    binary: str
    ops_url: str
    admin_token: str

    def url(self, path: str) -> str:
        return f"{self.base}{BASE}{path}"

    def token(self, client_id: str) -> str:
        if client_id in self.tokens:
            return self.tokens[client_id]
        app = self.apps[client_id]
        token_url = f"{self.base}/oauth2/token"
        assertion = jwt.encode(
            {"iss": client_id, "sub": client_id, "aud": token_url, "jti": str(uuid.uuid4()), "exp": int(time.time()) + 300},
            app.private_pem,
            algorithm="RS512",
            headers={"kid": app.kid},
        )
        r = requests.post(
            token_url,
            data={
                "grant_type": "client_credentials",
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": assertion,
            },
            timeout=10,
        )
        assert r.status_code == 200, r.text
        self.tokens[client_id] = r.json()["access_token"]
        return self.tokens[client_id]

    def call(self, method: str, path: str, client_id: str | None = "publisher", **kwargs) -> requests.Response:
        headers = dict(kwargs.pop("headers", {}))
        if client_id is not None:
            headers["Authorization"] = f"Bearer {self.token(client_id)}"
        return requests.request(method, self.url(path), headers=headers, timeout=15, **kwargs)

    def publish(self, event: dict, client_id: str = "publisher") -> requests.Response:
        return self.call(
            "POST", "/events", client_id, data=json.dumps(event), headers={"Content-Type": "application/cloudevents+json"}
        )

    def subscribe(self, criteria: str, endpoint: str, payload: str = "application/json", client_id: str = "publisher", **channel) -> requests.Response:
        body = {
            "resourceType": "Subscription",
            "status": "requested",
            "reason": "",
            "criteria": criteria,
            "channel": {"type": "message", "endpoint": endpoint, "payload": payload, **channel},
        }
        return self.call("POST", "/subscriptions", client_id, json=body, headers={"Content-Type": "application/fhir+json"})

    def mesh(self, mailbox: str) -> MeshClient:
        return MeshClient(self.base, mailbox, "password", shared_key=b"TestKey")


def signal_event(event_type: str = "mns-test-signal-1", **overrides) -> dict:
    event = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "uk.nhs.events-suite",
        "type": event_type,
        "time": "2026-12-04T10:00:00.000Z",
        "subject": "9912003888",
        "dataref": "https://example.nhs.uk/multicast-notification-service/FHIRR4Response",
        "filtering": {"generalpractitioner": "Y12345"},
    }
    event.update(overrides)
    return event


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    binary = os.environ.get("OPENSPINE_BIN")
    nats_url = os.environ.get("OPENSPINE_TEST_NATS_URL")
    assert binary, "OPENSPINE_BIN must name the openspine binary"
    assert nats_url, "OPENSPINE_TEST_NATS_URL must name a NATS server with JetStream (the test command starts one)"
    work = tmp_path_factory.mktemp("events")
    apps = {name: make_app(name) for name in ["publisher", "reader", "stranger", "anything"]}
    permissions = {
        "publisher": ["events:create:mns-test-signal-1", "events:create:pds-change-of-gp-2"],
        "reader": [],
        "stranger": ["events:create:mns-test-signal-1"],
        "anything": ["events:create:*"],
    }
    with open(work / "registry.jsonl", "w") as f:
        for name, app in apps.items():
            line = {
                "client_id": name,
                "name": f"Events suite {name}",
                "jwks": {"keys": [app.jwk]},
                "products": [{"name": "mns", "scopes": [SCOPE], "apis": [API]}],
            }
            if permissions[name]:
                line["flags"] = {API: {"permissions": permissions[name]}}
            f.write(json.dumps(line) + "\n")
    mailbox = lambda mid, name: {"mailbox_id": mid, "mailbox_name": name, "ods_code": "X26", "org_code": "X26", "password": "password"}
    with open(work / "mailboxes.jsonl", "w") as f:
        for m in [mailbox("X26ABC1", "TESTMB1"), mailbox("X26ABC2", "TESTMB2"), mailbox("X26EVT1", "EVENTS")]:
            f.write(json.dumps(m) + "\n")
    with open(work / "workflows.jsonl", "w") as f:
        f.write(json.dumps({"workflow_id": "TEST_WORKFLOW", "senders": ["X26ABC1"], "receivers": ["X26ABC2"]}) + "\n")
        f.write(json.dumps({"workflow_id": "OPENSPINE_EVENTS", "senders": ["X26EVT1"], "receivers": ["X26ABC1", "X26ABC2"]}) + "\n")
    (work / "webhook.key").write_text(uuid.uuid4().hex + uuid.uuid4().hex)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    ops_port = free_port()
    admin_token = uuid.uuid4().hex
    argv = [
        binary, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", str(work / "data"),
        "--mailboxes", str(work / "mailboxes.jsonl"), "--workflows", str(work / "workflows.jsonl"),
        "--shared-key", "TestKey", "--rate-limit", "0",
        "--frontdoor-registry", str(work / "registry.jsonl"),
        "--events", "--events-mesh-mailbox", "X26EVT1", "--events-nats-url", nats_url,
        "--events-webhooks", "--events-webhook-key-file", str(work / "webhook.key"),
        "--events-retry-base-ms", "100", "--events-retry-max-secs", "1", "--events-retry-for-secs", "3",
        "--events-attempt-timeout-secs", "2",
        "--inbox-expiry-secs", "5", "--lifecycle-interval-secs", "1",
        "--ops-listen", f"127.0.0.1:{ops_port}", "--admin-token", admin_token,
    ]
    log = open(work / "server.log", "w")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 30
    while True:
        try:
            if requests.get(f"{base}{BASE}/_ping", timeout=1).status_code == 200:
                break
        except requests.RequestException:
            pass
        if proc.poll() is not None or time.time() > deadline:
            log.flush()
            pytest.fail("the server did not start:\n" + (work / "server.log").read_text()[-4000:])
        time.sleep(0.1)
    yield Server(base, work / "data", apps, nats_url, {}, binary, f"http://127.0.0.1:{ops_port}", admin_token)
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


def wait_for(what: str, check, timeout_s: float = 15.0, interval_s: float = 0.1):
    """Polls `check` until it returns something truthy, and returns that."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        got = check()
        if got:
            return got
        time.sleep(interval_s)
    raise AssertionError(f"timed out waiting for {what}")
