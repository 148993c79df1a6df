#!/usr/bin/env python3
"""Events service benchmark: publish rate, and publish-to-delivery latency into MESH
mailboxes, with many subscriptions.

One `openspine serve --events` on the embedded store (its own data directory), an app
allowed to publish `mns-test-signal-1`, an events mailbox and ten recipient mailboxes.
`--subscriptions` subscriptions (default 1,000), each `eventType=mns-test-signal-1 AND
gp=G<n>` to `mesh://<one of the ten>?workflow_id=EVENTS_BENCH`, so each event matches exactly
one subscription. Ten pollers (the NHS `mesh-client`, one per recipient) list, download and
acknowledge what arrives. Two phases: "flat out", `--events` events published over HTTP from
`--concurrency` threads as fast as they are answered (the publish and delivery rates), then
"steady", `--steady-events` at `--rate` a second (the latency when deliveries keep up, not
the time spent queueing behind a burst). Latency is from the publish's 200 to the poller
seeing the message in its inbox (so it includes up to one poll interval, 50 ms).

    .venv/bin/python bench/events_bench.py --bin target/release/openspine

Writes the figures as JSON (`--out`, default bench/results/events-latest.json) and prints
a table. Every event must arrive exactly once in this run (lost = duplicated = 0), or the
exit status is 1.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jwt
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from mesh_client import MeshClient

BASE = "/multicast-notification-service"
SCOPE = "urn:nhsd:apim:app:level3:multicast-notification-service"
RECIPIENTS = [f"X26BEN{n:02d}" for n in range(10)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def b64(n: int) -> str:
    return base64.urlsafe_b64encode(n.to_bytes((n.bit_length() + 7) // 8, "big")).rstrip(b"=").decode()


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", required=True)
    ap.add_argument("--subscriptions", type=int, default=1000)
    ap.add_argument("--events", type=int, default=3000)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--rate", type=float, default=200.0, help="events a second in the steady phase")
    ap.add_argument("--steady-events", type=int, default=2000)
    ap.add_argument("--out", default="bench/results/events-latest.json")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="events-bench-"))
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    nums = key.public_key().public_numbers()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    app = {"client_id": "bench", "name": "Events bench",
           "jwks": {"keys": [{"kty": "RSA", "n": b64(nums.n), "e": b64(nums.e), "alg": "RS512", "kid": "bench-1"}]},
           "products": [{"name": "mns", "scopes": [SCOPE], "apis": ["multicast-notification-service"]}],
           "flags": {"multicast-notification-service": {"permissions": ["events:create:mns-test-signal-1"]}}}
    (work / "registry.jsonl").write_text(json.dumps(app) + "\n")
    mailboxes = ["X26EVT1"] + RECIPIENTS
    (work / "mailboxes.jsonl").write_text("".join(
        json.dumps({"mailbox_id": m, "mailbox_name": m, "ods_code": "X26", "org_code": "X26", "password": "password"}) + "\n"
        for m in mailboxes))
    (work / "workflows.jsonl").write_text(json.dumps(
        {"workflow_id": "EVENTS_BENCH", "senders": ["X26EVT1"], "receivers": RECIPIENTS}) + "\n")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = open(work / "server.log", "w")
    proc = subprocess.Popen([
        args.bin, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", str(work / "data"),
        "--mailboxes", str(work / "mailboxes.jsonl"), "--workflows", str(work / "workflows.jsonl"),
        "--frontdoor-registry", str(work / "registry.jsonl"), "--rate-limit", "0",
        "--events", "--events-mesh-mailbox", "X26EVT1", "--token-quota-per-minute", "0",
    ], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 30
        while True:
            try:
                if requests.get(f"{base}{BASE}/_ping", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if proc.poll() is not None or time.time() > deadline:
                print((work / "server.log").read_text()[-3000:], file=sys.stderr)
                return 2
            time.sleep(0.1)
        token_url = f"{base}/oauth2/token"
        assertion = jwt.encode({"iss": "bench", "sub": "bench", "aud": token_url, "jti": str(uuid.uuid4()),
                                "exp": int(time.time()) + 300}, pem, algorithm="RS512", headers={"kid": "bench-1"})
        token = requests.post(token_url, data={
            "grant_type": "client_credentials",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion}, timeout=10).json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}

        session = requests.Session()
        t0 = time.time()
        for n in range(args.subscriptions):
            r = session.post(f"{base}{BASE}/subscriptions", headers=auth, timeout=10, json={
                "resourceType": "Subscription", "status": "requested", "reason": "",
                "criteria": f"eventType=mns-test-signal-1 AND gp=G{n:04d}",
                "channel": {"type": "message", "endpoint": f"mesh://{RECIPIENTS[n % 10]}?workflow_id=EVENTS_BENCH",
                            "payload": "application/json"}})
            if r.status_code != 201:
                print(f"subscribe answered {r.status_code}: {r.text}", file=sys.stderr)
                return 2
        subscribe_s = time.time() - t0

        published: dict[str, float] = {}
        arrived: dict[str, float] = {}
        duplicates = [0]
        lock = threading.Lock()
        stop = threading.Event()

        def poll(mailbox: str) -> None:
            client = MeshClient(base, mailbox, "password", shared_key=b"TestKey")
            try:
                while not stop.is_set():
                    ids = client.list_messages()
                    if not ids:
                        time.sleep(0.05)
                        continue
                    for mid in ids:
                        message = client.retrieve_message(mid)
                        event_id = message.local_id
                        message.read()
                        message.acknowledge()
                        with lock:
                            if event_id in arrived:
                                duplicates[0] += 1
                            else:
                                arrived[event_id] = time.time()
            finally:
                client.close()

        pollers = [threading.Thread(target=poll, args=(m,), daemon=True) for m in RECIPIENTS]
        for p in pollers:
            p.start()

        local = threading.local()

        def publish(n: int, at: float | None) -> None:
            if at is not None and at > time.time():
                time.sleep(at - time.time())
            s = getattr(local, "session", None)
            if s is None:
                s = local.session = requests.Session()
            event = {"specversion": "1.0", "id": str(uuid.uuid4()), "source": "uk.nhs.events-bench",
                     "type": "mns-test-signal-1", "time": "2026-12-04T10:00:00Z",
                     "filtering": {"gp": f"G{n % args.subscriptions:04d}"}}
            r = s.post(f"{base}{BASE}/events", data=json.dumps(event), timeout=30,
                       headers={**auth, "Content-Type": "application/cloudevents+json"})
            if r.status_code != 200:
                raise RuntimeError(f"publish answered {r.status_code}: {r.text}")
            with lock:
                published[event["id"]] = time.time()
                phase_ids.append(event["id"])

        def phase(count: int, rate: float | None) -> dict:
            """Publishes `count` events, as fast as they are answered or at `rate` a second,
            then waits for them all to arrive."""
            phase_ids.clear()
            t0 = time.time()
            at = (lambda n: t0 + n / rate) if rate else (lambda n: None)
            with ThreadPoolExecutor(args.concurrency) as pool:
                list(pool.map(lambda n: publish(n, at(n)), range(count)))
            publish_s = time.time() - t0
            deadline = time.time() + 180
            while any(e not in arrived for e in phase_ids) and time.time() < deadline:
                time.sleep(0.1)
            drain_s = time.time() - t0
            got = [e for e in phase_ids if e in arrived]
            latencies = [(arrived[e] - published[e]) * 1000 for e in got]
            return {
                "events": count,
                "offered_per_s": rate,
                "publish_per_s": round(count / publish_s, 1),
                "delivered_per_s": round(len(got) / drain_s, 1),
                "latency_ms": {"p50": round(percentile(latencies, 50), 1), "p99": round(percentile(latencies, 99), 1),
                               "mean": round(statistics.fmean(latencies), 1) if latencies else None},
                "lost": count - len(got),
            }

        phase_ids: list[str] = []
        # Flat out: the most the service accepts and delivers (the pollers, on the same two
        # cores, are part of the load). Then at a steady rate below that, where the latency
        # is that of a delivery rather than of a queue.
        burst = phase(args.events, None)
        steady = phase(args.steady_events, args.rate)
        stop.set()
        for p in pollers:
            p.join(timeout=10)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()

    lost = burst["lost"] + steady["lost"]
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip(),
        "subscriptions": args.subscriptions, "concurrency": args.concurrency,
        "subscribe_per_s": round(args.subscriptions / subscribe_s, 1),
        "flat_out": burst, "steady": steady,
        "lost": lost, "duplicated": duplicates[0],
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    print("| subscriptions | phase | events | offered/s | publish/s | delivered/s | latency p50 ms | p99 ms | lost | duplicated |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, r in [("flat out", burst), ("steady", steady)]:
        print(f"| {args.subscriptions} | {name} | {r['events']} | {r['offered_per_s'] or '-'} | {r['publish_per_s']} | "
              f"{r['delivered_per_s']} | {r['latency_ms']['p50']} | {r['latency_ms']['p99']} | {r['lost']} | {duplicates[0]} |")
    return 0 if lost == 0 and duplicates[0] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
