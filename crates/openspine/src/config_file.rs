//! The configuration file (`--config FILE` or `OPENSPINE_CONFIG`): TOML whose sections
//! are the services and the shared parts (`[server]`, `[store]`, `[mesh]`, `[frontdoor]`,
//! `[events]`),
//! each key the name of a `serve` setting (`listen`, `max_chunk_size`, …).
//!
//! A key is exactly its environment variable without the `OPENSPINE_` prefix, and the file
//! is applied by setting those variables where they are not set already. So every
//! setting has one name in three places, and the order is fixed: a flag beats an
//! environment variable, which beats the file, which beats the default. A key that is no
//! setting, or in another section than its own, is an error (a typo must not be silently
//! ignored).

use anyhow::{bail, Context};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The file named on the command line or in the environment, before clap parses (clap
/// must see the file's values as environment variables).
pub fn path_from_args() -> Option<PathBuf> {
    let args: Vec<String> = std::env::args().collect();
    for (i, a) in args.iter().enumerate() {
        if a == "--config" {
            return args.get(i + 1).map(PathBuf::from);
        }
        if let Some(p) = a.strip_prefix("--config=") {
            return Some(PathBuf::from(p));
        }
    }
    std::env::var_os("OPENSPINE_CONFIG").map(PathBuf::from)
}

/// Which section owns each setting: by the environment variable's name.
pub fn sections(serve: &clap::Command) -> BTreeMap<String, &'static str> {
    let mut out = BTreeMap::new();
    let frontdoor: Vec<String> = {
        use clap::Args;
        frontdoor::settings::FrontDoorArgs::augment_args(clap::Command::new("x"))
            .get_arguments()
            .filter_map(|a| a.get_env().map(|e| e.to_string_lossy().into_owned()))
            .collect()
    };
    let events: Vec<String> = {
        use clap::Args;
        events_server::settings::EventsArgs::augment_args(clap::Command::new("x"))
            .get_arguments()
            .filter_map(|a| a.get_env().map(|e| e.to_string_lossy().into_owned()))
            .collect()
    };
    for arg in serve.get_arguments() {
        let Some(env) = arg.get_env() else { continue };
        let env = env.to_string_lossy().into_owned();
        let Some(key) = env.strip_prefix("OPENSPINE_") else {
            continue;
        };
        let key = key.to_ascii_lowercase();
        let section = if frontdoor.contains(&env) {
            "frontdoor"
        } else if events.contains(&env) {
            "events"
        } else if SERVER_KEYS.contains(&key.as_str()) {
            "server"
        } else if STORE_KEYS.contains(&key.as_str()) {
            "store"
        } else if key == "config" {
            continue;
        } else {
            "mesh"
        };
        out.insert(key, section);
    }
    out
}

/// The listener, TLS, ops listener and logging: shared by every service.
const SERVER_KEYS: &[&str] = &[
    "listen",
    "data_dir",
    "demo",
    "sandbox",
    "env",
    "tls_cert",
    "tls_key",
    "client_ca",
    "client_cert_optional",
    "max_header_bytes",
    "header_timeout_secs",
    "body_idle_timeout_secs",
    "max_connections",
    "send_stall_timeout_secs",
    "ops_listen",
    "admin_token_file",
    "admin_token",
    "log_json",
];

/// Where data lives: shared by every service.
const STORE_KEYS: &[&str] = &[
    "database_url",
    "database_pool",
    "database_timeout_secs",
    "blob_url",
    "s3_endpoint",
    "s3_region",
    "s3_virtual_hosted",
    "gc_interval_secs",
    "gc_min_age_secs",
    "disk_reserve_mib",
    "inline_max",
];

/// Reads `path` and sets the environment variable of each key not set already.
///
/// Must run before any thread starts (setting the environment is not thread-safe).
pub fn apply(path: &Path, serve: &clap::Command) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the configuration file {}", path.display()))?;
    let doc: toml::Table =
        toml::from_str(&text).with_context(|| format!("configuration file {}", path.display()))?;
    let owners = sections(serve);
    for (section, table) in &doc {
        let Some(table) = table.as_table() else {
            bail!(
                "{}: `{section}` is not a section ([server], [store], [mesh], [frontdoor] or [events])",
                path.display()
            );
        };
        for (key, value) in table {
            let Some(owner) = owners.get(key.as_str()) else {
                bail!("{}: [{section}] {key}: no such setting", path.display());
            };
            if *owner != section.as_str() {
                bail!(
                    "{}: [{section}] {key}: this setting belongs in [{owner}]",
                    path.display()
                );
            }
            let text = match value {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                toml::Value::Float(f) => f.to_string(),
                _ => bail!(
                    "{}: [{section}] {key}: a string, number or true/false",
                    path.display()
                ),
            };
            let env = format!("OPENSPINE_{}", key.to_ascii_uppercase());
            if std::env::var_os(&env).is_none() {
                // SAFETY of intent: called from `main` before the runtime starts.
                std::env::set_var(env, text);
            }
        }
    }
    Ok(())
}
