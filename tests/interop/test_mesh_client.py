"""What a user of the official NHS MESH Python client (mesh_client 5.x) sees against our server.

Each test uses the public `MeshClient` API the way an application would; a few also look at
the raw HTTP exchange (with `requests`) where the client hides what the server sent. All of
them pass against the NHS MESH sandbox, which is the behaviour OpenSpine must reproduce
(shared/mesh/API.md; section numbers are cited next to the checks).

Demo fixtures (API.md 8.1, 8.2): mailboxes X26ABC1 (TESTMB1, ODS X26), X26ABC2 (TESTMB2, X26),
X26ABC3 (TESTMB3, X27); workflows TEST_WORKFLOW (X26ABC1 -> X26ABC2), TEST_WORKFLOW_ACK
(X26ABC2 -> X26ABC1, X26ABC3), TEST_WORKFLOW2 (X26ABC1 -> X26ABC1, X26ABC2, X26ABC3).
"""

from __future__ import annotations

import gzip
import random
from collections.abc import Callable

import pytest
import requests
from mesh_client import Message, MeshClient, MeshError

MB1, MB2, MB3 = "X26ABC1", "X26ABC2", "X26ABC3"
WORKFLOW = "TEST_WORKFLOW"  # X26ABC1 -> X26ABC2
WORKFLOW_ACK = "TEST_WORKFLOW_ACK"  # X26ABC2 -> X26ABC1, X26ABC3
WORKFLOW2 = "TEST_WORKFLOW2"  # X26ABC1 -> X26ABC1, X26ABC2, X26ABC3


def _payload(size: int, seed: int = 1) -> bytes:
    """Deterministic incompressible bytes, every byte value possible."""
    return random.Random(seed).randbytes(size)


def _download(client: MeshClient, message_id: str) -> tuple[Message, bytes]:
    """Retrieve and read a whole message without acknowledging it."""
    message = client.retrieve_message(message_id)
    try:
        body = message.read()
    finally:
        message.close()
    return message, body


def _send_many(sender: MeshClient, recipient: str, count: int, workflow_id: str = WORKFLOW) -> list[str]:
    return [
        sender.send_message(recipient, f"message {i}".encode(), workflow_id=workflow_id, local_id=f"batch-{i}")
        for i in range(count)
    ]


# --- connectivity and authentication ------------------------------------------------------


def test_ping_answers_with_a_json_object(x26abc1: MeshClient):
    # API.md 3.14: the client only needs a 2xx with a JSON object body.
    assert isinstance(x26abc1.ping(), dict)


def test_handshake_succeeds_with_correct_credentials(x26abc1: MeshClient, x26abc3: MeshClient):
    # API.md 3.1: POST /messageexchange/{mailbox} with the mex-Client/OS headers.
    assert x26abc1.handshake() == b"hello"
    assert x26abc3.handshake() == b"hello"


@pytest.mark.parametrize(
    ("mailbox", "password", "shared_key"),
    [
        (MB1, "not-the-password", None),
        (MB1, "password", "NotTheSharedKey"),
        ("X26NOPE9", "password", None),
    ],
    ids=["wrong-password", "wrong-shared-key", "unknown-mailbox"],
)
def test_handshake_with_bad_credentials_is_refused_with_403(
    mesh_client_for: Callable[..., MeshClient], mailbox: str, password: str, shared_key: str | None
):
    # API.md 2.3/2.5: bad HMAC and unknown mailbox are both 403.
    kwargs = {"shared_key": shared_key} if shared_key else {}
    client = mesh_client_for(mailbox, password=password, **kwargs)
    with pytest.raises(requests.HTTPError) as raised:
        client.handshake()
    assert raised.value.response.status_code == 403


def test_inbox_refuses_a_request_without_authorization(mesh_url: str, tls_kwargs: dict):
    # API.md 2.3 step 1: no Authorization header -> 403 (never 400).
    response = requests.get(
        f"{mesh_url}/messageexchange/{MB2}/inbox",
        headers={"Accept": "application/vnd.mesh.v2+json"},
        timeout=10,
        **tls_kwargs,
    )
    assert response.status_code == 403


def test_one_client_makes_many_calls_with_one_nonce(x26abc1: MeshClient, x26abc2: MeshClient):
    # mesh_client signs every request with the same nonce and an increasing nonce count
    # (API.md 9.1); the server must accept each new count.
    for _ in range(5):
        x26abc2.handshake()
        assert x26abc2.list_messages() == []
    message_id = x26abc1.send_message(MB2, b"after many calls", workflow_id=WORKFLOW)
    assert x26abc2.list_messages() == [message_id]


# --- sending and receiving ----------------------------------------------------------------


def test_small_message_arrives_byte_for_byte_with_its_metadata(x26abc1: MeshClient, x26abc2: MeshClient):
    payload = b"Hello X26ABC2, this is X26ABC1.\n"
    message_id = x26abc1.send_message(
        MB2,
        payload,
        workflow_id=WORKFLOW,
        filename="greeting.txt",
        subject="Greetings",
        local_id="local-0001",
        partner_id="partner-7",
        checksum="md5:0123abcd",
    )
    assert message_id

    assert x26abc2.list_messages() == [message_id]
    message, body = _download(x26abc2, message_id)

    assert body == payload
    assert message.id() == message_id
    assert message.message_id == message_id
    assert message.message_type == "DATA"
    assert message.sender == MB1
    assert message.recipient == MB2
    assert message.workflow_id == WORKFLOW
    assert message.filename == "greeting.txt"
    assert message.subject == "Greetings"
    assert message.local_id == "local-0001"
    assert message.partner_id == "partner-7"
    assert message.checksum == "md5:0123abcd"
    assert message.encrypted is False
    assert message.mex_header("chunk-range") == "1:1"
    assert message.mex_header("total-chunks") == "1"


def test_message_without_filename_gets_its_id_as_filename(x26abc1: MeshClient, x26abc2: MeshClient):
    # API.md 3.8 step 8: file name defaults to "<message_id>.dat".
    message_id = x26abc1.send_message(MB2, b"no name", workflow_id=WORKFLOW)
    message, _ = _download(x26abc2, message_id)
    assert message.filename == f"{message_id}.dat"
    assert message.subject is None
    assert message.local_id is None


def test_binary_payload_with_every_byte_value_round_trips(x26abc1: MeshClient, x26abc2: MeshClient):
    payload = bytes(range(256)) * 16 + b"\x00\r\n\x1f\x8b"  # includes a stray gzip magic number
    message_id = x26abc1.send_message(MB2, payload, workflow_id=WORKFLOW)
    _, body = _download(x26abc2, message_id)
    assert body == payload


def test_message_to_own_mailbox_is_delivered(x26abc1: MeshClient):
    # TEST_WORKFLOW2 lists X26ABC1 as both sender and receiver.
    message_id = x26abc1.send_message(MB1, b"note to self", workflow_id=WORKFLOW2)
    assert x26abc1.list_messages() == [message_id]
    _, body = _download(x26abc1, message_id)
    assert body == b"note to self"


def test_reply_workflow_reaches_each_receiver(x26abc1: MeshClient, x26abc2: MeshClient, x26abc3: MeshClient):
    request_id = x26abc1.send_message(MB2, b"please confirm", workflow_id=WORKFLOW)
    x26abc2.acknowledge_message(request_id)

    to_mb1 = x26abc2.send_message(MB1, b"confirmed", workflow_id=WORKFLOW_ACK)
    to_mb3 = x26abc2.send_message(MB3, b"confirmed (copy)", workflow_id=WORKFLOW_ACK)

    assert x26abc1.list_messages() == [to_mb1]
    assert x26abc3.list_messages() == [to_mb3]
    assert x26abc2.list_messages() == []
    message, body = _download(x26abc3, to_mb3)
    assert (body, message.sender, message.workflow_id) == (b"confirmed (copy)", MB2, WORKFLOW_ACK)


def test_message_is_visible_only_to_its_recipient(x26abc1: MeshClient, x26abc2: MeshClient, x26abc3: MeshClient):
    message_id = x26abc1.send_message(MB2, b"for X26ABC2 only", workflow_id=WORKFLOW)

    assert x26abc3.list_messages() == []
    assert x26abc1.list_messages() == []
    # API.md 3.4 step 2: anyone but the recipient (the sender included) gets 403.
    for outsider in (x26abc3, x26abc1):
        with pytest.raises(requests.HTTPError) as raised:
            outsider.retrieve_message(message_id)
        assert raised.value.response.status_code == 403
    assert x26abc2.list_messages() == [message_id]


def test_retrieving_an_unknown_message_is_404(x26abc2: MeshClient):
    with pytest.raises(requests.HTTPError) as raised:
        x26abc2.retrieve_message("00000000000000000000000000000000")
    assert raised.value.response.status_code == 404


def test_sending_an_empty_payload_raises_mesh_error(x26abc1: MeshClient, x26abc2: MeshClient):
    # API.md 3.8 step 7: 417 COLLECT/02 "Data file is missing or inaccessible."
    with pytest.raises(MeshError) as raised:
        x26abc1.send_message(MB2, b"", workflow_id=WORKFLOW)
    message, error_body = raised.value.args
    assert message
    assert error_body["detail"][0]["code"] == "02"
    assert x26abc2.list_messages() == []


def test_sending_to_an_unknown_mailbox_raises_mesh_error(x26abc1: MeshClient):
    # API.md 3.8 step 6: 417 SEND/12 "Unregistered to address".
    with pytest.raises(MeshError) as raised:
        x26abc1.send_message("X26NOPE9", b"to nobody", workflow_id=WORKFLOW)
    _, error_body = raised.value.args
    assert error_body["detail"][0]["code"] == "12"


# --- chunking -----------------------------------------------------------------------------


def test_chunked_message_is_reassembled_byte_for_byte(x26abc1: MeshClient, x26abc2: MeshClient):
    payload = _payload(200_000)
    message_id = x26abc1.send_message(MB2, payload, workflow_id=WORKFLOW, max_chunk_size=64 * 1024)

    assert x26abc2.list_messages() == [message_id]
    message, body = _download(x26abc2, message_id)
    assert len(body) == len(payload)
    assert body == payload
    # API.md 4.5 / 9.5 item 5: the first download says 1:<total> and carries the total.
    assert message.mex_header("chunk-range") == "1:4"
    assert message.mex_header("total-chunks") == "4"


@pytest.mark.parametrize(("max_chunk_size", "expected_range"), [(5, "1:5"), (1, "1:24")])
def test_tiny_chunks_are_accepted(
    mesh_client_for: Callable[..., MeshClient], x26abc2: MeshClient, max_chunk_size: int, expected_range: str
):
    # API.md 5.4 / 9.5 item 4: no minimum chunk size; client-wide max_chunk_size setting.
    sender = mesh_client_for(MB1, max_chunk_size=max_chunk_size)
    payload = b"HHHH" + b"W" * 20
    message_id = sender.send_message(MB2, payload, workflow_id=WORKFLOW)
    message, body = _download(x26abc2, message_id)
    assert body == payload
    assert message.mex_header("chunk-range") == expected_range


def test_chunks_are_served_as_partial_content_until_the_last(
    mesh_url: str, x26abc1: MeshClient, mesh_http_for: Callable[[str], requests.Session]
):
    # API.md 3.4/3.5: chunk k of N -> 206 with mex-chunk-range k:N, the last one -> 200.
    payload = _payload(30, seed=2)
    message_id = x26abc1.send_message(MB2, payload, workflow_id=WORKFLOW, max_chunk_size=10)
    http = mesh_http_for(MB2)
    base = f"{mesh_url}/messageexchange/{MB2}/inbox/{message_id}"

    pieces = []
    for number, url in enumerate([base, f"{base}/2", f"{base}/3"], start=1):
        response = http.get(url, headers={"Accept-Encoding": "identity"}, timeout=10)
        assert response.status_code == (200 if number == 3 else 206), url
        assert response.headers["mex-chunk-range"] == f"{number}:3"
        assert response.headers["mex-total-chunks"] == "3"
        pieces.append(response.content)
    assert b"".join(pieces) == payload

    beyond = http.get(f"{base}/4", timeout=10)
    assert beyond.status_code == 404


def test_chunked_message_is_listed_only_after_its_last_chunk(x26abc1: MeshClient, x26abc2: MeshClient):
    # API.md 5.4: uploading -> invisible to the recipient; tracking says "uploading".
    first = x26abc1.send_chunk(MB2, b"first half, ", chunk_num=1, total_chunks=2, workflow_id=WORKFLOW)
    assert first.status_code == 202
    message_id = first.json()["message_id"]

    assert x26abc2.list_messages() == []
    assert x26abc1.track_message(message_id)["status"] == "uploading"
    with pytest.raises(requests.HTTPError) as raised:
        x26abc2.retrieve_message(message_id)
    assert raised.value.response.status_code == 410

    second = x26abc1.send_chunk(MB2, b"second half", chunk_num=2, total_chunks=2, message_id=message_id)
    assert second.status_code in (200, 202)

    assert x26abc2.list_messages() == [message_id]
    assert x26abc1.track_message(message_id)["status"] == "accepted"
    _, body = _download(x26abc2, message_id)
    assert body == b"first half, second half"


# --- compression and content type --------------------------------------------------------


@pytest.mark.parametrize("max_chunk_size", [None, 1000], ids=["single-chunk", "multi-chunk"])
def test_compressed_send_round_trips_and_reports_compressed(
    x26abc1: MeshClient, x26abc2: MeshClient, max_chunk_size: int | None
):
    # compress=True: each chunk is gzipped and sent with Content-Encoding: gzip (the first
    # chunk as a Transfer-Encoding: chunked stream). API.md 5.5: the recipient sees
    # mex-content-compressed: Y although the sender never set the "compressed" flag.
    payload = b"row,value\n" + b"".join(f"{i},{i * i}\n".encode() for i in range(500))
    message_id = x26abc1.send_message(MB2, payload, workflow_id=WORKFLOW, compress=True, max_chunk_size=max_chunk_size)
    message, body = _download(x26abc2, message_id)
    assert body == payload
    assert message.compressed is True
    assert message.mex_header("content-compressed") == "Y"
    assert message.sender == MB1
    if max_chunk_size:
        assert message.mex_header("total-chunks") == str(-(-len(payload) // max_chunk_size))


def test_client_wide_transparent_compression_round_trips(
    mesh_client_for: Callable[..., MeshClient], x26abc2: MeshClient
):
    sender = mesh_client_for(MB1, transparent_compress=True, max_chunk_size=5)
    message_id = sender.send_message(MB2, b"Hello Bob Compressed", workflow_id=WORKFLOW)
    message, body = _download(x26abc2, message_id)
    assert body == b"Hello Bob Compressed"
    assert message.compressed is True
    assert message.mex_header("from") == MB1


def test_gzip_message_is_served_gzip_or_plain_as_the_downloader_asks(
    mesh_url: str, x26abc1: MeshClient, mesh_http_for: Callable[[str], requests.Session]
):
    # API.md 5.5: stored gzip + Accept-Encoding gzip -> the stored gzip bytes;
    # without gzip in Accept-Encoding -> the server gunzips.
    payload = b"compress me " * 100
    message_id = x26abc1.send_message(MB2, payload, workflow_id=WORKFLOW, compress=True)
    url = f"{mesh_url}/messageexchange/{MB2}/inbox/{message_id}"
    http = mesh_http_for(MB2)

    plain = http.get(url, headers={"Accept-Encoding": "identity"}, timeout=10)
    assert plain.status_code == 200
    assert "content-encoding" not in plain.headers
    assert plain.content == payload

    zipped = http.get(url, headers={"Accept-Encoding": "gzip"}, stream=True, timeout=10)
    assert zipped.status_code == 200
    assert zipped.headers["content-encoding"] == "gzip"
    raw = zipped.raw.read(decode_content=False)
    assert int(zipped.headers["content-length"]) == len(raw)
    assert gzip.decompress(raw) == payload


@pytest.mark.parametrize(
    ("content_type", "max_chunk_size", "expected"),
    [
        ("text/plain", None, "text/plain"),
        ("text/csv", 10, "text/csv"),
        (None, None, "application/octet-stream"),
        (None, 10, "application/octet-stream"),
    ],
    ids=["single-chunk", "multi-chunk", "default", "default-multi-chunk"],
)
def test_content_type_round_trips(
    x26abc1: MeshClient,
    x26abc2: MeshClient,
    content_type: str | None,
    max_chunk_size: int | None,
    expected: str,
):
    # API.md 5.6 / 9.5 item 6. The client sends a single-chunk type as Content-Type and a
    # multi-chunk one as Mex-Content-Type; both must come back as Mex-Content-Type.
    kwargs = {"content_type": content_type} if content_type else {}
    payload = b"a,b\n1,2\n3,4\n5,6\n"
    message_id = x26abc1.send_message(MB2, payload, workflow_id=WORKFLOW, max_chunk_size=max_chunk_size, **kwargs)
    message, body = _download(x26abc2, message_id)
    assert body == payload
    assert message.content_type == expected
    assert message.mex_header("content-type") == expected


@pytest.mark.parametrize("flag", [True, False])
def test_encrypted_flag_round_trips(x26abc1: MeshClient, x26abc2: MeshClient, flag: bool):
    # API.md 9.5 item 8: sent as Y -> true; sent as N -> false (header absent on download).
    message_id = x26abc1.send_message(MB2, b"opaque bytes", workflow_id=WORKFLOW, encrypted=flag)
    message, body = _download(x26abc2, message_id)
    assert body == b"opaque bytes"
    assert message.encrypted is flag


@pytest.mark.parametrize("flag", [True, False])
def test_compressed_flag_is_passed_through_untouched(
    mesh_url: str,
    x26abc1: MeshClient,
    x26abc2: MeshClient,
    mesh_http_for: Callable[[str], requests.Session],
    flag: bool,
):
    # Mex-Content-Compressed is only a label that the payload itself is compressed; nobody
    # (de)compresses because of it (API.md 4.1, 5.5). The bytes must come back unchanged.
    payload = b"pretend this is a zip file"
    message_id = x26abc1.send_message(MB2, payload, workflow_id=WORKFLOW, compressed=flag)
    message, body = _download(x26abc2, message_id)
    assert body == payload
    if flag:
        assert message.compressed is True
    # With flag=False the client may still report compressed=True: it always sends
    # Accept-Encoding: gzip, the NHS sandbox then gzips v2 downloads on the fly and marks every
    # gzip-encoded response mex-content-compressed: Y (API.md 5.5). That on-the-fly gzip is
    # optional for a compatible server, so the flag itself is checked on a plain download.
    plain = mesh_http_for(MB2).get(
        f"{mesh_url}/messageexchange/{MB2}/inbox/{message_id}", headers={"Accept-Encoding": "identity"}, timeout=10
    )
    assert plain.status_code == 200
    assert plain.content == payload
    assert "content-encoding" not in plain.headers
    assert plain.headers.get("mex-content-compressed", "N") == ("Y" if flag else "N")


# --- listing and paging -------------------------------------------------------------------


def test_list_messages_is_oldest_first_and_max_results_limits_the_page(x26abc1: MeshClient, x26abc2: MeshClient):
    # API.md 3.2 / 9.5 item 3: the first page of 10 is exactly the first 10 sent.
    sent = _send_many(x26abc1, MB2, 30)
    assert x26abc2.list_messages(max_results=10) == sent[:10]
    assert x26abc2.list_messages() == sent


def test_list_messages_refuses_a_page_smaller_than_ten(x26abc2: MeshClient):
    # Client-side rule mirroring the server's 10 <= max_results limit (API.md 3.2).
    with pytest.raises(ValueError):
        x26abc2.list_messages(max_results=5)


def test_workflow_filter_lists_only_matching_messages(x26abc1: MeshClient, x26abc2: MeshClient):
    # API.md 3.2 workflow_filter grammar: exact, "!" negation, trailing "*" prefix match.
    plain = x26abc1.send_message(MB2, b"one", workflow_id=WORKFLOW)
    second = x26abc1.send_message(MB2, b"two", workflow_id=WORKFLOW2)
    assert x26abc2.list_messages(workflow_filter=WORKFLOW) == [plain]
    assert x26abc2.list_messages(workflow_filter=WORKFLOW2) == [second]
    assert x26abc2.list_messages(workflow_filter=f"!{WORKFLOW2}") == [plain]
    assert x26abc2.list_messages(workflow_filter="TEST_WORK*") == [plain, second]
    assert list(x26abc2.iterate_message_ids(workflow_filter=WORKFLOW2)) == [second]


def test_iterate_message_ids_follows_links_next_across_pages(
    mesh_url: str, x26abc1: MeshClient, x26abc2: MeshClient, mesh_http_for: Callable[[str], requests.Session]
):
    sent = _send_many(x26abc1, MB2, 25)

    assert list(x26abc2.iterate_message_ids(batch_size=10)) == sent
    assert list(x26abc2.iterate_message_ids()) == sent

    # What the client relies on (API.md 3.2, 9.2): a root-relative links.next that it appends to
    # its base URL, present while more pages remain; approx_inbox_count is the whole inbox.
    http = mesh_http_for(MB2)
    first = http.get(f"{mesh_url}/messageexchange/{MB2}/inbox", params={"max_results": 10}, timeout=10)
    assert first.status_code == 200
    page = first.json()
    assert page["messages"] == sent[:10]
    assert page["approx_inbox_count"] == 25
    assert page["links"]["next"].startswith(f"/messageexchange/{MB2}/inbox?")
    second = http.get(f"{mesh_url}{page['links']['next']}", timeout=10).json()
    assert second["messages"] == sent[10:20]
    third = http.get(f"{mesh_url}{second['links']['next']}", timeout=10).json()
    assert third["messages"] == sent[20:]
    assert "next" not in third["links"]


def test_iterate_all_messages_yields_every_message_in_order(x26abc1: MeshClient, x26abc2: MeshClient):
    payloads = [b"first", b"second", b"third"]
    sent = [x26abc1.send_message(MB2, payload, workflow_id=WORKFLOW) for payload in payloads]

    received = []
    for message in x26abc2.iterate_all_messages():
        try:
            received.append((message.id(), message.read()))
        finally:
            message.close()

    assert received == list(zip(sent, payloads, strict=True))
    # Iterating downloads but does not acknowledge.
    assert x26abc2.list_messages() == sent


def test_count_messages_counts_the_inbox(x26abc1: MeshClient, x26abc2: MeshClient):
    # Still in mesh_client 5.x, marked deprecated (API.md 3.3).
    with pytest.warns(DeprecationWarning):
        assert x26abc2.count_messages() == 0
    sent = _send_many(x26abc1, MB2, 3)
    x26abc2.acknowledge_message(sent[0])
    with pytest.warns(DeprecationWarning):
        assert x26abc2.count_messages() == 2


# --- acknowledgement ----------------------------------------------------------------------


def test_acknowledge_removes_the_message_from_the_inbox(x26abc1: MeshClient, x26abc2: MeshClient):
    first, second = _send_many(x26abc1, MB2, 2)
    x26abc2.acknowledge_message(first)
    assert x26abc2.list_messages() == [second]

    message, _ = _download(x26abc2, second)
    message.acknowledge()
    assert x26abc2.list_messages() == []


def test_acknowledging_twice_is_harmless(x26abc1: MeshClient, x26abc2: MeshClient):
    # API.md 3.7: always 200, so a client retry after a lost response does not fail.
    message_id = x26abc1.send_message(MB2, b"ack me twice", workflow_id=WORKFLOW)
    x26abc2.acknowledge_message(message_id)
    x26abc2.acknowledge_message(message_id)
    assert x26abc2.list_messages() == []
    assert x26abc1.track_message(message_id)["status"] == "acknowledged"


def test_only_the_recipient_can_acknowledge(x26abc1: MeshClient, x26abc2: MeshClient, x26abc3: MeshClient):
    message_id = x26abc1.send_message(MB2, b"mine", workflow_id=WORKFLOW)
    with pytest.raises(requests.HTTPError) as raised:
        x26abc3.acknowledge_message(message_id)
    assert raised.value.response.status_code == 403
    assert x26abc2.list_messages() == [message_id]


def test_with_block_acknowledges_when_handling_succeeds(x26abc1: MeshClient, x26abc2: MeshClient):
    message_id = x26abc1.send_message(MB2, b"handled", workflow_id=WORKFLOW)
    with x26abc2.retrieve_message(message_id) as message:
        assert message.read() == b"handled"
    assert x26abc2.list_messages() == []


def test_message_not_acknowledged_stays_listed(
    mesh_client_for: Callable[..., MeshClient], x26abc1: MeshClient, x26abc2: MeshClient
):
    message_id = x26abc1.send_message(MB2, b"read but not acknowledged", workflow_id=WORKFLOW)

    _, body = _download(x26abc2, message_id)
    assert body == b"read but not acknowledged"

    class HandlingFailed(Exception):
        pass

    # A with block whose body raises does not acknowledge (mesh_client's Message.__exit__).
    with pytest.raises(HandlingFailed), x26abc2.retrieve_message(message_id) as message:
        message.read()
        raise HandlingFailed

    assert x26abc2.list_messages() == [message_id]
    # A new session (new nonce) still sees it, and can download it again.
    later = mesh_client_for(MB2)
    assert later.list_messages() == [message_id]
    _, again = _download(later, message_id)
    assert again == body


# --- tracking and lookup ------------------------------------------------------------------


def test_tracking_shows_accepted_then_acknowledged(x26abc1: MeshClient, x26abc2: MeshClient):
    message_id = x26abc1.send_message(MB2, b"track me", workflow_id=WORKFLOW, local_id="trk-1", filename="t.dat")

    record = x26abc1.track_message(message_id)
    # API.md 7.2 (v2 record, lower-case status).
    assert record["message_id"] == message_id
    assert record["status"] == "accepted"
    assert record["recipient"] == MB2
    assert record["recipient_name"] == "TESTMB2"
    assert record["workflow_id"] == WORKFLOW
    assert record["local_id"] == "trk-1"
    assert record["filename"] == "t.dat"
    assert record["status_success"] is True

    x26abc2.acknowledge_message(message_id)
    assert x26abc1.track_message(message_id)["status"] == "acknowledged"


def test_tracking_an_unknown_message_is_404(x26abc1: MeshClient):
    with pytest.raises(requests.HTTPError) as raised:
        x26abc1.track_message("00000000000000000000000000000000")
    assert raised.value.response.status_code == 404


def test_tracking_someone_elses_message_is_404(x26abc1: MeshClient, x26abc2: MeshClient):
    # API.md 3.10: only the sender can track; others get 404 (not 403).
    message_id = x26abc1.send_message(MB2, b"not yours to track", workflow_id=WORKFLOW)
    with pytest.raises(requests.HTTPError) as raised:
        x26abc2.track_message(message_id)
    assert raised.value.response.status_code == 404


def test_lookup_endpoint_finds_the_receiving_mailbox(x26abc1: MeshClient):
    assert x26abc1.lookup_endpoint("X26", WORKFLOW) == {"results": [{"mailbox_id": MB2, "mailbox_name": "TESTMB2"}]}


@pytest.mark.parametrize(
    ("ods_code", "workflow_id", "expected"),
    [
        ("X27", WORKFLOW, []),
        ("X26", WORKFLOW2, [(MB1, "TESTMB1"), (MB2, "TESTMB2")]),
        ("X26", WORKFLOW_ACK, [(MB1, "TESTMB1")]),
        ("X27", WORKFLOW_ACK, [(MB3, "TESTMB3")]),
        ("X26", "NO_SUCH_WORKFLOW", []),
    ],
)
def test_lookup_endpoint_matches_ods_code_and_workflow_receivers(
    x26abc3: MeshClient, ods_code: str, workflow_id: str, expected: list[tuple[str, str]]
):
    # API.md 3.12 / 8.2: receivers of the workflow whose ODS code matches; none -> 200, [].
    results = x26abc3.lookup_endpoint(ods_code, workflow_id)["results"]
    assert [(r["mailbox_id"], r["mailbox_name"]) for r in results] == expected


# --- sandbox administration ---------------------------------------------------------------


def test_admin_reset_empties_every_mailbox(
    mesh_url: str, x26abc1: MeshClient, x26abc2: MeshClient, tls_kwargs: dict
):
    # Sandbox-only (API.md 3.16); the suite's own per-test reset depends on it.
    message_id = x26abc1.send_message(MB2, b"about to vanish", workflow_id=WORKFLOW)
    assert x26abc2.list_messages() == [message_id]
    response = requests.delete(f"{mesh_url}/admin/reset", timeout=10, **tls_kwargs)
    assert response.status_code == 200
    assert x26abc2.list_messages() == []
    with pytest.raises(requests.HTTPError) as raised:
        x26abc1.track_message(message_id)
    assert raised.value.response.status_code == 404
