//! Row encoding shared by the SQL backends: a message is stored as its JSON record, a
//! chunk as a size plus either inline bytes or a blob key. Both backends read and write the
//! same shapes, so the rules live once, generic over the sqlx row type.

use crate::error::{Result, StoreError};
use crate::meta::{ChunkLocation, ChunkRecord};
use bytes::Bytes;
use mesh_protocol::Message;
use sqlx::{ColumnIndex, Decode, Row, Type};

pub(crate) fn encode(message: &Message) -> Result<String> {
    serde_json::to_string(message).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// The message in a row's `record` column.
pub(crate) fn decode<R>(row: &R) -> Result<Message>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
{
    let record: String = row.try_get("record")?;
    serde_json::from_str(&record).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// A chunk from a row with `size`, `blob_key`, `data` (all NULL when a join found none).
pub(crate) fn chunk_from_row<R>(row: &R) -> Result<Option<ChunkRecord>>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    for<'r> Option<i64>: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Option<String>: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Option<Vec<u8>>: Decode<'r, R::Database> + Type<R::Database>,
{
    let Some(size) = row.try_get::<Option<i64>, _>("size")? else {
        return Ok(None);
    };
    let key: Option<String> = row.try_get("blob_key")?;
    let location = match key {
        Some(k) => ChunkLocation::Blob(k),
        None => {
            let data: Option<Vec<u8>> = row.try_get("data")?;
            ChunkLocation::Inline(Bytes::from(data.unwrap_or_default()))
        }
    };
    Ok(Some(ChunkRecord {
        size: size.max(0) as u64,
        location,
    }))
}

/// The `blob_key` and `data` column values of a chunk.
pub(crate) fn chunk_columns(chunk: &ChunkRecord) -> (Option<&str>, Option<&[u8]>) {
    match &chunk.location {
        ChunkLocation::Inline(b) => (None, Some(b.as_ref())),
        ChunkLocation::Blob(k) => (Some(k.as_str()), None),
    }
}
