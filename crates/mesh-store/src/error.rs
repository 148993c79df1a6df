//! Storage errors. Handlers map all of them to a MESH 5xx (clients retry those), except
//! [`StoreError::TooLarge`], which is the client's fault.

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("blob store: {0}")]
    Blob(#[from] object_store::Error),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The store configuration (a URL, an option) is unusable.
    #[error("store configuration: {0}")]
    Config(String),
    #[error("stored record is unreadable: {0}")]
    Corrupt(String),
    /// A group commit failed; every write in the batch failed with it.
    #[error("commit: {0}")]
    Commit(String),
    /// The request body failed while it was being read (client went away, timeout).
    #[error("request body: {0}")]
    Body(String),
    /// The body was longer than the limit the caller set.
    #[error("payload larger than {limit} bytes")]
    TooLarge { limit: u64 },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

impl StoreError {
    /// The payload (file or object) is not there: gone for good, unlike a store that is
    /// not answering, which a retry may get past.
    pub fn is_not_found(&self) -> bool {
        match self {
            StoreError::Blob(object_store::Error::NotFound { .. }) => true,
            StoreError::Io(e) => e.kind() == std::io::ErrorKind::NotFound,
            _ => false,
        }
    }
}
