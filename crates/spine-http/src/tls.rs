//! TLS with rustls: server certificate, optional mutual TLS against a CA bundle, and
//! reload without restart so a certificate rotation needs no downtime.
//!
//! Modes (API.md 2.8): no `client_ca` = TLS without client authentication; `client_ca` =
//! client certificates verified against that bundle, required unless
//! `client_cert_optional` (which matches the real clients' test setups that may or may
//! not present one).

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use tokio_rustls::TlsAcceptor;

/// Where the PEM files are; re-read on every [`TlsReloader::reload`].
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// Certificate chain, leaf first.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// CA bundle that client certificates must chain to (mutual TLS).
    pub client_ca: Option<PathBuf>,
    /// With `client_ca`: also accept clients that present no certificate.
    pub client_cert_optional: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("{path} holds no certificate")]
    NoCertificate { path: PathBuf },
    #[error("TLS configuration: {0}")]
    Config(String),
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let file_error = |e: rustls::pki_types::pem::Error| TlsError::File {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(file_error)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(file_error)?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// Builds a rustls configuration from the files as they are now.
pub fn build(files: &TlsFiles) -> Result<ServerConfig, TlsError> {
    let chain = certs(&files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| TlsError::File {
        path: files.key.clone(),
        reason: e.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match &files.client_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in certs(ca)? {
                roots
                    .add(cert)
                    .map_err(|e| TlsError::Config(format!("{}: {e}", ca.display())))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if files.client_cert_optional {
                verifier.allow_unauthenticated()
            } else {
                verifier
            }
            .build()
            .map_err(|e| TlsError::Config(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The live TLS configuration. New connections use whatever was loaded last; connections
/// already open keep the configuration they started with.
#[derive(Clone)]
pub struct TlsReloader {
    files: Arc<TlsFiles>,
    current: Arc<RwLock<Arc<ServerConfig>>>,
    /// The validity ends of the certificates in use, read when they were loaded: the
    /// files may already hold newer ones that failed to load.
    in_use: Arc<RwLock<Vec<(&'static str, i64)>>>,
}

impl TlsReloader {
    pub fn load(files: TlsFiles) -> Result<Self, TlsError> {
        let config = build(&files)?;
        let in_use = read_expiries(&files);
        Ok(TlsReloader {
            files: Arc::new(files),
            current: Arc::new(RwLock::new(Arc::new(config))),
            in_use: Arc::new(RwLock::new(in_use)),
        })
    }

    /// Re-reads the files. On any error the previous configuration stays in use, so a
    /// half-copied certificate never takes the service down.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = build(&self.files)?;
        let expiries = read_expiries(&self.files);
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(fresh);
        *self.in_use.write().unwrap_or_else(|p| p.into_inner()) = expiries;
        Ok(())
    }

    /// When each certificate in use stops being valid (Unix seconds): the server's leaf
    /// and the earliest of the client CA bundle, as loaded (not as the files now say).
    /// For the `mesh_tls_certificate_expiry_seconds` gauge an operator alerts on.
    pub fn expiries(&self) -> Vec<(&'static str, i64)> {
        self.in_use
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(
            self.current
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }
}

/// The subject CN of a client certificate, if it has one that is text.
pub fn subject_cn(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let cn = parsed.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_string)
}

fn read_expiries(files: &TlsFiles) -> Vec<(&'static str, i64)> {
    let mut out = Vec::new();
    if let Some(t) = certs(&files.cert)
        .ok()
        .and_then(|c| c.first().and_then(not_after))
    {
        out.push(("server", t));
    }
    if let Some(ca) = &files.client_ca {
        if let Some(t) = certs(ca)
            .ok()
            .and_then(|c| c.iter().filter_map(not_after).min())
        {
            out.push(("client_ca", t));
        }
    }
    out
}

/// The end of a certificate's validity, in Unix seconds.
pub fn not_after(cert: &CertificateDer<'_>) -> Option<i64> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    Some(parsed.validity().not_after.timestamp())
}
