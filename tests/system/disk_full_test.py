#!/usr/bin/env python3
"""A full disk: reads and acknowledgements keep working, sends fail fast, and everything
recovers without a restart.

The data directory is put on a small tmpfs that this test mounts (it needs root, or
passwordless sudo, to mount), and the disk is filled by a file beside the store, as a log
file gone wild or another program would fill it. Then, while the disk is full:

* /readyz says 503 "degraded" and the metrics say mesh_disk_low 1;
* the recipient lists its inbox, downloads a message and acknowledges it (each request
  still records its token: a replayed token is still refused);
* a send is refused at once with the MESH 503;

and once the file is deleted, within a few seconds, readiness is back and a send is
accepted, with no restart.

    python tests/system/disk_full_test.py --bin target/release/openspine
"""

import argparse
import errno
import os
import shutil
import subprocess
import sys
import tempfile
import time

import requests

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (ACCEPT_V2, HarnessError, check_signer, free_port,  # noqa: E402
                     set_pdeathsig, tail, token)

KEY = "TestKey"
PASSWORD = "password"


def log(msg):
    print(f"[disk-full] {msg}", flush=True)


def run(cmd):
    """Runs a mount command, with sudo when not root."""
    if os.geteuid() != 0:
        cmd = ["sudo", "-n"] + cmd
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def headers(mailbox, auth=None, **extra):
    h = {"Authorization": auth or token(KEY, PASSWORD, mailbox), "Accept": ACCEPT_V2}
    h.update(extra)
    return h


def send(base, body, timeout=30):
    return requests.post(f"{base}/messageexchange/X26ABC1/outbox",
                         headers=headers("X26ABC1", **{"Mex-To": "X26ABC2",
                                                        "Mex-WorkflowID": "TEST_WORKFLOW",
                                                        "Content-Type": "application/octet-stream"}),
                         data=body, timeout=timeout)


def metric(ops, name):
    text = requests.get(f"{ops}/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def wait_for(what, check, limit=10.0):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            if check():
                return True
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def fill(path):
    """Writes until the disk says it is full; returns the bytes written."""
    block = b"\0" * (1 << 20)
    written = 0
    with open(path, "wb", buffering=0) as f:
        while True:
            try:
                written += f.write(block)
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
                # Fill the last partial block too.
                small = b"\0" * 4096
                while True:
                    try:
                        written += f.write(small)
                    except OSError:
                        return written


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", required=True)
    ap.add_argument("--size-mib", type=int, default=48)
    ap.add_argument("--reserve-mib", type=int, default=8)
    args = ap.parse_args()
    check_signer()

    mnt = tempfile.mkdtemp(prefix="openspine-diskfull-")
    logs = tempfile.mkdtemp(prefix="openspine-diskfull-logs-")
    server_log = os.path.join(logs, "server.log")
    proc = None
    mounted = False
    failures = []
    try:
        try:
            run(["mount", "-t", "tmpfs", "-o", f"size={args.size_mib}m", "tmpfs", mnt])
            mounted = True
        except (subprocess.CalledProcessError, FileNotFoundError) as e:
            raise HarnessError(f"cannot mount a tmpfs (this test needs root or sudo): {e}")
        data = os.path.join(mnt, "data")
        port, ops_port = free_port(), free_port()
        base, ops = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{ops_port}"
        with open(server_log, "wb") as out:
            proc = subprocess.Popen(
                [args.bin, "serve", "--demo", "--listen", f"127.0.0.1:{port}",
                 "--data-dir", data, "--ops-listen", f"127.0.0.1:{ops_port}",
                 "--disk-reserve-mib", str(args.reserve_mib), "--lifecycle-interval-secs", "86400"],
                stdout=out, stderr=subprocess.STDOUT, preexec_fn=set_pdeathsig)
        wait_for("the server to be ready",
                 lambda: requests.get(f"{base}/readyz", timeout=2).status_code == 200, 30)
        reserve = os.path.join(data, "reserve.bin")
        if os.path.getsize(reserve) != args.reserve_mib << 20:
            raise AssertionError("the reserve file was not written")

        ids = []
        for i in range(3):
            r = send(base, f"message {i}".encode() * 1000)
            assert r.status_code == 202, r.text
            ids.append(r.json()["message_id"])
        log(f"sent {len(ids)} messages; filling the disk")

        junk = os.path.join(mnt, "junk.bin")
        written = fill(junk)
        log(f"disk full after {written >> 20} MiB of junk")

        # The first request after the disk filled may be the one that finds it out.
        inbox = requests.get(f"{base}/messageexchange/X26ABC2/inbox", headers=headers("X26ABC2"),
                             timeout=30)
        if inbox.status_code != 200:
            failures.append(f"inbox on a full disk: {inbox.status_code} {inbox.text}")
        wait_for("readiness to say the disk is low",
                 lambda: requests.get(f"{base}/readyz", timeout=5).status_code == 503)
        ready = requests.get(f"{ops}/readyz", timeout=5).json()
        if ready.get("status") != "degraded":
            failures.append(f"readiness body: {ready}")
        wait_for("mesh_disk_low to say 1", lambda: metric(ops, "mesh_disk_low") == 1.0, 5)
        if os.path.exists(reserve):
            failures.append("the reserve was not given back")

        # Reads and acknowledgements work; each records its token.
        auth = token(KEY, PASSWORD, "X26ABC2")
        inbox = requests.get(f"{base}/messageexchange/X26ABC2/inbox",
                             headers=headers("X26ABC2", auth), timeout=30)
        if inbox.status_code != 200 or sorted(inbox.json()["messages"]) != sorted(ids):
            failures.append(f"inbox while full: {inbox.status_code} {inbox.text}")
        replay = requests.get(f"{base}/messageexchange/X26ABC2/inbox",
                              headers=headers("X26ABC2", auth), timeout=30)
        if replay.status_code != 403:
            failures.append(f"a replayed token on a full disk got {replay.status_code}")
        got = requests.get(f"{base}/messageexchange/X26ABC2/inbox/{ids[0]}",
                           headers=headers("X26ABC2"), timeout=30)
        if got.status_code != 200 or got.content != b"message 0" * 1000:
            failures.append(f"download while full: {got.status_code}")
        ack = requests.put(f"{base}/messageexchange/X26ABC2/inbox/{ids[0]}/status/acknowledged",
                           headers=headers("X26ABC2"), timeout=30)
        if ack.status_code != 200:
            failures.append(f"acknowledge while full: {ack.status_code} {ack.text}")

        # Sends fail fast with the MESH 503.
        started = time.monotonic()
        refused = send(base, b"x" * 200_000)
        took = time.monotonic() - started
        if refused.status_code != 503:
            failures.append(f"send on a full disk: {refused.status_code} {refused.text}")
        if took > 2.0:
            failures.append(f"the refused send took {took:.1f} s")
        log(f"while full: inbox, replay refusal, download, acknowledge checked; send refused in {took * 1000:.0f} ms")

        # Space back: everything recovers, no restart.
        os.remove(junk)
        wait_for("readiness to recover", lambda: requests.get(f"{base}/readyz", timeout=5).status_code == 200)
        after = send(base, b"after the disk was freed")
        if after.status_code != 202:
            failures.append(f"send after recovery: {after.status_code} {after.text}")
        if metric(ops, "mesh_disk_low") != 0.0:
            wait_for("mesh_disk_low to drop", lambda: metric(ops, "mesh_disk_low") == 0.0, 5)
        if os.path.getsize(reserve) != args.reserve_mib << 20:
            failures.append("the reserve was not written back")
        if proc.poll() is not None:
            failures.append("the server exited")
        inbox = requests.get(f"{base}/messageexchange/X26ABC2/inbox", headers=headers("X26ABC2"),
                             timeout=30).json()["messages"]
        if len(inbox) != 3:
            failures.append(f"inbox after recovery has {len(inbox)} messages, want 3")
    except (HarnessError, AssertionError, requests.RequestException) as e:
        failures.append(str(e))
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        if mounted:
            try:
                run(["umount", mnt])
            except subprocess.CalledProcessError as e:
                log(f"umount failed: {e}")
        shutil.rmtree(mnt, ignore_errors=True)

    if failures:
        for f in failures:
            log(f"FAIL: {f}")
        log("server log:\n" + tail(server_log, 60))
        shutil.rmtree(logs, ignore_errors=True)
        print("disk full test: FAILED")
        return 1
    shutil.rmtree(logs, ignore_errors=True)
    print("disk full test: PASSED")
    return 0


if __name__ == "__main__":
    sys.exit(main())
