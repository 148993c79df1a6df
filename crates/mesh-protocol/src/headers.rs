//! Request header rules for send and chunk upload (API.md 4.1, 4.2, 5.4).

use crate::error::MeshError;

/// `Mex-Chunk-Range: n:total` (API.md 5.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkRange {
    pub number: u32,
    pub total: u32,
}

impl ChunkRange {
    pub const SINGLE: ChunkRange = ChunkRange {
        number: 1,
        total: 1,
    };

    /// Exactly one colon, two base-10 integers, surrounding whitespace allowed, and
    /// `0 < n ≤ total`; anything else is `None` (the caller answers 417).
    pub fn parse(value: &str) -> Option<Self> {
        let (n, total) = value.split_once(':')?;
        let number: u32 = n.trim().parse().ok()?;
        let total: u32 = total.trim().parse().ok()?;
        (number > 0 && number <= total).then_some(ChunkRange { number, total })
    }

    pub fn is_last(&self) -> bool {
        self.number == self.total
    }
}

/// The headers of a send request, validated (API.md 3.8 step 2–5 and 4.1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SendHeaders {
    /// Trimmed and upper-cased.
    pub to: String,
    /// Trimmed, case kept: workflow matching is exact.
    pub workflow_id: String,
    pub total_chunks: u32,
    pub subject: String,
    pub local_id: String,
    pub partner_id: String,
    pub file_name: String,
    pub checksum: String,
    pub content_type: String,
    /// `""` or `gzip`.
    pub content_encoding: String,
    pub encrypted: bool,
    pub compressed: bool,
}

/// Maximum lengths of the string mex headers (API.md 4.1).
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

const URL_CHECKED: [&str; 3] = ["mex-to", "mex-workflowid", "mex-content-checksum"];

impl SendHeaders {
    /// Validates send headers. `get` returns a header value by lower-case name (non-UTF-8
    /// bytes already replaced), `None` when absent.
    pub fn parse<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Result<Self, MeshError> {
        let to = get("mex-to").ok_or_else(|| MeshError::missing("header", "mex-to"))?;
        let workflow =
            get("mex-workflowid").ok_or_else(|| MeshError::missing("header", "mex-workflowid"))?;
        for (name, max) in LIMITS {
            if let Some(v) = get(name) {
                if v.chars().count() > max {
                    return Err(MeshError::validation(
                        "string_too_long",
                        &["header", name],
                        format!("String should have at most {max} characters"),
                    ));
                }
            }
        }
        for (name, _) in LIMITS {
            if get(name).is_some_and(|v| v.chars().any(|c| (c as u32) < 0x20)) {
                return Err(MeshError::malformed_control_file());
            }
        }
        for name in URL_CHECKED {
            if get(name).is_some_and(looks_like_url) {
                return Err(MeshError::malformed_control_file());
            }
        }
        let checksum = get("mex-content-checksum").unwrap_or_default();
        if !checksum
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c.is_whitespace() || matches!(c, ':' | '-' | '/'))
        {
            return Err(MeshError::invalid_checksum());
        }
        let to = to.trim().to_ascii_uppercase();
        if to.is_empty() {
            return Err(MeshError::to_dts_missing());
        }
        let content_encoding = get("content-encoding")
            .map(|v| v.trim().to_ascii_lowercase())
            .unwrap_or_default();
        if !content_encoding.is_empty() && content_encoding != "gzip" {
            return Err(MeshError::unsupported_content_encoding());
        }
        let range = match get("mex-chunk-range") {
            None => ChunkRange::SINGLE,
            Some(v) => ChunkRange::parse(v)
                .filter(|r| r.number == 1)
                .ok_or_else(MeshError::invalid_header_chunks)?,
        };
        let content_type = match get("mex-content-type") {
            Some(v) if !v.is_empty() => v.to_string(),
            _ => get("content-type")
                .map(|v| v.trim().to_ascii_lowercase())
                .unwrap_or_default(),
        };
        let text = |name: &str| get(name).unwrap_or_default().to_string();
        Ok(SendHeaders {
            to,
            workflow_id: workflow.trim().to_string(),
            total_chunks: range.total,
            subject: text("mex-subject"),
            local_id: text("mex-localid"),
            partner_id: text("mex-partnerid"),
            file_name: text("mex-filename"),
            checksum: checksum.to_string(),
            content_type,
            content_encoding,
            encrypted: get("mex-content-encrypted")
                .and_then(parse_flag)
                .unwrap_or(false),
            compressed: get("mex-content-compressed")
                .and_then(parse_flag)
                .unwrap_or(false),
        })
    }
}

fn looks_like_url(v: &str) -> bool {
    let lower = v.trim_start().to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
}

/// The lenient boolean of `Mex-Content-Encrypted`/`-Compressed`: unknown values mean "not
/// set", never an error (API.md 4.1).
pub fn parse_flag(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" | "t" | "true" | "on" | "1" => Some(true),
        "n" | "no" | "f" | "false" | "off" | "0" => Some(false),
        _ => None,
    }
}

/// `Accept-Encoding` contains `gzip` (a substring test, as SBX does).
pub fn accepts_gzip(accept_encoding: Option<&str>) -> bool {
    accept_encoding.is_some_and(|v| v.to_ascii_lowercase().contains("gzip"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn parse(pairs: &[(&str, &str)]) -> Result<SendHeaders, MeshError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        SendHeaders::parse(|k| map.get(k).map(String::as_str))
    }

    #[test]
    fn chunk_range_grammar() {
        assert_eq!(
            ChunkRange::parse("1:2"),
            Some(ChunkRange {
                number: 1,
                total: 2
            })
        );
        assert_eq!(
            ChunkRange::parse(" 1 : 2 "),
            Some(ChunkRange {
                number: 1,
                total: 2
            })
        );
        for bad in [
            "0:1", "3:2", "2:1", "a:b", "1", "1:2:3", "", ":", "-1:2", "1:",
        ] {
            assert_eq!(ChunkRange::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn send_headers_are_trimmed_and_normalised() {
        let h = parse(&[
            ("mex-to", " x26abc2 "),
            ("mex-workflowid", " TEST_WORKFLOW "),
            ("content-type", "Text/Plain"),
            ("mex-content-encrypted", "Y"),
            ("mex-content-compressed", "N/A"),
            ("content-encoding", " GZIP "),
            ("mex-chunk-range", "1:3"),
        ])
        .unwrap();
        assert_eq!(h.to, "X26ABC2");
        assert_eq!(h.workflow_id, "TEST_WORKFLOW");
        assert_eq!(h.content_type, "text/plain");
        assert!(h.encrypted);
        assert!(!h.compressed);
        assert_eq!(h.content_encoding, "gzip");
        assert_eq!(h.total_chunks, 3);
    }

    #[test]
    fn send_header_refusals_follow_the_sandbox_order() {
        let code = |pairs: &[(&str, &str)]| parse(pairs).unwrap_err();
        assert_eq!(code(&[("mex-workflowid", "W")]).status, 400);
        assert_eq!(
            code(&[("mex-to", "http://x"), ("mex-workflowid", "W")]).code,
            "06"
        );
        assert_eq!(
            code(&[("mex-to", "A"), ("mex-workflowid", "W\tX")]).code,
            "06"
        );
        assert_eq!(
            code(&[
                ("mex-to", "A"),
                ("mex-workflowid", "W"),
                ("mex-content-checksum", "md5;x")
            ])
            .code,
            "Invalid checksum"
        );
        assert_eq!(
            code(&[("mex-to", "  "), ("mex-workflowid", "W")]).code,
            "08"
        );
        assert_eq!(
            code(&[
                ("mex-to", "A"),
                ("mex-workflowid", "W"),
                ("content-encoding", "br")
            ])
            .status,
            422
        );
        assert_eq!(
            code(&[
                ("mex-to", "A"),
                ("mex-workflowid", "W"),
                ("mex-chunk-range", "2:2")
            ])
            .status,
            417
        );
        let long = "x".repeat(101);
        assert_eq!(
            code(&[("mex-to", &long), ("mex-workflowid", "W")]).shape,
            crate::error::Shape::Validation {
                kind: "string_too_long".into(),
                loc: vec!["header".into(), "mex-to".into()]
            }
        );
    }
}

/// Header values byte for byte.
///
/// MESH keeps `Mex-*` values exactly as sent and returns them on download (the NHS sandbox
/// does: its HTTP stack reads header bytes as Latin-1 and writes them back the same way).
/// Values are kept as Rust strings, so bytes that are not UTF-8 are escaped into a range
/// of private-use characters, one per byte, and turned back into those bytes on the way
/// out. Without this, every invalid byte became U+FFFD and two distinct local ids could
/// collapse into one.
///
/// The escape range is U+10FF80..=U+10FFFF (private use, plane 16). A sender who really
/// sends one of those characters as UTF-8 has each of its four bytes escaped too, so the
/// mapping stays exact for every byte string.
pub mod raw {
    use std::borrow::Cow;

    const BASE: u32 = 0x10_FF00;
    const FIRST: u32 = BASE + 0x80;

    fn escape(byte: u8) -> char {
        // Only bytes 0x80..=0xFF are ever escaped: ASCII is always valid UTF-8.
        char::from_u32(BASE + u32::from(byte)).unwrap_or(char::REPLACEMENT_CHARACTER)
    }

    fn is_escape(c: char) -> bool {
        (c as u32) >= FIRST
    }

    /// A header value's bytes as text that [`encode`] turns back into the same bytes.
    pub fn decode(bytes: &[u8]) -> String {
        if let Ok(text) = std::str::from_utf8(bytes) {
            if !text.chars().any(is_escape) {
                return text.to_owned();
            }
        }
        let mut out = String::with_capacity(bytes.len());
        for chunk in bytes.utf8_chunks() {
            for c in chunk.valid().chars() {
                if is_escape(c) {
                    let mut buf = [0u8; 4];
                    out.extend(c.encode_utf8(&mut buf).bytes().map(escape));
                } else {
                    out.push(c);
                }
            }
            out.extend(chunk.invalid().iter().copied().map(escape));
        }
        out
    }

    /// The bytes a value decoded by [`decode`] came from.
    pub fn encode(text: &str) -> Cow<'_, [u8]> {
        if !text.chars().any(is_escape) {
            return Cow::Borrowed(text.as_bytes());
        }
        let mut out = Vec::with_capacity(text.len());
        for c in text.chars() {
            if is_escape(c) {
                out.push((c as u32 - BASE) as u8);
            } else {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
        Cow::Owned(out)
    }

    /// The value as JSON text: JSON cannot carry bytes that are not UTF-8, so each one is
    /// shown as the Latin-1 character of the same number, as the NHS sandbox shows it.
    pub fn for_json(text: &str) -> Cow<'_, str> {
        if !text.chars().any(is_escape) {
            return Cow::Borrowed(text);
        }
        Cow::Owned(
            text.chars()
                .map(|c| {
                    if is_escape(c) {
                        char::from_u32(c as u32 - BASE).unwrap_or(char::REPLACEMENT_CHARACTER)
                    } else {
                        c
                    }
                })
                .collect(),
        )
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn every_byte_string_round_trips() {
            let cases: &[&[u8]] = &[
                b"plain ascii",
                "Café £5 ✓".as_bytes(),
                b"\xe9",
                b"\xe8",
                b"caf\xe9 \xff\xfe end",
                b"\xc3",
                "\u{10FF80}\u{10FFFF}".as_bytes(),
                b"\xf4\x8f\xbe\x80",
            ];
            for bytes in cases {
                let text = decode(bytes);
                assert_eq!(encode(&text).as_ref(), *bytes, "{bytes:?}");
            }
            assert_ne!(decode(b"\xe9"), decode(b"\xe8"));
            assert_eq!(decode("Café".as_bytes()), "Café");
            assert_eq!(for_json(&decode(b"caf\xe9")), "café");
        }
    }
}
