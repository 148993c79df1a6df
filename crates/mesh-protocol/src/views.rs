//! JSON bodies and header sets the API returns, per version (API.md 1.3, 3, 4.5, 7).

use crate::model::{Mailbox, Message, MessageType, Status};
use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

/// `yyyyMMddHHmmss`, used by v1 tracking and `Mex-StatusTimestamp`.
pub fn compact_time(t: DateTime<Utc>) -> String {
    t.format("%Y%m%d%H%M%S").to_string()
}

/// ISO 8601 without zone and with microseconds, as the sandbox writes it (API.md 7.2); a
/// zone suffix would break `datetime.fromisoformat` on the Pythons clients still run.
pub fn iso_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6f").to_string()
}

/// HTTP date for `Last-Modified` (API.md 11 #17: `GMT`, not SBX's `UTC`).
pub fn http_date(t: DateTime<Utc>) -> String {
    t.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

/// The `mex-*` and `last-modified` headers of a download or HEAD of chunk `chunk` (API.md
/// 4.5, 4.6). Empty values are left out, as the real service does. `Content-Type`,
/// `Content-Encoding`, `Content-Length` and the compressed flag depend on content
/// negotiation and are added by the caller.
pub fn download_headers(m: &Message, chunk: u32) -> Vec<(&'static str, String)> {
    let mut h: Vec<(&'static str, String)> = Vec::with_capacity(24);
    let mut put = |name: &'static str, value: &str| {
        if !value.is_empty() {
            h.push((name, value.to_string()));
        }
    };
    let md = &m.metadata;
    let is_report = m.message_type == MessageType::Report;
    let shown_chunk = if is_report { 1 } else { chunk };
    put("mex-from", &m.sender.mailbox_id);
    put("mex-to", &m.recipient.mailbox_id);
    put("mex-workflowid", &m.workflow_id);
    put(
        "mex-chunk-range",
        &format!("{shown_chunk}:{}", m.total_chunks),
    );
    put("mex-total-chunks", &m.total_chunks.to_string());
    put("mex-addresstype", "ALL");
    put("mex-localid", &md.local_id);
    put("mex-partnerid", &md.partner_id);
    put("mex-filename", &m.file_name());
    put("mex-subject", &md.subject);
    put("mex-version", "1.0");
    put("mex-messagetype", m.message_type.upper());
    put("mex-messageid", &m.message_id);
    match m.failure_event() {
        Some(e) => {
            put(
                "mex-linkedmsgid",
                e.linked_message_id.as_deref().unwrap_or(""),
            );
            put("mex-statuscode", e.code.as_deref().unwrap_or(""));
            put("mex-statusevent", e.event.as_deref().unwrap_or(""));
            put(
                "mex-statusdescription",
                e.description.as_deref().unwrap_or(""),
            );
            put("mex-statussuccess", "ERROR");
        }
        None if is_report => put("mex-statussuccess", "ERROR"),
        None => {
            put("mex-statuscode", "00");
            put("mex-statusevent", "TRANSFER");
            put("mex-statusdescription", "Transferred to recipient mailbox");
            put("mex-statussuccess", "SUCCESS");
        }
    }
    put("mex-statustimestamp", &compact_time(m.status_time()));
    if md.encrypted {
        put("mex-content-encrypted", "Y");
    }
    put("mex-content-checksum", &md.checksum);
    put("mex-content-type", &md.content_type);
    put("last-modified", &http_date(m.last_modified()));
    h
}

/// v1 tracking record (API.md 7.1).
pub fn tracking_v1(m: &Message) -> Value {
    let md = &m.metadata;
    let flag = |b: bool| if b { "Y" } else { "" };
    let failure = m.failure_event();
    let is_data = m.message_type == MessageType::Data;
    let mut o = Map::new();
    let mut put = |k: &str, v: Value| {
        o.insert(k.to_string(), v);
    };
    put("addressType", json!("ALL"));
    put("checksum", json!(md.checksum));
    put("chunkCount", json!(m.total_chunks));
    put("compressFlag", json!(flag(md.compressed)));
    put("contentEncoding", json!(md.content_encoding));
    put(
        "downloadTimestamp",
        json!(m.acknowledged_at().map(compact_time).unwrap_or_default()),
    );
    put("dtsId", json!(m.message_id));
    put("encryptedFlag", json!(flag(md.encrypted)));
    put("expiryTime", json!(compact_time(m.expires)));
    if let (Some(e), true) = (failure, is_data) {
        put("failureDate", json!(compact_time(e.timestamp)));
        put(
            "failureDiagnostic",
            json!(e.description.clone().unwrap_or_default()),
        );
    }
    put("fileName", json!(m.file_name()));
    put("fileSize", json!(m.file_size));
    put("isCompressed", json!(flag(md.compressed)));
    if let Some(linked) = failure.and_then(|e| e.linked_message_id.clone()) {
        put("linkedMsgId", json!(linked));
    }
    put("localId", json!(md.local_id));
    put("meshRecipientOdsCode", json!(m.recipient.ods_code));
    put("messageId", json!(m.message_id));
    put("messageType", json!(m.message_type.title()));
    put("partnerId", json!(md.partner_id));
    put("recipient", json!(m.recipient.mailbox_id));
    put("recipientName", json!(m.recipient.mailbox_name));
    put("recipientOrgCode", json!(m.recipient.org_code));
    put("recipientOrgName", json!(m.recipient.org_name));
    put("recipientSmtp", json!(""));
    put("sender", json!(m.sender.mailbox_id));
    put("senderName", json!(m.sender.mailbox_name));
    put("senderOdsCode", json!(m.sender.ods_code));
    put("senderOrgCode", json!(m.sender.org_code));
    put("senderOrgName", json!(m.sender.org_name));
    put("senderSmtp", json!(""));
    put("status", json!(m.status().title()));
    if let (Some(e), false) = (failure, is_data) {
        put("statusCode", json!(e.code.clone().unwrap_or_default()));
        put(
            "statusDescription",
            json!(e.description.clone().unwrap_or_default()),
        );
        put("statusEvent", json!(e.event.clone().unwrap_or_default()));
        put("statusTimestamp", json!(compact_time(e.timestamp)));
    }
    put(
        "statusSuccess",
        json!(if m.is_success() { "SUCCESS" } else { "ERROR" }),
    );
    put("subject", json!(md.subject));
    put("uploadTimestamp", json!(compact_time(m.created)));
    put("version", json!("1.0"));
    put("workflowId", json!(m.workflow_id));
    Value::Object(o)
}

/// v2 tracking record (API.md 7.2).
pub fn tracking_v2(m: &Message) -> Value {
    let mut o = json!({
        "message_id": m.message_id,
        "local_id": m.metadata.local_id,
        "workflow_id": m.workflow_id,
        "filename": m.file_name(),
        "expiry_time": iso_time(m.expires),
        "upload_timestamp": iso_time(m.created),
        "recipient": m.recipient.mailbox_id,
        "recipient_name": m.recipient.mailbox_name,
        "recipient_ods_code": m.recipient.ods_code,
        "recipient_org_code": m.recipient.org_code,
        "recipient_org_name": m.recipient.org_name,
        "status_success": m.is_success(),
        "status": m.status().as_str(),
    });
    if let (Some(e), MessageType::Report, Some(obj)) =
        (m.failure_event(), m.message_type, o.as_object_mut())
    {
        obj.insert(
            "status_event".into(),
            json!(e.event.clone().unwrap_or_default()),
        );
        obj.insert("status_timestamp".into(), json!(iso_time(e.timestamp)));
        obj.insert(
            "status_description".into(),
            json!(e.description.clone().unwrap_or_default()),
        );
        obj.insert(
            "status_code".into(),
            json!(e.code.clone().unwrap_or_default()),
        );
    }
    o
}

/// Admin mailbox details (API.md 3.16).
pub fn mailbox_details(mb: &Mailbox) -> Value {
    let mut o = json!({
        "mailbox_id": mb.mailbox_id,
        "mailbox_name": mb.mailbox_name,
        "ods_code": mb.ods_code,
        "org_code": mb.org_code,
        "org_name": mb.org_name,
        "active": mb.active,
    });
    if let (Some(b), Some(obj)) = (&mb.billing_entity, o.as_object_mut()) {
        obj.insert("billing_entity".into(), json!(b));
    }
    o
}

/// Admin message record (API.md 3.16), key for key as the sandbox builds it: a failed
/// DATA message shows `failure_date` and `failure_diagnostic`; a report with a failure
/// shows `status_code`, `status_description`, `status_event` and `status_timestamp`
/// instead; either shows `linked_msg_id` when its failure names one. Unset keys are left
/// out.
pub fn message_details(m: &Message) -> Value {
    let md = &m.metadata;
    let failure = m.failure_event();
    let mut o = json!({
        "checksum": md.checksum,
        "chunk_count": m.total_chunks,
        "content_encoding": md.content_encoding,
        "expiry_time": iso_time(m.expires),
        "filename": m.file_name(),
        "file_size": m.file_size,
        "is_compressed": md.compressed,
        "is_encrypted": md.encrypted,
        "local_id": md.local_id,
        "message_id": m.message_id,
        "message_type": m.message_type.title(),
        "recipient": m.recipient.mailbox_id,
        "recipient_name": m.recipient.mailbox_name,
        "recipient_ods_code": m.recipient.ods_code,
        "recipient_org_code": m.recipient.org_code,
        "recipient_org_name": m.recipient.org_name,
        "sender": m.sender.mailbox_id,
        "sender_name": m.sender.mailbox_name,
        "sender_ods_code": m.sender.ods_code,
        "sender_org_code": m.sender.org_code,
        "sender_org_name": m.sender.org_name,
        "status": m.status().title(),
        "status_success": if m.is_success() { "SUCCESS" } else { "ERROR" },
        "subject": md.subject,
        "upload_timestamp": iso_time(m.created),
        "workflow_id": m.workflow_id,
    });
    if let Some(obj) = o.as_object_mut() {
        if let Some(t) = m.acknowledged_at() {
            obj.insert("download_timestamp".into(), json!(iso_time(t)));
        }
        if let Some(e) = failure {
            let opt = |v: &Option<String>| json!(v.clone().unwrap_or_default());
            if m.message_type == MessageType::Data {
                obj.insert("failure_date".into(), json!(iso_time(e.timestamp)));
                obj.insert("failure_diagnostic".into(), opt(&e.description));
            } else {
                obj.insert("status_code".into(), opt(&e.code));
                obj.insert("status_description".into(), opt(&e.description));
                obj.insert("status_event".into(), opt(&e.event));
                obj.insert("status_timestamp".into(), json!(iso_time(e.timestamp)));
            }
            if let Some(l) = &e.linked_message_id {
                obj.insert("linked_msg_id".into(), json!(l));
            }
        }
    }
    o
}

/// True when a message in `status` is listed in the inbox (API.md 5.3).
pub fn listed(status: Status) -> bool {
    status == Status::Accepted
}

/// One message of the rich inbox view (API.md 3.15): the sandbox leaves out keys whose
/// value is unset (`local_id`, `status_code`, `sent_date`).
pub fn rich_inbox_entry(m: &Message) -> Value {
    let mut o = json!({
        "message_id": m.message_id,
        "expiry_timestamp": iso_time(m.expires),
        "message_type": m.message_type.upper(),
        "recipient": m.recipient.mailbox_id,
        "recipient_name": m.recipient.mailbox_name,
        "sender": m.sender.mailbox_id,
        "sender_name": m.sender.mailbox_name,
        "status": m.status().as_str(),
        "workflow_id": m.workflow_id,
        "total_chunks": m.total_chunks,
    });
    if let Some(obj) = o.as_object_mut() {
        if !m.metadata.local_id.is_empty() {
            obj.insert("local_id".into(), json!(m.metadata.local_id));
        }
        let accepted = m.events.iter().find(|e| e.status == Status::Accepted);
        if let Some(e) = accepted {
            obj.insert("sent_date".into(), json!(iso_time(e.timestamp)));
        }
        let error = m.events.iter().find(|e| e.status == Status::Error);
        if let Some(code) = error.and_then(|e| e.code.as_ref()) {
            obj.insert("status_code".into(), json!(code));
        }
    }
    o
}

/// One message of the rich outbox view (API.md 3.15): `status_code` (of the latest
/// event), `local_id`, `message_type`, `workflow_id` and `recipient_name` are `""` when
/// unset, and `sent_date` is when the send began.
pub fn rich_outbox_entry(m: &Message) -> Value {
    json!({
        "message_id": m.message_id,
        "expiry_timestamp": iso_time(m.expires),
        "local_id": m.metadata.local_id,
        "message_type": m.message_type.upper(),
        "recipient": m.recipient.mailbox_id,
        "recipient_name": m.recipient.mailbox_name,
        "sender": m.sender.mailbox_id,
        "sender_name": m.sender.mailbox_name,
        "sent_date": iso_time(m.created),
        "status": m.status().as_str(),
        "status_code": m.events.first().and_then(|e| e.code.clone()).unwrap_or_default(),
        "workflow_id": m.workflow_id,
        "total_chunks": m.total_chunks,
    })
}
