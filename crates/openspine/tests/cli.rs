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

/// Every setting of `serve` (its environment variable) is in the example configuration
/// file, in its section, and the file names nothing else.
#[test]
fn the_example_configuration_names_every_setting_and_only_those() {
    let help = bin().args(["serve", "--help"]).output().expect("runs");
    let help = String::from_utf8_lossy(&help.stdout).to_string();
    let mut settings: Vec<String> = help
        .split("OPENSPINE_")
        .skip(1)
        .map(|rest| {
            rest.chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect::<String>()
                .to_ascii_lowercase()
        })
        .filter(|k| k != "config")
        .collect();
    settings.sort();
    settings.dedup();
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../openspine.example.toml"
    ))
    .expect("openspine.example.toml at the repository root");
    let mut keys: Vec<String> = example
        .lines()
        .filter_map(|l| l.strip_prefix("# "))
        .filter_map(|l| l.split_once(" = ").map(|(k, _)| k.to_string()))
        .filter(|k| {
            k.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        })
        .collect();
    keys.sort();
    assert_eq!(keys, settings);
    // The file, every line uncommented, is accepted as it stands (sections and keys).
    let dir = tempfile::tempdir().unwrap();
    let uncommented: String = example
        .lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(rest) if rest_is_setting(rest) => rest.to_string(),
            _ => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    let file = dir.path().join("all.toml");
    std::fs::write(&file, uncommented).unwrap();
    let out = bin()
        .args(["check-config", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains("no such setting") && !err.contains("belongs in"),
        "{err}"
    );
}

fn rest_is_setting(line: &str) -> bool {
    line.split_once(" = ").is_some_and(|(k, _)| {
        k.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    })
}

#[test]
fn a_configuration_file_is_read_and_the_environment_and_flags_win_over_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("openspine.toml");
    std::fs::write(
        &file,
        "[server]\nlisten = \"127.0.0.1:9911\"\n\n[mesh]\nmax_chunks = 7\n",
    )
    .unwrap();
    let out = bin()
        .args(["check-config", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("listen: 127.0.0.1:9911"));
    let out = bin()
        .args(["check-config", "--config"])
        .arg(&file)
        .env("OPENSPINE_LISTEN", "127.0.0.1:9912")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("listen: 127.0.0.1:9912"));
    let out = bin()
        .args(["check-config", "--listen", "127.0.0.1:9913", "--config"])
        .arg(&file)
        .env("OPENSPINE_LISTEN", "127.0.0.1:9912")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("listen: 127.0.0.1:9913"));
    // The file named by the environment works the same.
    let out = bin()
        .arg("check-config")
        .env("OPENSPINE_CONFIG", &file)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("listen: 127.0.0.1:9911"));
}

#[test]
fn a_misspelt_or_misplaced_setting_in_the_file_stops_the_server() {
    let dir = tempfile::tempdir().unwrap();
    for (text, expected) in [
        (
            "[server]\nlisen = \"127.0.0.1:1\"\n",
            "[server] lisen: no such setting",
        ),
        (
            "[mesh]\nlisten = \"127.0.0.1:1\"\n",
            "[mesh] listen: this setting belongs in [server]",
        ),
        ("listen = \"127.0.0.1:1\"\n", "is not a section"),
        ("[server\n", "line 1, column 8"),
    ] {
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, text).unwrap();
        let out = bin()
            .args(["serve", "--config"])
            .arg(&file)
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expected), "{text:?}: {err}");
        if !text.starts_with("[server\n") {
            assert_eq!(err.lines().count(), 1, "one line: {err}");
        }
    }
}

/// The newcomer's path: `dev-app` writes a key pair and a registry line and prints an
/// assertion; a server started with that registry exchanges it for a token that opens the
/// Hello World API; running `dev-app` again keeps the app and prints a fresh assertion.
#[tokio::test]
async fn a_dev_app_gets_a_token_and_calls_hello_world() {
    let dir = tempfile::tempdir().unwrap();
    let apps = dir.path().join("dev-apps");
    let port = free_port();
    let token_url = format!("http://127.0.0.1:{port}/oauth2/token");
    let made = bin()
        .args(["dev-app", "clinic-app", "--dir"])
        .arg(&apps)
        .args(["--token-url", &token_url])
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", text(&made));
    let printed = String::from_utf8_lossy(&made.stdout).to_string();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(apps.join("clinic-app/private.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "the private key is readable by others");
    }
    let assertion = |out: &str| {
        out.lines()
            .skip_while(|l| !l.starts_with("A client assertion"))
            .nth(1)
            .map(|l| l.trim().to_string())
            .unwrap()
    };
    let first = assertion(&printed);
    let child = bin()
        .args(["serve", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--frontdoor-registry")
        .arg(apps.join("apps.jsonl"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _server = Server(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let client = reqwest::Client::new();
    let exchange = |a: String| {
        let client = client.clone();
        let url = token_url.clone();
        async move {
            client
                .post(url)
                .form(&[
                    ("grant_type", "client_credentials"),
                    (
                        "client_assertion_type",
                        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                    ),
                    ("client_assertion", a.as_str()),
                ])
                .send()
                .await
                .unwrap()
        }
    };
    let answer = exchange(first).await;
    assert_eq!(answer.status(), 200);
    let body: serde_json::Value = answer.json().await.unwrap();
    let hello: serde_json::Value = client
        .get(format!(
            "http://127.0.0.1:{port}/hello-world/hello/application"
        ))
        .bearer_auth(body["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(hello["message"], "Hello Application!");
    // Again: same app (one registry line), a new assertion that works too.
    let again = bin()
        .args(["dev-app", "clinic-app", "--dir"])
        .arg(&apps)
        .args(["--token-url", &token_url])
        .output()
        .unwrap();
    let again = String::from_utf8_lossy(&again.stdout).to_string();
    assert!(again.contains("already registered"), "{again}");
    let registry = std::fs::read_to_string(apps.join("apps.jsonl")).unwrap();
    assert_eq!(registry.lines().count(), 1);
    assert_eq!(exchange(assertion(&again)).await.status(), 200);
    // A name that is no name is refused.
    let bad = bin()
        .args(["dev-app", "../escape", "--dir"])
        .arg(&apps)
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(text(&bad).contains("use letters, digits"), "{}", text(&bad));
}

#[tokio::test]
async fn mesh_can_be_switched_off_and_the_front_door_serves_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, port) = serve(dir.path(), &["--mesh", "false"]);
    let base = format!("http://127.0.0.1:{port}");
    let ping = reqwest::get(format!("{base}/oauth2/_ping")).await.unwrap();
    assert_eq!(ping.status().as_u16(), 200, "the front door is served");
    let mesh = reqwest::get(format!("{base}/messageexchange/_ping"))
        .await
        .unwrap();
    assert_eq!(mesh.status().as_u16(), 404, "MESH is not");
    // Its coordination store is the data directory's, locked as MESH locks it.
    assert!(dir.path().join("coordination.db").exists());
    assert!(!dir.path().join("mesh.db").exists());
    let second = bin()
        .args(["serve", "--demo", "--mesh", "false", "--listen"])
        .arg(format!("127.0.0.1:{}", free_port()))
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!second.status.success());
    assert!(text(&second).contains("is in use by another openspine process"));

    // With nothing enabled there is nothing to serve: say so, do not sit idle.
    let other = tempfile::tempdir().unwrap();
    let none = bin()
        .args(["serve", "--mesh", "false", "--listen"])
        .arg(format!("127.0.0.1:{}", free_port()))
        .arg("--data-dir")
        .arg(other.path())
        .output()
        .unwrap();
    assert!(!none.status.success());
    assert!(
        text(&none).contains("no service is enabled"),
        "{}",
        text(&none)
    );
}
