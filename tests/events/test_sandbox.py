"""`--sandbox`: the events service answers as the NHS MNS sandbox does (API.md §8), open and
stateless, so tests written against the NHS sandbox pass against OpenSpine."""

from __future__ import annotations

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


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = os.environ["OPENSPINE_BIN"]
    port = free_port()
    data = tmp_path_factory.mktemp("sandbox")
    proc = subprocess.Popen(
        [binary, "serve", "--demo", "--sandbox", "--listen", f"127.0.0.1:{port}", "--data-dir", str(data)],
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
