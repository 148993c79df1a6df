//! The undocumented rich views (API.md 3.15): every message a mailbox has received or
//! sent, acknowledged and failed ones included, newest first. The MESH UI reads them, and
//! so do the sandbox's own tests. They ignore `Accept` and always answer in the v2 type.

use super::{form_encode, json_typed, upper};
use crate::caller::Caller;
use crate::error::{store_error, ApiError};
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeDelta, Utc};
use mesh_protocol::views::{iso_time, rich_inbox_entry, rich_outbox_entry};
use mesh_protocol::{ApiVersion, MeshError};
use mesh_store::Side;
use serde_json::json;

/// The page size rules of each view, as the sandbox has them.
struct Paging {
    min: i64,
    max: i64,
    /// The sandbox's outbox takes up to 5000 but never answers more than 100.
    cap: u32,
}

const INBOX: Paging = Paging {
    min: 1,
    max: 2000,
    cap: 2000,
};
const OUTBOX: Paging = Paging {
    min: 10,
    max: 5000,
    cap: 100,
};

pub async fn inbox(
    state: State<AppState>,
    path: Path<String>,
    query: Query<Vec<(String, String)>>,
    caller: Caller,
) -> Result<Response, ApiError> {
    view(state, path, query, caller, Side::Inbox).await
}

pub async fn outbox(
    state: State<AppState>,
    path: Path<String>,
    query: Query<Vec<(String, String)>>,
    caller: Caller,
) -> Result<Response, ApiError> {
    view(state, path, query, caller, Side::Outbox).await
}

/// ISO 8601 as the sandbox's `isoparse` reads it: with or without a zone (no zone is
/// UTC), with or without fractions, or a bare date.
fn parse_start(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    for f in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S%.f",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return Some(t.and_utc());
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
}

async fn view(
    State(state): State<AppState>,
    Path(mailbox): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
    _caller: Caller,
    side: Side,
) -> Result<Response, ApiError> {
    let mailbox = upper(&mailbox);
    let v = ApiVersion::V2;
    let param = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let bad = |kind: &str, name: &str, msg: &str| {
        ApiError::new(MeshError::validation(kind, &["query", name], msg), v)
    };
    let paging = match side {
        Side::Inbox => INBOX,
        Side::Outbox => OUTBOX,
    };
    let max_results = super::max_results(param("max_results"), paging.min, paging.max)
        .map_err(|e| ApiError::new(e, v))?
        .map_or(100, |n| n.min(paging.cap));
    let now = state.now();
    let since = match param("start_time") {
        None => now - TimeDelta::days(30),
        Some(text) => parse_start(text).ok_or_else(|| {
            bad(
                "datetime_parsing",
                "start_time",
                "start_time must be an ISO 8601 date and time",
            )
        })?,
    };
    let before = match param("continue_from") {
        None => None,
        Some(token) => Some(
            mesh_protocol::paging::decode_rich_cursor(token).ok_or_else(|| {
                bad(
                    "value_error",
                    "continue_from",
                    "continue_from is not a valid paging token",
                )
            })?,
        ),
    };
    let mut page = state
        .store()
        .meta
        .rich(side, &mailbox, since, before.as_deref(), max_results + 1)
        .await
        .map_err(|e| store_error(e, v))?;
    let more = page.len() > max_results as usize;
    page.truncate(max_results as usize);
    let render = match side {
        Side::Inbox => rich_inbox_entry,
        Side::Outbox => rich_outbox_entry,
    };
    let path = match side {
        Side::Inbox => "inbox/rich",
        Side::Outbox => "outbox/rich",
    };
    let base = format!(
        "/messageexchange/{mailbox}/{path}?start_time={}&max_results={max_results}",
        form_encode(&iso_time(since))
    );
    let mut links = json!({ "self": base });
    if let (true, Some(last)) = (more, page.last()) {
        links["next"] = json!(format!(
            "{base}&continue_from={}",
            form_encode(&mesh_protocol::paging::encode_rich_cursor(&last.message_id))
        ));
    }
    let body = json!({
        "valid_at": iso_time(now),
        "messages": page.iter().map(render).collect::<Vec<_>>(),
        "links": links,
    });
    Ok(json_typed(StatusCode::OK, v.json_content_type(), &body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_reads_the_forms_isoparse_reads() {
        let want = NaiveDate::from_ymd_opt(2022, 5, 20)
            .and_then(|d| d.and_hms_opt(14, 35, 52))
            .map(|t| t.and_utc());
        assert_eq!(parse_start("2022-05-20T14:35:52Z"), want);
        assert_eq!(parse_start("2022-05-20T14:35:52"), want);
        assert_eq!(parse_start("2022-05-20T15:35:52+01:00"), want);
        assert!(parse_start("2022-05-20").is_some());
        assert!(parse_start("yesterday").is_none());
    }

    #[test]
    fn cursor_round_trips_and_refuses_junk() {
        let id = "20261204090000000000_ABCDEF";
        assert_eq!(
            mesh_protocol::paging::decode_rich_cursor(&mesh_protocol::paging::encode_rich_cursor(
                id
            ))
            .as_deref(),
            Some(id)
        );
        assert_eq!(
            mesh_protocol::paging::decode_rich_cursor("not a token at all, sorry"),
            None
        );
    }
}
