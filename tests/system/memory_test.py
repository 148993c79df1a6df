#!/usr/bin/env python3
"""Memory-bound system test for the OpenSpine MESH server.

Starts the server binary with a fresh temporary data directory, sends ONE
message of --size-mib MiB from X26ABC1 to X26ABC2 as ceil(size/chunk) chunks of
--chunk-mib MiB, downloads every chunk again (streaming) and compares SHA-256
digests, acknowledges it, and checks that the server's peak resident memory
stayed below --limit-mib.

The payload is generated on the fly (a seeded 1 MiB block, rotated by a
different offset for every 1 MiB piece and stamped with the piece number), and
handed to `requests` as an iterable of 1 MiB pieces with an explicit
Content-Length, so the client never holds a whole chunk in memory either.

Peak RSS is VmHWM from /proc/<pid>/status read at the end (before the server is
stopped); VmRSS is also polled every 100 ms during the run and its maximum is
reported too.  The larger of the two counts as the peak.

Usage:
    python3 tests/system/memory_test.py --bin target/release/openspine \
        --size-mib 1024 --chunk-mib 20 --limit-mib 128

The last line on stdout is one JSON object.  Exit status 0 on success, 1 if
the bytes differ or peak RSS >= limit (or any protocol step failed), 2 on a
setup/harness error (server did not start, died, time limit).
"""

import argparse
import hashlib
import json
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
    sys.stderr.write("memory_test: the 'requests' package is required "
                     "(use the venv of tests/interop)\n")
    sys.exit(2)

SENDER = "X26ABC1"
RECIPIENT = "X26ABC2"
WORKFLOW = "TEST_WORKFLOW"
MIB = 1 << 20
TIMEOUT = (5, 120)  # (connect, read) seconds; read = longest silence tolerated


class CheckFailed(Exception):
    """The server misbehaved (wrong status, wrong bytes...)."""


def log(msg):
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()


# --------------------------------------------------------------------------
# NHSMESH authentication (API.md section 2)
# --------------------------------------------------------------------------

class Auth:
    def __init__(self, shared_key, password):
        self.shared_key = shared_key
        self.password = password

    def headers(self, mailbox, **extra):
        """Headers with a fresh single-use token (uuid4 nonce, count 0, UTC minute)."""
        h = {"Authorization": token(self.shared_key, self.password, mailbox), "Accept": ACCEPT_V2}
        h.update(extra)
        return h


# --------------------------------------------------------------------------
# Server process handling
# --------------------------------------------------------------------------

def proc_status_kb(pid, field):
    """A kB field (VmRSS, VmHWM) of /proc/<pid>/status, or None."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


class RssPoller(threading.Thread):
    def __init__(self, pid, interval):
        super().__init__(name="rss-poller", daemon=True)
        self.pid = pid
        self.interval = interval
        self.stop_event = threading.Event()
        self.max_kb = 0
        self.samples = 0

    def run(self):
        while not self.stop_event.is_set():
            kb = proc_status_kb(self.pid, "VmRSS")
            if kb is not None:
                self.samples += 1
                self.max_kb = max(self.max_kb, kb)
            self.stop_event.wait(self.interval)


# --------------------------------------------------------------------------
# Payload
# --------------------------------------------------------------------------

class Payload:
    """Deterministic pseudo-random bytes, produced one MiB piece at a time."""

    def __init__(self, seed):
        self.seed = seed
        self.block = random.Random(seed).randbytes(MIB)

    def piece(self, i):
        off = (i * 7919 + 12345) % MIB  # 7919 is odd: 2**20 distinct offsets
        stamp = f"piece {i:010d} seed {self.seed:010d}\n".encode()
        rotated = self.block[off:] + self.block[:off]
        return stamp + rotated[len(stamp):]


class ChunkBody:
    """An iterable request body of pieces [first, first+count) with a known length.

    Having __len__ makes `requests` send Content-Length (no chunked encoding);
    the digests are updated as the pieces are handed to the socket."""

    def __init__(self, payload, first, count, hashers):
        self.payload = payload
        self.first = first
        self.count = count
        self.hashers = hashers
        self.sent = 0

    def __len__(self):
        return self.count * MIB

    def __iter__(self):
        for i in range(self.first, self.first + self.count):
            p = self.payload.piece(i)
            for h in self.hashers:
                h.update(p)
            self.sent += len(p)
            yield p


class Context:
    pass


def start_server(ctx):
    port = free_port()
    ctx.base = f"http://127.0.0.1:{port}"
    cmd = [ctx.binary, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", ctx.data_dir,
           "--demo", "--rate-limit", "0"] + ctx.args.server_arg
    with open(ctx.stderr_path, "wb") as err, \
            open(os.path.join(ctx.tmp, "server.stdout.log"), "wb") as out:
        try:
            ctx.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                        preexec_fn=set_pdeathsig)
        except OSError as e:
            raise HarnessError(f"cannot start server {ctx.binary!r}: {e}")
    deadline = time.monotonic() + ctx.args.ready_timeout
    last = "no answer yet"
    while time.monotonic() < deadline:
        rc = ctx.proc.poll()
        if rc is not None:
            raise HarnessError(f"server exited with status {rc} before it was ready")
        try:
            r = requests.get(ctx.base + "/messageexchange/_ping", timeout=(0.5, 2))
            if r.status_code == 200:
                return
            last = f"HTTP {r.status_code}"
        except requests.RequestException as e:
            last = type(e).__name__
        time.sleep(0.05)
    raise HarnessError(f"server not ready after {ctx.args.ready_timeout} s: {last}")


def stop_server(ctx):
    proc = getattr(ctx, "proc", None)
    if proc is None or proc.poll() is not None:
        return
    try:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=15)
    except OSError:
        pass


def request(ctx, session, method, url, what, **kw):
    try:
        return session.request(method, url, timeout=TIMEOUT, **kw)
    except requests.RequestException as e:
        if ctx.proc.poll() is not None:
            raise HarnessError(f"server died (exit status {ctx.proc.poll()}) during {what}")
        raise CheckFailed(f"{what}: {type(e).__name__}: {e}")


def expect(r, codes, what):
    if r.status_code not in codes:
        raise CheckFailed(f"{what}: HTTP {r.status_code} (expected {codes}): {r.text[:300]!r}")


def list_inbox(ctx, session):
    ids = []
    url = f"{ctx.base}/messageexchange/{RECIPIENT}/inbox"
    for _ in range(10000):
        r = request(ctx, session, "GET", url, "inbox list",
                    headers=ctx.auth.headers(RECIPIENT))
        expect(r, (200,), "inbox list")
        body = r.json()
        ids.extend(str(m).upper() for m in body.get("messages", []))
        nxt = (body.get("links") or {}).get("next")
        if not nxt:
            return ids
        url = ctx.base + nxt
    raise CheckFailed("inbox list: too many pages")


def run(ctx):
    args = ctx.args
    n_chunks = -(-args.size_mib // args.chunk_mib)
    ctx.result["chunks"] = n_chunks
    payload = Payload(args.seed)
    whole_up = hashlib.sha256()
    chunk_up = []
    session = requests.Session()

    # ---- upload
    t0 = time.monotonic()
    message_id = None
    for k in range(1, n_chunks + 1):
        first = (k - 1) * args.chunk_mib
        count = min(args.chunk_mib, args.size_mib - first)
        h = hashlib.sha256()
        body = ChunkBody(payload, first, count, (whole_up, h))
        headers = {"Content-Type": "application/octet-stream",
                   "Content-Length": str(len(body)),
                   "Mex-Chunk-Range": f"{k}:{n_chunks}"}
        if k == 1:
            headers.update({"Mex-To": RECIPIENT, "Mex-WorkflowID": WORKFLOW,
                            "Mex-LocalID": f"memory-test-{uuid.uuid4().hex[:8]}",
                            "Mex-FileName": "memory-test.bin"})
            url = f"{ctx.base}/messageexchange/{SENDER}/outbox"
        else:
            url = f"{ctx.base}/messageexchange/{SENDER}/outbox/{message_id}/{k}"
        what = f"upload chunk {k}/{n_chunks} ({count} MiB)"
        r = request(ctx, session, "POST", url, what, data=body,
                    headers=ctx.auth.headers(SENDER, **headers))
        expect(r, (202,), what)
        if body.sent != count * MIB:
            raise CheckFailed(f"{what}: only {body.sent} bytes were sent before the answer")
        if k == 1:
            try:
                js = r.json()
                message_id = str(js.get("message_id") or js.get("messageID") or "").upper()
            except ValueError:
                message_id = ""
            if not message_id:
                raise CheckFailed(f"{what}: 202 without a message id: {r.text[:300]!r}")
        chunk_up.append(h.hexdigest())
        log(f"memory_test: uploaded chunk {k}/{n_chunks}, server RSS now "
            f"{(proc_status_kb(ctx.proc.pid, 'VmRSS') or 0) / 1024:.1f} MiB")
    ctx.result["upload_s"] = round(time.monotonic() - t0, 3)
    ctx.result["message_id"] = message_id

    # ---- listed?
    if message_id not in list_inbox(ctx, session):
        raise CheckFailed(f"message {message_id} is not listed in {RECIPIENT}'s inbox "
                          f"after all chunks got 202")

    # ---- download
    t0 = time.monotonic()
    whole_down = hashlib.sha256()
    bad_chunks = []
    for k in range(1, n_chunks + 1):
        first = (k - 1) * args.chunk_mib
        count = min(args.chunk_mib, args.size_mib - first)
        base = f"{ctx.base}/messageexchange/{RECIPIENT}/inbox/{message_id}"
        url = base if k == 1 else f"{base}/{k}"
        what = f"download chunk {k}/{n_chunks}"
        r = request(ctx, session, "GET", url, what, stream=True,
                    headers=ctx.auth.headers(RECIPIENT, **{"Accept-Encoding": "identity"}))
        try:
            want = 200 if k == n_chunks else 206
            if r.status_code not in (200, 206):
                raise CheckFailed(f"{what}: HTTP {r.status_code}: {r.text[:300]!r}")
            if r.status_code != want:
                log(f"memory_test: warning: {what} answered {r.status_code}, "
                    f"API.md 3.4 says {want}")
            rng = r.headers.get("mex-chunk-range")
            if rng is None or rng.replace(" ", "") != f"{k}:{n_chunks}":
                raise CheckFailed(f"{what}: mex-chunk-range {rng!r}, expected {k}:{n_chunks}")
            h = hashlib.sha256()
            got = 0
            try:
                for piece in r.iter_content(chunk_size=MIB):
                    h.update(piece)
                    whole_down.update(piece)
                    got += len(piece)
            except requests.RequestException as e:
                if ctx.proc.poll() is not None:
                    raise HarnessError(f"server died during {what}")
                raise CheckFailed(f"{what}: {type(e).__name__}: {e}")
        finally:
            r.close()
        if got != count * MIB:
            raise CheckFailed(f"{what}: got {got} bytes, expected {count * MIB}")
        if h.hexdigest() != chunk_up[k - 1]:
            bad_chunks.append(k)
    ctx.result["download_s"] = round(time.monotonic() - t0, 3)
    ctx.result["sha256"] = whole_up.hexdigest()
    if bad_chunks or whole_down.hexdigest() != whole_up.hexdigest():
        ctx.result["bytes_ok"] = False
        raise CheckFailed(f"downloaded bytes differ from the upload (chunks {bad_chunks}): "
                          f"sha256 {whole_down.hexdigest()} != {whole_up.hexdigest()}")
    ctx.result["bytes_ok"] = True

    # ---- acknowledge
    r = request(ctx, session, "PUT",
                f"{ctx.base}/messageexchange/{RECIPIENT}/inbox/{message_id}/status/acknowledged",
                "acknowledge", data=b"", headers=ctx.auth.headers(RECIPIENT))
    expect(r, (200,), "acknowledge")
    if message_id in list_inbox(ctx, session):
        raise CheckFailed(f"message {message_id} still listed after acknowledgement")
    session.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", required=True, help="path of the openspine binary")
    ap.add_argument("--size-mib", type=int, default=1024, help="message size, MiB (1024)")
    ap.add_argument("--chunk-mib", type=int, default=20, help="chunk size, MiB (20)")
    ap.add_argument("--limit-mib", type=float, default=128, help="peak RSS limit, MiB (128)")
    ap.add_argument("--seed", type=int, default=20240101, help="payload seed")
    ap.add_argument("--poll-interval", type=float, default=0.1, help="VmRSS poll period, s")
    ap.add_argument("--ready-timeout", type=float, default=60.0)
    ap.add_argument("--time-limit", type=float, default=None,
                    help="abort after this many seconds (default 300 + 1 s per MiB)")
    ap.add_argument("--tmp-dir", default=None, help="where to create the temp data dir")
    ap.add_argument("--shared-key", default="TestKey")
    ap.add_argument("--password", default="password")
    ap.add_argument("--server-arg", action="append", default=[],
                    help="extra argument for 'serve' (repeatable)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir even on success")
    args = ap.parse_args()
    if args.size_mib < 1 or args.chunk_mib < 1:
        ap.error("--size-mib and --chunk-mib must be >= 1")
    binary = os.path.abspath(args.bin)
    if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
        log(f"memory_test: --bin {args.bin!r} is not an executable file")
        return 2
    time_limit = args.time_limit or (300 + args.size_mib)

    ctx = Context()
    ctx.args = args
    ctx.binary = binary
    ctx.auth = Auth(args.shared_key, args.password)
    ctx.tmp = tempfile.mkdtemp(prefix="openspine-memory-", dir=args.tmp_dir)
    ctx.data_dir = os.path.join(ctx.tmp, "data")
    os.makedirs(ctx.data_dir)
    ctx.stderr_path = os.path.join(ctx.tmp, "server.stderr.log")
    ctx.proc = None
    ctx.result = {"size_mib": args.size_mib, "chunks": -(-args.size_mib // args.chunk_mib),
                  "upload_s": None, "download_s": None, "peak_rss_mib": None,
                  "limit_mib": args.limit_mib, "ok": False}

    def watchdog():
        log(f"memory_test: time limit of {time_limit:.0f} s exceeded, aborting")
        if ctx.proc is not None and ctx.proc.poll() is None:
            os.kill(ctx.proc.pid, signal.SIGKILL)
        log("--- server stderr (tail) ---\n" + tail(ctx.stderr_path))
        log(f"memory_test: files kept in {ctx.tmp}")
        ctx.result["error"] = "time limit exceeded"
        print(json.dumps(ctx.result), flush=True)
        os._exit(2)

    timer = threading.Timer(time_limit, watchdog)
    timer.daemon = True
    timer.start()

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_signal)

    status = 0
    error = None
    poller = None
    try:
        check_signer()
        start_server(ctx)
        poller = RssPoller(ctx.proc.pid, args.poll_interval)
        poller.start()
        log(f"memory_test: server pid {ctx.proc.pid} at {ctx.base}, sending {args.size_mib} MiB "
            f"in {ctx.result['chunks']} chunk(s) of {args.chunk_mib} MiB, dir {ctx.tmp}")
        run(ctx)
    except CheckFailed as e:
        status, error = 1, str(e)
    except HarnessError as e:
        status, error = 2, str(e)
    except KeyboardInterrupt as e:
        status, error = 2, f"interrupted ({e})"
    finally:
        timer.cancel()
        hwm_kb = proc_status_kb(ctx.proc.pid, "VmHWM") if ctx.proc is not None else None
        if poller is not None:
            poller.stop_event.set()
            poller.join(timeout=5)
        stop_server(ctx)

    polled_kb = poller.max_kb if poller else 0
    peak_kb = max(hwm_kb or 0, polled_kb)
    ctx.result["peak_rss_mib"] = round(peak_kb / 1024, 1) if peak_kb else None
    ctx.result["vmhwm_mib"] = round(hwm_kb / 1024, 1) if hwm_kb else None
    ctx.result["max_polled_rss_mib"] = round(polled_kb / 1024, 1)
    ctx.result["rss_samples"] = poller.samples if poller else 0
    for key in ("upload", "download"):
        secs = ctx.result.get(f"{key}_s")
        if secs:
            ctx.result[f"{key}_mib_s"] = round(args.size_mib / secs, 1)
    if status == 0:
        if hwm_kb is None:
            status, error = 2, "could not read VmHWM of the server (did it exit?)"
        elif peak_kb / 1024 >= args.limit_mib:
            status = 1
            error = (f"server peak RSS {peak_kb / 1024:.1f} MiB >= limit {args.limit_mib} MiB "
                     f"(VmHWM {hwm_kb / 1024:.1f} MiB, max polled VmRSS "
                     f"{polled_kb / 1024:.1f} MiB)")
    ctx.result["ok"] = status == 0
    if error:
        ctx.result["error"] = error
    if status != 0:
        log(f"memory_test: FAILED: {error}")
        log(f"--- server stderr (tail of {ctx.stderr_path}) ---")
        log(tail(ctx.stderr_path))
        log(f"memory_test: files kept in {ctx.tmp}")
    elif args.keep:
        log(f"memory_test: files kept in {ctx.tmp}")
    else:
        shutil.rmtree(ctx.tmp, ignore_errors=True)
    print(json.dumps(ctx.result), flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
