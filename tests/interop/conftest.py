"""Fixtures for the MESH client interop suite.

The suite drives a MESH server with the official NHS Python client (`mesh_client` 5.x).
Which server is under test is chosen by environment variables:

* ``OPENSPINE_BIN`` -- path to the ``openspine`` binary. It is started once per session as
  ``$OPENSPINE_BIN serve --listen 127.0.0.1:<port> --data-dir <tmp> --demo --sandbox``
  and stopped (SIGTERM, then SIGKILL) at the end.
* ``MESH_URL`` -- base URL (scheme + host + port) of a server that is already running.
* neither -- the NHS MESH sandbox from PyPI (``mesh-sandbox``) is started with uvicorn. This
  is how the tests themselves are validated: every test must pass against it, because
  OpenSpine must behave the same (shared/mesh/API.md, "default rule: behave like SBX").

``OPENSPINE_MTLS=1`` (with ``OPENSPINE_BIN``) runs the same suite over mutual TLS, as the real
MESH is reached: the suite makes its own CA, server and client certificates with
``openspine dev-certs``, starts the server with ``--tls-cert/--tls-key/--client-ca`` and hands
every client ``cert=`` and ``verify=`` (mesh_client supports both).

``MESH_SHARED_KEY`` overrides the shared HMAC key (default ``TestKey``, API.md 2.7).

Every test starts from an empty server: ``DELETE {base}/admin/reset`` (API.md 3.16) is called
before each test and must answer 2xx. The mailboxes and workflows are the demo fixtures of
API.md 8.1/8.2 (X26ABC1..3, TEST_WORKFLOW, TEST_WORKFLOW_ACK, TEST_WORKFLOW2).
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from mesh_client import AuthTokenGenerator, MeshClient

SHARED_KEY = os.environ.get("MESH_SHARED_KEY", "TestKey")
PASSWORD = "password"
STARTUP_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
# mesh_client's default per-request timeout is 10 minutes; a hung server should fail fast.
CLIENT_TIMEOUT_S = 30


MTLS = os.environ.get("OPENSPINE_MTLS") == "1" and bool(os.environ.get("OPENSPINE_BIN"))
# Client certificate subject CN for the suite's clients (API.md 2.8 naming).
CLIENT_CN = "x26abc1.x26.api.mesh-client.nhs.uk"
# Filled in when the server starts under mutual TLS: requests/mesh_client keyword arguments.
TLS_KWARGS: dict = {}
CERTS: dict = {}


def _server_choice() -> str:
    if os.environ.get("OPENSPINE_BIN") and MTLS:
        return f"openspine binary {os.environ['OPENSPINE_BIN']} over mutual TLS"
    if os.environ.get("OPENSPINE_BIN") and os.environ.get("OPENSPINE_DATABASE_URL"):
        return (f"openspine binary {os.environ['OPENSPINE_BIN']} on PostgreSQL + "
                f"{os.environ.get('OPENSPINE_BLOB_URL', 'local files')}")
    if os.environ.get("OPENSPINE_BIN"):
        return f"openspine binary {os.environ['OPENSPINE_BIN']}"
    if os.environ.get("MESH_URL"):
        return f"running server at {os.environ['MESH_URL']}"
    return "NHS mesh-sandbox (PyPI), started with uvicorn"


def pytest_report_header(config: pytest.Config) -> str:
    return f"MESH server under test: {_server_choice()}"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _tail(path: Path, limit: int = 6000) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<could not read {path}: {exc}>"
    return text if len(text) <= limit else "...\n" + text[-limit:]


class _ServerProcess:
    """A server started by the suite; its output goes to files so a full pipe never blocks it."""

    def __init__(self, name: str, argv: list[str], workdir: Path, env: dict[str, str] | None = None):
        self.name = name
        self.argv = argv
        self.stdout_path = workdir / f"{name}.stdout.log"
        self.stderr_path = workdir / f"{name}.stderr.log"
        self._stdout = open(self.stdout_path, "wb")  # noqa: SIM115 - closed in stop()
        self._stderr = open(self.stderr_path, "wb")  # noqa: SIM115 - closed in stop()
        try:
            self.proc = subprocess.Popen(
                argv, stdout=self._stdout, stderr=self._stderr, stdin=subprocess.DEVNULL, env=env, cwd=workdir
            )
        except OSError as exc:
            self._close_logs()
            pytest.fail(f"could not start {name} ({' '.join(argv)}): {exc}", pytrace=False)

    def wait_until_pinging(self, base_url: str, timeout_s: float = STARTUP_TIMEOUT_S) -> None:
        ping_url = f"{base_url}/messageexchange/_ping"
        deadline = time.monotonic() + timeout_s
        last_error = "no attempt made"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._fail(f"exited with status {self.proc.returncode} before {ping_url} answered 200")
            try:
                response = requests.get(ping_url, timeout=2, **TLS_KWARGS)
                if response.status_code == 200:
                    return
                last_error = f"HTTP {response.status_code}: {response.text[:200]}"
            except requests.RequestException as exc:
                last_error = repr(exc)
            time.sleep(0.2)
        self.stop()
        self._fail(f"did not answer 200 on {ping_url} within {timeout_s:.0f} s (last: {last_error})")

    def _fail(self, why: str) -> None:
        if not self._stderr.closed:
            self._stderr.flush()
        pytest.fail(
            f"{self.name} {why}\ncommand: {' '.join(self.argv)}\n"
            f"--- stderr ({self.stderr_path}) ---\n{_tail(self.stderr_path)}\n"
            f"--- stdout ({self.stdout_path}) ---\n{_tail(self.stdout_path, 2000)}",
            pytrace=False,
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: let the server shut down cleanly
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=STOP_TIMEOUT_S)
        self._close_logs()

    def _close_logs(self) -> None:
        for handle in (self._stdout, self._stderr):
            if not handle.closed:
                handle.close()


def _start_openspine(binary: str, workdir: Path) -> tuple[str, _ServerProcess]:
    port = _free_port()
    data_dir = workdir / "data"
    data_dir.mkdir()
    argv = [
        binary,
        "serve",
        "--listen",
        f"127.0.0.1:{port}",
        "--data-dir",
        str(data_dir),
        "--demo",
        "--sandbox",
        # The lifecycle tests sweep when they choose (POST /admin/lifecycle), so the
        # server's own timer must not sweep between their clock move and their sweep.
        "--lifecycle-interval-secs",
        "86400",
    ]
    if not MTLS:
        return f"http://127.0.0.1:{port}", _ServerProcess("openspine", argv, workdir)
    certs = workdir / "certs"
    rogue = workdir / "rogue-certs"
    for out in (certs, rogue):
        subprocess.run(
            [binary, "dev-certs", "--out", str(out), "--client", CLIENT_CN],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    client = (str(certs / f"client-{CLIENT_CN}.pem"), str(certs / f"client-{CLIENT_CN}-key.pem"))
    CERTS.update(
        ca=str(certs / "ca.pem"),
        client=client,
        rogue_client=(str(rogue / f"client-{CLIENT_CN}.pem"), str(rogue / f"client-{CLIENT_CN}-key.pem")),
    )
    TLS_KWARGS.update(cert=client, verify=CERTS["ca"])
    argv += [
        "--tls-cert",
        str(certs / "server.pem"),
        "--tls-key",
        str(certs / "server-key.pem"),
        "--client-ca",
        CERTS["ca"],
    ]
    return f"https://localhost:{port}", _ServerProcess("openspine", argv, workdir)


def _start_nhs_sandbox(workdir: Path) -> tuple[str, _ServerProcess]:
    if importlib.util.find_spec("mesh_sandbox") is None or importlib.util.find_spec("uvicorn") is None:
        pytest.fail(
            "neither OPENSPINE_BIN nor MESH_URL is set, and the NHS sandbox is not installed: "
            "pip install -r tests/interop/requirements.txt",
            pytrace=False,
        )
    port = _free_port()
    data_dir = workdir / "mailboxes"
    data_dir.mkdir()
    env = dict(os.environ)
    env.update(
        SHARED_KEY=SHARED_KEY,
        AUTH_MODE="full",  # check the HMAC token exactly (API.md 2.3, 2.4)
        # STORE_MODE=file would persist messages under MAILBOXES_DATA_DIR, but in that mode the
        # sandbox's DELETE /admin/reset re-reads every message saved on disk (FileStore keeps
        # CannedStore's load_messages=True), so messages from earlier tests come back after the
        # reset. "memory" is the mode whose reset empties the mailboxes as API.md 3.16 describes;
        # apart from persistence it is the same store (FileStore subclasses MemoryStore).
        STORE_MODE="memory",
        MAILBOXES_DATA_DIR=str(data_dir),
    )
    argv = [
        sys.executable,
        "-m",
        "uvicorn",
        "mesh_sandbox.api:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    return f"http://127.0.0.1:{port}", _ServerProcess("mesh-sandbox", argv, workdir, env=env)


@pytest.fixture(scope="session")
def mesh_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL (no trailing slash) of the MESH server under test."""
    binary = os.environ.get("OPENSPINE_BIN")
    external = os.environ.get("MESH_URL")
    if not binary and external:
        yield external.rstrip("/")
        return

    workdir = tmp_path_factory.mktemp("mesh-server")
    if binary:
        base_url, server = _start_openspine(binary, workdir)
    else:
        base_url, server = _start_nhs_sandbox(workdir)
    try:
        server.wait_until_pinging(base_url)
        yield base_url
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def _reset_server(mesh_url: str) -> None:
    """Start every test from empty mailboxes (sandbox admin call, API.md 3.16)."""
    response = requests.delete(f"{mesh_url}/admin/reset", timeout=10, **TLS_KWARGS)
    assert 200 <= response.status_code < 300, (
        f"DELETE {mesh_url}/admin/reset answered {response.status_code}: {response.text[:500]}"
    )


@pytest.fixture
def mesh_client_for(mesh_url: str) -> Iterator[Callable[..., MeshClient]]:
    """Factory: ``mesh_client_for("X26ABC1", password=..., **MeshClient kwargs)``.

    mesh_client 5.x takes a plain ``http://`` URL as is: it mounts an ordinary requests
    HTTPAdapter for non-https URLs, so no certificate or ``verify`` argument is needed.
    """
    clients: list[MeshClient] = []

    def make(mailbox: str, password: str = PASSWORD, shared_key: str = SHARED_KEY, **kwargs) -> MeshClient:
        kwargs.setdefault("timeout", CLIENT_TIMEOUT_S)
        for key, value in TLS_KWARGS.items():
            kwargs.setdefault(key, value)
        client = MeshClient(mesh_url, mailbox, password, shared_key=shared_key.encode("utf-8"), **kwargs)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def x26abc1(mesh_client_for: Callable[..., MeshClient]) -> MeshClient:
    """TESTMB1, ODS X26: sends TEST_WORKFLOW and TEST_WORKFLOW2, receives TEST_WORKFLOW_ACK/2."""
    return mesh_client_for("X26ABC1")


@pytest.fixture
def x26abc2(mesh_client_for: Callable[..., MeshClient]) -> MeshClient:
    """TESTMB2, ODS X26: receives TEST_WORKFLOW and TEST_WORKFLOW2, sends TEST_WORKFLOW_ACK."""
    return mesh_client_for("X26ABC2")


@pytest.fixture
def x26abc3(mesh_client_for: Callable[..., MeshClient]) -> MeshClient:
    """TESTMB3, ODS X27: receives TEST_WORKFLOW_ACK and TEST_WORKFLOW2."""
    return mesh_client_for("X26ABC3")


@pytest.fixture
def mesh_http_for(mesh_url: str) -> Iterator[Callable[[str], requests.Session]]:
    """Factory of raw ``requests`` sessions authenticated as a mailbox, for checks the client hides.

    Uses mesh_client's own public token generator and the same ``Accept`` header the client sends.
    """
    sessions: list[requests.Session] = []

    def make(mailbox: str, password: str = PASSWORD) -> requests.Session:
        session = requests.Session()
        session.auth = AuthTokenGenerator(SHARED_KEY.encode("utf-8"), mailbox, password)
        session.headers["Accept"] = "application/vnd.mesh.v2+json"
        if TLS_KWARGS:
            # Otherwise REQUESTS_CA_BUNDLE from the environment overrides session.verify.
            session.trust_env = False
            session.cert = TLS_KWARGS["cert"]
            session.verify = TLS_KWARGS["verify"]
        sessions.append(session)
        return session

    yield make
    for session in sessions:
        session.close()


@pytest.fixture
def tls_kwargs(mesh_url: str) -> dict:
    """Keyword arguments for a raw ``requests`` call: the client certificate under mutual TLS."""
    return dict(TLS_KWARGS)
