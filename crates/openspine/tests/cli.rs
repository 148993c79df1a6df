//! The binary as an operator meets it: start-up refusals, configuration checks and the
//! environment's switches. Each test runs the real `openspine` executable.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_openspine"));
    // Only what a test sets: no OPENSPINE_* leaking in from the caller's environment.
    for (k, _) in std::env::vars() {
        if k.starts_with("OPENSPINE_") {
            c.env_remove(k);
        }
    }
    c
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `serve` on `dir` and waits until it accepts connections.
fn serve(dir: &Path, extra: &[&str]) -> (Server, u16) {
    let port = free_port();
    let child = bin()
        .args(["serve", "--demo", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(dir)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("openspine starts");
    let server = Server(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "the server did not start listening"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (server, port)
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn a_second_server_on_one_data_directory_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let (mut first, port) = serve(dir.path(), &[]);
    let mut second = bin()
        .args(["serve", "--demo", "--listen"])
        .arg(format!("127.0.0.1:{}", free_port()))
        .arg("--data-dir")
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // It must give up at once; one still running after ten seconds is serving.
    let deadline = Instant::now() + Duration::from_secs(10);
    while second.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = second.kill();
            panic!("a second server started on a data directory already in use");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = second.wait_with_output().unwrap();
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.lines()
            .any(|l| l.starts_with("error: ")
                && l.contains("is in use by another openspine process")),
        "one line for the operator: {said}"
    );
    // The first one is unharmed.
    assert!(
        first.0.try_wait().unwrap().is_none(),
        "first server still runs"
    );
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
}

#[test]
fn the_start_up_sweep_spares_payloads_younger_than_the_minimum_age() {
    let dir = tempfile::tempdir().unwrap();
    // Leave the directory initialised, then plant two payload files no message names.
    drop(serve(dir.path(), &[]));
    let hour = dir.path().join("chunks").join("2026010100");
    std::fs::create_dir_all(&hour).unwrap();
    let young = hour.join("YOUNG-1-0000");
    let old = hour.join("OLD-1-0000");
    std::fs::write(&young, b"in flight").unwrap();
    std::fs::write(&old, b"left by a crash").unwrap();
    let two_hours_ago = SystemTime::now() - Duration::from_secs(7200);
    std::fs::File::options()
        .write(true)
        .open(&old)
        .unwrap()
        .set_modified(two_hours_ago)
        .unwrap();
    let (server, _) = serve(dir.path(), &["--gc-min-age-secs", "3600"]);
    // The sweep runs before the server listens.
    drop(server);
    assert!(
        young.exists(),
        "a payload younger than the minimum age was swept"
    );
    assert!(!old.exists(), "an old unreferenced payload was kept");
}

#[test]
fn switches_in_the_environment_take_yes_no_on_off_and_digits() {
    for (value, mailboxes) in [
        ("true", 3),
        ("yes", 3),
        ("on", 3),
        ("1", 3),
        ("YES", 3),
        ("false", 0),
        ("no", 0),
        ("off", 0),
        ("0", 0),
    ] {
        let out = bin()
            .arg("check-config")
            .env("OPENSPINE_DEMO", value)
            .output()
            .unwrap();
        assert!(out.status.success(), "{value}: {}", text(&out));
        assert!(
            text(&out).contains(&format!("mailboxes: {mailboxes},")),
            "{value}: {}",
            text(&out)
        );
    }
    let out = bin()
        .arg("check-config")
        .env("OPENSPINE_DEMO", "maybe")
        .output()
        .unwrap();
    assert!(!out.status.success(), "an unreadable switch is refused");
}

#[test]
fn check_config_names_the_file_and_line_of_a_mistake() {
    let dir = tempfile::tempdir().unwrap();
    let mailboxes = dir.path().join("mailboxes.jsonl");
    std::fs::write(
        &mailboxes,
        "{\"mailbox_id\":\"A1\",\"mailbox_name\":\"A\",\"password\":\"p\"}\n\
         {\"mailbox_id\":\"B1\",\"mailbox_name\":\"B\",\"pasword\":\"p\"}\n",
    )
    .unwrap();
    let out = bin()
        .arg("check-config")
        .arg("--mailboxes")
        .arg(&mailboxes)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let said = text(&out);
    assert!(
        said.contains(&format!(
            "{} line 2: unknown field `pasword`",
            mailboxes.display()
        )),
        "{said}"
    );

    std::fs::write(
        &mailboxes,
        "{\"mailbox_id\":\"A1\",\"mailbox_name\":\"A\"}\n{\"mailbox_id\":\"a1\",\"mailbox_name\":\"B\"}\n",
    )
    .unwrap();
    let out = bin()
        .arg("check-config")
        .arg("--mailboxes")
        .arg(&mailboxes)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out).contains("line 2: duplicate mailbox_id A1: already defined at"),
        "{}",
        text(&out)
    );
    // The same mistake stops `serve` too, before it listens.
    let out = bin()
        .args(["serve", "--listen"])
        .arg(format!("127.0.0.1:{}", free_port()))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--mailboxes")
        .arg(&mailboxes)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out).contains("duplicate mailbox_id A1"),
        "{}",
        text(&out)
    );
}

#[test]
fn check_config_warns_about_probable_mistakes_and_exposed_settings() {
    let dir = tempfile::tempdir().unwrap();
    let mailboxes = dir.path().join("mailboxes.jsonl");
    let workflows = dir.path().join("workflows.jsonl");
    std::fs::write(
        &mailboxes,
        "{\"mailbox_id\":\"A1\",\"mailbox_name\":\"A\"}\n",
    )
    .unwrap();
    std::fs::write(
        &workflows,
        "{\"workflow_id\":\"W\",\"senders\":[\"A1\"],\"receivers\":[\"B2\"]}\n",
    )
    .unwrap();
    let out = bin()
        .args(["check-config", "--sandbox", "--listen", "0.0.0.0:8700"])
        .arg("--mailboxes")
        .arg(&mailboxes)
        .arg("--workflows")
        .arg(&workflows)
        .output()
        .unwrap();
    assert!(out.status.success(), "warnings do not fail: {}", text(&out));
    let said = text(&out);
    for expected in [
        "line 1: workflow W names receiver B2, which is not a configured mailbox",
        "the shared key is the public default (TestKey)",
        "--sandbox on 0.0.0.0:8700 (not a loopback address)",
        "plain HTTP on 0.0.0.0:8700 (not a loopback address)",
        "configuration OK (4 warnings)",
    ] {
        assert!(said.contains(expected), "missing {expected:?} in {said}");
    }
    // A private key, loopback and the sandbox: nothing to warn about.
    let out = bin()
        .args(["check-config", "--sandbox", "--demo"])
        .env("OPENSPINE_SHARED_KEY", "a-real-secret")
        .output()
        .unwrap();
    let said = text(&out);
    assert!(out.status.success());
    assert!(!said.contains("warning"), "{said}");
}
