"""Message expiry, non-delivery reports (NDRs) and retention, as a mesh_client user sees them.

MESH takes an uncollected message out of its recipient's inbox five days after it became
available and sends the original sender a non-delivery report (API.md 5.7, 5.8); thirty days
later the message is deleted. Waiting five days is not an option in a test, so these tests use
two OpenSpine sandbox extensions (no auth, like the other ``/admin`` calls of API.md 3.16):

* ``POST /admin/clock`` ``{"advance_secs": N}`` moves the server's clock N seconds on and answers
  ``{"now": "<iso time>"}``; ``DELETE /admin/reset`` (before every test) puts it back;
* ``POST /admin/lifecycle`` runs one lifecycle sweep now and answers what it did:
  ``{"expired", "reports", "purged", "abandoned", "bytes_freed"}``.

The server under test runs with its default periods (5 days inbox expiry, 30 days retention).
The NHS sandbox never expires anything and has neither call, so these tests are skipped when
the suite runs against it (neither OPENSPINE_BIN nor MESH_URL set; see conftest.py).

The server's own lifecycle worker also sweeps every 60 s (and right after each reset). The
sweep counts asserted below assume it does not run in the few milliseconds between a clock
advance and the explicit sweep that follows it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import pytest
import requests
from conftest import PASSWORD, SHARED_KEY, TLS_KWARGS
from mesh_client import Message, MeshClient

pytestmark = pytest.mark.skipif(
    not (os.environ.get("OPENSPINE_BIN") or os.environ.get("MESH_URL")),
    reason="the NHS MESH sandbox never expires messages and has no /admin/clock or /admin/lifecycle "
    "(API.md 5.8: expiry is not implemented by SBX); run with OPENSPINE_BIN or MESH_URL",
)

MB1, MB2 = "X26ABC1", "X26ABC2"
WORKFLOW = "TEST_WORKFLOW"  # X26ABC1 -> X26ABC2
ACCEPT_V2 = "application/vnd.mesh.v2+json"
ACCEPT_V1 = "application/json"

DAY = 86_400
INBOX_EXPIRY_SECS = 5 * DAY  # the server's default --inbox-expiry-secs
RETENTION_SECS = 30 * DAY  # the server's default --retention-secs
NDR_DESCRIPTION = "Message not collected by recipient after 5 days"
SWEEP_KEYS = ("expired", "reports", "purged", "abandoned", "bytes_freed")


# --- helpers ------------------------------------------------------------------------------


def _admin_post(mesh_url: str, path: str, body: dict | None = None) -> dict:
    response = requests.post(f"{mesh_url}{path}", json=body, timeout=60, **TLS_KWARGS)
    assert response.status_code == 200, f"POST {path} answered {response.status_code}: {response.text[:500]}"
    return response.json()


def _advance(mesh_url: str, seconds: int) -> datetime:
    """Moves the server's clock on; returns the server's new "now" (UTC)."""
    answer = _admin_post(mesh_url, "/admin/clock", {"advance_secs": seconds})
    return _parse_iso(answer["now"])


def _sweep_once(mesh_url: str) -> dict:
    counts = _admin_post(mesh_url, "/admin/lifecycle")
    for key in SWEEP_KEYS:
        assert isinstance(counts.get(key), int) and counts[key] >= 0, f"sweep answer {counts}: bad {key!r}"
    return counts


def _sweep(mesh_url: str) -> dict:
    """Runs a lifecycle sweep; returns its counts.

    On PostgreSQL a sweep skips a message whose row another transaction holds at that moment
    (``FOR UPDATE SKIP LOCKED``), e.g. the server's own "downloaded" record, written just
    after a download; OpenSpine answers such left-over work as ``backlog``. The sweep is then
    repeated until nothing due is left, and the counts of all passes are added up.
    """
    total = _sweep_once(mesh_url)
    for _ in range(40):
        if not total.get("backlog"):
            break
        time.sleep(0.05)
        again = _sweep_once(mesh_url)
        for key in SWEEP_KEYS:
            total[key] += again[key]
        total["backlog"] = again.get("backlog", 0)
    return total


def _parse_iso(text: str) -> datetime:
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _signed(mailbox: str, accept: str = ACCEPT_V2) -> dict[str, str]:
    """Request headers with a hand-made NHSMESH token (API.md 2.1, 2.2): fresh nonce, count 0."""
    nonce = str(uuid.uuid4())
    timestamp = datetime.now(timezone.utc).strftime("%Y%m%d%H%M")
    mac = hmac.new(
        SHARED_KEY.encode("utf-8"),
        f"{mailbox}:{nonce}:0:{PASSWORD}:{timestamp}".encode("ascii"),
        hashlib.sha256,
    ).hexdigest()
    return {"Authorization": f"NHSMESH {mailbox}:{nonce}:0:{timestamp}:{mac}", "Accept": accept}


def _read_all(client: MeshClient) -> list[tuple[Message, bytes]]:
    """Every message in the client's inbox, downloaded (not acknowledged), with its body."""
    messages = []
    for message in client.iterate_all_messages():
        try:
            messages.append((message, message.read()))
        finally:
            message.close()
    return messages


def _expire_one(mesh_url: str, sender: MeshClient, recipient: MeshClient, **send_kwargs) -> str:
    """Sends one message X26ABC1 -> X26ABC2, lets 5 days and 1 s pass, sweeps; returns its id."""
    original = sender.send_message(MB2, b"never collected", workflow_id=WORKFLOW, **send_kwargs)
    assert recipient.list_messages() == [original]
    _advance(mesh_url, INBOX_EXPIRY_SECS + 1)
    counts = _sweep(mesh_url)
    assert (counts["expired"], counts["reports"]) == (1, 1), f"sweep answered {counts}"
    return original


# --- the admin calls themselves -----------------------------------------------------------


def test_clock_moves_forward_and_reset_puts_it_back(mesh_url: str):
    before = datetime.now(timezone.utc)
    # Also offered under /messageexchange/admin/..., like the other admin calls (API.md 3.16).
    moved = _parse_iso(_admin_post(mesh_url, "/messageexchange/admin/clock", {"advance_secs": DAY})["now"])
    assert before + timedelta(seconds=DAY - 5) <= moved <= datetime.now(timezone.utc) + timedelta(seconds=DAY + 5)

    response = requests.delete(f"{mesh_url}/admin/reset", timeout=10, **TLS_KWARGS)
    assert response.status_code == 200
    now = _advance(mesh_url, 0)
    assert abs(now - datetime.now(timezone.utc)) < timedelta(seconds=5)


def test_a_sweep_with_nothing_due_does_nothing(mesh_url: str, x26abc1: MeshClient, x26abc2: MeshClient):
    message_id = x26abc1.send_message(MB2, b"fresh", workflow_id=WORKFLOW)
    counts = _sweep(mesh_url)
    assert {key: counts[key] for key in SWEEP_KEYS} == dict.fromkeys(SWEEP_KEYS, 0)
    assert x26abc2.list_messages() == [message_id]
    assert x26abc1.track_message(message_id)["status"] == "accepted"


# --- expiry and the non-delivery report ----------------------------------------------------


def test_uncollected_message_expires_and_its_sender_gets_one_report(
    mesh_url: str, x26abc1: MeshClient, x26abc2: MeshClient
):
    # (a) API.md 5.7: the NDR goes to the ORIGINAL SENDER, is a REPORT with an empty body and
    # carries the original's workflow id, local id and subject.
    original = _expire_one(mesh_url, x26abc1, x26abc2, subject="Results for ward 7", local_id="expire-a-1")

    messages = _read_all(x26abc1)
    assert len(messages) == 1, [m.id() for m, _ in messages]
    report, body = messages[0]
    assert body == b""
    assert report.id() != original
    assert report.message_id == report.id()
    assert report.message_type == "REPORT"
    assert report.recipient == MB1
    assert report.sender is None  # no Mex-From: the report comes from the central system
    assert report.mex_header("statuscode") == "14"
    assert report.mex_header("statusevent") == "SEND"
    assert report.mex_header("statussuccess") == "ERROR"
    assert report.mex_header("statusdescription") == NDR_DESCRIPTION
    assert report.mex_header("linkedmsgid") == original
    assert report.workflow_id == WORKFLOW
    assert report.local_id == "expire-a-1"
    assert report.subject == "Results for ward 7"
    assert report.mex_header("chunk-range") == "1:0"
    assert report.mex_header("total-chunks") == "0"

    # Acknowledged the normal way (API.md 5.7).
    report.acknowledge()
    assert x26abc1.list_messages() == []


def test_expired_message_is_gone_for_its_recipient_and_tracked_undeliverable(
    mesh_url: str, x26abc1: MeshClient, x26abc2: MeshClient
):
    # (b) API.md 5.3: undeliverable -> not listed, GET/HEAD by the recipient 410.
    original = _expire_one(mesh_url, x26abc1, x26abc2, local_id="expire-b-1")

    assert x26abc2.list_messages() == []
    with pytest.raises(requests.HTTPError) as raised:
        x26abc2.retrieve_message(original)
    assert raised.value.response.status_code == 410

    head = requests.head(
        f"{mesh_url}/messageexchange/{MB2}/inbox/{original}", headers=_signed(MB2), timeout=10, **TLS_KWARGS
    )
    assert head.status_code == 410

    record = x26abc1.track_message(original)
    assert record["message_id"] == original
    assert record["status"] == "undeliverable"
    # v1 spells statuses Title-case (API.md 5.2, 7.1).
    v1 = requests.get(
        f"{mesh_url}/messageexchange/{MB1}/outbox/tracking",
        params={"messageID": original},
        headers=_signed(MB1, accept=ACCEPT_V1),
        timeout=10,
        **TLS_KWARGS,
    )
    assert v1.status_code == 200, v1.text[:500]
    assert v1.json()["status"] == "Undeliverable"


def test_a_late_acknowledgement_does_not_revive_an_expired_message(
    mesh_url: str, x26abc1: MeshClient, x26abc2: MeshClient
):
    # API.md 3.7 / 5.3: acknowledging a message in any status but accepted is a 200 no-op.
    original = _expire_one(mesh_url, x26abc1, x26abc2)
    x26abc2.acknowledge_message(original)
    assert x26abc1.track_message(original)["status"] == "undeliverable"
    assert x26abc2.list_messages() == []
    assert len(x26abc1.list_messages()) == 1


def test_an_expired_message_is_reported_only_once(mesh_url: str, x26abc1: MeshClient, x26abc2: MeshClient):
    # (c) Later sweeps find the original already undeliverable: no second NDR.
    original = _expire_one(mesh_url, x26abc1, x26abc2)
    [report_id] = x26abc1.list_messages()

    again = _sweep(mesh_url)
    assert (again["expired"], again["reports"]) == (0, 0), again

    _advance(mesh_url, DAY)
    later = _sweep(mesh_url)
    assert (later["expired"], later["reports"]) == (0, 0), later
    assert x26abc1.list_messages() == [report_id]
    assert x26abc1.track_message(original)["status"] == "undeliverable"

    # Left uncollected itself, the NDR expires too, but a report is never reported on.
    _advance(mesh_url, INBOX_EXPIRY_SECS)
    last = _sweep(mesh_url)
    assert last["reports"] == 0, last
    assert last["expired"] == 1, last
    assert x26abc1.list_messages() == []
    assert x26abc2.list_messages() == []


def test_a_message_is_not_expired_before_its_time(mesh_url: str, x26abc1: MeshClient, x26abc2: MeshClient):
    original = x26abc1.send_message(MB2, b"still in time", workflow_id=WORKFLOW)
    _advance(mesh_url, INBOX_EXPIRY_SECS - 120)
    counts = _sweep(mesh_url)
    assert (counts["expired"], counts["reports"]) == (0, 0), counts
    assert x26abc2.list_messages() == [original]
    assert x26abc1.track_message(original)["status"] == "accepted"
    assert x26abc1.list_messages() == []

    _advance(mesh_url, 180)
    counts = _sweep(mesh_url)
    assert (counts["expired"], counts["reports"]) == (1, 1), counts


def test_only_unacknowledged_messages_expire(mesh_url: str, x26abc1: MeshClient, x26abc2: MeshClient):
    # (d) Acknowledged in time: no NDR, stays acknowledged. Downloaded but not acknowledged:
    # MESH still counts it as not collected (API.md 5.7: "downloaded **and** acknowledged").
    untouched = x26abc1.send_message(MB2, b"untouched", workflow_id=WORKFLOW, local_id="untouched")
    collected = x26abc1.send_message(MB2, b"collected", workflow_id=WORKFLOW, local_id="collected")
    downloaded = x26abc1.send_message(MB2, b"downloaded only", workflow_id=WORKFLOW, local_id="downloaded")

    with x26abc2.retrieve_message(collected) as message:  # a clean with block acknowledges
        assert message.read() == b"collected"
    message = x26abc2.retrieve_message(downloaded)
    try:
        assert message.read() == b"downloaded only"
    finally:
        message.close()
    assert x26abc2.list_messages() == [untouched, downloaded]

    _advance(mesh_url, INBOX_EXPIRY_SECS + 1)
    counts = _sweep(mesh_url)
    assert (counts["expired"], counts["reports"]) == (2, 2), counts

    assert x26abc1.track_message(collected)["status"] == "acknowledged"
    assert x26abc1.track_message(untouched)["status"] == "undeliverable"
    assert x26abc1.track_message(downloaded)["status"] == "undeliverable"
    assert x26abc2.list_messages() == []

    reports = _read_all(x26abc1)
    linked = sorted(report.mex_header("linkedmsgid") for report, _ in reports)
    assert linked == sorted([untouched, downloaded])
    assert {report.local_id for report, _ in reports} == {"untouched", "downloaded"}


def test_the_report_as_raw_http_shows_it(mesh_url: str, x26abc1: MeshClient, x26abc2: MeshClient):
    # (e) The exact headers (API.md 4.5, 4.6) on a plain GET with a hand-signed v2 token.
    original = _expire_one(
        mesh_url, x26abc1, x26abc2, subject="Discharge summary", local_id="expire-e-1"
    )
    [report_id] = x26abc1.list_messages()

    response = requests.get(
        f"{mesh_url}/messageexchange/{MB1}/inbox/{report_id}",
        headers={**_signed(MB1), "Accept-Encoding": "gzip"},
        timeout=10,
        **TLS_KWARGS,
    )
    assert response.status_code == 200, response.text[:500]
    assert response.content == b""
    headers = response.headers
    expected = {
        "mex-messagetype": "REPORT",
        "mex-messageid": report_id,
        "mex-to": MB1,
        "mex-statussuccess": "ERROR",
        "mex-statuscode": "14",
        "mex-statusevent": "SEND",
        "mex-statusdescription": NDR_DESCRIPTION,
        "mex-linkedmsgid": original,
        "mex-workflowid": WORKFLOW,
        "mex-localid": "expire-e-1",
        "mex-subject": "Discharge summary",
        "mex-chunk-range": "1:0",
        "mex-total-chunks": "0",
        "content-length": "0",
    }
    assert {name: headers.get(name) for name in expected} == expected
    assert "mex-from" not in headers
    assert "content-encoding" not in headers  # never on a REPORT (API.md 4.5)

    # The sender may HEAD its original in any status (API.md 3.6); the failure shows there.
    head = requests.head(
        f"{mesh_url}/messageexchange/{MB1}/inbox/{original}", headers=_signed(MB1), timeout=10, **TLS_KWARGS
    )
    assert head.status_code == 200
    assert head.headers.get("mex-statussuccess") == "ERROR"
    assert head.headers.get("mex-statuscode") == "14"
    assert head.headers.get("mex-messagetype") == "DATA"
    assert head.headers.get("mex-messageid") == original


def test_messages_are_deleted_after_retention(mesh_url: str, x26abc1: MeshClient, x26abc2: MeshClient):
    # (f) API.md 5.8: deleted 30 days after their last state change (expired or acknowledged).
    original = _expire_one(mesh_url, x26abc1, x26abc2, local_id="expire-f-1")
    [report_id] = x26abc1.list_messages()
    x26abc1.acknowledge_message(report_id)
    acknowledged = x26abc1.send_message(MB2, b"collected", workflow_id=WORKFLOW)
    x26abc2.acknowledge_message(acknowledged)

    # Not yet: a day short of retention.
    _advance(mesh_url, RETENTION_SECS - DAY)
    early = _sweep(mesh_url)
    assert early["purged"] == 0, early
    assert x26abc1.track_message(original)["status"] == "undeliverable"

    _advance(mesh_url, DAY + 60)
    counts = _sweep(mesh_url)
    assert counts["purged"] >= 3, counts  # the original, its acknowledged NDR, the acknowledged message
    for message_id in (original, acknowledged):
        with pytest.raises(requests.HTTPError) as raised:
            x26abc1.track_message(message_id)
        assert raised.value.response.status_code == 404, message_id
    with pytest.raises(requests.HTTPError) as raised:
        x26abc2.retrieve_message(original)
    assert raised.value.response.status_code == 404
    assert x26abc1.list_messages() == []
    assert x26abc2.list_messages() == []


def test_a_message_sent_after_the_clock_moved_is_not_due_at_once(
    mesh_url: str, mesh_client_for: Callable[..., MeshClient], x26abc1: MeshClient
):
    # Its five days count from when it was sent, on the moved clock. A client made after the
    # move still authenticates (sandbox mode has no token clock window, API.md 2.3).
    _advance(mesh_url, 10 * DAY)
    later = mesh_client_for(MB2)
    message_id = x26abc1.send_message(MB2, b"sent in the future", workflow_id=WORKFLOW)
    counts = _sweep(mesh_url)
    assert (counts["expired"], counts["reports"]) == (0, 0), counts
    assert later.list_messages() == [message_id]
