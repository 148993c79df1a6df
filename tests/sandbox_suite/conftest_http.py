"""HTTP adapter for the NHS MESH sandbox's packaged test suite.

``run.py`` copies the installed ``mesh_sandbox`` package to a temporary directory and puts this
file in place of its ``mesh_sandbox/conftest.py``. The sandbox's own conftest serves the app
in-process (a FastAPI ``TestClient`` and a uvicorn thread); this one points the same fixture
names at a separate server over real HTTP:

* ``app`` -- an ``httpx.Client`` on the server's base URL. Starlette's ``TestClient`` is itself
  an ``httpx.Client`` subclass, so ``.get/.post/.put/.delete/.head`` take the same arguments;
  like ``TestClient`` it follows redirects.
* ``base_uri`` -- the server's base URL, for the tests that drive ``mesh_client.MeshClient``.
* an autouse fixture that calls ``DELETE {base}/admin/reset`` before every test, as the
  sandbox's own autouse ``setup`` fixture started every test from a fresh in-memory store.

Environment (set by ``run.py``):

* ``SANDBOX_SUITE_URL`` -- base URL of the server under test (scheme, host, port; no path).
* ``SANDBOX_SUITE_RESULTS`` -- optional: a file to which one JSON line per test phase report
  is appended, so that the runner can list passed and failed tests with a short cause (plus
  a first line naming this file, so the runner can check that this adapter was loaded).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import httpx
import pytest

BASE_URL = os.environ.get("SANDBOX_SUITE_URL", "").rstrip("/")
RESULTS_FILE = os.environ.get("SANDBOX_SUITE_RESULTS")
TIMEOUT_S = 30.0


def _base_url() -> str:
    if not BASE_URL:
        pytest.fail("SANDBOX_SUITE_URL is not set: run this suite with tests/sandbox_suite/run.py",
                    pytrace=False)
    return BASE_URL


@pytest.fixture(scope="session", name="base_uri")
def http_base_uri() -> str:
    return _base_url()


@pytest.fixture(name="app")
def http_app() -> Iterator[httpx.Client]:
    with httpx.Client(base_url=_base_url(), follow_redirects=True, timeout=TIMEOUT_S) as client:
        yield client


@pytest.fixture(autouse=True)
def reset_server() -> None:
    response = httpx.delete(f"{_base_url()}/admin/reset", timeout=TIMEOUT_S)
    assert 200 <= response.status_code < 300, (
        f"DELETE {_base_url()}/admin/reset answered {response.status_code}: {response.text[:500]}"
    )


def _short_cause(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    crash = getattr(longrepr, "reprcrash", None)
    if crash is not None and getattr(crash, "message", None):
        text = crash.message
    elif isinstance(longrepr, tuple) and len(longrepr) == 3:  # skip: (path, line, reason)
        text = str(longrepr[2])
    else:
        text = str(longrepr or "")
    return text.strip()[:2000]


def _record(record: dict) -> None:
    if RESULTS_FILE:
        with open(RESULTS_FILE, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")


# Lets run.py check that pytest loaded this adapter, not the sandbox's in-process conftest.
_record({"adapter": os.path.abspath(__file__)})


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _record({
        "nodeid": report.nodeid,
        "when": report.when,
        "outcome": report.outcome,
        "cause": _short_cause(report) if report.outcome != "passed" else "",
    })
