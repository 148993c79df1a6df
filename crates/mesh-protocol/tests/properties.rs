//! Properties of the parsers that face the network: they never panic on any input, and
//! what they accept round-trips.

use chrono::{DateTime, TimeDelta, Utc};
use mesh_protocol::headers::{accepts_gzip, parse_flag};
use mesh_protocol::{
    ids, ApiVersion, AuthToken, ChunkRange, SendHeaders, TokenError, WorkflowFilter,
};
use proptest::prelude::*;
use std::collections::HashMap;

/// Every header name `SendHeaders::parse` reads, so generated header maps hit them.
const SEND_HEADERS: [&str; 13] = [
    "mex-to",
    "mex-workflowid",
    "mex-chunk-range",
    "mex-subject",
    "mex-localid",
    "mex-partnerid",
    "mex-filename",
    "mex-content-checksum",
    "mex-content-type",
    "content-type",
    "content-encoding",
    "mex-content-encrypted",
    "mex-content-compressed",
];

fn header_map() -> impl Strategy<Value = HashMap<String, String>> {
    let name = prop_oneof![
        3 => proptest::sample::select(&SEND_HEADERS[..]).prop_map(str::to_string),
        1 => "[a-z-]{1,24}",
    ];
    let value = prop_oneof![
        ".{0,40}",
        "[ -~]{0,120}",
        "[0-9: ]{0,8}",
        "[A-Za-z0-9_ ]{0,12}",
        ".{90,110}",
    ];
    // Most maps carry the two required headers with plain values, so that many of them
    // pass and the rules on what passes are exercised, not only the refusals.
    let required = proptest::option::weighted(0.8, ("[ A-Za-z0-9_]{0,12}", "[ A-Za-z0-9_]{1,12}"));
    (proptest::collection::hash_map(name, value, 0..14), required).prop_map(
        |(mut map, required)| {
            if let Some((to, workflow)) = required {
                map.insert("mex-to".into(), to);
                map.insert("mex-workflowid".into(), workflow);
            }
            map
        },
    )
}

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

    #[test]
    fn token_parsing_never_panics_and_what_it_accepts_round_trips(
        header in proptest::option::of(prop_oneof![
            ".{0,120}",
            "(NHSMESH|nhsmesh|NHSMESH )?[^:]{0,10}(:[^:]{0,10}){0,6}",
        ]),
        mailbox in ".{0,12}",
    ) {
        match AuthToken::parse(header.as_deref(), &mailbox) {
            Ok(t) => {
                prop_assert_eq!(&t.mailbox_id, &mailbox);
                prop_assert!(!t.nonce_count.is_empty());
                prop_assert!(t.nonce_count.bytes().all(|b| b.is_ascii_digit()));
                let again = AuthToken::parse(Some(&t.header_value()), &mailbox);
                prop_assert_eq!(again, Ok(t));
            }
            Err(TokenError::Missing) => {
                prop_assert!(header.as_deref().is_none_or(|h| h.trim().is_empty()));
            }
            Err(_) => prop_assert!(header.as_deref().is_some_and(|h| !h.trim().is_empty())),
        }
    }

    #[test]
    fn a_token_parses_only_for_its_own_mailbox(
        mailbox in "[A-Z0-9]{1,12}",
        other in "[A-Z0-9]{1,12}",
    ) {
        let t = AuthToken::sign("k", &mailbox, "p", "n", 0, "202401011200");
        let got = AuthToken::parse(Some(&t.header_value()), &other);
        if other == mailbox {
            prop_assert_eq!(got, Ok(t));
        } else {
            prop_assert_eq!(got, Err(TokenError::MailboxMismatch));
        }
    }

    #[test]
    fn any_writable_signed_token_parses_back_and_verifies_only_with_its_secrets(
        mailbox in "[^: ]{0,20}",
        nonce in "[^:]{0,40}",
        count in any::<u64>(),
        timestamp in "[^:]{0,16}",
        password in ".{0,20}",
        key in ".{0,20}",
    ) {
        let t = AuthToken::sign(&key, &mailbox, &password, &nonce, count, &timestamp);
        let parsed = AuthToken::parse(Some(&t.header_value()), &mailbox).unwrap();
        prop_assert_eq!(&parsed, &t);
        prop_assert!(parsed.verify(&key, &password));
        let (wrong_password, wrong_key) = (format!("{password}x"), format!("{key}x"));
        prop_assert!(!parsed.verify(&key, &wrong_password));
        prop_assert!(!parsed.verify(&wrong_key, &password));
        let mut upper = parsed.clone();
        upper.hmac = upper.hmac.to_ascii_uppercase();
        prop_assert!(upper.verify(&key, &password));
        let mut tampered = parsed;
        tampered.nonce_count = format!("{count}0");
        prop_assert!(!tampered.verify(&key, &password));
    }

    #[test]
    fn token_times_round_trip_and_the_window_check_never_panics(
        secs in -8_000_000_000i64..250_000_000_000,
        now_secs in any::<i64>(),
        window_ms in any::<i64>(),
    ) {
        let t = DateTime::from_timestamp(secs - secs.rem_euclid(60), 0).unwrap();
        let token = AuthToken::sign("k", "A", "p", "n", 0, &AuthToken::timestamp_for(t));
        if (0..=9999).contains(&t.format("%Y").to_string().parse::<i32>().unwrap_or(-1)) {
            prop_assert_eq!(token.time(), Some(t));
            prop_assert!(token.within_window(t, TimeDelta::zero()));
        }
        let now = DateTime::from_timestamp(now_secs, 0).unwrap_or_default();
        let window = TimeDelta::try_milliseconds(window_ms).unwrap_or(TimeDelta::MAX);
        let _ = token.within_window(now, window);
        let _ = token.within_window(now, TimeDelta::MAX);
        let _ = token.within_window(now, TimeDelta::MIN);
    }

    #[test]
    fn chunk_range_accepts_decimal_n_of_total_with_whitespace(
        n in 1u32..=u32::MAX,
        total in any::<u32>(),
        left in "[ \t]{0,2}",
        right in "[ \t]{0,2}",
        zeros in "0{0,3}",
    ) {
        let total = total.max(n);
        let want = Some(ChunkRange { number: n, total });
        prop_assert_eq!(ChunkRange::parse(&format!("{n}:{total}")), want);
        prop_assert_eq!(ChunkRange::parse(&format!("{left}{n}{right}:{left}{total}{right}")), want);
        prop_assert_eq!(ChunkRange::parse(&format!("{zeros}{n}:{zeros}{total}")), want);
    }

    #[test]
    fn chunk_range_rejects_zero_too_big_and_out_of_order(
        n in any::<u32>(),
        total in any::<u32>(),
        big in (u64::from(u32::MAX) + 1)..=u64::MAX,
    ) {
        prop_assert_eq!(ChunkRange::parse(&format!("0:{total}")), None);
        if n > total {
            prop_assert_eq!(ChunkRange::parse(&format!("{n}:{total}")), None);
        }
        prop_assert_eq!(ChunkRange::parse(&format!("1:{big}")), None);
        prop_assert_eq!(ChunkRange::parse(&format!("{big}:{big}")), None);
        prop_assert_eq!(ChunkRange::parse(&format!("-{n}:{total}")), None);
        prop_assert_eq!(ChunkRange::parse(&format!("{n}:{total}:{total}")), None);
        prop_assert_eq!(ChunkRange::parse(&format!("{n}{total}")), None);
    }

    #[test]
    fn chunk_range_rejects_anything_not_numeric(
        n in "[0-9]{0,3}[^0-9:+\\s][0-9]{0,3}",
        total in "[0-9]{1,4}",
    ) {
        prop_assert_eq!(ChunkRange::parse(&format!("{n}:{total}")), None);
        prop_assert_eq!(ChunkRange::parse(&format!("{total}:{n}")), None);
    }

    #[test]
    fn any_header_map_parses_without_panic_and_what_passes_obeys_the_rules(
        map in header_map(),
    ) {
        let get = |name: &str| map.get(name).map(String::as_str);
        match SendHeaders::parse(get) {
            Ok(h) => {
                let to = get("mex-to").unwrap();
                prop_assert_eq!(&h.to, &to.trim().to_ascii_uppercase());
                prop_assert!(!h.to.is_empty());
                prop_assert_eq!(&h.workflow_id, get("mex-workflowid").unwrap().trim());
                prop_assert!(h.to.chars().count() <= 100);
                prop_assert!(h.content_encoding.is_empty() || h.content_encoding == "gzip");
                prop_assert!(h.total_chunks >= 1);
                if let Some(range) = get("mex-chunk-range") {
                    prop_assert_eq!(
                        ChunkRange::parse(range),
                        Some(ChunkRange { number: 1, total: h.total_chunks })
                    );
                }
                let flag = |name: &str| get(name).and_then(parse_flag).unwrap_or(false);
                prop_assert_eq!(h.encrypted, flag("mex-content-encrypted"));
                prop_assert_eq!(h.compressed, flag("mex-content-compressed"));
                for name in SEND_HEADERS.iter().take(9) {
                    let v = get(name).unwrap_or_default();
                    prop_assert!(!v.chars().any(|c| (c as u32) < 0x20), "{} has a control", name);
                }
            }
            Err(e) => {
                if !map.contains_key("mex-to") || !map.contains_key("mex-workflowid") {
                    prop_assert_eq!(e.status, 400);
                }
            }
        }
    }

    #[test]
    fn flags_ignore_case_and_surrounding_whitespace(v in ".{0,8}") {
        let got = parse_flag(&v);
        prop_assert_eq!(parse_flag(&v.to_ascii_uppercase()), got);
        prop_assert_eq!(parse_flag(&format!(" {v}\t")), got);
    }

    #[test]
    fn flags_read_every_spelling_of_yes_and_no(
        word in proptest::sample::select(&["y", "yes", "t", "true", "on", "1", "n", "no", "f", "false", "off", "0"][..]),
        upper in any::<bool>(),
    ) {
        let v = if upper { word.to_ascii_uppercase() } else { word.to_string() };
        let yes = ["y", "yes", "t", "true", "on", "1"].contains(&word);
        prop_assert_eq!(parse_flag(&v), Some(yes));
    }

    #[test]
    fn gzip_anywhere_in_accept_encoding_is_accepted(
        before in ".{0,20}",
        after in ".{0,20}",
        spelling in "[gG][zZ][iI][pP]",
    ) {
        let value = format!("{before}{spelling}{after}");
        prop_assert!(accepts_gzip(Some(&value)));
        prop_assert!(!accepts_gzip(None));
        // A substring test, as the sandbox does: no "gzip", no gzip.
        prop_assert_eq!(accepts_gzip(Some(&before)), before.to_ascii_lowercase().contains("gzip"));
    }

    #[test]
    fn the_accept_version_number_decides_v1_or_v2(
        digits in "[0-9]{1,6}",
        rest in "[ -~]{0,30}",
    ) {
        let value = format!("application/vnd.mesh.v{digits}+json;{rest}");
        let n: u64 = digits.parse().unwrap();
        let want = if n <= 1 { ApiVersion::V1 } else { ApiVersion::V2 };
        prop_assert_eq!(ApiVersion::from_accept(Some(&value)), Ok(want));
        if !rest.contains("vnd.mesh") {
            prop_assert_eq!(ApiVersion::from_accept(Some(&rest)), Ok(ApiVersion::V1));
        }
    }

    #[test]
    fn a_plain_filter_matches_itself_and_negation_is_the_complement(
        id in "[A-Za-z0-9_]{1,20}",
        other in "[A-Za-z0-9_]{0,20}",
    ) {
        let exact = WorkflowFilter::parse(&id).unwrap();
        prop_assert!(exact.matches(&id));
        prop_assert_eq!(exact.matches(&other), other == id);
        for pattern in [id.clone(), format!("{id}*"), format!("*{id}*")] {
            let positive = WorkflowFilter::parse(&pattern).unwrap();
            let negative = WorkflowFilter::parse(&format!("!{pattern}")).unwrap();
            prop_assert_eq!(negative.matches(&other), !positive.matches(&other));
        }
        let (prefix, longer) = (format!("{id}*"), format!("{id}{other}"));
        prop_assert!(WorkflowFilter::parse(&prefix).unwrap().matches(&longer));
    }

    #[test]
    fn generated_message_ids_are_plausible_and_paths_are_not(
        secs in 0i64..4_000_000_000,
        random in any::<[u8; 3]>(),
        junk in ".{0,20}[/.% ].{0,20}",
    ) {
        let id = ids::message_id(DateTime::<Utc>::from_timestamp(secs, 0).unwrap(), random);
        prop_assert!(ids::plausible(&id));
        prop_assert!(ids::plausible(&id.to_ascii_lowercase()));
        prop_assert!(!ids::plausible(&junk));
        prop_assert!(!ids::plausible(&"A".repeat(101)));
    }
}
