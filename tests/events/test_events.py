"""The events service end to end: the API's answers byte for byte, and deliveries through real
parts: the NHS MESH client downloading from a mailbox, a JetStream consumer, a webhook."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import nats
import pytest

from conftest import Server, signal_event, wait_for

S1 = "e9050741-ae87-4720-beb1-2abd9248e227"


# --------------------------------------------------------------------------------------------
# Publishing
# --------------------------------------------------------------------------------------------


def test_a_good_event_is_answered_with_its_id_and_a_repeat_likewise(server: Server):
    event = signal_event()
    for _ in range(2):
        r = server.publish(event)
        assert r.status_code == 200, r.text
        assert r.json() == {"id": event["id"]}


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("time", "202-04-05T17:31:00.000Z", "Please provide a valid time"),
        ("type", "Not A Type", "Please provide a valid event type"),
        ("id", "", "Please provide a valid id"),
        ("source", "has a space", "Please provide a valid source"),
        ("dataref", "not a uri", "Please provide a valid dataref"),
        ("filtering", {"nested": {"no": 1}}, "Please provide valid filtering attributes"),
    ],
)
def test_each_bad_attribute_gets_its_validation_error(server: Server, field, value, message):
    r = server.publish(signal_event(**{field: value}))
    assert r.status_code == 400
    assert r.json() == {"validationErrors": {field: message}}


def test_publishing_needs_a_permission_and_one_for_the_type(server: Server):
    r = server.publish(signal_event(), client_id="reader")
    assert (r.status_code, r.json()) == (403, {"errors": "Unauthorised"})
    r = server.publish(signal_event("nhs-number-change-2"))
    assert (r.status_code, r.json()) == (403, {"errors": "User is not authorized to handle the requested event type"})


def test_a_v1_event_is_published_as_json_and_other_media_types_are_refused(server: Server):
    v1 = {
        "id": str(uuid.uuid4()),
        "type": "pds-change-of-gp-1",
        "time": "2026-12-04T10:00:00Z",
        "subject": {"nhsNumber": "9912003888", "familyName": "DAWKINS", "dob": "2017-10-02"},
        "source": {"name": "PDS", "identifier": {"system": "https://fhir.nhs.uk/Id/nhsSpineASID", "value": "477121000324"}},
    }
    # The publisher may publish pds-change-of-gp-2, not -1.
    r = server.call("POST", "/events", data=json.dumps(v1), headers={"Content-Type": "application/json"})
    assert r.status_code == 403
    v1["subject"]["familyName"] = "Dawkins"
    r = server.call("POST", "/events", data=json.dumps(v1), headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    assert r.json() == {"validationErrors": {"subject.familyName": "Please provide a valid family name in upper case"}}
    r = server.call("POST", "/events", data=json.dumps(signal_event()), headers={"Content-Type": "text/plain"})
    assert r.status_code == 400
    assert list(r.json()["validationErrors"]) == ["Content-Type"]


def test_no_token_no_service(server: Server):
    r = server.call("POST", "/events", client_id=None, json=signal_event())
    assert r.status_code == 401
    assert r.json()["fault"]["detail"]["errorcode"].startswith("oauth.v2.")


# --------------------------------------------------------------------------------------------
# Subscriptions
# --------------------------------------------------------------------------------------------


def test_a_subscription_is_created_read_listed_replaced_and_deleted_by_its_owner_only(server: Server):
    endpoint = f"nats:mns.suite.crud.s{uuid.uuid4().hex[:8]}"
    r = server.subscribe("eventType=mns-test-signal-1 AND generalpractitioner='Y12345'", endpoint)
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    assert r.headers["Location"].endswith(f"/multicast-notification-service/subscriptions/{sid}")
    got = server.call("GET", f"/subscriptions/{sid}")
    assert got.status_code == 200
    assert got.headers["Content-Type"] == "application/fhir+json"
    assert got.json() == {
        "resourceType": "Subscription",
        "id": sid,
        "status": "active",
        "reason": "",
        "criteria": "eventType=mns-test-signal-1 AND generalpractitioner=Y12345",
        "channel": {"type": "message", "endpoint": endpoint, "payload": "application/json"},
    }
    listed = server.call("GET", "/subscriptions").json()
    assert listed["resourceType"] == "Bundle" and listed["type"] == "searchset"
    assert {"relation": "self", "url": "/subscriptions"} in listed["link"]
    assert sid in [s["id"] for s in listed["entry"]]

    # Another app sees nothing of it.
    assert server.call("GET", f"/subscriptions/{sid}", client_id="stranger").json() == {"errors": "Not found"}
    assert sid not in [s["id"] for s in server.call("GET", "/subscriptions", client_id="stranger").json()["entry"]]
    assert server.call("DELETE", f"/subscriptions/{sid}", client_id="stranger").status_code == 404

    # The same criteria and endpoint again: a conflict naming the first.
    dup = server.subscribe("eventType=mns-test-signal-1 AND generalpractitioner=Y12345", endpoint)
    assert (dup.status_code, dup.json()) == (409, {"errors": f"A matching subscription already exists with id: {sid}"})

    replaced = dict(got.json(), status="requested")
    replaced["channel"]["endpoint"] = endpoint + ".moved"
    r = server.call("PUT", f"/subscriptions/{sid}", json=replaced)
    assert r.status_code == 204, r.text
    assert server.call("GET", f"/subscriptions/{sid}").json()["channel"]["endpoint"] == endpoint + ".moved"

    assert server.call("DELETE", f"/subscriptions/{sid}").status_code == 204
    assert server.call("GET", f"/subscriptions/{sid}").status_code == 404


def test_subscription_errors_have_their_bodies(server: Server):
    assert server.call("GET", "/subscriptions/not-a-uuid").json() == {
        "errors": "Please provide a valid subscription ID in UUID4 format"
    }
    assert server.call("GET", f"/subscriptions/{uuid.uuid4()}").json() == {"errors": "Not found"}
    r = server.call("GET", "/subscriptions", params={"continue_from": "nonsense"})
    assert (r.status_code, r.json()) == (400, {"errors": "The continue_from field was not valid"})
    r = server.subscribe("pds-change-of-gp-2", "nats:mns.x")
    assert (r.status_code, r.json()) == (400, {"validationErrors": {"criteria": "Please provide a valid criteria"}})
    r = server.subscribe("eventType=pds-change-of-gp-2", "mesh://NOSUCHBOX?workflow_id=OPENSPINE_EVENTS")
    assert r.json() == {"validationErrors": {"channel.endpoint": "Please provide a MESH mailbox that exists"}}
    r = server.call("POST", "/subscriptions", json={"resourceType": "Bundle"})
    assert r.json() == {"validationErrors": {"resourceType": "Please provide the correct resource type for this endpoint"}}


# --------------------------------------------------------------------------------------------
# Delivery
# --------------------------------------------------------------------------------------------


def _inbox_message(client, timeout_s: float = 15.0, skipped: list | None = None):
    """The first event delivery (workflow OPENSPINE_EVENTS) in the inbox, downloaded and
    acknowledged. Other messages (a non-delivery report) are acknowledged and noted in
    `skipped` as (message type, workflow)."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        for message_id in client.list_messages():
            message = client.retrieve_message(message_id)
            body = message.read()
            workflow, local_id = message.workflow_id, message.local_id
            kind = message.message_type
            message.acknowledge()
            if workflow == "OPENSPINE_EVENTS" and kind == "DATA":
                return (workflow, local_id, kind), body
            if skipped is not None:
                skipped.append((kind, workflow))
        time.sleep(0.1)
    raise AssertionError("no event delivery arrived")


def test_an_event_reaches_a_mesh_mailbox_as_a_fhir_notification(server: Server):
    r = server.subscribe(
        "eventType=pds-change-of-gp-2 AND generalpractitioner=Y12345",
        "mesh://X26ABC2?workflow_id=OPENSPINE_EVENTS",
        payload="application/fhir+json",
    )
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    x26abc2 = server.mesh("X26ABC2")
    try:
        event = signal_event("pds-change-of-gp-2")
        assert server.publish(event).status_code == 200
        (workflow, local_id, _), body = _inbox_message(x26abc2)
        assert workflow == "OPENSPINE_EVENTS"
        assert local_id == event["id"]
        bundle = json.loads(body)
        assert bundle["resourceType"] == "Bundle" and bundle["type"] == "history"
        assert bundle["id"] == event["id"]
        params = bundle["entry"][0]["resource"]["parameter"]
        assert [p["name"] for p in params] == ["subscription", "status", "type", "notification-event", "additional-context"]
        assert params[0]["valueReference"]["reference"].endswith("/multicast-notification-service/subscriptions")
        context = {p["name"]: p for p in params[4]["part"]}
        assert context["event-type"]["valueString"] == "pds-change-of-gp-2"
        assert context["subject"]["valueReference"]["identifier"]["value"] == "9912003888"
    finally:
        x26abc2.close()
        server.call("DELETE", f"/subscriptions/{sid}")


async def _consume(nats_url: str, subject: str, count: int, timeout_s: float = 20.0) -> list[tuple[dict, dict]]:
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        sub = await js.pull_subscribe(subject, durable=None, stream="OPENSPINE_MNS")
        got: list[tuple[dict, dict]] = []
        deadline = time.time() + timeout_s
        while len(got) < count and time.time() < deadline:
            try:
                msgs = await sub.fetch(count - len(got), timeout=1)
            except nats.errors.TimeoutError:
                continue
            for m in msgs:
                got.append((json.loads(m.data), dict(m.headers or {})))
                await m.ack()
        return got
    finally:
        await nc.close()


def test_events_reach_a_jetstream_subject_in_the_order_they_were_published(server: Server):
    subject = f"mns.suite.order.s{uuid.uuid4().hex[:8]}"
    r = server.subscribe("eventType=mns-test-signal-1 AND generalpractitioner=Y99999", f"nats:{subject}")
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    ids = []
    for n in range(20):
        event = signal_event(filtering={"generalpractitioner": "Y99999", "n": n})
        ids.append(event["id"])
        assert server.publish(event).status_code == 200
    # Not matched: another practice.
    assert server.publish(signal_event(filtering={"generalpractitioner": "Y00000"})).status_code == 200
    got = asyncio.run(_consume(server.nats_url, subject, 20))
    assert [body["id"] for body, _ in got] == ids
    body, headers = got[0]
    assert "filtering" not in body, "the JSON form is the event without its filtering"
    assert body["type"] == "mns-test-signal-1"
    assert headers.get("Nats-Msg-Id", "").startswith(sid)
    server.call("DELETE", f"/subscriptions/{sid}")


class Receiver:
    """A webhook receiver on loopback: answers `status` and keeps what it was sent."""

    def __init__(self, port: int = 0) -> None:
        self.status = 200
        self.received: list[tuple[dict, bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(receiver.status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"

    def close(self) -> None:
        self.httpd.shutdown()


def _verify(secret: str, header: str, body: bytes) -> bool:
    parts = dict(p.split("=", 1) for p in header.split(","))
    mac = hmac.new(secret.encode(), f"{parts['t']}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(mac, parts["v1"]) and abs(time.time() - int(parts["t"])) < 300


def test_a_webhook_gets_signed_deliveries_with_its_headers(server: Server):
    receiver = Receiver()
    try:
        r = server.subscribe(
            "eventType=mns-test-signal-1 AND generalpractitioner=Y77777",
            receiver.url,
            header=["Authorization: Bearer receiver-secret"],
        )
        assert r.status_code == 201, r.text
        sid, secret = r.json()["id"], r.json()["webhookSecret"]
        event = signal_event(filtering={"generalpractitioner": "Y77777"})
        assert server.publish(event).status_code == 200
        headers, body = wait_for("a webhook delivery", lambda: receiver.received and receiver.received[0])
        assert json.loads(body)["id"] == event["id"]
        assert headers["content-type"] == "application/json"
        assert headers["x-openspine-subscription"] == sid
        assert headers["authorization"] == "Bearer receiver-secret"
        assert _verify(secret, headers["x-openspine-signature"], body)
        assert not _verify(secret, headers["x-openspine-signature"], body + b" ")
        server.call("DELETE", f"/subscriptions/{sid}")
    finally:
        receiver.close()


def test_a_failing_subscriber_is_retried_dead_lettered_then_active_again(server: Server):
    receiver = Receiver()
    receiver.status = 503
    try:
        r = server.subscribe("eventType=mns-test-signal-1 AND generalpractitioner=Y55555", receiver.url)
        sid = r.json()["id"]
        first = signal_event(filtering={"generalpractitioner": "Y55555"})
        assert server.publish(first).status_code == 200
        # Retried with backoff (100 ms doubling to 1 s) for 3 s, then given up.
        wait_for(
            "status error",
            lambda: server.call("GET", f"/subscriptions/{sid}").json()["status"] == "error",
            timeout_s=20,
        )
        assert len(receiver.received) >= 3, "retried before giving up"
        # Other subscribers were never held up meanwhile: publishing still answers at once.
        t0 = time.time()
        assert server.publish(signal_event()).status_code == 200
        assert time.time() - t0 < 1.0
        receiver.status = 200
        seen = len(receiver.received)
        second = signal_event(filtering={"generalpractitioner": "Y55555"})
        assert server.publish(second).status_code == 200
        wait_for(
            "status active",
            lambda: server.call("GET", f"/subscriptions/{sid}").json()["status"] == "active",
        )
        later = [json.loads(b)["id"] for _, b in receiver.received[seen:]]
        assert later == [second["id"]], "the dead-lettered event is not delivered again"

        # The operator sees the dead letter, with its event, and replays it.
        dead = _cli(server, "dead-letters", "--subscription", sid)
        assert [(d["subscription"], d["event"]["id"]) for d in dead] == [(sid, first["id"])]
        assert dead[0]["attempts"] >= 3 and "503" in dead[0]["last_error"], dead[0]
        seen = len(receiver.received)
        assert _cli(server, "replay", sid) == [{"subscription": sid, "replayed": 1}]
        wait_for("the replayed delivery", lambda: len(receiver.received) > seen)
        assert [json.loads(b)["id"] for _, b in receiver.received[seen:]] == [first["id"]]
        assert _cli(server, "dead-letters", "--subscription", sid) == []
        server.call("DELETE", f"/subscriptions/{sid}")
    finally:
        receiver.close()


def _cli(server: Server, *args: str) -> list:
    import os
    import subprocess

    env = dict(os.environ, OPENSPINE_ADMIN_URL=server.ops_url, OPENSPINE_ADMIN_TOKEN=server.admin_token)
    done = subprocess.run([server.binary, "events", *args], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


# --------------------------------------------------------------------------------------------
# MESH's own events: receipts for a sender
# --------------------------------------------------------------------------------------------


def test_a_sender_gets_receipts_when_its_message_is_acknowledged_and_when_one_expires(server: Server):
    r = server.subscribe(
        "eventType=mesh-message-acknowledged-1 AND sender=X26ABC1",
        "mesh://X26ABC1?workflow_id=OPENSPINE_EVENTS",
    )
    assert r.status_code == 201, r.text
    acked_sub = r.json()["id"]
    r = server.subscribe(
        "eventType=mesh-message-expired-1 AND sender=X26ABC1",
        "mesh://X26ABC1?workflow_id=OPENSPINE_EVENTS",
    )
    expired_sub = r.json()["id"]
    x26abc1, x26abc2 = server.mesh("X26ABC1"), server.mesh("X26ABC2")
    try:
        collected = x26abc1.send_message("X26ABC2", b"please collect", workflow_id="TEST_WORKFLOW")
        message = x26abc2.retrieve_message(collected)
        message.read()
        message.acknowledge()
        (workflow, local_id, _), body = _inbox_message(x26abc1)
        receipt = json.loads(body)
        assert workflow == "OPENSPINE_EVENTS"
        assert receipt["type"] == "mesh-message-acknowledged-1"
        assert receipt["subject"] == collected
        assert receipt["source"] == "openspine.mesh"
        assert local_id == receipt["id"]
        print("acknowledged receipt as mesh_client sees it:", workflow, local_id, receipt)

        # Never collected: it expires after 5 s, and the sender hears of that too.
        uncollected = x26abc1.send_message("X26ABC2", b"nobody reads this", workflow_id="TEST_WORKFLOW")
        skipped: list = []
        (_, _, _), body = _inbox_message(x26abc1, timeout_s=30, skipped=skipped)
        receipt = json.loads(body)
        assert receipt["type"] == "mesh-message-expired-1"
        assert receipt["subject"] == uncollected
        print("expired receipt as mesh_client sees it:", receipt, "beside", skipped)
    finally:
        x26abc1.close()
        x26abc2.close()
        server.call("DELETE", f"/subscriptions/{acked_sub}")
        server.call("DELETE", f"/subscriptions/{expired_sub}")


def test_a_family_subscription_gets_a_messages_events_in_order(server: Server):
    """`eventType=mesh-message-*` (an OpenSpine extension) puts the family in one queue, so a
    sender sees its message accepted, downloaded and acknowledged in that order."""
    r = server.subscribe(
        "eventType=mesh-message-* AND sender=X26ABC1 AND workflowid=TEST_WORKFLOW",
        "mesh://X26ABC1?workflow_id=OPENSPINE_EVENTS",
    )
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    x26abc1, x26abc2 = server.mesh("X26ABC1"), server.mesh("X26ABC2")
    try:
        _drain(x26abc1)
        sent = [x26abc1.send_message("X26ABC2", f"ordered {n}".encode(), workflow_id="TEST_WORKFLOW") for n in range(3)]
        for message_id in sent:
            message = x26abc2.retrieve_message(message_id)
            message.read()
            message.acknowledge()
        # Nine receipts, in the inbox in the order they were sent, each with the next
        # event number.
        receipts = [json.loads(_inbox_message(x26abc1)[1]) for _ in range(9)]
        got = [(e["subject"], e["type"]) for e in receipts]
        # Each message's own events in their order; all accepted before their download.
        for message_id in sent:
            mine = [t for subject, t in got if subject == message_id]
            assert mine == [
                "mesh-message-accepted-1",
                "mesh-message-downloaded-1",
                "mesh-message-acknowledged-1",
            ], got
        numbers = [int(e["id"].rsplit("-", 1)[1]) for e in receipts]
        assert numbers == sorted(numbers), numbers
        print("one family subscription, in inbox order:", [(e["id"], e["type"]) for e in receipts])
    finally:
        x26abc1.close()
        x26abc2.close()
        server.call("DELETE", f"/subscriptions/{sid}")


def test_mesh_events_are_only_meshs_and_only_for_their_own_mailbox(server: Server):
    # Nobody publishes MESH's types over the API, even an app allowed every type.
    event = signal_event("mesh-message-acknowledged-1", subject="20261204000000000000_ABCDEF")
    r = server.publish(event, client_id="anything")
    assert (r.status_code, r.json()) == (403, {"errors": "User is not authorized to handle the requested event type"})
    assert server.publish(signal_event("pds-death-2"), client_id="anything").status_code == 200
    # A subscription to them must deliver into the mailbox it names as sender or recipient.
    refused = {
        "validationErrors": {
            "criteria": "Please deliver MESH events to a mesh:// endpoint whose mailbox the criteria names as sender or recipient"
        }
    }
    for criteria, endpoint in [
        ("eventType=mesh-message-accepted-1", "mesh://X26ABC1?workflow_id=OPENSPINE_EVENTS"),
        ("eventType=mesh-message-* AND sender=X26ABC2", "mesh://X26ABC1?workflow_id=OPENSPINE_EVENTS"),
        ("eventType=mesh-* AND recipient=X26ABC1", "nats:mns.suite.snoop"),
    ]:
        r = server.subscribe(criteria, endpoint)
        assert (r.status_code, r.json()) == (400, refused), criteria


def _drain(client) -> None:
    for message_id in client.list_messages():
        client.acknowledge_message(message_id)


# --------------------------------------------------------------------------------------------
# The CLI
# --------------------------------------------------------------------------------------------


def test_the_cli_publishes_from_a_file_and_tails_live(server: Server):
    import os
    import subprocess

    env = dict(os.environ, OPENSPINE_ADMIN_URL=server.ops_url, OPENSPINE_ADMIN_TOKEN=server.admin_token)
    marker = f"cli-{uuid.uuid4().hex[:8]}"
    import requests

    # Start after everything already accepted: the admin API's `next`.
    head = requests.get(
        f"{server.ops_url}/admin/v1/events", params={"after": 0, "limit": 1000},
        headers={"Authorization": f"Bearer {server.admin_token}"}, timeout=10,
    ).json()
    while head["events"]:
        head = requests.get(
            f"{server.ops_url}/admin/v1/events", params={"after": head["next"], "limit": 1000},
            headers={"Authorization": f"Bearer {server.admin_token}"}, timeout=10,
        ).json()
    tail = subprocess.Popen(
        [server.binary, "events", "tail", "--type", "pds-change-of-gp-2", "--from", str(head["next"]), "--count", "2"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        first = signal_event("pds-change-of-gp-2", subject=marker)
        done = subprocess.run(
            [server.binary, "events", "publish", "-"], input=json.dumps(first), env=env,
            capture_output=True, text=True, timeout=30,
        )
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["id"] == first["id"]
        bad = subprocess.run(
            [server.binary, "events", "publish", "-"], input=json.dumps(dict(first, time="yesterday")), env=env,
            capture_output=True, text=True, timeout=30,
        )
        assert bad.returncode != 0
        assert "Please provide a valid time" in bad.stderr
        # Published over HTTP too: the tail sees both, live, oldest first.
        second = signal_event("pds-change-of-gp-2", subject=marker)
        assert server.publish(second).status_code == 200
        out, err = tail.communicate(timeout=30)
    finally:
        tail.kill()
    lines = [json.loads(line) for line in out.splitlines()]
    assert tail.returncode == 0, err
    ids = [line["event"]["id"] for line in lines]
    assert ids == [first["id"], second["id"]], ids
    assert lines[0]["seq"] < lines[1]["seq"]


# --------------------------------------------------------------------------------------------
# A subscriber's outage holds only its own deliveries
# --------------------------------------------------------------------------------------------


def _services(action: str) -> None:
    import os
    import subprocess

    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    done = subprocess.run(["bash", os.path.join(repo, "scripts/services.sh"), action], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


@pytest.mark.skipif(
    not __import__("os").environ.get("SERVICES_DIR") or not __import__("os").environ.get("NATS_PORT"),
    reason="needs the NATS server of scripts/services.sh (SERVICES_DIR, NATS_PORT), which the test command starts",
)
def test_a_stopped_nats_server_and_a_dead_webhook_hold_only_their_subscriptions(server: Server):
    from conftest import free_port

    subject = f"mns.suite.outage.s{uuid.uuid4().hex[:8]}"
    criteria = "eventType=mns-test-signal-1 AND generalpractitioner=Y44444"
    nats_sub = server.subscribe(criteria, f"nats:{subject}").json()["id"]
    # Nothing listens on this port until later: every attempt is refused, and retried.
    dead_port = free_port()
    dead_sub = server.subscribe(criteria, f"http://127.0.0.1:{dead_port}/dead").json()["id"]
    revived = None
    mesh_sub = server.subscribe(criteria, "mesh://X26ABC2?workflow_id=OPENSPINE_EVENTS").json()["id"]
    receiver = Receiver()
    x26abc1, x26abc2 = server.mesh("X26ABC1"), server.mesh("X26ABC2")
    try:
        _drain(x26abc2)
        hook_sub = server.subscribe(criteria, receiver.url).json()["id"]
        _services("nats_stop")
        try:
            event = signal_event(filtering={"generalpractitioner": "Y44444"})
            t0 = time.time()
            assert server.publish(event).status_code == 200
            assert time.time() - t0 < 1.0, "publishing does not wait for NATS or the dead webhook"
            # The other subscribers are not held up by those outages.
            wait_for("the webhook delivery", lambda: receiver.received, timeout_s=5)
            (_, local_id, _), _ = _inbox_message(x26abc2, timeout_s=5)
            assert local_id == event["id"]
            # Nor is MESH: a message goes from X26ABC1 to X26ABC2 and is collected meanwhile.
            t0 = time.time()
            sent = x26abc1.send_message("X26ABC2", b"during the outage", workflow_id="TEST_WORKFLOW")
            message = x26abc2.retrieve_message(sent)
            assert message.read() == b"during the outage"
            message.acknowledge()
            assert time.time() - t0 < 2.0, "MESH traffic does not wait for the events service"
            assert not receiver.received[1:], "one delivery each"
            # The dead webhook comes back: its retried delivery arrives.
            revived = Receiver(dead_port)
        finally:
            _services("nats_start")
        wait_for("the revived webhook's delivery", lambda: revived.received, timeout_s=5)
        assert json.loads(revived.received[0][1])["id"] == event["id"]
        got = asyncio.run(_consume(server.nats_url, subject, 1))
        assert [body["id"] for body, _ in got] == [event["id"]]
        server.call("DELETE", f"/subscriptions/{hook_sub}")
    finally:
        x26abc1.close()
        x26abc2.close()
        receiver.close()
        if revived is not None:
            revived.close()
        for sid in (nats_sub, dead_sub, mesh_sub):
            server.call("DELETE", f"/subscriptions/{sid}")
