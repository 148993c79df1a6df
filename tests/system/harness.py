"""Pieces the system tests share: NHSMESH signing and running the server binary."""

import ctypes
import hashlib
import hmac
import os
import signal
import socket
import uuid
from datetime import datetime, timezone

ACCEPT_V2 = "application/vnd.mesh.v2+json"


class HarnessError(Exception):
    """Setup problem or unexpected server death: not a verdict on the server."""


def mesh_hmac(shared_key, mailbox, nonce, count, password, timestamp):
    """The token HMAC of API.md 2.2."""
    message = f"{mailbox}:{nonce}:{count}:{password}:{timestamp}"
    return hmac.new(shared_key.encode("utf-8"), message.encode("ascii"),
                    hashlib.sha256).hexdigest()


def check_signer():
    """The first test vector of API.md 2.2; guards against a broken signer."""
    got = mesh_hmac("TestKey", "X26ABC1", "3f1c1e4e-4a4c-4f53-9c1e-2c5b6f0a9d11",
                    0, "password", "202401011200")
    want = "725c74867590c5507403a43be5356ea22d2a73c4ec99f1063bfd2ef285cac254"
    if got != want:
        raise HarnessError(f"HMAC signer self-check failed: {got} != {want}")


def token(shared_key, password, mailbox):
    """A fresh single-use token: new uuid4 nonce, count 0, current UTC minute."""
    nonce = str(uuid.uuid4())
    ts = datetime.now(timezone.utc).strftime("%Y%m%d%H%M")
    mac = mesh_hmac(shared_key, mailbox, nonce, 0, password, ts)
    return f"NHSMESH {mailbox}:{nonce}:0:{ts}:{mac}"


def set_pdeathsig():
    """Make the server die with this script (Linux prctl PR_SET_PDEATHSIG)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)
    except Exception:
        pass


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path, lines=40):
    """The last lines of a log file, for failure reports."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            data = f.read().decode("utf-8", "replace")
        return "\n".join(data.splitlines()[-lines:])
    except OSError as e:
        return f"(cannot read {path}: {e})"
