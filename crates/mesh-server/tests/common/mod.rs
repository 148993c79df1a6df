//! Starts the real server on a free loopback port with a fresh embedded store in a temp
//! directory, and hands out clients for the demo mailboxes.
#![allow(dead_code)]

use mesh_client::MeshClient;
use mesh_protocol::Clock;
use mesh_server::tls::TlsReloader;
use mesh_server::{AppState, DirectorySource, ServerConfig};
use mesh_store::{Store, StoreConfig};
use std::sync::Arc;
use tempfile::TempDir;
use tokio::sync::oneshot;

pub const KEY: &str = "TestKey";

pub struct TestServer {
    pub base: String,
    pub dir: TempDir,
    pub state: AppState,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestServer {
    /// The realistic default configuration (workflow permissions, replay and clock checks).
    pub async fn realistic() -> Self {
        Self::start(ServerConfig::default(), StoreConfig::default()).await
    }

    /// NHS-sandbox behaviour.
    pub async fn sandbox() -> Self {
        Self::start(ServerConfig::default().sandbox(), StoreConfig::default()).await
    }

    pub async fn start(config: ServerConfig, store_config: StoreConfig) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        Self::start_in(dir, config, store_config).await
    }

    pub async fn start_in(dir: TempDir, config: ServerConfig, store_config: StoreConfig) -> Self {
        let store = Store::open_embedded(dir.path(), &store_config)
            .await
            .expect("store opens");
        let source = DirectorySource {
            demo: true,
            ..Default::default()
        };
        Self::serve_store(dir, config, store, source, None).await
    }

    /// A server whose clock is `clock`: tests move it days on in an instant.
    pub async fn with_clock(
        config: ServerConfig,
        clock: Arc<dyn Clock>,
        source: DirectorySource,
    ) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open_embedded(dir.path(), &StoreConfig::default())
            .await
            .expect("store opens");
        let state = AppState::with_clock(config, store, source, clock).expect("directory loads");
        Self::serve_state(dir, state, None).await
    }

    /// As [`TestServer::with_clock`], on an existing data directory (a restart).
    pub async fn with_clock_in(
        dir: TempDir,
        config: ServerConfig,
        clock: Arc<dyn Clock>,
        source: DirectorySource,
    ) -> Self {
        let store = Store::open_embedded(dir.path(), &StoreConfig::default())
            .await
            .expect("store opens");
        let state = AppState::with_clock(config, store, source, clock).expect("directory loads");
        Self::serve_state(dir, state, None).await
    }

    /// Serves an already open store (several servers can share one, as nodes do), with a
    /// given directory and optionally TLS.
    pub async fn serve_store(
        dir: TempDir,
        config: ServerConfig,
        store: Store,
        source: DirectorySource,
        tls: Option<TlsReloader>,
    ) -> Self {
        let state = AppState::new(config, store, source).expect("directory loads");
        Self::serve_state(dir, state, tls).await
    }

    pub async fn serve_state(dir: TempDir, state: AppState, tls: Option<TlsReloader>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let scheme = if tls.is_some() { "https" } else { "http" };
        let base = format!("{scheme}://{}", listener.local_addr().expect("addr"));
        let (tx, rx) = oneshot::channel::<()>();
        let serve_state = state.clone();
        let task = tokio::spawn(async move {
            mesh_server::serve_with(listener, serve_state, tls, async {
                let _ = rx.await;
            })
            .await
            .expect("server runs");
        });
        TestServer {
            base,
            dir,
            state,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// Starts the ops listener (metrics, health, admin API) on this server's state and
    /// returns its base URL. It stops with the test's runtime.
    pub async fn start_ops(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let state = self.state.clone();
        tokio::spawn(async move {
            let _ = mesh_server::serve_ops(listener, state, None, std::future::pending()).await;
        });
        base
    }

    pub fn client(&self, mailbox: &str) -> MeshClient {
        MeshClient::new(&self.base, mailbox, "password", KEY)
    }

    pub fn http(&self) -> reqwest::Client {
        reqwest::Client::new()
    }

    /// The socket address the server listens on.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.base
            .rsplit("//")
            .next()
            .and_then(|a| a.parse().ok())
            .expect("base has an address")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Stops the server, waiting for in-flight requests; returns the data directory.
    pub async fn stop(mut self) -> TempDir {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        std::mem::replace(&mut self.dir, dir)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}
