//! The workspace's dependency rules (docs/ARCHITECTURE.md), checked from `cargo metadata`
//! so that a new dependency that breaks one fails the test command, not a review:
//!
//! * a `*-protocol` crate uses no async runtime, web framework, HTTP client or database;
//! * a shared `spine-*` crate depends on no service's crates;
//! * no service's crates depend on another service's;
//! * the binary holds no request logic and no SQL: no web framework or database crate.

use serde_json::Value;
use std::collections::BTreeMap;

/// Which service each workspace crate belongs to (`None`: shared or the binary).
/// `auth-protocol` is shared: the platform's OAuth rules and the gateway's interface
/// (`Protected`, `Caller`) that every protected service declares and reads.
fn service_of(name: &str) -> Option<&'static str> {
    match name {
        n if n.starts_with("mesh-") => Some("mesh"),
        "frontdoor" => Some("frontdoor"),
        n if n.starts_with("events-") => Some("events"),
        n if n.starts_with("pds-") => Some("pds"),
        _ => None,
    }
}

const ASYNC_WEB_DB: &[&str] = &[
    "tokio",
    "async-std",
    "smol",
    "futures",
    "async-trait",
    "axum",
    "hyper",
    "hyper-util",
    "tower",
    "tower-http",
    "actix-web",
    "warp",
    "reqwest",
    "sqlx",
    "rusqlite",
    "postgres",
    "tokio-postgres",
    "object_store",
    "async-nats",
];

/// Each workspace crate and its normal (not dev or build) dependencies.
fn workspace() -> BTreeMap<String, Vec<String>> {
    let out = std::process::Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).expect("metadata is JSON");
    meta["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|d| d["kind"].is_null())
                .filter_map(|d| d["name"].as_str().map(str::to_string))
                .collect();
            (p["name"].as_str().unwrap_or_default().to_string(), deps)
        })
        .collect()
}

#[test]
fn protocol_crates_use_no_async_runtime_web_framework_or_database() {
    let ws = workspace();
    let protocols: Vec<_> = ws.keys().filter(|n| n.ends_with("-protocol")).collect();
    assert!(protocols.len() >= 2, "{protocols:?}");
    // The reading sees dependencies at all (a service crate has its web framework).
    assert!(ws["mesh-server"].iter().any(|d| d == "axum"));
    for (name, deps) in &ws {
        if !name.ends_with("-protocol") {
            continue;
        }
        let bad: Vec<_> = deps
            .iter()
            .filter(|d| ASYNC_WEB_DB.contains(&d.as_str()))
            .collect();
        assert!(bad.is_empty(), "{name} depends on {bad:?}");
    }
}

#[test]
fn shared_crates_depend_on_no_service() {
    for (name, deps) in workspace() {
        if !name.starts_with("spine-") && name != "auth-protocol" {
            continue;
        }
        let bad: Vec<_> = deps.iter().filter(|d| service_of(d).is_some()).collect();
        assert!(bad.is_empty(), "shared crate {name} depends on {bad:?}");
    }
}

#[test]
fn no_service_depends_on_another_service() {
    let ws = workspace();
    for (name, deps) in &ws {
        let Some(mine) = service_of(name) else {
            continue;
        };
        for d in deps {
            if let Some(theirs) = service_of(d) {
                assert_eq!(mine, theirs, "{name} ({mine}) depends on {d} ({theirs})");
            }
        }
    }
}

#[test]
fn the_binary_holds_no_request_logic_or_sql() {
    let ws = workspace();
    let deps = ws.get("openspine").expect("the binary crate");
    for forbidden in [
        "axum",
        "hyper",
        "tower",
        "tower-http",
        "sqlx",
        "rusqlite",
        "object_store",
    ] {
        assert!(
            !deps.iter().any(|d| d == forbidden),
            "openspine depends on {forbidden}"
        );
    }
}
