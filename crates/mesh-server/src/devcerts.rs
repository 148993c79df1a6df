//! A throwaway certificate authority for local mutual TLS: a CA, a server certificate for
//! the given host names, and client certificates with the given subject CNs, as PEM files.
//!
//! For developers and tests who want to run OpenSpine the way the real MESH runs (TLS
//! with client certificates) without an NHS-issued certificate. Never for production.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use std::path::{Path, PathBuf};

/// Paths of the files written.
#[derive(Debug, Clone)]
pub struct DevCerts {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// `(cn, certificate, key)` per client.
    pub clients: Vec<(String, PathBuf, PathBuf)>,
}

#[derive(Debug, thiserror::Error)]
pub enum DevCertError {
    #[error("generating a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn write(path: PathBuf, text: &str) -> Result<PathBuf, DevCertError> {
    std::fs::write(&path, text).map_err(|source| DevCertError::Write {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

/// A file name for a CN: keeps letters, digits, `-` and `.`, replaces the rest.
fn file_stem(cn: &str) -> String {
    cn.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Writes `ca.pem`, `server.pem`, `server-key.pem` and `client-<cn>.pem` /
/// `client-<cn>-key.pem` into `dir` (created if needed).
pub fn generate(
    dir: &Path,
    hosts: &[String],
    clients: &[String],
) -> Result<DevCerts, DevCertError> {
    std::fs::create_dir_all(dir).map_err(|source| DevCertError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "OpenSpine development CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate()?;
    let ca = ca_params.self_signed(&ca_key)?;

    let mut server_params = CertificateParams::new(hosts.to_vec())?;
    server_params.distinguished_name.push(
        DnType::CommonName,
        hosts.first().cloned().unwrap_or_else(|| "localhost".into()),
    );
    server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_key = KeyPair::generate()?;
    let server = server_params.signed_by(&server_key, &ca, &ca_key)?;

    let mut written = Vec::new();
    for cn in clients {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, cn.as_str());
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &ca, &ca_key)?;
        let stem = file_stem(cn);
        written.push((
            cn.clone(),
            write(dir.join(format!("client-{stem}.pem")), &cert.pem())?,
            write(
                dir.join(format!("client-{stem}-key.pem")),
                &key.serialize_pem(),
            )?,
        ));
    }
    Ok(DevCerts {
        ca: write(dir.join("ca.pem"), &ca.pem())?,
        server_cert: write(dir.join("server.pem"), &server.pem())?,
        server_key: write(dir.join("server-key.pem"), &server_key.serialize_pem())?,
        clients: written,
    })
}
