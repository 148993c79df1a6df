//! The one storage error of the platform. Services map every variant to their own 5xx
//! (clients retry those), except the three that are the caller's fault:
//! [`StoreError::TooLarge`], [`StoreError::Body`] and [`StoreError::Invalid`].

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
    /// A key or value the store refuses (too long, a NUL): the caller's input.
    #[error("{0}")]
    Invalid(String),
    /// The store could not do it now (its writer stopped, a batch failed).
    #[error("{0}")]
    Unavailable(String),
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
