//! `openspine dev-app NAME`: everything a newcomer needs to get a first token, as
//! `dev-certs` is for TLS. It writes an RSA key pair, the app's JWKS and a registry line,
//! and prints a signed client assertion with the `curl` that exchanges it.
//!
//! Run again with the same name, it keeps the key and the registry line and prints a
//! fresh assertion (each is valid for five minutes and usable once).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::json;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum DevAppError {
    #[error("{path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("app name {0:?}: use letters, digits, '-' and '_' (at most 64)")]
    Name(String),
    #[error("making the key pair: {0}")]
    Key(String),
}

/// What was written, and a fresh assertion.
pub struct DevApp {
    pub client_id: String,
    pub client_secret: String,
    pub kid: String,
    pub private_key: PathBuf,
    pub jwks: PathBuf,
    pub registry: PathBuf,
    /// False when the app already existed (key and registry line kept).
    pub created: bool,
    pub assertion: String,
}

fn file_error(path: &Path) -> impl Fn(std::io::Error) -> DevAppError + '_ {
    move |e| DevAppError::File {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// Creates (or reuses) app `name` under `dir` and signs an assertion for `token_url`.
pub fn make(dir: &Path, name: &str, token_url: &str) -> Result<DevApp, DevAppError> {
    use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
    use rsa::traits::PublicKeyParts;
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(DevAppError::Name(name.to_string()));
    }
    let app_dir = dir.join(name);
    std::fs::create_dir_all(&app_dir).map_err(file_error(&app_dir))?;
    let private_key = app_dir.join("private.pem");
    let jwks = app_dir.join("jwks.json");
    let meta = app_dir.join("app.json");
    let registry = dir.join("apps.jsonl");
    let created = !private_key.exists();
    let (key, client_id, client_secret) = if created {
        let key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048)
            .map_err(|e| DevAppError::Key(e.to_string()))?;
        let pem = key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| DevAppError::Key(e.to_string()))?;
        write_private(&private_key, pem.as_bytes())?;
        let client_id = format!(
            "{name}-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let client_secret = uuid::Uuid::new_v4().simple().to_string();
        (key, client_id, client_secret)
    } else {
        let pem = std::fs::read_to_string(&private_key).map_err(file_error(&private_key))?;
        let key = rsa::RsaPrivateKey::from_pkcs8_pem(&pem)
            .map_err(|e| DevAppError::Key(format!("{}: {e}", private_key.display())))?;
        let text = std::fs::read_to_string(&meta).map_err(file_error(&meta))?;
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| DevAppError::File {
            path: meta.clone(),
            reason: e.to_string(),
        })?;
        let field = |k: &str| v[k].as_str().unwrap_or_default().to_string();
        (key, field("client_id"), field("client_secret"))
    };
    let kid = format!("{name}-1");
    let n = URL_SAFE_NO_PAD.encode(key.n().to_bytes_be());
    let e = URL_SAFE_NO_PAD.encode(key.e().to_bytes_be());
    let set =
        json!({"keys": [{"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS512", "n": n, "e": e}]});
    if created {
        let pretty = serde_json::to_string_pretty(&set).unwrap_or_default();
        std::fs::write(&jwks, pretty + "\n").map_err(file_error(&jwks))?;
        let entry = json!({
            "client_id": client_id,
            "name": name,
            "status": "approved",
            "client_secret": client_secret,
            "jwks": set,
            "asid": "200000000999",
            "products": [
                {
                    "name": format!("{name}-hello-world"),
                    "scopes": crate::hello::DEMO_SCOPES,
                    "apis": [crate::hello::API],
                },
                {
                    "name": format!("{name}-events"),
                    "scopes": [crate::DEMO_EVENTS_SCOPE],
                    "apis": [crate::DEMO_EVENTS_API],
                },
            ],
            // A developer's app may publish any event type to the events service.
            "flags": {crate::DEMO_EVENTS_API: {"permissions": ["events:create:*"]}},
        });
        use std::io::Write;
        // The registry holds client secrets: created readable by its owner only.
        let mut options = std::fs::OpenOptions::new();
        options.create(true).append(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&registry).map_err(file_error(&registry))?;
        writeln!(file, "{entry}").map_err(file_error(&registry))?;
        let m = json!({"client_id": client_id, "client_secret": client_secret, "kid": kid});
        // It holds the client secret: the owner's only, as the key is.
        write_private(&meta, (m.to_string() + "\n").as_bytes())?;
    }
    let pem = std::fs::read(&private_key).map_err(file_error(&private_key))?;
    let assertion = sign_assertion(&pem, &kid, &client_id, token_url)?;
    Ok(DevApp {
        client_id,
        client_secret,
        kid,
        private_key,
        jwks,
        registry,
        created,
        assertion,
    })
}

/// A client assertion as the NHS guide makes it: RS512, `kid` in the header, `iss` =
/// `sub` = the client id, `aud` the token URL, a fresh `jti`, `exp` five minutes on.
pub fn sign_assertion(
    private_pem: &[u8],
    kid: &str,
    client_id: &str,
    token_url: &str,
) -> Result<String, DevAppError> {
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(private_pem)
        .map_err(|e| DevAppError::Key(e.to_string()))?;
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS512);
    header.kid = Some(kid.to_string());
    let claims = json!({
        "iss": client_id,
        "sub": client_id,
        "aud": token_url,
        "jti": uuid::Uuid::new_v4().to_string(),
        "exp": chrono::Utc::now().timestamp() + 300,
    });
    jsonwebtoken::encode(&header, &claims, &key).map_err(|e| DevAppError::Key(e.to_string()))
}

/// Private keys are readable by their owner only.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), DevAppError> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(file_error(path))?;
    file.write_all(bytes).map_err(file_error(path))
}
