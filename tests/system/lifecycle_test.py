#!/usr/bin/env python3
"""Lifecycle system test: message expiry and non-delivery reports (NDRs) under kill -9 and
under two nodes sweeping the same store at once (API.md 5.7, 5.8).

The invariant: a message that was not acknowledged in time is either still ``accepted``
(tracking) and listed in its recipient's inbox, or ``undeliverable`` and not listed -- and
then its sender has exactly one REPORT whose ``Mex-LinkedMsgID`` names it. Never both, never
neither, never two reports.

Phase 1 (both scenarios): one node with ``--inbox-expiry-secs 1 --lifecycle-interval-secs
3600`` (its worker sweeps once at start, on an empty store, then not for an hour); a pool of
8 threads sends --messages messages (default 1500, bounded by --send-secs) X26ABC1 ->
X26ABC2 (TEST_WORKFLOW) and, every fourth, X26ABC2 -> X26ABC3 (TEST_WORKFLOW_ACK), so there
are two senders (and X26ABC2's inbox holds both originals and reports); each has its own
local id. The node is stopped with SIGTERM. Every message is now past its expiry time,
which was fixed when it became available.

Scenarios (--scenario):

* ``kill``: a node starts with ``--inbox-expiry-secs 1 --lifecycle-interval-secs 1
  --lifecycle-batch 25`` (it sweeps at once, 25 messages per transaction) and is killed
  with SIGKILL a random 0.05-1.0 s after it was started. A node that does not sweep
  (``--inbox-expiry-secs 0 --lifecycle-interval-secs 3600``) then checks the invariant
  and how many messages had expired at the kill, and acknowledges the reports it found (an
  acknowledged report cannot expire itself, so it stays countable). That is repeated
  --kills times (3), each kill picking up where the last left off. Last, a node sweeps
  again (``--inbox-expiry-secs 3600``, so the new reports stay in the inbox for the
  count) until every message is ``undeliverable``; then exactly one report per message.
* ``race``: needs PostgreSQL (--database-url; payloads in --blob-url, or a shared
  directory when absent). Two nodes start at the same moment on the same store, both
  ``--lifecycle-interval-secs 1 --lifecycle-batch 25``, and sweep until every message is
  ``undeliverable``; they are stopped and a non-sweeping node checks exactly one report
  per message.

Nodes run in realistic mode (no --sandbox: workflow permissions, token replay and clock
checks on), with the demo mailboxes (--demo); every request carries a freshly signed token.
Each node listens on its own port; on the embedded store the nodes, one after the other,
share one --data-dir. The database behind --database-url must be empty.

The last line on stdout is one JSON object with the figures. Exit status 0 on success, 1
when a check failed, 2 on a harness or setup problem.
"""

import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor

from harness import ACCEPT_V2, HarnessError, check_signer, free_port, set_pdeathsig, tail, token

try:
    import requests
except ImportError:  # pragma: no cover
    sys.stderr.write("lifecycle_test: the 'requests' package is required\n")
    sys.exit(2)

SHARED_KEY = "TestKey"
PASSWORD = "password"
MAILBOXES = ["X26ABC1", "X26ABC2", "X26ABC3"]
# (sender, recipient, workflow): the demo workflows in which each may send (realistic mode
# enforces them; crates/mesh-server/src/directory.rs, API.md 8.2).
ROUTE_MAIN = ("X26ABC1", "X26ABC2", "TEST_WORKFLOW")
ROUTE_SECOND = ("X26ABC2", "X26ABC3", "TEST_WORKFLOW_ACK")
THREADS = 8
TIMEOUT = (3, 30)
# Every inbox period used here is under a day, which the report text rounds up to 1.
NDR_DESCRIPTION = "Message not collected by recipient after 1 days"


def log(msg):
    print(f"[lifecycle {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Verdict(Exception):
    """A check failed in a way that stops the run (the rest cannot be judged)."""


_local = threading.local()


def session():
    s = getattr(_local, "session", None)
    if s is None:
        s = requests.Session()
        s.trust_env = False
        _local.session = s
    return s


def pmap(fn, items):
    with ThreadPoolExecutor(THREADS) as pool:
        return list(pool.map(fn, items))


# --------------------------------------------------------------------------
# Nodes
# --------------------------------------------------------------------------

class Node:
    """One `openspine serve` process. Each start gets a fresh port and its own log file."""

    counter = 0

    def __init__(self, args, run_dir, name, extra, data_dir):
        Node.counter += 1
        self.args = args
        self.name = f"{Node.counter:02d}-{name}"
        self.extra = list(extra)
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = os.path.join(run_dir, f"node-{self.name}.log")
        self.data_dir = data_dir
        self.proc = None
        self.started_at = None

    def command(self):
        cmd = [self.args.bin, "serve", "--listen", f"127.0.0.1:{self.port}", "--data-dir", self.data_dir,
               "--demo", "--rate-limit", "0", "--log-json"]
        if self.args.database_url:
            cmd += ["--database-url", self.args.database_url, "--database-timeout-secs", "10"]
        if self.args.blob_url:
            cmd += ["--blob-url", self.args.blob_url]
        if self.args.s3_endpoint:
            cmd += ["--s3-endpoint", self.args.s3_endpoint]
        if self.args.s3_region:
            cmd += ["--s3-region", self.args.s3_region]
        return cmd + self.extra

    def start(self):
        # Only the arguments decide how a node behaves: no OPENSPINE_* setting from outside.
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPENSPINE_")}
        with open(self.log_path, "ab") as out:
            try:
                self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                             env=env, preexec_fn=set_pdeathsig)
            except OSError as e:
                raise HarnessError(f"cannot start {self.args.bin!r}: {e}")
        self.started_at = time.monotonic()
        log(f"node {self.name} started (pid {self.proc.pid}, {self.base}): {' '.join(self.extra)}")
        return self

    def wait_ready(self, timeout=60):
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise HarnessError(f"node {self.name} exited ({self.proc.returncode}) before it was ready:\n"
                                   f"{tail(self.log_path)}")
            try:
                r = requests.get(self.base + "/readyz", timeout=(0.5, 2))
                if r.status_code == 200:
                    return self
                last = f"HTTP {r.status_code}"
            except requests.RequestException as e:
                last = type(e).__name__
            time.sleep(0.05)
        raise HarnessError(f"node {self.name} not ready in {timeout} s ({last}):\n{tail(self.log_path)}")

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def ensure_alive(self):
        if not self.alive():
            raise HarnessError(f"node {self.name} died (exit {self.proc.returncode}):\n{tail(self.log_path)}")

    def kill9(self):
        if self.alive():
            os.kill(self.proc.pid, signal.SIGKILL)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            raise HarnessError(f"node {self.name} (pid {self.proc.pid}) did not die after SIGKILL")

    def stop(self, timeout=30):
        """SIGTERM, then SIGKILL if it has not exited within `timeout` seconds."""
        if self.proc is None:
            return None
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                log(f"node {self.name} ignored SIGTERM for {timeout} s: SIGKILL")
                self.kill9()
        return self.proc.returncode

    def sweep_totals(self):
        """Sum of the node's "lifecycle sweep" log lines (JSON logs), or None if none parsed."""
        totals = Counter()
        found = False
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                for line in f:
                    if "lifecycle sweep" not in line:
                        continue
                    try:
                        fields = json.loads(line).get("fields", {})
                    except ValueError:
                        fields = {k: int(v) for k, v in re.findall(r"\b(expired|reports)=(\d+)", line)}
                    if fields.get("message", "lifecycle sweep") != "lifecycle sweep":
                        continue
                    found = True
                    for key in ("expired", "reports"):
                        try:
                            totals[key] += int(fields.get(key, 0))
                        except (TypeError, ValueError):
                            pass
        except OSError:
            return None
        return dict(totals) if found else None


def call(node, method, path, mailbox, tries=3, **kw):
    """One signed request (fresh token each try). Connection errors are retried; a node that
    keeps refusing connections is a harness problem. HTTP answers are returned as they are."""
    kw.setdefault("timeout", TIMEOUT)
    extra = kw.pop("headers", {})
    last = None
    for attempt in range(tries):
        headers = {"Authorization": token(SHARED_KEY, PASSWORD, mailbox), "Accept": ACCEPT_V2, **extra}
        try:
            return session().request(method, node.base + path, headers=headers, **kw)
        except requests.RequestException as e:
            last = e
            node.ensure_alive()
            time.sleep(0.2 * (attempt + 1))
    raise HarnessError(f"{method} {path} on node {node.name}: {last!r}")


# --------------------------------------------------------------------------
# Phase 1: the messages that will expire
# --------------------------------------------------------------------------

class Original:
    __slots__ = ("message_id", "sender", "recipient", "workflow", "local_id")

    def __init__(self, message_id, sender, recipient, workflow, local_id):
        self.message_id = message_id
        self.sender = sender
        self.recipient = recipient
        self.workflow = workflow
        self.local_id = local_id


def send_messages(node, count, limit_secs, run_tag):
    """Sends up to `count` messages within `limit_secs`; returns ({id: Original}, stats)."""
    deadline = time.monotonic() + limit_secs
    failures = Counter()
    lock = threading.Lock()
    originals = {}

    def send(i):
        if time.monotonic() > deadline:
            return "late"
        sender, recipient, workflow = ROUTE_SECOND if i % 4 == 3 else ROUTE_MAIN
        local_id = f"{run_tag}-{i:05d}"
        # Mostly small (kept inline in the metadata); every tenth 40 KiB (a payload object).
        body = (f"lifecycle test {local_id}\n".encode() * (1400 if i % 10 == 0 else 4))
        r = call(node, "POST", f"/messageexchange/{sender}/outbox", sender, tries=1, data=body,
                 headers={"Mex-To": recipient, "Mex-WorkflowID": workflow, "Mex-LocalID": local_id,
                          "Mex-Subject": f"lifecycle {i}", "Content-Type": "application/octet-stream"})
        if r.status_code != 202:
            with lock:
                failures[f"HTTP {r.status_code}"] += 1
                first = sum(failures.values()) == 1
            if first:
                log(f"send refused: HTTP {r.status_code} {r.text[:300]!r}")
            return "failed"
        message_id = r.json()["message_id"]
        with lock:
            originals[message_id] = Original(message_id, sender, recipient, workflow, local_id)
        return "sent"

    started = time.monotonic()
    outcomes = Counter(pmap(send, range(count)))
    return originals, {
        "requested": count,
        "sent": len(originals),
        "late": outcomes["late"],
        "send_failed": dict(failures),
        "seconds": round(time.monotonic() - started, 1),
    }


# --------------------------------------------------------------------------
# Looking at the store from outside
# --------------------------------------------------------------------------

def list_inbox(node, mailbox):
    """Every id listed in the mailbox's inbox (all pages)."""
    ids = []
    path = f"/messageexchange/{mailbox}/inbox?max_results=5000"
    while path:
        r = call(node, "GET", path, mailbox)
        if r.status_code != 200:
            raise Verdict(f"inbox of {mailbox} on node {node.name}: HTTP {r.status_code} {r.text[:300]!r}")
        page = r.json()
        ids.extend(page.get("messages", []))
        path = page.get("links", {}).get("next")
        if len(ids) > 1_000_000:
            raise Verdict(f"inbox of {mailbox} never ends (links.next loops?)")
    return ids


class Snapshot:
    """What the server shows at one moment: statuses, inboxes, reports."""

    def __init__(self):
        self.status = {}                   # original id -> tracking status (or "HTTP nnn")
        self.listed = defaultdict(set)     # mailbox -> ids listed
        self.reports = defaultdict(list)   # original id -> [report ids listed in its sender's inbox]
        self.report_mailbox = {}           # report id -> mailbox
        self.problems = []


def inspect(node, originals):
    snap = Snapshot()

    def track(o):
        r = call(node, "GET", f"/messageexchange/{o.sender}/outbox/tracking?messageID={o.message_id}", o.sender)
        if r.status_code != 200:
            return o.message_id, f"HTTP {r.status_code}"
        return o.message_id, r.json().get("status")

    snap.status = dict(pmap(track, list(originals.values())))
    for mailbox in MAILBOXES:
        snap.listed[mailbox] = set(list_inbox(node, mailbox))

    others = []
    for mailbox in MAILBOXES:
        for message_id in sorted(snap.listed[mailbox]):
            o = originals.get(message_id)
            if o is None:
                others.append((mailbox, message_id))
            elif o.recipient != mailbox:
                snap.problems.append(f"{message_id} listed in {mailbox}'s inbox, sent to {o.recipient}")

    def download(item):
        mailbox, message_id = item
        r = call(node, "GET", f"/messageexchange/{mailbox}/inbox/{message_id}", mailbox)
        return mailbox, message_id, r.status_code, dict(r.headers), len(r.content)

    for mailbox, message_id, code, h, size in pmap(download, others):
        h = {k.lower(): v for k, v in h.items()}
        where = f"{message_id} in {mailbox}'s inbox"
        if code != 200:
            snap.problems.append(f"{where}: listed but download answered HTTP {code}")
            continue
        if h.get("mex-messagetype") != "REPORT":
            snap.problems.append(f"{where}: unknown {h.get('mex-messagetype')} message (local id "
                                 f"{h.get('mex-localid')!r})")
            continue
        linked = h.get("mex-linkedmsgid")
        o = originals.get(linked)
        if o is None:
            snap.problems.append(f"{where}: report linked to unknown message {linked!r}")
            continue
        if o.sender != mailbox:
            snap.problems.append(f"{where}: report on {linked}, whose sender is {o.sender}")
            continue
        snap.reports[linked].append(message_id)
        snap.report_mailbox[message_id] = mailbox
        expected = {"mex-to": mailbox, "mex-statussuccess": "ERROR", "mex-statuscode": "14",
                    "mex-statusevent": "SEND", "mex-statusdescription": NDR_DESCRIPTION,
                    "mex-workflowid": o.workflow, "mex-localid": o.local_id, "mex-total-chunks": "0"}
        wrong = {k: h.get(k) for k, v in expected.items() if h.get(k) != v}
        if wrong or "mex-from" in h or size != 0:
            snap.problems.append(f"{where}: report headers differ from {expected}: {wrong}, "
                                 f"mex-from={h.get('mex-from')!r}, body {size} bytes")
    return snap


def judge(snap, originals, acknowledged_reports, all_expired):
    """Checks the invariant on a snapshot. `acknowledged_reports`: original id -> report id of
    reports acknowledged after an earlier check (no longer listed). Returns (figures, failures)."""
    failures = list(snap.problems)
    counts = Counter()
    examples = defaultdict(list)

    def bad(kind, message_id):
        counts[kind] += 1
        if len(examples[kind]) < 5:
            examples[kind].append(message_id)

    for message_id, o in originals.items():
        status = snap.status.get(message_id)
        listed = message_id in snap.listed[o.recipient]
        n_reports = len(snap.reports.get(message_id, [])) + (1 if message_id in acknowledged_reports else 0)
        counts[f"status_{status}"] += 1
        if status == "accepted":
            if not listed:
                bad("accepted_but_not_listed", message_id)
            if n_reports:
                bad("accepted_but_reported", message_id)
            if all_expired:
                bad("not_expired", message_id)
        elif status == "undeliverable":
            if listed:
                bad("undeliverable_but_listed", message_id)
            if n_reports == 0:
                bad("undeliverable_without_report", message_id)
            elif n_reports > 1:
                bad("reported_more_than_once", message_id)
        else:
            bad("unexpected_status", message_id)
    for kind, n in sorted(counts.items()):
        if not kind.startswith("status_"):
            failures.append(f"{n} messages {kind.replace('_', ' ')}, e.g. {examples[kind]}")
    figures = {
        "accepted": counts["status_accepted"],
        "undeliverable": counts["status_undeliverable"],
        "other_status": sum(v for k, v in counts.items()
                            if k.startswith("status_") and k not in ("status_accepted", "status_undeliverable")),
        "reports_listed": sum(len(v) for v in snap.reports.values()),
        "reports_acknowledged_earlier": len(acknowledged_reports),
        "originals_listed": sum(1 for m, o in originals.items() if m in snap.listed[o.recipient]),
        "problems": len(snap.problems),
    }
    return figures, failures


def acknowledge_reports(node, snap):
    """Acknowledges every report the snapshot found; returns {original id: report id}."""
    items = [(snap.report_mailbox[r], r, linked) for linked, rs in snap.reports.items() for r in rs]

    def ack(item):
        mailbox, report_id, linked = item
        r = call(node, "PUT", f"/messageexchange/{mailbox}/inbox/{report_id}/status/acknowledged", mailbox)
        return linked, report_id, r.status_code

    done = {}
    for linked, report_id, code in pmap(ack, items):
        if code != 200:
            raise Verdict(f"acknowledging report {report_id} answered HTTP {code}")
        done[linked] = report_id
    return done


def wait_all_expired(node_pool, originals, limit_secs):
    """Polls the recipients' inboxes (through the nodes in turn) until no original is listed,
    then tracking until every original is undeliverable. Returns seconds taken, or None."""
    start = time.monotonic()
    recipients = sorted({o.recipient for o in originals.values()})
    pending = set(originals)
    turn = 0
    while time.monotonic() - start < limit_secs:
        node = node_pool[turn % len(node_pool)]
        turn += 1
        for n in node_pool:
            n.ensure_alive()
        listed = set()
        for mailbox in recipients:
            listed.update(m for m in list_inbox(node, mailbox) if m in originals)
        if not listed:
            def track(message_id):
                o = originals[message_id]
                r = call(node, "GET", f"/messageexchange/{o.sender}/outbox/tracking?messageID={message_id}",
                         o.sender)
                return message_id, r.status_code == 200 and r.json().get("status") == "undeliverable"
            pending = {m for m, done in pmap(track, sorted(pending)) if not done}
            if not pending:
                return round(time.monotonic() - start, 1)
        log(f"waiting for expiry: {len(listed)} originals still listed, {len(pending)} not known undeliverable")
        time.sleep(1.0)
    return None


# --------------------------------------------------------------------------
# Scenarios
# --------------------------------------------------------------------------

NO_SWEEP = ["--inbox-expiry-secs", "0", "--lifecycle-interval-secs", "3600"]


def data_dir_for(args, run_dir, index):
    """Embedded store: one data directory for every node. Shared store: one per node."""
    if args.database_url:
        path = os.path.join(run_dir, f"data-{index}")
    else:
        path = os.path.join(run_dir, "data")
    os.makedirs(path, exist_ok=True)
    return path


def phase1(args, run_dir, summary):
    node = Node(args, run_dir, "send", ["--inbox-expiry-secs", "1", "--lifecycle-interval-secs", "3600"],
                data_dir_for(args, run_dir, 0)).start().wait_ready()
    run_tag = f"LC{random.randrange(16 ** 6):06X}"
    originals, stats = send_messages(node, args.messages, args.send_secs, run_tag)
    node.ensure_alive()
    node.stop()
    summary["phase1"] = stats
    summary["messages"] = len(originals)
    log(f"phase 1: {stats['sent']} messages sent in {stats['seconds']} s "
        f"({stats['late']} not sent: time limit; failed: {stats['send_failed']})")
    if not originals:
        raise HarnessError(f"no message was accepted in phase 1 (failures: {stats['send_failed']})")
    if stats["send_failed"]:
        raise HarnessError(f"sends refused in phase 1: {stats['send_failed']}; see {node.log_path}")
    return originals


def check_with_quiet_node(args, run_dir, originals, acknowledged, all_expired, label, summary, index):
    node = Node(args, run_dir, f"check-{label}", NO_SWEEP, data_dir_for(args, run_dir, index)).start().wait_ready()
    try:
        started = time.monotonic()
        snap = inspect(node, originals)
        figures, failures = judge(snap, originals, acknowledged, all_expired)
        figures["seconds"] = round(time.monotonic() - started, 1)
        node.ensure_alive()
        return node, snap, figures, failures
    except BaseException:
        node.stop()
        raise


def scenario_kill(args, run_dir, summary, failures):
    originals = phase1(args, run_dir, summary)
    acknowledged = {}
    kills = []
    for k in range(args.kills):
        node = Node(args, run_dir, f"sweep-kill{k + 1}",
                    ["--inbox-expiry-secs", "1", "--lifecycle-interval-secs", "1", "--lifecycle-batch", "25"],
                    data_dir_for(args, run_dir, 1)).start()
        delay = random.uniform(args.kill_min, args.kill_max)
        time.sleep(max(0.0, node.started_at + delay - time.monotonic()))
        if not node.alive():
            raise HarnessError(f"sweeping node exited ({node.proc.returncode}) before the kill:\n"
                               f"{tail(node.log_path)}")
        node.kill9()
        log(f"kill -9 {delay:.2f} s after the start")
        checker, snap, figures, found = check_with_quiet_node(
            args, run_dir, originals, acknowledged, False, f"after-kill{k + 1}", summary, 2)
        try:
            failures.extend(f"after kill {k + 1}: {f}" for f in found)
            expired_before = len(acknowledged)
            figures["killed_after_s"] = round(delay, 3)
            figures["expired_at_kill"] = figures["undeliverable"]
            figures["expired_by_this_node"] = figures["undeliverable"] - expired_before
            kills.append(figures)
            log(f"after kill {k + 1}: {figures['undeliverable']} of {len(originals)} expired, "
                f"{figures['reports_listed']} reports listed, {len(found)} failures")
            # Acknowledged reports do not expire, so they stay countable for the final check.
            acknowledged.update(acknowledge_reports(checker, snap))
        finally:
            checker.stop()
    summary["kills"] = kills
    summary["expired_at_kill"] = kills[0]["expired_at_kill"] if kills else None
    if kills and kills[0]["expired_at_kill"] in (0, len(originals)):
        log(f"note: the kill hit {'before' if kills[0]['expired_at_kill'] == 0 else 'after'} the sweep "
            f"(expired {kills[0]['expired_at_kill']} of {len(originals)}): not a failure")

    # Sweeping again until everything has expired. The messages' own expiry time was set
    # when they were sent; 3600 s only keeps the new reports in their inboxes for the count.
    node = Node(args, run_dir, "sweep-final",
                ["--inbox-expiry-secs", "3600", "--lifecycle-interval-secs", "1", "--lifecycle-batch", "25"],
                data_dir_for(args, run_dir, 3)).start().wait_ready()
    try:
        took = wait_all_expired([node], originals, args.settle_secs)
        summary["final_expiry_seconds"] = took
        if took is None:
            failures.append(f"not every message undeliverable {args.settle_secs} s after the restart")
        snap = inspect(node, originals)
        figures, found = judge(snap, originals, acknowledged, True)
        node.ensure_alive()
    finally:
        node.stop()
    failures.extend(f"final: {f}" for f in found)
    summary["final"] = figures
    log(f"final: {figures['undeliverable']} of {len(originals)} undeliverable, "
        f"{figures['reports_listed'] + figures['reports_acknowledged_earlier']} reports, {len(found)} failures")


def scenario_race(args, run_dir, summary, failures):
    originals = phase1(args, run_dir, summary)
    sweep = ["--inbox-expiry-secs", "3600", "--lifecycle-interval-secs", "1", "--lifecycle-batch", "25"]
    nodes = [Node(args, run_dir, f"race-{i}", sweep, data_dir_for(args, run_dir, 10 + i)) for i in range(2)]
    # At the same moment: both sweep right at start, on the same rows.
    for n in nodes:
        n.start()
    try:
        for n in nodes:
            n.wait_ready()
        took = wait_all_expired(nodes, originals, args.settle_secs)
        summary["race_expiry_seconds"] = took
        if took is None:
            failures.append(f"not every message undeliverable {args.settle_secs} s after the nodes started")
        for n in nodes:
            n.ensure_alive()
    finally:
        for n in nodes:
            n.stop()
    summary["sweeps_by_node"] = {n.name: n.sweep_totals() for n in nodes}
    log(f"sweep totals from the nodes' logs: {summary['sweeps_by_node']}")
    checker, snap, figures, found = check_with_quiet_node(args, run_dir, originals, {}, True, "after-race",
                                                          summary, 12)
    checker.stop()
    failures.extend(f"after the race: {f}" for f in found)
    summary["final"] = figures
    logged = [t.get("reports", 0) for t in summary["sweeps_by_node"].values() if t]
    if len(logged) == len(nodes) and sum(logged) != len(originals):
        # Informational: a node stopped mid-sweep would not log its last batch.
        log(f"note: the nodes logged {sum(logged)} reports for {len(originals)} messages")
    log(f"after the race: {figures['undeliverable']} of {len(originals)} undeliverable, "
        f"{figures['reports_listed']} reports, {len(found)} failures")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", required=True, help="the openspine binary")
    ap.add_argument("--scenario", choices=["kill", "race"], default="kill")
    ap.add_argument("--database-url", help="an empty PostgreSQL database (required for race)")
    ap.add_argument("--blob-url", help="s3://bucket/prefix or file:///dir for payloads (shared store)")
    ap.add_argument("--s3-endpoint")
    ap.add_argument("--s3-region")
    ap.add_argument("--messages", type=int, default=1500, help="messages to send in phase 1 (1500)")
    ap.add_argument("--send-secs", type=float, default=40.0, help="time limit for sending them (40)")
    ap.add_argument("--settle-secs", type=float, default=60.0,
                    help="time allowed for every message to expire once sweeping (60)")
    ap.add_argument("--kills", type=int, default=3,
                    help="kill -9 rounds in the kill scenario, each followed by the check (3)")
    ap.add_argument("--kill-min", type=float, default=0.05, help="earliest kill, s after the start (0.05)")
    ap.add_argument("--kill-max", type=float, default=1.0, help="latest kill, s after the start (1.0)")
    ap.add_argument("--seed", type=int, help="random seed (kill times, run tag)")
    ap.add_argument("--keep", action="store_true", help="keep the run directory even on success")
    args = ap.parse_args()
    if args.seed is not None:
        random.seed(args.seed)

    summary = {"scenario": args.scenario, "store": "postgresql" if args.database_url else "embedded"}
    failures = []
    run_dir = tempfile.mkdtemp(prefix="openspine-lifecycle-")
    started = time.monotonic()
    code = 0
    try:
        check_signer()
        if not (os.path.isfile(args.bin) and os.access(args.bin, os.X_OK)):
            raise HarnessError(f"--bin {args.bin!r} is not an executable file")
        if args.scenario == "race" and not args.database_url:
            raise HarnessError("the race scenario needs PostgreSQL: give --database-url (an empty database)")
        if args.database_url and not args.blob_url:
            # Nodes sharing a database must share payloads too.
            args.blob_url = "file://" + os.path.join(run_dir, "blobs")
            os.makedirs(os.path.join(run_dir, "blobs"), exist_ok=True)
        summary["blob"] = (args.blob_url or "data-dir").split("://")[0]
        if args.scenario == "kill":
            scenario_kill(args, run_dir, summary, failures)
        else:
            scenario_race(args, run_dir, summary, failures)
    except Verdict as e:
        failures.append(str(e))
    except HarnessError as e:
        log(f"harness error: {e}")
        summary["harness_error"] = str(e)[:2000]
        code = 2
    except Exception as e:  # a bug in this script or an unexpected answer shape
        log("harness error:\n" + traceback.format_exc())
        summary["harness_error"] = f"{type(e).__name__}: {e}"[:2000]
        code = 2
    summary["seconds"] = round(time.monotonic() - started, 1)
    summary["failures"] = failures[:50]
    for f in failures:
        log(f"FAIL: {f}")
    if code == 0 and failures:
        code = 1
    if (code != 0 or args.keep) and Node.counter:
        summary["run_dir"] = run_dir
        log(f"node logs kept in {run_dir}")
    else:
        shutil.rmtree(run_dir, ignore_errors=True)
    print(json.dumps(summary))
    sys.exit(code)


if __name__ == "__main__":
    main()
