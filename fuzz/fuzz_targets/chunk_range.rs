//! `Mex-Chunk-Range` (API.md 5.4) against arbitrary bytes, compared with a model written
//! straight from the grammar: exactly one colon, two base-10 integers with surrounding
//! whitespace allowed, `0 < n ≤ total`, both fitting the `u32` the server counts in.
//!
//! Properties: the parser agrees with the model on every input; what it accepts has
//! `1 ≤ n ≤ total`, and its canonical `n:total` form parses back to the same range.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mesh_protocol::ChunkRange;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let got = ChunkRange::parse(&text);
    assert_eq!(got, model(&text), "{text:?}");
    if let Some(r) = got {
        assert!(1 <= r.number && r.number <= r.total, "{r:?}");
        assert_eq!(r.is_last(), r.number == r.total);
        let canonical = format!("{}:{}", r.number, r.total);
        assert_eq!(ChunkRange::parse(&canonical), Some(r));
        assert_eq!(
            ChunkRange::parse(&format!(" {} : {} ", r.number, r.total)),
            Some(r)
        );
        // Any extra colon makes it invalid.
        assert_eq!(ChunkRange::parse(&format!("{canonical}:")), None);
        assert_eq!(ChunkRange::parse(&format!(":{canonical}")), None);
    }
});

/// The grammar, independently: a number is optional `+` (integers parse that way in the
/// sandbox's Python as in Rust) and one or more ASCII digits.
fn model(text: &str) -> Option<ChunkRange> {
    let mut sides = text.split(':');
    let (n, total) = (sides.next()?, sides.next()?);
    if sides.next().is_some() {
        return None;
    }
    let number = |s: &str| -> Option<u32> {
        let s = s.trim();
        let digits = s.strip_prefix('+').unwrap_or(s);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let value = digits
            .bytes()
            .try_fold(0u64, |acc, b| {
                acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
            })
            .unwrap_or(u64::MAX);
        u32::try_from(value).ok()
    };
    let (number, total) = (number(n)?, number(total)?);
    (number > 0 && number <= total).then_some(ChunkRange { number, total })
}
