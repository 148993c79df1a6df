//! Properties of the parsers that face the network: they never panic on any input, and
//! what they accept round-trips.

use mesh_protocol::{ApiVersion, AuthToken, ChunkRange, SendHeaders, WorkflowFilter};
use proptest::prelude::*;

proptest! {
    #[test]
    fn token_parsing_never_panics(header in ".{0,300}", mailbox in "[A-Z0-9]{0,12}") {
        let _ = AuthToken::parse(Some(&header), &mailbox);
    }

    #[test]
    fn signed_tokens_parse_back_and_verify(
        mailbox in "[A-Z0-9]{1,12}",
        nonce in "[a-f0-9-]{1,36}",
        count in 0u64..1_000_000,
        password in "[ -~]{0,20}",
        key in "[ -~]{1,20}",
    ) {
        let t = AuthToken::sign(&key, &mailbox, &password, &nonce, count, "202401011200");
        let parsed = AuthToken::parse(Some(&t.header_value()), &mailbox).unwrap();
        prop_assert!(parsed.verify(&key, &password));
        prop_assert_eq!(parsed, t);
    }

    #[test]
    fn chunk_ranges_round_trip(n in 1u32..10_000, extra in 0u32..10_000) {
        let total = n + extra;
        prop_assert_eq!(ChunkRange::parse(&format!("{n}:{total}")), Some(ChunkRange { number: n, total }));
        prop_assert_eq!(ChunkRange::parse(&format!("{}:{}", total + 1, total)), None);
    }

    #[test]
    fn chunk_range_parsing_never_panics(s in ".{0,40}") {
        if let Some(r) = ChunkRange::parse(&s) {
            prop_assert!(r.number >= 1 && r.number <= r.total);
        }
    }

    #[test]
    fn accept_and_filter_parsing_never_panic(s in ".{0,300}", w in ".{0,50}") {
        let _ = ApiVersion::from_accept(Some(&s));
        if let Some(f) = WorkflowFilter::parse(&s) {
            let _ = f.matches(&w);
        }
    }

    #[test]
    fn send_header_parsing_never_panics(
        to in proptest::option::of(".{0,120}"),
        workflow in proptest::option::of(".{0,320}"),
        range in proptest::option::of(".{0,25}"),
        checksum in proptest::option::of(".{0,120}"),
        encoding in proptest::option::of(".{0,10}"),
    ) {
        let get = |name: &str| match name {
            "mex-to" => to.as_deref(),
            "mex-workflowid" => workflow.as_deref(),
            "mex-chunk-range" => range.as_deref(),
            "mex-content-checksum" => checksum.as_deref(),
            "content-encoding" => encoding.as_deref(),
            _ => None,
        };
        if let Ok(h) = SendHeaders::parse(get) {
            prop_assert!(!h.to.is_empty());
            prop_assert!(h.total_chunks >= 1);
        }
    }
}
