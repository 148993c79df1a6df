#!/usr/bin/env python3
"""Admin test: an operator's tools end to end -- `openspine admin` and the ops listener
(--ops-listen) of a running server, driven as the README's operator would.

An operator finds a message by id, reads its history, expires it, and watches inbox depth,
with the CLI and through the ops listener. The walk, in every scenario:

1. X26ABC1 sends four messages to X26ABC2 (TEST_WORKFLOW) with the official `mesh_client`:
   one with local id ``op-test-1``, one that X26ABC2 downloads and acknowledges, one more
   small one, and one of 100 KiB (a payload file or object, not inline in the metadata).
2. `admin search --mailbox X26ABC2 --status accepted` lists the three waiting ones;
   `admin search --local-id` finds the first; `admin message ID` shows the record and its
   history (table), and with --json the history reads accepted, or accepted, downloaded,
   acknowledged for the acknowledged one.
3. `admin mailboxes` and `admin inboxes --top 1` show X26ABC2 with three waiting.
4. `admin expire ID` (the 100 KiB one): the recipient no longer lists it; the sender gets a
   REPORT whose Mex-StatusDescription names the service operator and whose
   Mex-LinkedMsgID is the original; the history ends with ``expired``; expiring it again
   fails with "undeliverable".
5. `admin redeliver ID` puts it back, its bytes intact; `admin remove ID` deletes it: the
   search no longer finds it, and on the embedded store its payload file is gone.
6. The ops listener: /healthz, /readyz, /metrics with ``mesh_inbox_depth`` for X26ABC2
   equal to its waiting count (the gauges refresh every 15 s: polled up to --metrics-secs)
   and ``openspine_build_info``; /metrics on the MESH port is 404; the admin API without
   or with a wrong token is 401 and the CLI with a wrong token exits non-zero; the CLI
   reads OPENSPINE_ADMIN_URL / OPENSPINE_ADMIN_TOKEN_FILE; `admin workflows`, `admin
   reload`; a server given an admin token shorter than 16 characters does not start.

Scenarios (--scenario):

* ``sqlite`` (default): one node on the embedded store, plain HTTP.
* ``postgres``: two nodes on the same --database-url (an empty database) and --blob-url
  (S3 credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY; a shared directory when
  absent), each with its own data directory, MESH port and ops port. Messages go through
  node A; the expire and the remove go through node B's CLI, the redeliver through node
  A's, and node A's admin API and MESH port must see each result.
* ``mtls``: one node on the embedded store whose MESH port requires client certificates
  (`openspine dev-certs`); the ops listener stays plain HTTP.

Nodes run in realistic mode (no --sandbox: workflow permissions, token replay and clock
checks on) with the demo mailboxes (--demo), and --rate-limit 0 as in the other system tests.

Each check prints PASS or FAIL; on failure the servers' logs are tailed. The last line on
stdout is one JSON object with the figures. Exit status 0 on success, 1 when a check
failed, 2 on a harness or setup problem.
"""

import argparse
import glob
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback

from harness import HarnessError, free_port, set_pdeathsig, tail

try:
    import requests
    from mesh_client import MeshClient
except ImportError:  # pragma: no cover
    sys.stderr.write("admin_test: the 'requests' and 'mesh-client' packages are required "
                     "(pip install -r tests/interop/requirements.txt)\n")
    sys.exit(2)

SHARED_KEY = "TestKey"
PASSWORD = "password"
SENDER = "X26ABC1"
RECIPIENT = "X26ABC2"
WORKFLOW = "TEST_WORKFLOW"  # X26ABC1 may send it to X26ABC2 (demo workflows)
LOCAL_ID = "op-test-1"
BIG_SIZE = 100 * 1024  # above --inline-max (16 KiB): a payload file or object
OPERATOR_TEXT = "service operator"
CLIENT_TIMEOUT = 30
CLI_TIMEOUT = 60


def log(msg):
    print(f"[admin {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Verdict(Exception):
    """A check failed in a way that stops the run (the rest cannot be judged)."""


class Checks:
    """Every check's outcome, printed as it is made."""

    def __init__(self):
        self.passed = []
        self.failed = []

    def check(self, name, ok, detail=""):
        if ok:
            self.passed.append(name)
            log(f"PASS {name}")
        else:
            self.failed.append(f"{name}: {detail}" if detail else name)
            log(f"FAIL {name}{': ' + detail if detail else ''}")
        return ok

    def require(self, name, ok, detail=""):
        """A check the rest of the walk depends on."""
        if not self.check(name, ok, detail):
            raise Verdict(f"{name} failed: the rest cannot be judged")


# --------------------------------------------------------------------------
# Nodes
# --------------------------------------------------------------------------

class Node:
    """One `openspine serve` with its MESH port and its ops listener."""

    def __init__(self, args, run_dir, name, token_file, tls=None):
        self.args = args
        self.name = name
        self.token_file = token_file
        self.tls = tls  # {"ca", "server", "server_key", "clients": {mailbox: (cert, key)}}
        self.port = free_port()
        self.ops_port = free_port()
        host = "localhost" if tls else "127.0.0.1"  # the dev certificate names localhost
        self.base = f"{'https' if tls else 'http'}://{host}:{self.port}"
        self.ops = f"http://127.0.0.1:{self.ops_port}"
        self.data_dir = os.path.join(run_dir, f"data-{name}")
        os.makedirs(self.data_dir, exist_ok=True)
        self.log_path = os.path.join(run_dir, f"node-{name}.log")
        self.proc = None
        self.clients = []

    def command(self):
        cmd = [self.args.bin, "serve", "--demo", "--listen", f"127.0.0.1:{self.port}",
               "--data-dir", self.data_dir, "--ops-listen", f"127.0.0.1:{self.ops_port}",
               "--admin-token-file", self.token_file, "--rate-limit", "0"]
        if self.args.database_url:
            cmd += ["--database-url", self.args.database_url]
        if self.args.blob_url:
            cmd += ["--blob-url", self.args.blob_url]
        if self.args.s3_endpoint:
            cmd += ["--s3-endpoint", self.args.s3_endpoint]
        if self.args.s3_region:
            cmd += ["--s3-region", self.args.s3_region]
        if self.tls:
            cmd += ["--tls-cert", self.tls["server"], "--tls-key", self.tls["server_key"],
                    "--client-ca", self.tls["ca"]]
        return cmd

    def start(self):
        # Only the arguments decide how a node behaves: no OPENSPINE_* setting from outside.
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPENSPINE_")}
        with open(self.log_path, "ab") as out:
            try:
                self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                             env=env, preexec_fn=set_pdeathsig)
            except OSError as e:
                raise HarnessError(f"cannot start {self.args.bin!r}: {e}")
        log(f"node {self.name} started (pid {self.proc.pid}): MESH {self.base}, ops {self.ops}")
        return self

    def wait_ready(self, timeout=60):
        """Ready on the ops listener, and the MESH port answering its ping."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            self.ensure_alive()
            try:
                r = requests.get(self.ops + "/readyz", timeout=(0.5, 2))
                if r.status_code == 200:
                    r = self.mesh_get("/messageexchange/_ping", timeout=(0.5, 2))
                    if r.status_code == 200:
                        return self
                last = f"HTTP {r.status_code}"
            except requests.RequestException as e:
                last = type(e).__name__
            time.sleep(0.1)
        raise HarnessError(f"node {self.name} not ready in {timeout} s ({last}):\n{tail(self.log_path)}")

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def ensure_alive(self):
        if self.proc is not None and not self.alive():
            raise HarnessError(f"node {self.name} exited ({self.proc.returncode}):\n{tail(self.log_path)}")

    def stop(self, timeout=30):
        for c in self.clients:
            try:
                c.close()
            except Exception:
                pass
        self.clients = []
        if self.proc is None or not self.alive():
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            log(f"node {self.name} ignored SIGTERM for {timeout} s: SIGKILL")
            self.proc.kill()
            self.proc.wait(timeout=15)

    def mesh_client(self, mailbox):
        kw = {"timeout": CLIENT_TIMEOUT}
        if self.tls:
            kw.update(cert=self.tls["clients"][mailbox], verify=self.tls["ca"])
        client = MeshClient(self.base, mailbox, PASSWORD, shared_key=SHARED_KEY.encode(), **kw)
        self.clients.append(client)
        return client

    def mesh_get(self, path, **kw):
        """A plain GET on the MESH port (under mutual TLS with X26ABC1's certificate)."""
        s = requests.Session()
        s.trust_env = False  # REQUESTS_CA_BUNDLE would override verify=
        if self.tls:
            s.cert = self.tls["clients"][SENDER]
            s.verify = self.tls["ca"]
        kw.setdefault("timeout", (3, 30))
        try:
            return s.get(self.base + path, **kw)
        finally:
            s.close()

    def api(self, method, path, token=None, **kw):
        """A call on the admin API of this node's ops listener."""
        headers = {}
        if token is None:
            with open(self.token_file) as f:
                token = f.read().strip()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        kw.setdefault("timeout", (3, 30))
        return requests.request(method, self.ops + path, headers=headers, **kw)


# --------------------------------------------------------------------------
# The CLI
# --------------------------------------------------------------------------

class Cli:
    """`openspine admin` against one node's ops listener."""

    def __init__(self, args, node):
        self.args = args
        self.node = node

    def run(self, *argv, json_out=False, token_file=None, use_env=False):
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPENSPINE_")}
        cmd = [self.args.bin, "admin"]
        if use_env:
            env["OPENSPINE_ADMIN_URL"] = self.node.ops
            env["OPENSPINE_ADMIN_TOKEN_FILE"] = token_file or self.node.token_file
        else:
            cmd += ["--url", self.node.ops, "--token-file", token_file or self.node.token_file]
        if json_out:
            cmd.append("--json")
        cmd += list(argv)
        try:
            p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env,
                               timeout=CLI_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise Verdict(f"`{' '.join(cmd[1:])}` did not finish in {CLI_TIMEOUT} s")
        shown = [a for a in cmd[2:] if a not in ("--url", self.node.ops, "--token-file")
                 and a != (token_file or self.node.token_file)]
        log(f"$ openspine admin {' '.join(shown)}  (node {self.node.name}{', env' if use_env else ''}"
            f"{', wrong token' if token_file else ''}) -> exit {p.returncode}")
        return p

    def json(self, *argv):
        """Runs a command with --json; a failure or unreadable output stops the run."""
        p = self.run(*argv, json_out=True)
        if p.returncode != 0:
            raise Verdict(f"`openspine admin {' '.join(argv)} --json` on node {self.node.name} exited "
                          f"{p.returncode}: {p.stderr.strip()[:500]}")
        try:
            return json.loads(p.stdout)
        except ValueError:
            raise Verdict(f"`openspine admin {' '.join(argv)} --json` printed no JSON: {p.stdout[:500]!r}")


def parse_table(text):
    """The rows of a CLI table as dicts keyed by the header's cells. Cells are padded to
    the column's width and separated by two spaces, so each column starts where its
    header cell does. Lines after the table that do not fit (a "more:" line) are kept as
    one-cell rows with the key "_line"."""
    lines = [l for l in text.splitlines() if l.strip()]
    if not lines:
        return []
    header = lines[0]
    starts = [m.start() for m in re.finditer(r"\S+(?: \S+)*", header)]
    names = [header[s:].split("  ")[0].strip() for s in starts]
    rows = []
    for line in lines[1:]:
        if line.startswith("more:"):
            rows.append({"_line": line})
            continue
        row = {}
        for i, (name, s) in enumerate(zip(names, starts)):
            end = starts[i + 1] if i + 1 < len(starts) else None
            row[name] = line[s:end].strip() if end else line[s:].strip()
        rows.append(row)
    return rows


def outcome_fields(text):
    """`key: value` lines (expire, redeliver, remove, reload) as a dict."""
    out = {}
    for line in text.splitlines():
        if ": " in line:
            k, v = line.split(": ", 1)
            out[k.strip()] = v.strip()
    return out


def parse_metrics(text):
    """Prometheus text: [(name, {labels}, value)]."""
    samples = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)", line)
        if not m:
            continue
        labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        try:
            value = float(m.group(3))
        except ValueError:
            continue
        samples.append((m.group(1), labels, value))
    return samples


def metric(samples, name, **labels):
    for n, ls, v in samples:
        if n == name and all(ls.get(k) == v2 for k, v2 in labels.items()):
            return v
    return None


# --------------------------------------------------------------------------
# The walk
# --------------------------------------------------------------------------

def changes(body):
    return [e.get("change") for e in body.get("history", [])]


def history_ordered(body):
    """Seq strictly increasing and times not going back."""
    h = body.get("history", [])
    seqs = [e.get("seq") for e in h]
    ats = [e.get("at") for e in h]
    return all(isinstance(s, int) for s in seqs) and seqs == sorted(set(seqs)) and ats == sorted(ats)


def payload_files(node, message_id):
    return glob.glob(os.path.join(node.data_dir, "chunks", "*", f"{message_id}-*"))


def mailbox_entry(body, key, mailbox):
    for m in body.get(key, []):
        if m.get("mailbox_id") == mailbox:
            return m
    return None


def send(client, data, **kw):
    try:
        return client.send_message(RECIPIENT, data, workflow_id=WORKFLOW, **kw)
    except Exception as e:
        raise Verdict(f"sending as {SENDER}: {type(e).__name__}: {e}")


def walk(args, scenario, node_a, node_b, run_dir, c, summary):
    """The operator's walk. Messages go through node A; `acting` is the node whose CLI
    expires and removes (node B on PostgreSQL), node A's CLI redelivers; `watching` is
    node A, whose admin API and MESH port must see every result."""
    acting = node_b or node_a
    cli_a, cli_act = Cli(args, node_a), Cli(args, acting)
    sender, recipient = node_a.mesh_client(SENDER), node_a.mesh_client(RECIPIENT)

    # 1. Messages, through the MESH API.
    big = secrets.token_bytes(BIG_SIZE)
    m_local = send(sender, b"operator test: the one with a local id\n", local_id=LOCAL_ID, subject="op test")
    m_acked = send(sender, b"operator test: downloaded and acknowledged\n", local_id="op-test-2")
    m_other = send(sender, b"operator test: waiting\n", local_id="op-test-3")
    m_big = send(sender, big, local_id="op-test-big", filename="big.bin")
    ids = {"local": m_local, "acked": m_acked, "other": m_other, "big": m_big}
    summary["messages"] = ids
    log(f"sent {ids}")
    msg = recipient.retrieve_message(m_acked)
    msg.read()
    msg.close()
    recipient.acknowledge_message(m_acked)
    listed = set(recipient.list_messages())
    c.require("mesh: the recipient lists the three waiting messages",
              listed == {m_local, m_other, m_big}, f"listed {sorted(listed)}")
    waiting = [m_local, m_other, m_big]

    # 2. Finding messages and reading their history.
    p = cli_a.run("search", "--mailbox", RECIPIENT, "--status", "accepted")
    rows = parse_table(p.stdout) if p.returncode == 0 else []
    found = {r.get("MESSAGE ID") for r in rows if "MESSAGE ID" in r}
    c.check("cli search --mailbox X26ABC2 --status accepted lists the waiting messages (table)",
            p.returncode == 0 and found == set(waiting)
            and all(r.get("STATUS") == "accepted" and r.get("TO") == RECIPIENT for r in rows if "MESSAGE ID" in r),
            f"exit {p.returncode}, found {sorted(found)}, stderr {p.stderr.strip()[:300]!r}, out {p.stdout[:600]!r}")
    local_row = next((r for r in rows if r.get("MESSAGE ID") == m_local), {})
    c.check("cli search table shows sender, workflow and local id",
            local_row.get("FROM") == SENDER and local_row.get("WORKFLOW") == WORKFLOW
            and local_row.get("LOCAL ID") == LOCAL_ID, f"row {local_row}")

    body = cli_a.json("search", "--local-id", LOCAL_ID)
    got = [m.get("message_id") for m in body.get("messages", [])]
    c.check("cli search --local-id finds exactly that message", got == [m_local], f"found {got}")
    body = cli_a.json("search", "--mailbox", RECIPIENT, "--status", "acknowledged")
    got = [m.get("message_id") for m in body.get("messages", [])]
    c.check("cli search --status acknowledged finds the acknowledged one", got == [m_acked], f"found {got}")
    body = cli_a.json("search", "--mailbox", RECIPIENT, "--limit", "2")
    got = [m.get("message_id") for m in body.get("messages", [])]
    page2 = cli_a.json("search", "--mailbox", RECIPIENT, "--limit", "2", "--before", body.get("next") or "-")
    got2 = [m.get("message_id") for m in page2.get("messages", [])]
    c.check("cli search pages with --limit and --before (newest first, all four, no repeats)",
            len(got) == 2 and body.get("next") == got[-1] and len(set(got + got2)) == 4
            and set(got + got2) == set(ids.values()) and got + got2 == [m_big, m_other, m_acked, m_local],
            f"page 1 {got} next {body.get('next')}, page 2 {got2}")

    p = cli_a.run("message", m_local)
    text = p.stdout
    hist = parse_table(text.split("history:", 1)[1]) if "history:" in text else []
    c.check("cli message ID (table) shows the id and an accepted history row",
            p.returncode == 0 and m_local in text and any(r.get("CHANGE") == "accepted" for r in hist),
            f"exit {p.returncode}, stderr {p.stderr.strip()[:300]!r}, out {text[:800]!r}")
    body = cli_a.json("message", m_local)
    c.check("cli message --json: waiting message is accepted, history [accepted]",
            (body.get("message") or {}).get("status") == "accepted" and changes(body) == ["accepted"]
            and history_ordered(body), f"status {(body.get('message') or {}).get('status')}, history {changes(body)}")
    body = cli_a.json("message", m_acked)
    c.check("cli message --json: acknowledged message's history is accepted, downloaded, acknowledged",
            (body.get("message") or {}).get("status") == "acknowledged"
            and changes(body) == ["accepted", "downloaded", "acknowledged"] and history_ordered(body),
            f"status {(body.get('message') or {}).get('status')}, history {body.get('history')}")
    if node_b:
        r = node_b.api("GET", f"/admin/v1/messages/{m_acked.lower()}")
        c.check("postgres: node B's admin API sees node A's message (id in any case)",
                r.status_code == 200 and changes(r.json()) == ["accepted", "downloaded", "acknowledged"],
                f"HTTP {r.status_code} {r.text[:300]!r}")

    # 3. Inbox depth.
    check_depth(c, cli_a, len(waiting), "before the expire")

    # 4. Expire, through the acting node's CLI.
    if scenario == "sqlite" or scenario == "mtls":
        c.check("embedded store: the 100 KiB message has a payload file", bool(payload_files(node_a, m_big)),
                f"no {m_big}-* under {node_a.data_dir}/chunks")
    p = cli_act.run("expire", m_big)
    out = outcome_fields(p.stdout)
    c.require(f"cli expire ID (node {acting.name}) answers expired",
              p.returncode == 0 and out.get("outcome") == "expired" and out.get("message_id") == m_big,
              f"exit {p.returncode}, out {p.stdout.strip()!r}, stderr {p.stderr.strip()[:300]!r}")
    c.check("cli expire reports one NDR", out.get("reports") == "1", f"out {out}")
    waiting.remove(m_big)
    listed = set(recipient.list_messages())
    c.check(f"mesh (node {node_a.name}): the recipient no longer lists the expired message",
            m_big not in listed and listed == set(waiting), f"listed {sorted(listed)}")
    reports = sender.list_messages()
    c.check(f"mesh (node {node_a.name}): the sender's inbox holds one message (the report)",
            len(reports) == 1, f"listed {reports}")
    if reports:
        rep = sender.retrieve_message(reports[0])
        rep_body = rep.read()
        rep.close()
        desc = rep.mex_header("statusdescription") or ""
        c.check("the report is a REPORT linked to the expired message, naming the service operator",
                rep.message_type == "REPORT" and rep.mex_header("linkedmsgid") == m_big
                and OPERATOR_TEXT in desc,
                f"type {rep.message_type!r}, linked {rep.mex_header('linkedmsgid')!r}, description {desc!r}, "
                f"headers {dict(rep.mex_headers())}")
        c.check("the report carries the original's workflow and local id, and no body",
                rep.workflow_id == WORKFLOW and rep.local_id == "op-test-big" and rep_body == b"",
                f"workflow {rep.workflow_id!r}, local id {rep.local_id!r}, body {len(rep_body)} bytes")
        sender.acknowledge_message(reports[0])
        summary["report"] = {"id": reports[0], "status_code": rep.mex_header("statuscode"),
                             "description": desc}
    track = sender.track_message(m_big)
    c.check("mesh: the sender's tracking says undeliverable", track.get("status") == "undeliverable",
            f"tracking {track}")
    body = cli_a.json("message", m_big)
    c.check(f"cli message --json (node {node_a.name}): undeliverable, history ends with expired",
            (body.get("message") or {}).get("status") == "undeliverable" and changes(body)[:1] == ["accepted"]
            and changes(body)[-1:] == ["expired"] and history_ordered(body),
            f"status {(body.get('message') or {}).get('status')}, history {changes(body)}")
    if node_b:
        r = node_a.api("GET", f"/admin/v1/messages/{m_big}")
        c.check("postgres: node A's admin API sees node B's expire",
                r.status_code == 200 and r.json()["message"]["status"] == "undeliverable"
                and changes(r.json())[-1:] == ["expired"], f"HTTP {r.status_code} {r.text[:300]!r}")
    p = cli_act.run("expire", m_big)
    c.check("cli expire of an expired message exits non-zero saying it is undeliverable",
            p.returncode != 0 and "undeliverable" in p.stderr, f"exit {p.returncode}, stderr {p.stderr.strip()!r}")
    p = cli_act.run("expire", m_acked)
    c.check("cli expire of an acknowledged message exits non-zero saying it is acknowledged",
            p.returncode != 0 and "acknowledged" in p.stderr, f"exit {p.returncode}, stderr {p.stderr.strip()!r}")
    p = cli_act.run("expire", "20000101000000000000_NOSUCH")
    c.check("cli expire of an unknown id exits non-zero (404)",
            p.returncode != 0 and "404" in p.stderr, f"exit {p.returncode}, stderr {p.stderr.strip()!r}")
    check_depth(c, cli_act, len(waiting), "after the expire")

    # 5. Redeliver (node A's CLI), then remove (the acting node's).
    p = cli_a.run("redeliver", m_big)
    out = outcome_fields(p.stdout)
    c.require("cli redeliver ID answers redelivered",
              p.returncode == 0 and out.get("outcome") == "redelivered",
              f"exit {p.returncode}, out {p.stdout.strip()!r}, stderr {p.stderr.strip()[:300]!r}")
    waiting.append(m_big)
    listed = set(recipient.list_messages())
    c.check("mesh: the recipient lists the redelivered message again", listed == set(waiting),
            f"listed {sorted(listed)}")
    msg = recipient.retrieve_message(m_big)
    data = msg.read()
    msg.close()
    c.check("mesh: the redelivered message downloads with the bytes sent", data == big,
            f"{len(data)} bytes, equal {data == big}")
    # Back in the inbox, it must not still carry the expiry's failure: the recipient would
    # get a DATA message marked ERROR, the sender's tracking status_success false.
    track = sender.track_message(m_big)
    c.check("mesh: the redelivered message no longer carries the expiry's failure status",
            msg.mex_header("statussuccess") == "SUCCESS" and track.get("status") == "accepted"
            and track.get("status_success") is not False,
            f"download Mex-StatusSuccess {msg.mex_header('statussuccess')!r}, Mex-StatusCode "
            f"{msg.mex_header('statuscode')!r}, Mex-StatusDescription {msg.mex_header('statusdescription')!r}; "
            f"tracking status {track.get('status')!r}, status_success {track.get('status_success')!r}")
    body = cli_act.json("message", m_big)
    c.check("cli message --json: redelivered message is accepted again",
            (body.get("message") or {}).get("status") == "accepted" and history_ordered(body),
            f"status {(body.get('message') or {}).get('status')}, history {changes(body)}")
    summary["history_after_redeliver"] = changes(body)
    p = cli_a.run("redeliver", m_local)
    c.check("cli redeliver of a waiting message exits non-zero", p.returncode != 0,
            f"exit {p.returncode}, out {p.stdout.strip()!r}")
    check_depth(c, cli_a, len(waiting), "after the redeliver")

    p = cli_act.run("remove", m_big)
    out = outcome_fields(p.stdout)
    c.require("cli remove ID answers removed",
              p.returncode == 0 and out.get("outcome") == "removed",
              f"exit {p.returncode}, out {p.stdout.strip()!r}, stderr {p.stderr.strip()[:300]!r}")
    c.check("cli remove says the payload's bytes were freed", out.get("bytes_freed", "").isdigit()
            and int(out["bytes_freed"]) >= BIG_SIZE, f"out {out}")
    waiting.remove(m_big)
    body = cli_a.json("search", "--mailbox", RECIPIENT)
    got = [m.get("message_id") for m in body.get("messages", [])]
    c.check("cli search no longer finds the removed message", m_big not in got and len(got) == 3,
            f"found {got}")
    listed = set(recipient.list_messages())
    c.check("mesh: the recipient no longer lists the removed message", listed == set(waiting),
            f"listed {sorted(listed)}")
    p = cli_a.run("message", m_big, json_out=True)
    gone = (p.returncode != 0 and "404" in p.stderr) or (
        p.returncode == 0 and json.loads(p.stdout).get("message") is None)
    c.check("cli message of the removed message shows no record", gone,
            f"exit {p.returncode}, out {p.stdout[:300]!r}, stderr {p.stderr.strip()[:300]!r}")
    if p.returncode == 0:
        summary["history_after_remove"] = changes(json.loads(p.stdout))
    if scenario in ("sqlite", "mtls"):
        left = payload_files(node_a, m_big)
        c.check("embedded store: the removed message's payload file is gone", not left, f"still there: {left}")
    p = cli_act.run("remove", m_big)
    c.check("cli remove of a removed message exits non-zero", p.returncode != 0,
            f"exit {p.returncode}, out {p.stdout.strip()!r}")
    check_depth(c, cli_a, len(waiting), "after the remove")

    # 6. The ops listener itself.
    for node in [n for n in (node_a, node_b) if n]:
        check_ops(args, c, node, len(waiting), summary)
    return waiting


def check_depth(c, cli, expected, when):
    """`admin mailboxes` and `admin inboxes --top 1`, JSON (numbers) and tables (rows)."""
    body = cli.json("mailboxes")
    entry = mailbox_entry(body, "mailboxes", RECIPIENT) or {}
    age = entry.get("oldest_waiting_age_secs")
    others = {m.get("mailbox_id"): m.get("waiting") for m in body.get("mailboxes", [])
              if m.get("mailbox_id") != RECIPIENT}
    c.check(f"cli mailboxes --json {when}: X26ABC2 has {expected} waiting",
            entry.get("waiting") == expected and isinstance(age, int) and 0 <= age < 600
            and all(v == 0 for v in others.values()),
            f"X26ABC2 {entry}, others {others}")
    p = cli.run("mailboxes")
    row = next((r for r in parse_table(p.stdout) if r.get("MAILBOX") == RECIPIENT), None) if p.returncode == 0 else None
    c.check(f"cli mailboxes (table) {when}: an X26ABC2 row with WAITING {expected}",
            row is not None and row.get("WAITING") == str(expected),
            f"exit {p.returncode}, row {row}, out {p.stdout[:600]!r}, stderr {p.stderr.strip()[:300]!r}")
    body = cli.json("inboxes", "--top", "1")
    got = [(m.get("mailbox_id"), m.get("waiting")) for m in body.get("inboxes", [])]
    c.check(f"cli inboxes --top 1 --json {when}: X26ABC2 with {expected}", got == [(RECIPIENT, expected)],
            f"inboxes {body.get('inboxes')}")
    p = cli.run("inboxes", "--top", "1")
    rows = parse_table(p.stdout) if p.returncode == 0 else []
    c.check(f"cli inboxes --top 1 (table) {when}: one row, X26ABC2",
            len(rows) == 1 and rows[0].get("MAILBOX") == RECIPIENT and rows[0].get("WAITING") == str(expected),
            f"exit {p.returncode}, out {p.stdout!r}, stderr {p.stderr.strip()[:300]!r}")


def check_ops(args, c, node, expected, summary):
    r = requests.get(node.ops + "/healthz", timeout=5)
    c.check(f"ops {node.name}: /healthz answers 200", r.status_code == 200, f"HTTP {r.status_code} {r.text[:200]!r}")
    r = requests.get(node.ops + "/readyz", timeout=5)
    c.check(f"ops {node.name}: /readyz answers 200", r.status_code == 200, f"HTTP {r.status_code} {r.text[:200]!r}")

    # The store-wide gauges refresh every 15 s.
    started = time.monotonic()
    depth = build = samples = None
    while True:
        r = requests.get(node.ops + "/metrics", timeout=10)
        if r.status_code == 200:
            samples = parse_metrics(r.text)
            depth = metric(samples, "mesh_inbox_depth", service="mesh", mailbox=RECIPIENT)
            build = metric(samples, "openspine_build_info")
            if depth == expected:
                break
        if time.monotonic() - started > args.metrics_secs:
            break
        time.sleep(0.5)
    waited = round(time.monotonic() - started, 1)
    summary.setdefault("metrics_wait_secs", {})[node.name] = waited
    c.check(f"ops {node.name}: /metrics mesh_inbox_depth{{mailbox=X26ABC2}} == {expected} (waited {waited} s)",
            depth == expected, f"last value {depth} (HTTP {r.status_code})")
    c.check(f"ops {node.name}: /metrics has openspine_build_info", build == 1.0, f"value {build}")
    accepted = metric(samples or [], "mesh_messages", service="mesh", status="accepted")
    oldest = metric(samples or [], "mesh_oldest_unacknowledged_age_seconds", service="mesh")
    c.check(f"ops {node.name}: /metrics mesh_messages{{status=accepted}} == {expected} and an oldest age",
            accepted == expected and oldest is not None and 0 <= oldest < 600,
            f"accepted {accepted}, oldest age {oldest}")

    r = node.mesh_get("/metrics")
    c.check(f"mesh port {node.name}: /metrics answers 404", r.status_code == 404, f"HTTP {r.status_code}")

    r = node.api("GET", "/admin/v1/mailboxes", token="")
    c.check(f"ops {node.name}: admin API without a token answers 401", r.status_code == 401,
            f"HTTP {r.status_code} {r.text[:200]!r}")
    r = node.api("GET", "/admin/v1/mailboxes", token="not-the-admin-token-at-all")
    c.check(f"ops {node.name}: admin API with a wrong token answers 401", r.status_code == 401,
            f"HTTP {r.status_code} {r.text[:200]!r}")
    r = node.api("GET", "/admin/v1/inboxes?top=5")
    entry = mailbox_entry(r.json(), "inboxes", RECIPIENT) if r.status_code == 200 else None
    c.check(f"ops {node.name}: GET /admin/v1/inboxes with the token shows X26ABC2",
            entry is not None and entry.get("waiting") == expected, f"HTTP {r.status_code} {r.text[:300]!r}")

    cli = Cli(args, node)
    wrong = os.path.join(os.path.dirname(node.token_file), f"wrong-token-{node.name}")
    with open(wrong, "w") as f:
        f.write(secrets.token_hex(16) + "\n")
    p = cli.run("mailboxes", token_file=wrong)
    c.check(f"cli {node.name}: a wrong token exits non-zero with 401", p.returncode != 0 and "401" in p.stderr,
            f"exit {p.returncode}, stderr {p.stderr.strip()!r}")
    p = cli.run("workflows", use_env=True)
    rows = parse_table(p.stdout) if p.returncode == 0 else []
    wf = next((r for r in rows if r.get("WORKFLOW") == WORKFLOW), {})
    c.check(f"cli {node.name}: OPENSPINE_ADMIN_URL/_TOKEN_FILE work; workflows lists TEST_WORKFLOW",
            SENDER in wf.get("SENDERS", "") and RECIPIENT in wf.get("RECEIVERS", ""),
            f"exit {p.returncode}, row {wf}, out {p.stdout[:400]!r}, stderr {p.stderr.strip()[:300]!r}")
    p = cli.run("reload", json_out=True)
    body = json.loads(p.stdout) if p.returncode == 0 else {}
    c.check(f"cli {node.name}: reload answers with the mailboxes reloaded",
            p.returncode == 0 and "mailboxes and workflows" in body.get("reloaded", [])
            and body.get("mailboxes", 0) >= 3 and (("tls" in body["reloaded"]) == bool(node.tls)),
            f"exit {p.returncode}, out {p.stdout[:300]!r}, stderr {p.stderr.strip()[:300]!r}")


def check_short_token(args, run_dir, c):
    """A server given an admin token under 16 characters must refuse to start."""
    path = os.path.join(run_dir, "short-token")
    with open(path, "w") as f:
        f.write("short\n")
    data = os.path.join(run_dir, "data-short-token")
    os.makedirs(data, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENSPINE_")}
    cmd = [args.bin, "serve", "--demo", "--listen", f"127.0.0.1:{free_port()}", "--data-dir", data,
           "--ops-listen", f"127.0.0.1:{free_port()}", "--admin-token-file", path]
    try:
        p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env, timeout=15,
                           preexec_fn=set_pdeathsig)
        c.check("serve refuses an admin token shorter than 16 characters",
                p.returncode != 0 and "16" in (p.stdout + p.stderr),
                f"exit {p.returncode}, output {(p.stdout + p.stderr).strip()[-300:]!r}")
    except subprocess.TimeoutExpired:
        c.check("serve refuses an admin token shorter than 16 characters", False, "it was still running after 15 s")


def make_certs(args, run_dir):
    """`openspine dev-certs` with a client certificate for each mailbox the walk uses; the
    file names are read from what it prints."""
    out_dir = os.path.join(run_dir, "certs")
    cns = {mb: f"{mb.lower()}.x26.api.mesh-client.nhs.uk" for mb in (SENDER, RECIPIENT)}
    cmd = [args.bin, "dev-certs", "--out", out_dir]
    for cn in cns.values():
        cmd += ["--client", cn]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if p.returncode != 0:
        raise HarnessError(f"dev-certs failed ({p.returncode}): {p.stderr.strip()}")
    printed = {}
    for line in p.stdout.splitlines():
        label, _, files = line.partition(":")
        if label.startswith("client "):
            # "client <cn>: <cert> <key>"
            label, _, files = line.rpartition(": ")
            printed[label[len("client "):].strip()] = files.split()
        else:
            printed[label.strip()] = files.split()
    try:
        tls = {"ca": printed["CA"][0], "server": printed["server"][0], "server_key": printed["server"][1],
               "clients": {mb: tuple(printed[cn][:2]) for mb, cn in cns.items()}}
    except (KeyError, IndexError):
        raise HarnessError(f"cannot read the file names dev-certs printed:\n{p.stdout}")
    for path in [tls["ca"], tls["server"], tls["server_key"]] + [f for pair in tls["clients"].values() for f in pair]:
        if not os.path.isfile(path):
            raise HarnessError(f"dev-certs printed {path}, which does not exist")
    return tls


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", required=True, help="the openspine binary")
    ap.add_argument("--scenario", choices=["sqlite", "postgres", "mtls"], default="sqlite")
    ap.add_argument("--database-url", help="an empty PostgreSQL database (postgres scenario)")
    ap.add_argument("--blob-url", help="s3://bucket/prefix or file:///dir for payloads (postgres scenario)")
    ap.add_argument("--s3-endpoint")
    ap.add_argument("--s3-region")
    ap.add_argument("--metrics-secs", type=float, default=20.0,
                    help="how long to wait for the gauges to show the inbox depth (20; they refresh every 15 s)")
    ap.add_argument("--keep", action="store_true", help="keep the run directory even on success")
    args = ap.parse_args()

    summary = {"scenario": args.scenario}
    c = Checks()
    run_dir = tempfile.mkdtemp(prefix=f"openspine-admin-{args.scenario}-")
    nodes = []
    started = time.monotonic()
    code = 0
    try:
        if not (os.path.isfile(args.bin) and os.access(args.bin, os.X_OK)):
            raise HarnessError(f"--bin {args.bin!r} is not an executable file")
        if args.scenario == "postgres":
            if not args.database_url:
                raise HarnessError("the postgres scenario needs --database-url (an empty database)")
            if not args.blob_url:
                # Nodes sharing a database must share payloads too.
                args.blob_url = "file://" + os.path.join(run_dir, "blobs")
                os.makedirs(os.path.join(run_dir, "blobs"), exist_ok=True)
        elif args.database_url or args.blob_url:
            raise HarnessError(f"--database-url and --blob-url are for the postgres scenario, not {args.scenario}")
        summary["store"] = "postgresql" if args.database_url else "embedded"
        token_file = os.path.join(run_dir, "admin-token")
        with open(token_file, "w") as f:
            f.write(secrets.token_hex(24) + "\n")
        os.chmod(token_file, 0o600)
        tls = make_certs(args, run_dir) if args.scenario == "mtls" else None

        node_a = Node(args, run_dir, "A", token_file, tls)
        nodes.append(node_a)
        node_b = None
        if args.scenario == "postgres":
            node_b = Node(args, run_dir, "B", token_file)
            nodes.append(node_b)
        for n in nodes:
            n.start()
        for n in nodes:
            n.wait_ready()
        walk(args, args.scenario, node_a, node_b, run_dir, c, summary)
        check_short_token(args, run_dir, c)
        for n in nodes:
            n.ensure_alive()
    except Verdict as e:
        c.failed.append(str(e))
        log(f"FAIL {e}")
    except HarnessError as e:
        log(f"harness error: {e}")
        summary["harness_error"] = str(e)[:2000]
        code = 2
    except Exception as e:  # a bug in this script or an unexpected answer shape
        log("harness error:\n" + traceback.format_exc())
        summary["harness_error"] = f"{type(e).__name__}: {e}"[:2000]
        code = 2
    finally:
        for n in nodes:
            n.stop()

    summary["seconds"] = round(time.monotonic() - started, 1)
    summary["passed"] = len(c.passed)
    summary["failed"] = len(c.failed)
    summary["failures"] = c.failed[:50]
    if code == 0 and c.failed:
        code = 1
    if code != 0:
        for n in nodes:
            log(f"--- last lines of node {n.name}'s log ({n.log_path}) ---\n{tail(n.log_path)}")
    print(f"\nadmin test ({args.scenario}): {len(c.passed)} passed, {len(c.failed)} failed"
          f"{' (harness error)' if code == 2 else ''}", file=sys.stderr)
    for f in c.failed:
        print(f"  FAIL {f}", file=sys.stderr)
    print("PASS" if code == 0 else "FAIL", file=sys.stderr, flush=True)
    if (code != 0 or args.keep) and nodes:
        summary["run_dir"] = run_dir
        log(f"run directory kept: {run_dir}")
    else:
        shutil.rmtree(run_dir, ignore_errors=True)
    print(json.dumps(summary))
    sys.exit(code)


if __name__ == "__main__":
    main()
