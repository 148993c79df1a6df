#!/usr/bin/env python3
"""Crash-consistency system test for the OpenSpine MESH server.

Each cycle starts the server binary on a fresh port with one persistent data
directory (the same directory for every cycle), checks everything that earlier
cycles sent, runs several sender threads (X26ABC1 -> X26ABC2, workflow
TEST_WORKFLOW, single-chunk and 3-chunk messages of 0.1 KiB .. ~300 KiB) and
then SIGKILLs the server in the middle of that traffic.  After the final cycle
the server is started once more for a last check.

The check after each restart:

* every message whose upload the client saw fully accepted (every request
  answered 202) must be listed in X26ABC2's inbox and download byte-for-byte;
* every listed message must download completely (all chunks) -- a listed
  message that the client did not see complete is fine only if its bytes are
  exactly what the client sent (the kill hit while the last response was on
  its way); it is counted as "completed_unacknowledged";
* a message whose first chunk was accepted but whose upload did not finish
  must not be downloadable by the recipient (404 or 410 expected);
* verified messages are acknowledged and must then leave the inbox, and must
  not come back after later crashes.

Only the Python standard library and `requests` are used.

Usage:
    python3 tests/system/crash_test.py --bin target/release/openspine --cycles 10 --seed 1

The last line on stdout is one JSON object with the totals.  Exit status: 0 on
success, 1 if any check failed (lost / corrupt / partial_visible / duplicated /
ack_reverted / ack_failed > 0, or no message was ever accepted), 2 on a setup or
harness error (server did not start, died outside a planned kill, time limit).
"""

import argparse
import hashlib
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid

from harness import ACCEPT_V2, HarnessError, check_signer, free_port, set_pdeathsig, tail, token

try:
    import requests
except ImportError:  # pragma: no cover - environment problem
    sys.stderr.write("crash_test: the 'requests' package is required "
                     "(use the venv of tests/interop)\n")
    sys.exit(2)

SENDER = "X26ABC1"
RECIPIENT = "X26ABC2"
WORKFLOW = "TEST_WORKFLOW"
TIMEOUT = (5, 30)  # (connect, read) seconds, used on every request
MIN_SIZE = 102  # 0.1 KiB
MAX_SIZE = 300 * 1024


def log(msg):
    print(msg, flush=True)


def warn(msg):
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()


# --------------------------------------------------------------------------
# NHSMESH authentication (API.md section 2)
# --------------------------------------------------------------------------

class Auth:
    def __init__(self, shared_key, password):
        self.shared_key = shared_key
        self.password = password

    def header(self, mailbox):
        return token(self.shared_key, self.password, mailbox)

    def headers(self, mailbox, **extra):
        h = {"Authorization": self.header(mailbox), "Accept": ACCEPT_V2}
        h.update(extra)
        return h


# --------------------------------------------------------------------------
# Server process handling
# --------------------------------------------------------------------------

class Server:
    def __init__(self, binary, data_dir, log_dir, extra_args):
        self.binary = binary
        self.data_dir = data_dir
        self.log_dir = log_dir
        self.extra_args = extra_args
        self.proc = None
        self.base = None
        self.stderr_path = None
        self.start_count = 0

    def start(self, tag):
        self.start_count += 1
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        self.stderr_path = os.path.join(self.log_dir, f"server-{tag}.stderr.log")
        stdout_path = os.path.join(self.log_dir, f"server-{tag}.stdout.log")
        cmd = [self.binary, "serve", "--listen", f"127.0.0.1:{port}",
               "--data-dir", self.data_dir, "--demo", "--rate-limit", "0"] + list(self.extra_args)
        with open(self.stderr_path, "wb") as err, open(stdout_path, "wb") as out:
            try:
                self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out,
                                             stderr=err, preexec_fn=set_pdeathsig)
            except OSError as e:
                raise HarnessError(f"cannot start server {self.binary!r}: {e}")
        return port

    def wait_ready(self, timeout):
        url = self.base + "/messageexchange/_ping"
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while time.monotonic() < deadline:
            rc = self.proc.poll()
            if rc is not None:
                raise HarnessError(f"server exited with status {rc} before it was ready")
            try:
                r = requests.get(url, timeout=(0.5, 2))
                if r.status_code == 200:
                    return
                last = f"HTTP {r.status_code}"
            except requests.RequestException as e:
                last = type(e).__name__
            time.sleep(0.05)
        raise HarnessError(f"server not ready after {timeout} s ({url}: {last})")

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill9(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            raise HarnessError(f"server pid {self.proc.pid} did not die after SIGKILL")

    def stop(self):
        """Graceful stop (SIGTERM, then SIGKILL after 5 s)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.kill9()
        except OSError:
            pass

    def stderr_tail(self, lines=40):
        if not self.stderr_path:
            return "(server never started)"
        return tail(self.stderr_path, lines)


# --------------------------------------------------------------------------
# Message bookkeeping
# --------------------------------------------------------------------------

class Attempt:
    """One message the client tried to send."""

    __slots__ = ("local_id", "cycle", "sha256", "size", "chunks", "message_id",
                 "chunks_acked", "state", "detail", "verified", "lost", "probed",
                 "failed_check")

    def __init__(self, local_id, cycle, sha256, size, chunks):
        self.local_id = local_id
        self.cycle = cycle
        self.sha256 = sha256
        self.size = size
        self.chunks = chunks
        self.message_id = None
        self.chunks_acked = 0
        # pending -> accepted | interrupted | rejected | abandoned
        self.state = "pending"
        self.detail = ""
        self.verified = False      # downloaded correctly and acknowledged
        self.lost = False          # counted as lost already
        self.probed = False        # incomplete upload checked for invisibility
        self.failed_check = False  # counted as corrupt/partial already


class Book:
    def __init__(self):
        self.lock = threading.Lock()
        self.by_local = {}

    def add(self, attempt):
        with self.lock:
            self.by_local[attempt.local_id] = attempt

    def all(self):
        with self.lock:
            return list(self.by_local.values())


def split3(rng, data):
    n = len(data)
    a, b = sorted(rng.sample(range(1, n), 2))
    return [data[:a], data[a:b], data[b:]]


def sender_thread(ctx, tid, cycle, seed, stop, stats):
    rng = random.Random(seed)
    session = requests.Session()
    auth = ctx.auth
    base = ctx.server.base
    n = 0
    try:
        while not stop.is_set() and n < ctx.args.max_per_thread:
            n += 1
            size = int(math.exp(rng.uniform(math.log(MIN_SIZE), math.log(MAX_SIZE))))
            chunked = rng.random() < ctx.args.chunked_ratio
            data = rng.randbytes(size)
            parts = split3(rng, data) if chunked else [data]
            local_id = f"{ctx.run_id}-c{cycle}-t{tid}-n{n}"
            att = Attempt(local_id, cycle, hashlib.sha256(data).hexdigest(), size, len(parts))
            ctx.book.add(att)
            headers = {
                "Mex-To": RECIPIENT,
                "Mex-WorkflowID": WORKFLOW,
                "Mex-LocalID": local_id,
                "Mex-Subject": f"crash test {local_id}",
                "Content-Type": "application/octet-stream",
            }
            if chunked:
                headers["Mex-Chunk-Range"] = f"1:{len(parts)}"
            elif rng.random() < 0.5:
                headers["Mex-Chunk-Range"] = "1:1"
            try:
                r = session.post(f"{base}/messageexchange/{SENDER}/outbox",
                                 data=parts[0], headers=auth.headers(SENDER, **headers),
                                 timeout=TIMEOUT)
                if r.status_code != 202:
                    att.state = "rejected"
                    att.detail = f"send: HTTP {r.status_code} {r.text[:200]!r}"
                    stats.note_rejected(att.detail)
                    continue
                body = r.json()
                mid = body.get("message_id") or body.get("messageID")
                if not mid:
                    att.state = "rejected"
                    att.detail = f"send: 202 without message id: {r.text[:200]!r}"
                    stats.note_rejected(att.detail)
                    continue
                att.message_id = str(mid).upper()
                att.chunks_acked = 1
                for k in range(2, len(parts) + 1):
                    if stop.is_set():
                        att.state = "abandoned"
                        break
                    r = session.post(
                        f"{base}/messageexchange/{SENDER}/outbox/{att.message_id}/{k}",
                        data=parts[k - 1],
                        headers=auth.headers(SENDER, **{
                            "Mex-Chunk-Range": f"{k}:{len(parts)}",
                            "Content-Type": "application/octet-stream"}),
                        timeout=TIMEOUT)
                    if r.status_code != 202:
                        att.state = "rejected"
                        att.detail = f"chunk {k}: HTTP {r.status_code} {r.text[:200]!r}"
                        stats.note_rejected(att.detail)
                        break
                    att.chunks_acked = k
                else:
                    att.state = "accepted"
                    stats.note_accepted(chunked)
            except (requests.RequestException, ValueError) as e:
                # ValueError: a 202 whose JSON body was cut off by the kill.
                att.state = "interrupted"
                att.detail = type(e).__name__
                stats.note_interrupted()
    finally:
        session.close()


class TrafficStats:
    def __init__(self):
        self.lock = threading.Lock()
        self.accepted_single = 0
        self.accepted_chunked = 0
        self.interrupted = 0
        self.rejected = 0
        self.rejected_examples = []

    def note_accepted(self, chunked):
        with self.lock:
            if chunked:
                self.accepted_chunked += 1
            else:
                self.accepted_single += 1

    def note_interrupted(self):
        with self.lock:
            self.interrupted += 1

    def note_rejected(self, detail):
        with self.lock:
            self.rejected += 1
            if len(self.rejected_examples) < 5:
                self.rejected_examples.append(detail)


# --------------------------------------------------------------------------
# Verification
# --------------------------------------------------------------------------

class Totals:
    def __init__(self):
        self.sent_accepted = 0
        self.verified = 0
        self.lost = 0
        self.corrupt = 0
        self.partial_visible = 0
        self.completed_unacknowledged = 0
        self.duplicated = 0
        self.ack_reverted = 0
        self.ack_failed = 0
        self.rejected = 0
        self.interrupted = 0
        self.problems = []

    def problem(self, kind, text):
        if len(self.problems) < 50:
            self.problems.append(f"{kind}: {text}")
        warn(f"  PROBLEM {kind}: {text}")


def list_inbox(ctx, session):
    ids = []
    url = f"{ctx.server.base}/messageexchange/{RECIPIENT}/inbox?max_results={ctx.args.page_size}"
    seen_next = set()
    for _ in range(100000):
        r = session.get(url, headers=ctx.auth.headers(RECIPIENT), timeout=TIMEOUT)
        if r.status_code != 200:
            raise HarnessError(f"inbox list {url}: HTTP {r.status_code} {r.text[:300]!r}")
        try:
            body = r.json()
        except ValueError:
            raise HarnessError(f"inbox list {url}: body is not JSON: {r.text[:300]!r}")
        msgs = body.get("messages")
        if not isinstance(msgs, list):
            raise HarnessError(f"inbox list {url}: no 'messages' list: {r.text[:300]!r}")
        ids.extend(str(m).upper() for m in msgs)
        nxt = (body.get("links") or {}).get("next")
        if not nxt:
            return ids
        if not nxt.startswith("/"):
            raise HarnessError(f"inbox list: links.next is not root-relative: {nxt!r}")
        if nxt in seen_next:
            raise HarnessError(f"inbox list: links.next repeats {nxt!r} (paging loop)")
        seen_next.add(nxt)
        url = ctx.server.base + nxt
    raise HarnessError("inbox list: more than 100000 pages")


def parse_range(value):
    try:
        k, total = value.split(":")
        return int(k), int(total)
    except (AttributeError, ValueError):
        return None


def download(ctx, session, mid):
    """Download every chunk of one message.

    Returns (data, headers_of_chunk_1, error).  error is None on success."""
    base = f"{ctx.server.base}/messageexchange/{RECIPIENT}/inbox/{mid}"
    parts = []
    first_headers = {}
    total = None
    k = 1
    while True:
        url = base if k == 1 else f"{base}/{k}"
        try:
            r = session.get(url, headers=ctx.auth.headers(RECIPIENT, **{
                "Accept-Encoding": "identity"}), timeout=TIMEOUT)
        except requests.RequestException as e:
            if not ctx.server.alive():
                raise HarnessError(f"server died while downloading {mid} chunk {k}")
            return None, first_headers, f"chunk {k}: {type(e).__name__}: {e}"
        if r.status_code not in (200, 206):
            return None, first_headers, f"chunk {k}: HTTP {r.status_code} {r.text[:200]!r}"
        rng = parse_range(r.headers.get("mex-chunk-range"))
        if rng is None:
            return None, first_headers, (f"chunk {k}: bad mex-chunk-range "
                                         f"{r.headers.get('mex-chunk-range')!r}")
        if k == 1:
            first_headers = dict(r.headers)
            total = rng[1]
            if total < 1:
                return None, first_headers, f"chunk 1: total chunks {total}"
        if rng != (k, total):
            return None, first_headers, f"chunk {k}: mex-chunk-range {rng} expected {(k, total)}"
        want_status = 200 if k == total else 206
        if r.status_code != want_status:
            ctx.protocol_warnings.add(
                f"chunk {k}/{total} answered {r.status_code}, API.md 3.4 says {want_status}")
        parts.append(r.content)
        if k >= total:
            break
        k += 1
    return b"".join(parts), first_headers, None


def verify(ctx, label):
    """Check the inbox against the book. Returns per-pass figures."""
    t0 = time.monotonic()
    book, totals = ctx.book, ctx.totals
    f = dict(listed=0, verified=0, completed_unacknowledged=0, lost=0, corrupt=0,
             partial_visible=0, duplicated=0, ack_reverted=0, ack_failed=0, probed=0)
    attempts = book.all()
    by_mid = {a.message_id: a for a in attempts if a.message_id}
    by_sha = {}
    for a in attempts:
        by_sha.setdefault(a.sha256, a)
    session = requests.Session()
    try:
        listed = list_inbox(ctx, session)
        f["listed"] = len(listed)
        if len(set(listed)) != len(listed):
            dups = len(listed) - len(set(listed))
            totals.problem("duplicated", f"{dups} id(s) appear twice in one inbox listing")
            f["duplicated"] += dups
        listed_set = set(listed)
        to_ack = []
        seen_local = {}
        for mid in dict.fromkeys(listed):
            if mid in ctx.failed_mids:
                continue  # counted as a failure on an earlier pass already
            data, hdrs, err = download(ctx, session, mid)
            lower = {k.lower(): v for k, v in hdrs.items()}
            local_id = lower.get("mex-localid")
            att = book.by_local.get(local_id) if local_id else None
            if att is None:
                att = by_mid.get(mid)
            if att is None and data is not None:
                att = by_sha.get(hashlib.sha256(data).hexdigest())
            if err is not None:
                ctx.failed_mids.add(mid)
                f["partial_visible"] += 1
                who = f"{att.local_id} (client state {att.state})" if att else "unknown message"
                totals.problem("partial_visible", f"listed {mid} [{who}] does not download "
                                                  f"completely: {err}")
                if att:
                    att.failed_check = True
                continue
            digest = hashlib.sha256(data).hexdigest()
            if att is None:
                ctx.failed_mids.add(mid)
                f["corrupt"] += 1
                totals.problem("corrupt", f"listed {mid} (mex-localid {local_id!r}, "
                                          f"{len(data)} bytes) matches nothing the client sent")
                continue
            if att.message_id and att.message_id != mid:
                f["duplicated"] += 1
                totals.problem("duplicated", f"{att.local_id} was sent once as "
                                             f"{att.message_id} but is also listed as {mid}")
                to_ack.append(mid)
                continue
            if att.local_id in seen_local:
                f["duplicated"] += 1
                totals.problem("duplicated", f"{att.local_id} listed as {seen_local[att.local_id]}"
                                             f" and {mid}")
                to_ack.append(mid)
                continue
            seen_local[att.local_id] = mid
            if digest != att.sha256 or len(data) != att.size:
                ctx.failed_mids.add(mid)
                f["corrupt"] += 1
                att.failed_check = True
                totals.problem("corrupt", f"{mid} [{att.local_id}, client state {att.state}] "
                                          f"downloaded {len(data)} bytes sha256 {digest[:16]}…, "
                                          f"sent {att.size} bytes sha256 {att.sha256[:16]}…")
                continue
            total_chunks = parse_range(lower.get("mex-chunk-range"))[1]
            if total_chunks != att.chunks:
                ctx.protocol_warnings.add(
                    f"message sent in {att.chunks} chunk(s) downloads in {total_chunks}")
            if att.verified:
                f["ack_reverted"] += 1
                totals.problem("ack_reverted", f"{mid} [{att.local_id}] was acknowledged "
                                               f"(HTTP 200) earlier but is listed again")
            elif att.state == "accepted":
                f["verified"] += 1
            else:
                f["completed_unacknowledged"] += 1
            if att.message_id is None:
                att.message_id = mid
            att.verified = True
            to_ack.append(mid)

        # Every fully acknowledged upload must have been found.
        for att in attempts:
            if (att.state == "accepted" and not att.verified and not att.lost
                    and not att.failed_check):
                att.lost = True
                f["lost"] += 1
                totals.problem("lost", f"{att.local_id} ({att.message_id}, {att.size} bytes, "
                                       f"{att.chunks} chunk(s), cycle {att.cycle}) got 202 for "
                                       f"every request but is not in the inbox")

        # Incomplete uploads whose id we know must not be downloadable.
        for att in attempts:
            if (att.message_id and att.state != "accepted" and not att.verified
                    and not att.probed and att.message_id not in listed_set):
                att.probed = True
                f["probed"] += 1
                url = f"{ctx.server.base}/messageexchange/{RECIPIENT}/inbox/{att.message_id}"
                r = session.get(url, headers=ctx.auth.headers(RECIPIENT, **{
                    "Accept-Encoding": "identity"}), timeout=TIMEOUT)
                if r.status_code in (200, 206):
                    f["partial_visible"] += 1
                    att.failed_check = True
                    totals.problem("partial_visible",
                                   f"{att.message_id} [{att.local_id}, {att.chunks_acked}/"
                                   f"{att.chunks} chunks acknowledged, state {att.state}] is not "
                                   f"listed but the recipient can download it (HTTP "
                                   f"{r.status_code})")
                elif r.status_code not in (404, 410):
                    ctx.protocol_warnings.add(
                        f"download of an incomplete message answered {r.status_code} "
                        f"(expected 410 or 404)")

        # Acknowledge what was verified, then check it left the inbox.
        for mid in to_ack:
            r = session.put(
                f"{ctx.server.base}/messageexchange/{RECIPIENT}/inbox/{mid}/status/acknowledged",
                data=b"", headers=ctx.auth.headers(RECIPIENT), timeout=TIMEOUT)
            if r.status_code != 200:
                f["ack_failed"] += 1
                totals.problem("ack_failed", f"acknowledge {mid}: HTTP {r.status_code} "
                                             f"{r.text[:200]!r}")
        if to_ack:
            still = set(list_inbox(ctx, session)) & set(to_ack)
            if still:
                f["ack_failed"] += len(still)
                totals.problem("ack_failed", f"{len(still)} acknowledged message(s) still "
                                             f"listed, e.g. {sorted(still)[0]}")
    except requests.RequestException as e:
        if not ctx.server.alive():
            raise HarnessError(f"server died during verification ({type(e).__name__})")
        raise HarnessError(f"request failed during verification: {type(e).__name__}: {e}")
    finally:
        session.close()

    for key in ("verified", "lost", "corrupt", "partial_visible", "completed_unacknowledged",
                "duplicated", "ack_reverted", "ack_failed"):
        setattr(totals, key, getattr(totals, key) + f[key])
    log(f"[{label}] verify after restart ({time.monotonic() - t0:.2f} s): "
        f"listed={f['listed']} verified={f['verified']} "
        f"completed_unacknowledged={f['completed_unacknowledged']} lost={f['lost']} "
        f"corrupt={f['corrupt']} partial_visible={f['partial_visible']} "
        f"duplicated={f['duplicated']} ack_reverted={f['ack_reverted']} "
        f"ack_failed={f['ack_failed']} incomplete_probed={f['probed']}")
    return f


def traffic(ctx, cycle, rng):
    stop = threading.Event()
    stats = TrafficStats()
    threads = []
    for tid in range(ctx.args.threads):
        t = threading.Thread(target=sender_thread, name=f"sender-{cycle}-{tid}",
                             args=(ctx, tid, cycle, rng.getrandbits(64), stop, stats),
                             daemon=True)
        threads.append(t)
    delay = rng.uniform(ctx.args.min_delay, ctx.args.max_delay)
    t0 = time.monotonic()
    for t in threads:
        t.start()
    time.sleep(delay)
    if not ctx.server.alive():
        stop.set()
        raise HarnessError(f"server died by itself during traffic in cycle {cycle} "
                           f"(exit status {ctx.server.proc.poll()})")
    ctx.server.kill9()
    stop.set()
    for t in threads:
        t.join(timeout=TIMEOUT[0] + TIMEOUT[1] + 10)
        if t.is_alive():
            raise HarnessError(f"sender thread {t.name} did not finish")
    mine = [a for a in ctx.book.all() if a.cycle == cycle]
    states = {}
    for a in mine:
        states[a.state] = states.get(a.state, 0) + 1
    accepted = stats.accepted_single + stats.accepted_chunked
    ctx.totals.sent_accepted += accepted
    ctx.totals.rejected += stats.rejected
    ctx.totals.interrupted += stats.interrupted
    log(f"[cycle {cycle}/{ctx.args.cycles}] traffic {time.monotonic() - t0:.2f} s, "
        f"kill -9 after {delay:.2f} s: attempts={len(mine)} accepted={accepted} "
        f"(single={stats.accepted_single} chunked={stats.accepted_chunked}) "
        f"interrupted={stats.interrupted} abandoned={states.get('abandoned', 0)} "
        f"rejected={stats.rejected}")
    for ex in stats.rejected_examples:
        warn(f"  rejected request (server answered an error during normal traffic): {ex}")


class Context:
    pass


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", required=True, help="path of the openspine binary")
    ap.add_argument("--cycles", type=int, default=10, help="start/traffic/kill cycles (10)")
    ap.add_argument("--seed", type=int, default=None, help="random seed (default: random)")
    ap.add_argument("--threads", type=int, default=4, help="sender threads (4)")
    ap.add_argument("--chunked-ratio", type=float, default=0.4,
                    help="share of messages sent as 3 chunks (0.4)")
    ap.add_argument("--min-delay", type=float, default=0.2, help="earliest kill, s (0.2)")
    ap.add_argument("--max-delay", type=float, default=2.0, help="latest kill, s (2.0)")
    ap.add_argument("--max-per-thread", type=int, default=5000,
                    help="bound on messages per thread and cycle (5000)")
    ap.add_argument("--page-size", type=int, default=100,
                    help="inbox max_results, small to exercise paging (100)")
    ap.add_argument("--ready-timeout", type=float, default=60.0,
                    help="seconds to wait for _ping after a (re)start (60)")
    ap.add_argument("--time-limit", type=float, default=None,
                    help="abort after this many seconds (default 120 + 60 per cycle)")
    ap.add_argument("--shared-key", default="TestKey")
    ap.add_argument("--password", default="password")
    ap.add_argument("--server-arg", action="append", default=[],
                    help="extra argument for 'serve' (repeatable)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir even on success")
    args = ap.parse_args()
    if args.cycles < 1 or args.threads < 1 or not (0 < args.min_delay <= args.max_delay):
        ap.error("need --cycles >= 1, --threads >= 1, 0 < --min-delay <= --max-delay")
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1 << 31)
    binary = os.path.abspath(args.bin)
    if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
        warn(f"crash_test: --bin {args.bin!r} is not an executable file")
        return 2
    time_limit = args.time_limit or (120 + 60 * args.cycles)

    tmp = tempfile.mkdtemp(prefix="openspine-crash-")
    data_dir = os.path.join(tmp, "data")
    os.makedirs(data_dir)
    ctx = Context()
    ctx.args = args
    ctx.auth = Auth(args.shared_key, args.password)
    ctx.server = Server(binary, data_dir, tmp, args.server_arg)
    ctx.book = Book()
    ctx.totals = Totals()
    ctx.protocol_warnings = set()
    ctx.failed_mids = set()
    ctx.run_id = uuid.uuid4().hex[:8]
    rng = random.Random(args.seed)

    def watchdog():
        warn(f"crash_test: time limit of {time_limit:.0f} s exceeded, aborting")
        try:
            if ctx.server.proc and ctx.server.proc.poll() is None:
                os.kill(ctx.server.proc.pid, signal.SIGKILL)
        finally:
            warn("--- server stderr (tail) ---\n" + ctx.server.stderr_tail())
            warn(f"crash_test: files kept in {tmp}")
            os._exit(2)

    timer = threading.Timer(time_limit, watchdog)
    timer.daemon = True
    timer.start()

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_signal)

    log(f"crash_test: bin={binary} cycles={args.cycles} seed={args.seed} "
        f"threads={args.threads} dir={tmp}")
    status = 0
    harness_error = None
    try:
        check_signer()
        for cycle in range(1, args.cycles + 1):
            label = f"cycle {cycle}/{args.cycles}"
            t0 = time.monotonic()
            port = ctx.server.start(f"{cycle:03d}")
            ctx.server.wait_ready(args.ready_timeout)
            log(f"[{label}] server pid {ctx.server.proc.pid} on port {port} "
                f"ready in {time.monotonic() - t0:.2f} s")
            if cycle > 1:
                label += f" (traffic of cycle {cycle - 1})"
            verify(ctx, label)
            traffic(ctx, cycle, rng)
        t0 = time.monotonic()
        ctx.server.start("final")
        ctx.server.wait_ready(args.ready_timeout)
        log(f"[final] server pid {ctx.server.proc.pid} ready in {time.monotonic() - t0:.2f} s")
        verify(ctx, f"final (traffic of cycle {args.cycles})")
        if not ctx.server.alive():
            raise HarnessError("server died during the final verification")
    except HarnessError as e:
        harness_error = str(e)
        status = 2
    except KeyboardInterrupt as e:
        harness_error = f"interrupted ({e})"
        status = 2
    finally:
        timer.cancel()
        try:
            ctx.server.stop()
        except HarnessError:
            pass

    t = ctx.totals
    failed_checks = {k: getattr(t, k) for k in ("lost", "corrupt", "partial_visible",
                                                 "duplicated", "ack_reverted", "ack_failed")
                     if getattr(t, k) > 0}
    if status == 0 and failed_checks:
        status = 1
    if status == 0 and t.sent_accepted == 0:
        status = 1
        harness_error = ("no message was accepted in any cycle: the test proved nothing "
                         "(check authentication / send handling)")
    for w in sorted(ctx.protocol_warnings):
        warn(f"protocol warning: {w}")
    if t.rejected:
        warn(f"note: {t.rejected} request(s) were answered with an error status during "
             f"normal traffic (see 'rejected request' lines)")
    if status != 0:
        if harness_error:
            warn(f"crash_test: ERROR: {harness_error}")
        if failed_checks:
            warn(f"crash_test: FAILED: {failed_checks} (details in the PROBLEM lines above)")
        warn(f"--- server stderr (tail of {ctx.server.stderr_path}) ---")
        warn(ctx.server.stderr_tail())
        warn(f"crash_test: data dir and server logs kept in {tmp}")
    elif args.keep:
        log(f"crash_test: files kept in {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)

    summary = {
        "cycles": args.cycles,
        "sent_accepted": t.sent_accepted,
        "verified": t.verified,
        "lost": t.lost,
        "corrupt": t.corrupt,
        "partial_visible": t.partial_visible,
        "completed_unacknowledged": t.completed_unacknowledged,
        "duplicated": t.duplicated,
        "ack_reverted": t.ack_reverted,
        "ack_failed": t.ack_failed,
        "interrupted": t.interrupted,
        "rejected": t.rejected,
        "seed": args.seed,
        "ok": status == 0,
    }
    if harness_error:
        summary["error"] = harness_error
    print(json.dumps(summary), flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
