#!/usr/bin/env python3
"""Run the NHS MESH sandbox's own packaged test suite over HTTP against a separate server.

The ``mesh-sandbox`` wheel (tests/interop/requirements.txt) ships its tests in
``mesh_sandbox/tests/*.py``; they normally call the app in-process. This script:

1. starts the server under test on a free loopback port and waits for
   ``GET /messageexchange/_ping`` to answer 200:
   * ``--bin PATH``: ``PATH serve --demo --sandbox --listen 127.0.0.1:<port> --data-dir <tmp>``
   * ``--against-nhs-sandbox``: ``uvicorn mesh_sandbox.api:app`` with AUTH_MODE=full,
     STORE_MODE=memory, SHARED_KEY=TestKey (validates the adapter and the not-run list);
2. copies the installed ``mesh_sandbox`` package to a temporary directory and replaces its
   ``conftest.py`` with ``conftest_http.py`` (fixtures ``app``/``base_uri`` over real HTTP, and
   ``DELETE /admin/reset`` before each test);
3. runs pytest on the copy's ``tests`` directory, leaving out what ``not_run.txt`` lists;
4. prints ``sandbox suite: N passed, M failed, K not run`` and exits 1 if any test failed
   (or pytest itself went wrong); ``--json FILE`` also writes the lists;
5. always stops the server and, unless ``--keep``, removes the temporary directory.

Usage (from the repository root, with the project venv):

    .venv/bin/python tests/sandbox_suite/run.py --bin target/debug/openspine [--keep] [--json FILE]
    .venv/bin/python tests/sandbox_suite/run.py --against-nhs-sandbox
    ... run.py --bin ... -- -x -k inbox      # arguments after -- go to pytest
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

# The system tests' helpers: a free loopback port, a log's tail, dying with this script.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "system"))
from harness import free_port, set_pdeathsig, tail  # noqa: E402

HERE = Path(__file__).resolve().parent
ADAPTER = HERE / "conftest_http.py"
DEFAULT_NOT_RUN = HERE / "not_run.txt"
SHARED_KEY = "TestKey"
STARTUP_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
# pytest settings for the copied package: the sandbox's test files are not named test_*.py.
PYTEST_INI = """\
[pytest]
python_files = *.py
filterwarnings =
    ignore::pytest.PytestCollectionWarning
    ignore:Using `httpx` with `starlette.testclient` is deprecated
"""


class RunError(Exception):
    """A problem with the harness or the server's start, not a test verdict."""


class Server:
    """The server under test; its output goes to log files in the work directory."""

    def __init__(self, name: str, argv: list[str], workdir: Path, env: dict[str, str] | None = None):
        self.name = name
        self.argv = argv
        self.stdout_path = workdir / f"{name}.stdout.log"
        self.stderr_path = workdir / f"{name}.stderr.log"
        self._stdout = open(self.stdout_path, "wb")  # noqa: SIM115 - closed in stop()
        self._stderr = open(self.stderr_path, "wb")  # noqa: SIM115 - closed in stop()
        try:
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=self._stdout, stderr=self._stderr,
                env=env, cwd=workdir, preexec_fn=set_pdeathsig,
            )
        except OSError as exc:
            self._close_logs()
            raise RunError(f"could not start {name} ({' '.join(argv)}): {exc}") from exc

    def wait_until_pinging(self, base_url: str) -> None:
        ping = f"{base_url}/messageexchange/_ping"
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        last = "no attempt made"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RunError(self._why(f"exited with status {self.proc.returncode} before {ping} answered 200"))
            try:
                with urllib.request.urlopen(ping, timeout=2) as response:  # noqa: S310 - loopback URL
                    if response.status == 200:
                        return
                    last = f"HTTP {response.status}"
            except urllib.error.HTTPError as exc:
                last = f"HTTP {exc.code}"
            except (OSError, urllib.error.URLError) as exc:
                last = repr(exc)
            time.sleep(0.2)
        raise RunError(self._why(f"did not answer 200 on {ping} within {STARTUP_TIMEOUT_S:.0f} s (last: {last})"))

    def _why(self, what: str) -> str:
        self._stderr.flush()
        self._stdout.flush()
        return (f"{self.name} {what}\ncommand: {' '.join(self.argv)}\n"
                f"--- stderr ---\n{tail(self.stderr_path)}\n--- stdout ---\n{tail(self.stdout_path, 20)}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
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


def start_openspine(binary: str, workdir: Path) -> tuple[str, Server]:
    binary_path = Path(binary)
    if not binary_path.is_file() or not os.access(binary_path, os.X_OK):
        raise RunError(f"--bin {binary}: not an executable file")
    port = free_port()
    data_dir = workdir / "data"
    data_dir.mkdir()
    argv = [str(binary_path.resolve()), "serve", "--demo", "--sandbox",
            "--listen", f"127.0.0.1:{port}", "--data-dir", str(data_dir)]
    return f"http://127.0.0.1:{port}", Server("openspine", argv, workdir)


def start_nhs_sandbox(workdir: Path) -> tuple[str, Server]:
    port = free_port()
    data_dir = workdir / "mailboxes"
    data_dir.mkdir()
    env = dict(os.environ)
    env.update(AUTH_MODE="full", STORE_MODE="memory", SHARED_KEY=SHARED_KEY, MAILBOXES_DATA_DIR=str(data_dir))
    argv = [sys.executable, "-m", "uvicorn", "mesh_sandbox.api:app", "--host", "127.0.0.1", "--port", str(port)]
    return f"http://127.0.0.1:{port}", Server("mesh-sandbox", argv, workdir, env=env)


def read_not_run(path: Path) -> list[tuple[str, str]]:
    """``(entry, reason)`` pairs from the not-run list."""
    entries = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        entry, sep, reason = line.partition(" # ")
        entry, reason = entry.strip(), reason.strip()
        if not sep or not entry or not reason:
            raise RunError(f"{path}:{number}: expected '<node id or file> # <reason>', got {raw!r}")
        entries.append((entry, reason))
    return entries


def copy_package(workdir: Path) -> Path:
    """Copy the installed mesh_sandbox to workdir/pkgs/mesh_sandbox with our conftest; return it."""
    spec = importlib.util.find_spec("mesh_sandbox")
    if spec is None or not spec.submodule_search_locations:
        raise RunError("mesh_sandbox is not installed: pip install -r tests/interop/requirements.txt")
    source = Path(list(spec.submodule_search_locations)[0])
    if not (source / "tests").is_dir():
        raise RunError(f"{source} has no tests/ directory")
    target = workdir / "pkgs" / "mesh_sandbox"
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copyfile(ADAPTER, target / "conftest.py")
    (target / "pytest.ini").write_text(PYTEST_INI, encoding="utf-8")
    return target


def _count_tests_in_file(path: Path) -> int:
    """Test cases in a file that is not collected: test functions times literal parametrize lists."""
    tree = ast.parse(path.read_text(encoding="utf-8"))

    def cases(func: ast.AST) -> int:
        count = 1
        for decorator in getattr(func, "decorator_list", []):
            if (isinstance(decorator, ast.Call) and isinstance(decorator.func, ast.Attribute)
                    and decorator.func.attr == "parametrize" and len(decorator.args) >= 2
                    and isinstance(decorator.args[1], (ast.List, ast.Tuple))):
                count *= len(decorator.args[1].elts)
        return count

    total = 0
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test"):
            total += cases(node)
        elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            total += sum(cases(item) for item in node.body
                         if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and item.name.startswith("test"))
    return total


def _pytest_env(base_url: str, pkgs_dir: Path, results: Path | None) -> dict[str, str]:
    env = dict(os.environ)
    # Unbuffered: a run that dies part way still shows how far it got.
    env.update(SANDBOX_SUITE_URL=base_url, PYTHONDONTWRITEBYTECODE="1", PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join(p for p in (str(pkgs_dir), env.get("PYTHONPATH", "")) if p))
    if results is not None:
        env["SANDBOX_SUITE_RESULTS"] = str(results)
    for name in ("PYTEST_ADDOPTS", "PYTEST_PLUGINS"):
        env.pop(name, None)
    return env


def _run_child(argv: list[str], cwd: Path, env: dict[str, str], capture: bool) -> subprocess.CompletedProcess:
    with subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, preexec_fn=set_pdeathsig,
                          stdout=subprocess.PIPE if capture else None,
                          stderr=subprocess.STDOUT if capture else None, text=True) as proc:
        try:
            out, _ = proc.communicate()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        return subprocess.CompletedProcess(argv, proc.returncode, out, None)


def plan(pkg: Path, base_url: str, not_run: list[tuple[str, str]]) -> tuple[list[str], list[str], list[dict]]:
    """Resolve the not-run list against the collected tests: (--ignore files, --deselect ids, report)."""
    ignores, node_entries = [], []
    for entry, reason in not_run:
        if "::" in entry:
            node_entries.append((entry, reason))
        else:
            if not (pkg / entry).is_file():
                raise RunError(f"not-run list names {entry}, which is not a file of the mesh_sandbox package")
            ignores.append((entry, reason))

    argv = [sys.executable, "-m", "pytest", "-c", "pytest.ini", "--rootdir", ".", "-p", "no:cacheprovider",
            "-p", "no:warnings", "--collect-only", "-q"]
    argv += [f"--ignore={entry}" for entry, _ in ignores] + ["tests"]
    collected = _run_child(argv, pkg, _pytest_env(base_url, pkg.parent, None), capture=True)
    if collected.returncode != 0:
        raise RunError(f"pytest could not collect the sandbox tests (exit {collected.returncode}):\n"
                       f"{collected.stdout[-4000:]}")
    all_ids = [line.strip() for line in collected.stdout.splitlines() if "::" in line and line.startswith("tests/")]
    if not all_ids:
        raise RunError(f"pytest collected no sandbox tests:\n{collected.stdout[-4000:]}")

    deselect: list[str] = []
    report = []
    for entry, reason in ignores:
        report.append({"id": entry, "reason": reason, "tests": _count_tests_in_file(pkg / entry), "whole_file": True})
    for entry, reason in node_entries:
        matched = [nodeid for nodeid in all_ids if nodeid == entry or nodeid.startswith(entry + "[")]
        if not matched:
            raise RunError(f"not-run list names {entry}, which pytest did not collect (stale list?)")
        deselect += matched
        report.append({"id": entry, "reason": reason, "tests": len(matched), "whole_file": False,
                       "cases": matched})
    # pytest's --deselect matches node id prefixes: make sure none removes more than intended.
    chosen = set(deselect)
    for nodeid in all_ids:
        if nodeid not in chosen and any(nodeid.startswith(prefix) for prefix in chosen):
            raise RunError(f"--deselect would also remove {nodeid}; make the not-run entry more precise")
    return [entry for entry, _ in ignores], deselect, report


def summarise(results_path: Path) -> tuple[list[str], list[dict], list[dict], str | None]:
    """(passed ids, failed [{id, cause}], skipped [{id, cause}], adapter path) from the JSON lines."""
    adapter = None
    per_test: dict[str, dict] = {}
    if results_path.exists():
        for line in results_path.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            if "adapter" in record:
                adapter = record["adapter"]
                continue
            state = per_test.setdefault(record["nodeid"], {"outcome": None, "cause": ""})
            outcome, when = record["outcome"], record["when"]
            if outcome == "failed":
                if state["outcome"] != "failed":
                    state["outcome"] = "failed"
                    state["cause"] = (f"error in {when}: " if when != "call" else "") + record["cause"]
            elif outcome == "skipped" and state["outcome"] is None:
                state["outcome"] = "skipped"
                state["cause"] = record["cause"]
            elif outcome == "passed" and when == "call" and state["outcome"] is None:
                state["outcome"] = "passed"
    passed = [nodeid for nodeid, s in per_test.items() if s["outcome"] == "passed"]
    failed = [{"id": nodeid, "cause": s["cause"]} for nodeid, s in per_test.items() if s["outcome"] == "failed"]
    skipped = [{"id": nodeid, "cause": s["cause"]} for nodeid, s in per_test.items() if s["outcome"] == "skipped"]
    return passed, failed, skipped, adapter


def _one_line(text: str, limit: int = 300) -> str:
    first = " ".join(text.split())
    return first if len(first) <= limit else first[: limit - 3] + "..."


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    server = parser.add_mutually_exclusive_group(required=True)
    server.add_argument("--bin", help="path to the openspine binary to test")
    server.add_argument("--against-nhs-sandbox", action="store_true",
                        help="test the NHS mesh-sandbox itself (uvicorn, AUTH_MODE=full STORE_MODE=memory)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, package copy)")
    parser.add_argument("--json", metavar="FILE", help="also write a JSON summary to FILE")
    parser.add_argument("--not-run", metavar="FILE", default=str(DEFAULT_NOT_RUN),
                        help="list of tests not to run (default: %(default)s)")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments, after --")
    args = parser.parse_args()

    # SIGTERM/SIGHUP unwind through the finally blocks below, so the server is always stopped.
    def _terminate(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)

    workdir = Path(tempfile.mkdtemp(prefix="sandbox-suite-"))
    srv: Server | None = None
    try:
        not_run = read_not_run(Path(args.not_run))
        pkg = copy_package(workdir)
        if args.bin:
            base_url, srv = start_openspine(args.bin, workdir)
            label = f"openspine {args.bin}"
        else:
            base_url, srv = start_nhs_sandbox(workdir)
            label = "NHS mesh-sandbox (uvicorn, AUTH_MODE=full STORE_MODE=memory)"
        srv.wait_until_pinging(base_url)
        print(f"sandbox suite: server under test: {label} at {base_url}", flush=True)

        ignores, deselect, not_run_report = plan(pkg, base_url, not_run)
        results_path = workdir / "results.jsonl"
        argv = [sys.executable, "-m", "pytest", "-c", "pytest.ini", "--rootdir", ".", "-p", "no:cacheprovider",
                f"--basetemp={workdir / 'pytest-tmp'}", "-rfE", "--tb=short"]
        argv += [f"--ignore={entry}" for entry in ignores]
        argv += [f"--deselect={nodeid}" for nodeid in deselect]
        argv += list(args.pytest_args) + ["tests"]
        completed = _run_child(argv, pkg, _pytest_env(base_url, pkg.parent, results_path), capture=False)

        passed, failed, skipped, adapter = summarise(results_path)
        if adapter is None or Path(adapter).resolve() != (pkg / "conftest.py").resolve():
            raise RunError(f"the HTTP adapter was not the conftest pytest loaded (got {adapter!r}); "
                           "results would not be about the server under test")
        not_run_count = sum(item["tests"] for item in not_run_report)

        if failed:
            print("\nsandbox suite: failed tests:")
            for item in failed:
                print(f"  {item['id']}: {_one_line(item['cause'])}")
        if args.json:
            Path(args.json).write_text(json.dumps({
                "server": label,
                "pytest_exit_code": completed.returncode,
                "counts": {"passed": len(passed), "failed": len(failed), "skipped": len(skipped),
                           "not_run": not_run_count},
                "passed": passed,
                "failed": failed,
                "skipped": skipped,
                "not_run": not_run_report,
            }, indent=2) + "\n", encoding="utf-8")
        extra = f", {len(skipped)} skipped" if skipped else ""
        print(f"sandbox suite: {len(passed)} passed, {len(failed)} failed, {not_run_count} not run{extra}")
        if failed:
            return 1
        if completed.returncode != 0:
            print(f"sandbox suite: pytest exited with status {completed.returncode}", file=sys.stderr)
            return completed.returncode
        return 0
    except RunError as exc:
        print(f"sandbox suite: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sandbox suite: interrupted", file=sys.stderr)
        return 130
    finally:
        if srv is not None:
            srv.stop()
        if args.keep:
            print(f"sandbox suite: kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
