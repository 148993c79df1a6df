//! A MESH client for Rust: signs `NHSMESH` tokens the way the official client does (one
//! nonce per client, an incrementing count) and wraps the common calls. Raw requests are
//! available too, so tests can send exactly the malformed input they need.

use mesh_protocol::AuthToken;
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use std::sync::atomic::{AtomicU64, Ordering};

pub const ACCEPT_V1: &str = "application/vnd.mesh.v1+json";
pub const ACCEPT_V2: &str = "application/vnd.mesh.v2+json";

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("http: {0}")]
    Http(#[from] reqwest::Error),
    #[error("unexpected {status}: {body}")]
    Status { status: StatusCode, body: String },
    #[error("response without {0}")]
    Missing(&'static str),
}

/// One mailbox's view of a MESH server.
pub struct MeshClient {
    http: reqwest::Client,
    base: String,
    mailbox: String,
    password: String,
    shared_key: String,
    nonce: String,
    count: AtomicU64,
}

/// A downloaded chunk.
#[derive(Debug)]
pub struct Chunk {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: bytes::Bytes,
}

impl Chunk {
    /// `(k, total)` from `mex-chunk-range`.
    pub fn range(&self) -> Option<(u32, u32)> {
        let v = self.headers.get("mex-chunk-range")?.to_str().ok()?;
        let (a, b) = v.split_once(':')?;
        Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
    }
}

impl MeshClient {
    pub fn new(base: &str, mailbox: &str, password: &str, shared_key: &str) -> Self {
        Self::with_http(reqwest::Client::new(), base, mailbox, password, shared_key)
    }

    /// Shares one connection pool between many clients (the benchmark runs hundreds).
    pub fn with_http(
        http: reqwest::Client,
        base: &str,
        mailbox: &str,
        password: &str,
        shared_key: &str,
    ) -> Self {
        MeshClient {
            http,
            base: base.trim_end_matches('/').to_string(),
            mailbox: mailbox.to_string(),
            password: password.to_string(),
            shared_key: shared_key.to_string(),
            nonce: uuid::Uuid::new_v4().to_string(),
            count: AtomicU64::new(0),
        }
    }

    pub fn mailbox(&self) -> &str {
        &self.mailbox
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// A fresh token: same nonce, next count, current minute.
    pub fn token(&self) -> String {
        let count = self.count.fetch_add(1, Ordering::Relaxed);
        let ts = AuthToken::timestamp_for(chrono::Utc::now());
        AuthToken::sign(
            &self.shared_key,
            &self.mailbox,
            &self.password,
            &self.nonce,
            count,
            &ts,
        )
        .header_value()
    }

    /// A request to `path` (root-relative) with a fresh token and `Accept` for v2.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.request_accepting(method, path, ACCEPT_V2)
    }

    /// A request with a fresh token and the given `Accept` value.
    pub fn request_accepting(&self, method: Method, path: &str, accept: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}{}", self.base, path))
            .header("authorization", self.token())
            .header("accept", accept)
    }

    /// `/messageexchange/{mailbox}{rest}`.
    pub fn mx(&self, rest: &str) -> String {
        format!("/messageexchange/{}{}", self.mailbox, rest)
    }

    pub async fn handshake(&self) -> Result<(), ClientError> {
        let r = self
            .request(Method::POST, &self.mx(""))
            .header("mex-clientversion", "openspine-mesh-client")
            .header("mex-osname", std::env::consts::OS)
            .header("mex-osversion", "n/a")
            .send()
            .await?;
        expect(r, &[StatusCode::OK]).await.map(|_| ())
    }

    /// Sends a single-chunk message; returns its id.
    pub async fn send(
        &self,
        to: &str,
        workflow: &str,
        body: impl Into<reqwest::Body>,
    ) -> Result<String, ClientError> {
        self.send_chunk1(to, workflow, body, 1).await
    }

    /// Sends chunk 1 of `total`; returns the message id.
    pub async fn send_chunk1(
        &self,
        to: &str,
        workflow: &str,
        body: impl Into<reqwest::Body>,
        total: u32,
    ) -> Result<String, ClientError> {
        let r = self
            .request(Method::POST, &self.mx("/outbox"))
            .header("mex-to", to)
            .header("mex-workflowid", workflow)
            .header("mex-chunk-range", format!("1:{total}"))
            .header("content-type", "application/octet-stream")
            .body(body)
            .send()
            .await?;
        let r = expect(r, &[StatusCode::ACCEPTED]).await?;
        let v: serde_json::Value = r.json().await?;
        v.get("message_id")
            .and_then(|m| m.as_str())
            .map(str::to_string)
            .ok_or(ClientError::Missing("message_id"))
    }

    pub async fn send_chunk(
        &self,
        message_id: &str,
        number: u32,
        total: u32,
        body: impl Into<reqwest::Body>,
    ) -> Result<(), ClientError> {
        let r = self
            .request(
                Method::POST,
                &self.mx(&format!("/outbox/{message_id}/{number}")),
            )
            .header("mex-chunk-range", format!("{number}:{total}"))
            .header("content-type", "application/octet-stream")
            .body(body)
            .send()
            .await?;
        expect(r, &[StatusCode::ACCEPTED, StatusCode::OK])
            .await
            .map(|_| ())
    }

    /// One page of inbox ids (v2), and the `links.next` path if there are more.
    pub async fn inbox_page(
        &self,
        path: Option<&str>,
    ) -> Result<(Vec<String>, Option<String>), ClientError> {
        let path = path
            .map(str::to_string)
            .unwrap_or_else(|| self.mx("/inbox"));
        let r = self.request(Method::GET, &path).send().await?;
        let v: serde_json::Value = expect(r, &[StatusCode::OK]).await?.json().await?;
        let ids = v["messages"]
            .as_array()
            .ok_or(ClientError::Missing("messages"))?
            .iter()
            .filter_map(|m| m.as_str().map(str::to_string))
            .collect();
        Ok((ids, v["links"]["next"].as_str().map(str::to_string)))
    }

    /// Every id in the inbox, following `links.next`.
    pub async fn inbox(&self) -> Result<Vec<String>, ClientError> {
        let mut all = Vec::new();
        let mut next = None;
        loop {
            let (ids, more) = self.inbox_page(next.as_deref()).await?;
            all.extend(ids);
            match more {
                Some(n) => next = Some(n),
                None => return Ok(all),
            }
        }
    }

    /// Downloads chunk `number` as stored (no gzip negotiation).
    pub async fn download_chunk(
        &self,
        message_id: &str,
        number: u32,
    ) -> Result<Chunk, ClientError> {
        let path = if number == 1 {
            self.mx(&format!("/inbox/{message_id}"))
        } else {
            self.mx(&format!("/inbox/{message_id}/{number}"))
        };
        let r = self
            .request(Method::GET, &path)
            .header("accept-encoding", "identity")
            .send()
            .await?;
        let r = expect(r, &[StatusCode::OK, StatusCode::PARTIAL_CONTENT]).await?;
        let status = r.status();
        let headers = r.headers().clone();
        let body = r.bytes().await?;
        Ok(Chunk {
            status,
            headers,
            body,
        })
    }

    /// Downloads a whole message (all chunks, concatenated).
    pub async fn download(&self, message_id: &str) -> Result<Vec<u8>, ClientError> {
        let first = self.download_chunk(message_id, 1).await?;
        let total = first.range().map(|(_, t)| t).unwrap_or(1);
        let mut data = first.body.to_vec();
        for k in 2..=total {
            data.extend_from_slice(&self.download_chunk(message_id, k).await?.body);
        }
        Ok(data)
    }

    pub async fn acknowledge(&self, message_id: &str) -> Result<(), ClientError> {
        let r = self
            .request(
                Method::PUT,
                &self.mx(&format!("/inbox/{message_id}/status/acknowledged")),
            )
            .send()
            .await?;
        expect(r, &[StatusCode::OK]).await.map(|_| ())
    }

    /// The v2 tracking record of a sent message.
    pub async fn track(&self, message_id: &str) -> Result<serde_json::Value, ClientError> {
        let r = self
            .request(Method::GET, &self.mx("/outbox/tracking"))
            .query(&[("messageID", message_id)])
            .send()
            .await?;
        Ok(expect(r, &[StatusCode::OK]).await?.json().await?)
    }
}

async fn expect(r: Response, ok: &[StatusCode]) -> Result<Response, ClientError> {
    if ok.contains(&r.status()) {
        return Ok(r);
    }
    let status = r.status();
    let body = r.text().await.unwrap_or_default();
    Err(ClientError::Status { status, body })
}
