#!/usr/bin/env python3
"""Crash test for the events service: `kill -9` in the middle of a stream of publishes and
deliveries, then restart, many times; in the end every event the server answered 200 must
have reached the subscriber, in order, and nothing the server never accepted.

Setup: `openspine serve --demo` on one data directory (embedded store), with the NATS
JetStream server of `--nats-url`; the demo app publishes `mns-test-signal-1` events over HTTP
(a PyJWT client assertion, the demo app's public key) to one subscription whose endpoint is
a fresh JetStream subject. Each cycle starts the server, publishes from two threads until
a random moment, and SIGKILLs the server. After the last cycle the server runs until the
subscription's queue is empty, and the subject is read back with `nats-py`.

Checked:
* lost = events answered 200 that never arrived: must be 0;
* invented = arrivals of events that were never published: must be 0;
* order: per publishing thread, the first arrivals of its acknowledged events are in the
  order it published them (a subscription's queue is in acceptance order);
* duplicates (an event arriving twice: at least once, not exactly once) are counted;
* unanswered publishes (killed before the answer) may arrive or not, and are counted.

The last line on stdout is one JSON object with the totals. Exit status 0 on success, 1 if
a check failed, 2 on a harness error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import jwt
import nats
import requests

REPO = Path(__file__).resolve().parents[2]
DEMO_KEY = (REPO / "crates/frontdoor/demo/private.pem").read_text()
DEMO_APP = "openspine-demo-app"
DEMO_KID = "openspine-demo-1"
BASE = "/multicast-notification-service"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, args, data: Path, log: Path):
        self.args, self.data, self.log = args, data, log
        self.proc = None
        self.base = ""

    def start(self) -> None:
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        with open(self.log, "a") as log:
            self.proc = subprocess.Popen(
                [self.args.bin, "serve", "--demo", "--listen", f"127.0.0.1:{port}", "--data-dir", str(self.data),
                 "--rate-limit", "0", "--events-nats-url", self.args.nats_url,
                 "--events-retry-base-ms", "50", "--events-retry-max-secs", "1", "--events-lease-secs", "2"],
                stdout=log, stderr=subprocess.STDOUT,
            )
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                if requests.get(f"{self.base}{BASE}/_ping", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise SystemExit(f"harness: the server did not start; log tail:\n{self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def token(self) -> str:
        url = f"{self.base}/oauth2/token"
        assertion = jwt.encode(
            {"iss": DEMO_APP, "sub": DEMO_APP, "aud": url, "jti": str(uuid.uuid4()), "exp": int(time.time()) + 300},
            DEMO_KEY, algorithm="RS512", headers={"kid": DEMO_KID},
        )
        r = requests.post(url, data={
            "grant_type": "client_credentials",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion,
        }, timeout=10)
        r.raise_for_status()
        return r.json()["access_token"]


def publisher(server: Server, token: str, thread: int, stop: threading.Event, acked: dict, unanswered: set, lock):
    session = requests.Session()
    n = 0
    while not stop.is_set():
        event_id = f"t{thread}-{uuid.uuid4()}"
        body = {"specversion": "1.0", "id": event_id, "source": "uk.nhs.crash-test", "type": "mns-test-signal-1",
                "time": "2026-12-04T10:00:00Z", "filtering": {"thread": thread}}
        try:
            r = session.post(f"{server.base}{BASE}/events", data=json.dumps(body), timeout=5, headers={
                "Authorization": f"Bearer {token}", "Content-Type": "application/cloudevents+json"})
        except requests.RequestException:
            with lock:
                unanswered.add(event_id)
            return
        if r.status_code == 200:
            with lock:
                acked.setdefault(thread, []).append(event_id)
            n += 1
        elif r.status_code >= 500:
            with lock:
                unanswered.add(event_id)
        else:
            raise SystemExit(f"harness: publish answered {r.status_code}: {r.text}")


async def read_subject(nats_url: str, subject: str, quiet_s: float = 3.0) -> list[str]:
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        sub = await js.pull_subscribe(subject, durable=None, stream="OPENSPINE_MNS")
        got: list[str] = []
        last = time.time()
        while time.time() - last < quiet_s:
            try:
                msgs = await sub.fetch(500, timeout=1)
            except nats.errors.TimeoutError:
                continue
            for m in msgs:
                got.append(json.loads(m.data)["id"])
                await m.ack()
            last = time.time()
        return got
    finally:
        await nc.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", required=True)
    ap.add_argument("--nats-url", default=os.environ.get("OPENSPINE_TEST_NATS_URL"))
    ap.add_argument("--cycles", type=int, default=8)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--min-delay", type=float, default=0.3)
    ap.add_argument("--max-delay", type=float, default=1.5)
    args = ap.parse_args()
    if not args.nats_url:
        print("harness: --nats-url or OPENSPINE_TEST_NATS_URL is needed", file=sys.stderr)
        return 2
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    work = Path(tempfile.mkdtemp(prefix="events-crash-"))
    server = Server(args, work / "data", work / "server.log")
    subject = f"mns.crash.s{uuid.uuid4().hex[:10]}"
    acked: dict[int, list[str]] = {}
    unanswered: set[str] = set()
    lock = threading.Lock()
    try:
        server.start()
        token = server.token()
        r = requests.post(f"{server.base}{BASE}/subscriptions", timeout=10, headers={"Authorization": f"Bearer {token}"}, json={
            "resourceType": "Subscription", "status": "requested", "reason": "crash test",
            "criteria": "eventType=mns-test-signal-1", "channel": {"type": "message", "endpoint": f"nats:{subject}",
                                                                   "payload": "application/json"}})
        if r.status_code != 201:
            print(f"harness: subscribe answered {r.status_code}: {r.text}", file=sys.stderr)
            return 2
        sub_id = r.json()["id"]
        for cycle in range(1, args.cycles + 1):
            if cycle > 1:
                server.start()
            token = server.token()
            stop = threading.Event()
            threads = [threading.Thread(target=publisher, args=(server, token, t, stop, acked, unanswered, lock))
                       for t in range(2)]
            for t in threads:
                t.start()
            delay = rng.uniform(args.min_delay, args.max_delay)
            time.sleep(delay)
            server.kill()
            stop.set()
            for t in threads:
                t.join()
            total = sum(len(v) for v in acked.values())
            print(f"[cycle {cycle}/{args.cycles}] kill -9 after {delay:.2f} s: accepted so far {total}, unanswered {len(unanswered)}")
        # Let the last run drain the queue.
        server.start()
        token = server.token()
        deadline = time.time() + 120
        while time.time() < deadline:
            r = requests.get(f"{server.base}{BASE}/subscriptions/{sub_id}", timeout=10,
                             headers={"Authorization": f"Bearer {token}"})
            if r.status_code == 200 and r.json()["status"] == "active":
                got = asyncio.run(read_subject(args.nats_url, subject, quiet_s=3.0))
                break
            time.sleep(0.5)
        else:
            print("harness: the subscription did not drain", file=sys.stderr)
            return 2
    finally:
        server.kill()

    all_acked = [e for v in acked.values() for e in v]
    arrived = set(got)
    lost = [e for e in all_acked if e not in arrived]
    known = set(all_acked) | unanswered
    invented = [e for e in arrived if e not in known]
    duplicates = len(got) - len(arrived)
    order_ok = True
    first_seen: dict[str, int] = {}
    for i, e in enumerate(got):
        first_seen.setdefault(e, i)
    for thread, ids in acked.items():
        positions = [first_seen[e] for e in ids if e in first_seen]
        if positions != sorted(positions):
            order_ok = False
    summary = {
        "seed": seed, "cycles": args.cycles, "accepted": len(all_acked), "unanswered": len(unanswered),
        "unanswered_delivered": len(unanswered & arrived), "arrivals": len(got), "lost": len(lost),
        "invented": len(invented), "duplicates": duplicates, "in_order": order_ok,
    }
    print(json.dumps(summary))
    ok = not lost and not invented and order_ok and all_acked
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
