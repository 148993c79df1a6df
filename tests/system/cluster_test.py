#!/usr/bin/env python3
"""Cluster test: several `openspine serve` nodes sharing one PostgreSQL and one S3 store.

Three nodes (by default) listen on loopback ports with the same --database-url and
--blob-url. Sender threads send X26ABC1 -> X26ABC2 / X26ABC3, single-chunk and 3-chunk
messages, each request to a node picked at random (so chunk 1, 2 and 3 of a message usually
land on different nodes). One receiver per recipient polls, downloads (each chunk from a
random node), checks the bytes and acknowledges, also through random nodes. Replay
protection is on, so every token's single use is enforced through the shared store.

Scenarios:

* ``chaos`` (default): one node is killed with SIGKILL and started again later; another is
  restarted gracefully (SIGTERM, wait, start: a rolling restart).
* ``outage``: the PostgreSQL server is stopped for --outage-secs (default 10) under load,
  with --pg-stop / --pg-start commands. During it every request must be answered (no hang:
  within --max-answer-secs) with a MESH 5xx or succeed, the nodes must stay up, /readyz
  must say 503; afterwards the nodes must serve again within 30 s without a restart.

In both, at the end: every message that got 202 for all its chunks is delivered exactly
once (listed until acknowledged, never again afterwards) with the bytes that were sent;
any message delivered that the client did not see accepted must also be intact.

The last line on stdout is one JSON object with the figures. Exit status 0 on success, 1
when a check failed, 2 on a setup error.
"""

import argparse
import hashlib
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
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from harness import ACCEPT_V2, HarnessError, check_signer, free_port, set_pdeathsig, tail, token

try:
    import requests
except ImportError:  # pragma: no cover
    sys.stderr.write("cluster_test: the 'requests' package is required\n")
    sys.exit(2)

SENDER = "X26ABC1"
RECIPIENTS = ["X26ABC2", "X26ABC3"]
WORKFLOW = "TEST_WORKFLOW2"  # X26ABC1 may send it to X26ABC2 and X26ABC3
SHARED_KEY = "TestKey"
PASSWORD = "password"
TIMEOUT = (3, 30)


def log(msg):
    print(f"[cluster {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def headers(mailbox, **extra):
    h = {"Authorization": token(SHARED_KEY, PASSWORD, mailbox), "Accept": ACCEPT_V2}
    h.update(extra)
    return h


class Node:
    def __init__(self, index, args, log_dir):
        self.index = index
        self.args = args
        self.log_dir = log_dir
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc = None
        self.starts = 0

    def start(self):
        self.starts += 1
        stderr = os.path.join(self.log_dir, f"node{self.index}-{self.starts}.log")
        self.stderr_path = stderr
        cmd = [self.args.bin, "serve", "--listen", f"127.0.0.1:{self.port}",
               "--data-dir", os.path.join(self.log_dir, f"node{self.index}-data"),
               "--demo", "--rate-limit", "0",
               "--database-url", self.args.database_url, "--blob-url", self.args.blob_url,
               "--database-timeout-secs", "3"]
        if self.args.s3_endpoint:
            cmd += ["--s3-endpoint", self.args.s3_endpoint]
        if self.args.s3_region:
            cmd += ["--s3-region", self.args.s3_region]
        with open(stderr, "wb") as err:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                                         preexec_fn=set_pdeathsig)

    def wait_ready(self, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise HarnessError(f"node {self.index} exited ({self.proc.returncode}):\n"
                                   f"{tail(self.stderr_path)}")
            try:
                if requests.get(self.base + "/readyz", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise HarnessError(f"node {self.index} not ready in {timeout} s:\n{tail(self.stderr_path)}")

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill9(self):
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=15)

    def stop(self, timeout=70):
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill9()


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.c = Counter()
        self.slowest = 0.0
        self.bad_answers = []

    def add(self, key, n=1):
        with self.lock:
            self.c[key] += n

    def answer(self, seconds, status=None, body=""):
        with self.lock:
            self.slowest = max(self.slowest, seconds)
            if status is not None and status >= 500:
                # A MESH 5xx carries a JSON error body; a bare 500 would be a bug.
                try:
                    json.loads(body)
                except ValueError:
                    self.bad_answers.append(f"HTTP {status} without a JSON body: {body[:120]!r}")


class Cluster:
    def __init__(self, nodes, stats):
        self.nodes = nodes
        self.stats = stats
        self.rng = random.Random()
        self.rng_lock = threading.Lock()

    def pick(self, avoid=None):
        with self.rng_lock:
            choices = [n for n in self.nodes if n is not avoid] or self.nodes
            return self.rng.choice(choices)

    def request(self, session, method, path, mailbox, tries=1, ok=(200, 202, 206), **kw):
        """One request to a random node; retried on other nodes on 5xx or connection
        errors, as a client behind a load balancer would. Returns the response or None."""
        last = None
        node = None
        for _ in range(tries):
            node = self.pick(avoid=node)
            extra = kw.pop("extra_headers", None) or {}
            kw.setdefault("timeout", TIMEOUT)
            start = time.monotonic()
            try:
                r = session.request(method, node.base + path, headers=headers(mailbox, **extra), **kw)
            except requests.RequestException as e:
                self.stats.answer(time.monotonic() - start)
                self.stats.add(f"client_error:{type(e).__name__}")
                last = None
                kw["extra_headers"] = extra
                time.sleep(0.05)
                continue
            self.stats.answer(time.monotonic() - start, r.status_code, r.text if r.status_code >= 500 else "")
            if r.status_code in ok:
                return r
            self.stats.add(f"http_{r.status_code}")
            last = r
            kw["extra_headers"] = extra
            if r.status_code < 500:
                return r
            time.sleep(0.1)
        return last


class Book:
    def __init__(self):
        self.lock = threading.Lock()
        self.sent = {}          # local_id -> (sha256, recipient)
        self.accepted = set()   # local ids whose every chunk got 202
        self.delivered = Counter()  # local id -> deliveries (download + ack)
        self.acked_ids = set()  # message ids acknowledged
        self.problems = []


def sender(cluster, book, stats, stop, seed):
    rng = random.Random(seed)
    s = requests.Session()
    s.trust_env = False
    n = 0
    while not stop.is_set():
        n += 1
        size = rng.choice([300, 2000, 20_000, 150_000])
        chunked = rng.random() < 0.4
        data = rng.randbytes(size)
        parts = [data[: size // 3], data[size // 3: 2 * size // 3], data[2 * size // 3:]] if chunked else [data]
        local_id = f"L{seed}-{n}"
        recipient = rng.choice(RECIPIENTS)
        with book.lock:
            book.sent[local_id] = (hashlib.sha256(data).hexdigest(), recipient)
        stats.add("attempted")
        h = {"Mex-To": recipient, "Mex-WorkflowID": WORKFLOW, "Mex-LocalID": local_id,
             "Content-Type": "application/octet-stream"}
        if chunked:
            h["Mex-Chunk-Range"] = f"1:{len(parts)}"
        # The first POST is not retried: a retry could create a second message.
        r = cluster.request(s, "POST", f"/messageexchange/{SENDER}/outbox", SENDER,
                            data=parts[0], extra_headers=h)
        if r is None or r.status_code != 202:
            stats.add("send_failed")
            continue
        mid = r.json().get("message_id")
        done = True
        for k in range(2, len(parts) + 1):
            # A chunk upload may be retried on another node: it replaces, never duplicates.
            r = cluster.request(s, "POST", f"/messageexchange/{SENDER}/outbox/{mid}/{k}", SENDER,
                                tries=5, data=parts[k - 1],
                                extra_headers={"Mex-Chunk-Range": f"{k}:{len(parts)}",
                                               "Content-Type": "application/octet-stream"})
            if r is None or r.status_code != 202:
                done = False
                stats.add("chunk_failed")
                break
        if done:
            with book.lock:
                book.accepted.add(local_id)
            stats.add("accepted")


def receive_once(cluster, book, stats, s, mailbox):
    """One pass over the inbox; returns how many messages it delivered."""
    r = cluster.request(s, "GET", f"/messageexchange/{mailbox}/inbox?max_results=100", mailbox, tries=3)
    if r is None or r.status_code != 200:
        return 0
    got = 0
    for mid in r.json().get("messages", []):
        with book.lock:
            if mid in book.acked_ids:
                book.problems.append(f"{mid} listed again after its acknowledgement")
                continue
        d = cluster.request(s, "GET", f"/messageexchange/{mailbox}/inbox/{mid}", mailbox, tries=3)
        if d is None or d.status_code not in (200, 206):
            continue
        local_id = d.headers.get("mex-localid", "")
        body = d.content
        total = 1
        crange = d.headers.get("mex-chunk-range")
        if crange and ":" in crange:
            total = int(crange.split(":")[1])
        complete = True
        for k in range(2, total + 1):
            c = cluster.request(s, "GET", f"/messageexchange/{mailbox}/inbox/{mid}/{k}", mailbox, tries=3)
            if c is None or c.status_code not in (200, 206):
                complete = False
                break
            body += c.content
        if not complete:
            continue
        with book.lock:
            expected = book.sent.get(local_id)
        if expected is None or expected[1] != mailbox:
            book.problems.append(f"{mid}: unknown local id {local_id!r} for {mailbox}")
            continue
        if hashlib.sha256(body).hexdigest() != expected[0]:
            book.problems.append(f"{mid} ({local_id}): bytes differ from what was sent")
            continue
        a = cluster.request(s, "PUT", f"/messageexchange/{mailbox}/inbox/{mid}/status/acknowledged",
                            mailbox, tries=5)
        if a is None or a.status_code != 200:
            continue  # still listed: delivered on a later pass
        with book.lock:
            book.acked_ids.add(mid)
            book.delivered[local_id] += 1
        got += 1
    return got


def receiver(cluster, book, stats, stop, mailbox):
    s = requests.Session()
    s.trust_env = False
    while not stop.is_set():
        if receive_once(cluster, book, stats, s, mailbox) == 0:
            time.sleep(0.2)


def drain(cluster, book, stats, stall_secs=60.0, limit_secs=900.0):
    """Delivers what the load left behind, one thread per inbox as during the load.

    Returns (left, delivered, seconds): left is None once every inbox is empty on every
    node, else what the last look found. The receivers can fall behind the senders, so
    the backlog may take minutes: the drain gives up when no message has been delivered
    for stall_secs (a message that stays listed but cannot be delivered), not after a
    fixed time, with limit_secs as the outer bound."""
    start = time.monotonic()
    last_progress = start
    delivered = 0
    seen = "nothing checked"

    def empty_inbox(mailbox):
        s = requests.Session()
        s.trust_env = False
        total = 0
        while True:
            got = receive_once(cluster, book, stats, s, mailbox)
            if got == 0:
                return total
            total += got

    s = requests.Session()
    s.trust_env = False
    with ThreadPoolExecutor(len(RECIPIENTS)) as pool:
        while True:
            got = sum(pool.map(empty_inbox, RECIPIENTS))
            now = time.monotonic()
            delivered += got
            if got:
                last_progress = now
            # Empty on every node, not just one.
            found = []
            for node in cluster.nodes:
                for m in RECIPIENTS:
                    try:
                        r = s.get(f"{node.base}/messageexchange/{m}/inbox", headers=headers(m), timeout=TIMEOUT)
                    except requests.RequestException as e:
                        found.append(f"node {node.index} {m}: {type(e).__name__}")
                        continue
                    if r.status_code != 200:
                        found.append(f"node {node.index} {m}: HTTP {r.status_code} {r.text[:200]!r}")
                    elif r.json().get("messages"):
                        found.append(f"node {node.index} {m}: {r.json()['messages'][:5]}")
            if not found:
                return None, delivered, round(now - start, 1)
            seen = "; ".join(found)
            if now - last_progress > stall_secs or now - start > limit_secs:
                return seen, delivered, round(now - start, 1)
            time.sleep(0.5)


def run_command(cmd):
    log(f"running: {cmd}")
    subprocess.run(cmd, shell=True, check=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", required=True)
    ap.add_argument("--database-url", required=True, help="an empty PostgreSQL database")
    ap.add_argument("--blob-url", required=True, help="s3://bucket/prefix under which nothing is stored yet")
    ap.add_argument("--s3-endpoint")
    ap.add_argument("--s3-region")
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--senders", type=int, default=6)
    ap.add_argument("--duration", type=float, default=40.0, help="seconds of load (40)")
    ap.add_argument("--scenario", choices=["chaos", "outage"], default="chaos")
    ap.add_argument("--pg-stop", help="shell command that stops PostgreSQL (outage)")
    ap.add_argument("--pg-start", help="shell command that starts PostgreSQL again (outage)")
    ap.add_argument("--outage-secs", type=float, default=10.0)
    ap.add_argument("--max-answer-secs", type=float, default=15.0,
                    help="slowest acceptable answer during the outage (15)")
    args = ap.parse_args()
    check_signer()
    if args.scenario == "outage" and not (args.pg_stop and args.pg_start):
        ap.error("--scenario outage needs --pg-stop and --pg-start")

    log_dir = tempfile.mkdtemp(prefix="openspine-cluster-")
    stats, book = Stats(), Book()
    nodes = [Node(i, args, log_dir) for i in range(args.nodes)]
    cluster = Cluster(nodes, stats)
    stop = threading.Event()
    threads = []
    failures = []
    outage = {}
    backlog = {}
    try:
        # Nodes start together: the migrations' advisory lock must keep them from racing.
        for n in nodes:
            n.start()
        for n in nodes:
            n.wait_ready()
        log(f"{len(nodes)} nodes ready: {', '.join(n.base for n in nodes)}")
        for i in range(args.senders):
            threads.append(threading.Thread(target=sender, args=(cluster, book, stats, stop, i), daemon=True))
        for m in RECIPIENTS:
            threads.append(threading.Thread(target=receiver, args=(cluster, book, stats, stop, m), daemon=True))
        for t in threads:
            t.start()
        t0 = time.monotonic()

        def at(fraction):
            time.sleep(max(0.0, t0 + args.duration * fraction - time.monotonic()))

        if args.scenario == "chaos":
            at(0.25)
            log(f"kill -9 node 0 (pid {nodes[0].proc.pid})")
            nodes[0].kill9()
            at(0.45)
            log("starting node 0 again")
            nodes[0].start()
            nodes[0].wait_ready()
            at(0.6)
            log("rolling restart: node 1 (SIGTERM, wait, start)")
            nodes[1].stop()
            nodes[1].start()
            nodes[1].wait_ready()
            at(0.75)
            log("rolling restart: node 2")
            nodes[2 % len(nodes)].stop()
            nodes[2 % len(nodes)].start()
            nodes[2 % len(nodes)].wait_ready()
        else:
            at(0.3)
            before = dict(stats.c)
            run_command(args.pg_stop)
            stopped = time.monotonic()
            time.sleep(min(2.0, args.outage_secs))
            ready = [requests.get(n.base + "/readyz", timeout=10).status_code for n in nodes]
            outage["readyz_during"] = ready
            if any(code != 503 for code in ready):
                failures.append(f"/readyz during the outage answered {ready}, expected 503")
            time.sleep(max(0.0, stopped + args.outage_secs - time.monotonic()))
            run_command(args.pg_start)
            restarted = time.monotonic()
            during = {k: v - before.get(k, 0) for k, v in stats.c.items() if v != before.get(k, 0)}
            outage["counts_during"] = during
            # Recovery: a request through every node succeeds again, without restarting any.
            s = requests.Session()
            s.trust_env = False
            pending = set(range(len(nodes)))
            while pending and time.monotonic() - restarted < 30:
                for i in list(pending):
                    try:
                        r = s.get(nodes[i].base + f"/messageexchange/{RECIPIENTS[0]}/inbox",
                                  headers=headers(RECIPIENTS[0]), timeout=TIMEOUT)
                        if r.status_code == 200:
                            pending.discard(i)
                    except requests.RequestException:
                        pass
                time.sleep(0.2)
            outage["recovered_after_secs"] = round(time.monotonic() - restarted, 2)
            if pending:
                failures.append(f"nodes {sorted(pending)} still failing 30 s after PostgreSQL returned")
            if not any(k.startswith("http_5") for k in during):
                failures.append("no request failed during the outage: was PostgreSQL really stopped?")
        at(1.0)
        stop.set()
        for t in threads:
            t.join(timeout=60)
        for n in nodes:
            if not n.alive():
                failures.append(f"node {n.index} is not running (exit {n.proc.returncode})")
        backlog["delivered_during_load"] = sum(book.delivered.values())
        left, backlog["delivered"], backlog["seconds"] = drain(cluster, book, stats)
        if left:
            failures.append(f"inboxes still not empty after the drain ({backlog['seconds']} s, "
                            f"nothing delivered in its last minute): {left}")
    except (HarnessError, subprocess.CalledProcessError) as e:
        log(f"setup error: {e}")
        stop.set()
        for n in nodes:
            n.stop(timeout=10)
        sys.exit(2)
    finally:
        stop.set()
        for n in nodes:
            n.stop(timeout=70)

    lost = sorted(l for l in book.accepted if book.delivered[l] == 0)
    dup = sorted(l for l, k in book.delivered.items() if k > 1)
    unconfirmed = sorted(l for l in book.delivered if l not in book.accepted)
    if lost:
        failures.append(f"{len(lost)} accepted messages never delivered, e.g. {lost[:5]}")
    if dup:
        failures.append(f"{len(dup)} messages delivered more than once, e.g. {dup[:5]}")
    failures.extend(book.problems[:20])
    failures.extend(stats.bad_answers[:10])
    if args.scenario == "outage" and stats.slowest > args.max_answer_secs:
        failures.append(f"slowest answer {stats.slowest:.1f} s > {args.max_answer_secs} s (a hang)")
    if not book.accepted:
        failures.append("no message was accepted at all")
    errors = {k: v for k, v in stats.c.items() if k.startswith(("http_", "client_error"))}
    summary = {
        "scenario": args.scenario,
        "nodes": len(nodes),
        "duration_s": args.duration,
        "attempted": stats.c["attempted"],
        "accepted": len(book.accepted),
        "delivered": sum(book.delivered.values()),
        "delivered_accepted": sum(1 for l in book.accepted if book.delivered[l] == 1),
        "delivered_unconfirmed": len(unconfirmed),
        "lost": len(lost),
        "duplicated": len(dup),
        "corrupt_or_unknown": len(book.problems),
        "send_failed": stats.c["send_failed"],
        "chunk_failed": stats.c["chunk_failed"],
        "client_visible_errors": errors,
        "slowest_answer_s": round(stats.slowest, 2),
        "outage": outage or None,
        # Messages delivered after the load stopped: how far the receivers had fallen behind.
        "drain": backlog or None,
        "failures": failures,
    }
    for f in failures:
        log(f"FAIL: {f}")
    if failures:
        log(f"node logs kept in {log_dir}")
    else:
        subprocess.run(["rm", "-rf", log_dir])
    print(json.dumps(summary))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
