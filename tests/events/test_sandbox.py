"""`--sandbox`: the events service answers as the NHS MNS sandbox does (API.md §8), open and
stateless, so tests written against the NHS sandbox pass against OpenSpine.

The first ten tests are, one for one and in order, the cases of the NHS sandbox's own test
suite (`sandbox/app.spec.js` of NHSDigital/multicast-notification-service), with the same
requests and the same expected statuses and bodies, sent over HTTP to `openspine serve
--sandbox`; the NHS Postman collection's requests are among them. The rest cover what the
sandbox's fixtures hold beyond those cases."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator

import pytest
import requests

from conftest import free_port

S1 = "e9050741-ae87-4720-beb1-2abd9248e227"
S2 = "c5a332ca-12ab-4ccf-9eb7-c933713accb3"
CREATED = "236a1d4a-5d69-4fa9-9c7f-e72bf505aa5b"
# What the NHS suite sets as the sandbox's VERSION_INFO.
VERSION_INFO = {"build_label": "1233-shaacdef1", "releaseId": "1234", "commitId": "acdef12341ccc"}


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = os.environ["OPENSPINE_BIN"]
    port = free_port()
    data = tmp_path_factory.mktemp("sandbox")
    proc = subprocess.Popen(
        [
            binary, "serve", "--demo", "--sandbox", "--listen", f"127.0.0.1:{port}", "--data-dir", str(data),
            "--events-version-info", json.dumps(VERSION_INFO),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}/multicast-notification-service"
    deadline = time.time() + 30
    while True:
        try:
            if requests.get(f"{base}/_ping", timeout=1).status_code == 200:
                break
        except requests.RequestException:
            pass
        assert proc.poll() is None and time.time() < deadline, "the sandbox did not start"
        time.sleep(0.1)
    yield base
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=10)


def s1(payload: str = "application/json", sid: str = S1) -> dict:
    return {
        "id": sid,
        "resourceType": "Subscription",
        "status": "active",
        "end": "2024-04-05T17:00:00.000Z",
        "reason": "",
        "criteria": "eventType=pds-change-of-gp-1",
        "channel": {"type": "message", "endpoint": "arn:aws:sqs:eu-west-2:12345:example-queue-123", "payload": payload},
    }


REQUEST = {
    "resourceType": "Subscription",
    "status": "requested",
    "end": "2024-01-25T12:00:00Z",
    "reason": "",
    "criteria": "eventType=pds-change-of-gp-1",
    "channel": {"type": "message", "endpoint": "arn:aws:sqs:eu-west-2:12345:example-queue-123", "payload": "application/json"},
}


# A legacy (v1) change-of-GP event of the shape the NHS suite publishes: its id is the one the
# sandbox's create answers with, which is why the NHS suite expects that id back.
V1_EVENT = {
    "id": CREATED,
    "type": "pds-change-of-gp-1",
    "subject": {"nhsNumber": "9000000009", "givenName": "Jane", "familyName": "SMITH", "dob": "2010-10-22"},
    "source": {
        "name": "A GP practice",
        "identifier": {"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "Y12345"},
    },
    "time": "2022-04-05T17:31:00Z",
    "dataContentType": "application/fhir+json",
    "data": "https://sandbox.api.service.nhs.uk/personal-demographics/FHIR/R4/Patient/9000000009",
}
FHIR = {"Content-Type": "application/fhir+json"}


# ---- The NHS sandbox suite's cases, in its order ------------------------------------------


def test_responds_to_ping(sandbox: str):
    r = requests.get(f"{sandbox}/_ping", timeout=5)
    assert (r.status_code, r.json()) == (
        200,
        {"status": "pass", "ping": "pong", "service": "multicast-notification-service", "version": VERSION_INFO},
    )
    assert "json" in r.headers["Content-Type"]


def test_responds_to_status(sandbox: str):
    r = requests.get(f"{sandbox}/_status", timeout=5)
    assert (r.status_code, r.json()) == (
        200,
        {"status": "pass", "ping": "pong", "service": "multicast-notification-service", "version": VERSION_INFO},
    )
    assert "json" in r.headers["Content-Type"]


def test_the_precanned_event_is_published(sandbox: str):
    r = requests.post(f"{sandbox}/events", json=V1_EVENT, timeout=5)
    assert (r.status_code, r.json()) == (200, {"id": CREATED})


def test_an_event_with_an_invalid_time_is_refused(sandbox: str):
    r = requests.post(f"{sandbox}/events", json=dict(V1_EVENT, time="202-04-05T17:31:00.000Z"), timeout=5)
    assert (r.status_code, r.json()) == (400, {"validationErrors": {"time": "Please provide a valid time"}})


def test_the_precanned_subscription_is_created(sandbox: str):
    r = requests.post(f"{sandbox}/subscriptions", data=json.dumps(REQUEST), headers=FHIR, timeout=5)
    assert (r.status_code, r.json()) == (200, {"id": CREATED})


def test_an_invalid_subscription_is_refused(sandbox: str):
    r = requests.post(f"{sandbox}/subscriptions", data=json.dumps(dict(REQUEST, resourceType="Bundle")), headers=FHIR, timeout=5)
    assert (r.status_code, r.json()) == (
        400,
        {"validationErrors": {"resourceType": "Please provide the correct resource type for this endpoint"}},
    )


def test_a_known_subscription_is_read(sandbox: str):
    r = requests.get(f"{sandbox}/subscriptions/{S1}", timeout=5)
    assert (r.status_code, r.json()) == (200, s1())


def test_an_unknown_subscription_is_not_found(sandbox: str):
    r = requests.get(f"{sandbox}/subscriptions/{CREATED}", timeout=5)
    assert (r.status_code, r.json()) == (404, {"errors": "Not found"})


def test_a_known_subscription_is_deleted(sandbox: str):
    r = requests.delete(f"{sandbox}/subscriptions/{S1}", timeout=5)
    assert (r.status_code, r.content) == (204, b"")


def test_deleting_an_unknown_subscription_is_not_found(sandbox: str):
    r = requests.delete(f"{sandbox}/subscriptions/{CREATED}", timeout=5)
    assert (r.status_code, r.json()) == (404, {"errors": "Not found"})


# ---- The rest of the sandbox's fixtures ---------------------------------------------------


def test_health_answers_as_the_sandbox(sandbox: str):
    for path in ["/_ping", "/_status", "/health"]:
        body = requests.get(sandbox + path, timeout=5).json()
        assert body["status"] == "pass" and body["ping"] == "pong"
        assert body["service"] == "multicast-notification-service"


def test_publish_needs_no_token_checks_only_the_time_and_echoes_the_id(sandbox: str):
    event = {"id": "0f8f1f4c-3f1d-4d59-9f0a-4c4c1f5e8a11", "type": "pds-change-of-gp-1", "time": "2022-04-05T17:31:00Z"}
    r = requests.post(f"{sandbox}/events", json=event, timeout=5)
    assert (r.status_code, r.json()) == (200, {"id": event["id"]})
    event["time"] = "202-04-05T17:31:00.000Z"
    r = requests.post(f"{sandbox}/events", json=event, timeout=5)
    assert (r.status_code, r.json()) == (400, {"validationErrors": {"time": "Please provide a valid time"}})
    r = requests.post(f"{sandbox}/events", data="{not json", headers={"Content-Type": "application/json"}, timeout=5)
    assert (r.status_code, r.json()) == (500, {"error": "something went wrong"})


def test_subscriptions_are_the_sandboxs_fixtures(sandbox: str):
    r = requests.post(f"{sandbox}/subscriptions", json=REQUEST, timeout=5)
    assert (r.status_code, r.json()) == (200, {"id": CREATED})
    r = requests.post(f"{sandbox}/subscriptions", json=dict(REQUEST, resourceType="Bundle"), timeout=5)
    assert (r.status_code, r.json()) == (
        400,
        {"validationErrors": {"resourceType": "Please provide the correct resource type for this endpoint"}},
    )
    assert requests.get(f"{sandbox}/subscriptions/{CREATED}", timeout=5).json() == {"errors": "Not found"}
    assert requests.get(f"{sandbox}/subscriptions/{S1}", timeout=5).json() == s1()
    assert requests.get(f"{sandbox}/subscriptions/{S2}", timeout=5).json() == s1("application/fhir+json", S2)
    listed = requests.get(f"{sandbox}/subscriptions", timeout=5).json()
    assert listed == {
        "resourceType": "Bundle",
        "type": "searchset",
        "link": [{"relation": "self", "url": "/subscriptions"}],
        "entry": [s1()],
    }
    assert requests.put(f"{sandbox}/subscriptions/{S1}", json=REQUEST, timeout=5).status_code == 204
    r = requests.put(f"{sandbox}/subscriptions/f8f44c83-a697-4607-8604-a1a45acedd8c", json=REQUEST, timeout=5)
    assert (r.status_code, r.json()) == (
        409,
        {"errors": "A matching subscription already exists with id: 5553998c-b802-4071-9a54-8e99ea729614"},
    )
    assert requests.delete(f"{sandbox}/subscriptions/{S1}", timeout=5).status_code == 204
    # Stateless: S1 survives its DELETE.
    assert requests.get(f"{sandbox}/subscriptions/{S1}", timeout=5).status_code == 200
    r = requests.delete(f"{sandbox}/subscriptions/{CREATED}", timeout=5)
    assert (r.status_code, r.json()) == (404, {"errors": "Not found"})
