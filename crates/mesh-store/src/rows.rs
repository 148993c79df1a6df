//! Row encoding shared by the SQL backends: a message is stored as its JSON record, a
//! chunk as a size plus either inline bytes or a blob key. Both backends read and write the
//! same shapes, so the rules live once, generic over the sqlx row type.

use crate::meta::{ChunkLocation, ChunkRecord};
use crate::{Result, StoreError};
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

/// The id of the `i`th report made in one sweep batch. Ids start with their creation
/// time to the microsecond; reports made in one batch share a clock reading, so each gets
/// its own microsecond, which keeps two of them from ever drawing the same id.
pub(crate) fn report_id(now: chrono::DateTime<chrono::Utc>, i: u64) -> String {
    let bytes = *uuid::Uuid::new_v4().as_bytes();
    // Microseconds fit a TimeDelta for any count a sweep can reach (2^63 µs is 292 000 years).
    let at = now
        .checked_add_signed(chrono::TimeDelta::microseconds(i.min(1 << 40) as i64))
        .unwrap_or(now);
    mesh_protocol::ids::message_id(at, [bytes[0], bytes[1], bytes[2]])
}

/// The id prefix of messages created at `t`: ids begin `yyyyMMddHHmmssffffff`, so
/// "created after t" is "id greater than this" (API.md 5.1).
pub(crate) fn id_floor(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y%m%d%H%M%S%6f").to_string()
}

/// A log change name read back from the database.
pub(crate) fn change_from(name: &str) -> Result<mesh_protocol::Change> {
    mesh_protocol::Change::parse(name)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown change in the event log: {name}")))
}

pub(crate) fn status_from(name: &str) -> Result<mesh_protocol::Status> {
    mesh_protocol::Status::parse(name)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown status: {name}")))
}
