//! The request-header rules (API.md 1.2, 3.2, 4.1, 4.2) against arbitrary header sets:
//! `SendHeaders::parse`, `ApiVersion::from_accept`, `parse_flag`, `accepts_gzip`, and the
//! other small request-value parsers (`WorkflowFilter`, `ids::plausible`).
//!
//! Properties: nothing panics, and whatever `SendHeaders::parse` accepts obeys every rule
//! it claims to check (required headers present, lengths, no control characters, no URLs,
//! normalised `to`, a chunk range of `1:total`, gzip or nothing, flags as `parse_flag`
//! reads them).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mesh_protocol::headers::{accepts_gzip, parse_flag};
use mesh_protocol::{ids, ApiVersion, ChunkRange, SendHeaders, WorkflowFilter};
use std::collections::HashMap;

// Copied from API.md 4.1 on purpose, not imported from `headers.rs`: the target checks the
// parser against the reference, so a wrong limit in the parser cannot also fix the oracle.
const LIMITS: [(&str, usize); 9] = [
    ("mex-to", 100),
    ("mex-workflowid", 300),
    ("mex-chunk-range", 20),
    ("mex-subject", 500),
    ("mex-localid", 300),
    ("mex-partnerid", 500),
    ("mex-filename", 300),
    ("mex-content-checksum", 100),
    ("mex-content-type", 100),
];

// The input is a header block, one `name:value` a line (the value is everything after the
// first colon, untrimmed; a line without a colon is a name with an empty value). Names are
// matched lower-cased and, as in an HTTP header map, the first of a name wins. Besides the
// send headers, `accept` and `accept-encoding` feed their parsers, and the pseudo-headers
// `workflow_filter` (matched against `workflow_id`) and `message_id` feed the inbox filter
// and the message-id check.
fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut map: HashMap<String, &str> = HashMap::new();
    for line in text.split('\n') {
        let (name, value) = line.split_once(':').unwrap_or((line, ""));
        map.entry(name.to_ascii_lowercase()).or_insert(value);
    }
    let get = |name: &str| map.get(name).copied();
    let first = SendHeaders::parse(get);
    assert_eq!(first, SendHeaders::parse(get), "parsing is deterministic");
    match first {
        Ok(h) => check_accepted(&h, get),
        Err(e) => {
            if get("mex-to").is_none() || get("mex-workflowid").is_none() {
                assert_eq!(e.status, 400);
            }
        }
    }

    check_accept(get("accept"));
    check_accept(None);
    let accept_encoding = get("accept-encoding");
    check_gzip(accept_encoding);
    for flag in [
        "mex-content-encrypted",
        "mex-content-compressed",
        "accept-encoding",
    ] {
        check_flag(get(flag).unwrap_or_default());
    }
    let workflow_id = get("workflow_id").unwrap_or_default();
    check_filter(get("workflow_filter").unwrap_or_default(), workflow_id);
    check_plausible(get("message_id").unwrap_or_default());
});

fn check_accepted<'a>(h: &SendHeaders, get: impl Fn(&str) -> Option<&'a str>) {
    let to = get("mex-to").expect("mex-to is required");
    let workflow = get("mex-workflowid").expect("mex-workflowid is required");
    for (name, max) in LIMITS {
        if let Some(v) = get(name) {
            assert!(v.chars().count() <= max, "{name} over {max}");
            assert!(
                !v.chars().any(|c| (c as u32) < 0x20),
                "{name} has a control"
            );
        }
    }
    for v in [Some(to), Some(workflow), get("mex-content-checksum")]
        .into_iter()
        .flatten()
    {
        let lower = v.trim_start().to_ascii_lowercase();
        assert!(!lower.starts_with("http://") && !lower.starts_with("https://"));
    }
    assert_eq!(h.to, to.trim().to_ascii_uppercase());
    assert!(!h.to.is_empty());
    assert_eq!(h.workflow_id, workflow.trim());
    assert!(h
        .checksum
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c.is_whitespace() || matches!(c, ':' | '-' | '/')));
    assert!(h.content_encoding.is_empty() || h.content_encoding == "gzip");
    assert!(h.total_chunks >= 1);
    match get("mex-chunk-range") {
        None => assert_eq!(h.total_chunks, 1),
        Some(v) => assert_eq!(
            ChunkRange::parse(v),
            Some(ChunkRange {
                number: 1,
                total: h.total_chunks
            })
        ),
    }
    let flag = |name: &str| get(name).and_then(parse_flag).unwrap_or(false);
    assert_eq!(h.encrypted, flag("mex-content-encrypted"));
    assert_eq!(h.compressed, flag("mex-content-compressed"));
    assert_eq!(h.subject, get("mex-subject").unwrap_or_default());
    assert_eq!(h.local_id, get("mex-localid").unwrap_or_default());
    assert_eq!(h.partner_id, get("mex-partnerid").unwrap_or_default());
    assert_eq!(h.file_name, get("mex-filename").unwrap_or_default());
}

fn check_accept(value: Option<&str>) {
    let got = ApiVersion::from_accept(value);
    if !value.is_some_and(|v| v.contains("vnd.mesh")) {
        assert_eq!(got, Ok(ApiVersion::V1));
    }
    // A well-formed media type put first decides the version, whatever follows.
    let rest = value.unwrap_or_default();
    let v2 = format!("application/vnd.mesh.v2+json,{rest}");
    assert_eq!(ApiVersion::from_accept(Some(&v2)), Ok(ApiVersion::V2));
    let v1 = format!("application/vnd.mesh.v1+json;{rest}");
    assert_eq!(ApiVersion::from_accept(Some(&v1)), Ok(ApiVersion::V1));
}

fn check_flag(v: &str) {
    let got = parse_flag(v);
    assert_eq!(parse_flag(&v.to_ascii_uppercase()), got);
    assert_eq!(parse_flag(&format!(" {v}\t")), got);
    if got.is_some() {
        assert!(v.trim().len() <= 5);
    }
}

fn check_gzip(v: Option<&str>) {
    assert!(!accepts_gzip(None));
    let got = accepts_gzip(v);
    let s = v.unwrap_or_default();
    assert!(accepts_gzip(Some(&format!("{s}, GZip"))));
    if got {
        assert!(accepts_gzip(Some(&format!("{s}, br"))));
        assert!(s.len() >= 4);
    }
}

fn check_filter(filter: &str, workflow_id: &str) {
    let Some(f) = WorkflowFilter::parse(filter) else {
        assert!(filter.trim().is_empty());
        return;
    };
    assert!(!filter.trim().is_empty());
    let (negate, _, _) = f.parts();
    assert_eq!(negate, filter.trim().starts_with('!'));
    // "!x" matches exactly what "x" does not (when "x" is itself a filter).
    let trimmed = filter.trim();
    if let Some(inner) = trimmed.strip_prefix('!') {
        if let Some(positive) = WorkflowFilter::parse(inner).filter(|_| inner == inner.trim()) {
            if !inner.starts_with('!') {
                assert_eq!(f.matches(workflow_id), !positive.matches(workflow_id));
            }
        }
    }
    // A plain value (no operators) matches itself and only itself.
    let id = workflow_id.trim();
    if !id.is_empty() && !id.starts_with(['!', '*']) && !id.ends_with('*') {
        let exact = WorkflowFilter::parse(id).expect("non-blank");
        assert!(exact.matches(id));
        assert!(!exact.matches(&format!("{id}x")));
    }
}

fn check_plausible(id: &str) {
    if ids::plausible(id) {
        assert!(!id.is_empty() && id.len() <= 100 && id.is_ascii());
        assert!(ids::plausible(&id.to_ascii_uppercase()));
        assert!(!id.contains(['/', '.', '%', ' ']));
    }
}
