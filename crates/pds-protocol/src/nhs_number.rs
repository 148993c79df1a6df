//! NHS numbers (API.md §4): ten digits, the tenth a modulus-11 check digit over the first
//! nine weighted 10 down to 2. A check of 11 is written 0; a check of 10 means no valid
//! number has those nine digits.

use std::fmt;

/// A well-formed NHS number: ten ASCII digits with the right check digit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NhsNumber([u8; 10]);

impl NhsNumber {
    /// Parses `text`, `None` unless it is exactly ten digits with a valid check digit (the
    /// API's 400 `INVALID_RESOURCE_ID`). No spaces or other separators are accepted: the
    /// API takes the number as clients store it.
    pub fn parse(text: &str) -> Option<NhsNumber> {
        let bytes = text.as_bytes();
        if bytes.len() != 10 || !bytes.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let mut digits = [0u8; 10];
        for (d, b) in digits.iter_mut().zip(bytes) {
            *d = b - b'0';
        }
        let first_nine: [u8; 9] = digits[..9].try_into().ok()?;
        (check_digit(&first_nine)? == digits[9]).then_some(NhsNumber(digits))
    }

    /// The number completed with its check digit, `None` when those nine digits have none
    /// (a check of 10). For allocating numbers and for test data.
    pub fn from_first_nine(first_nine: [u8; 9]) -> Option<NhsNumber> {
        if first_nine.iter().any(|d| *d > 9) {
            return None;
        }
        let check = check_digit(&first_nine)?;
        let mut digits = [0u8; 10];
        digits[..9].copy_from_slice(&first_nine);
        digits[9] = check;
        Some(NhsNumber(digits))
    }
}

/// The modulus-11 check digit of nine digits, `None` when it would be 10.
fn check_digit(first_nine: &[u8; 9]) -> Option<u8> {
    let sum: u32 = first_nine
        .iter()
        .zip((2..=10u32).rev())
        .map(|(d, w)| u32::from(*d) * w)
        .sum();
    match 11 - sum % 11 {
        11 => Some(0),
        10 => None,
        c => u8::try_from(c).ok(),
    }
}

impl fmt::Display for NhsNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in self.0 {
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_contracts_examples() {
        assert!(NhsNumber::parse("9000000009").is_some());
        assert!(
            NhsNumber::parse("9000000000").is_none(),
            "wrong check digit"
        );
        assert!(
            NhsNumber::parse("9111231130").is_some(),
            "valid, though absent"
        );
        // Numbers from the NHS sandbox's records.
        for n in [
            "9000000009",
            "9000000017",
            "9000000025",
            "9000000033",
            "5900030741",
        ] {
            assert_eq!(
                NhsNumber::parse(n).map(|n| n.to_string()).as_deref(),
                Some(n),
                "{n}"
            );
        }
    }

    #[test]
    fn anything_but_ten_digits_is_refused() {
        for bad in [
            "",
            "900000000",
            "90000000090",
            "900000000a",
            "900 000 0009",
            " 9000000009",
            "９000000009",
        ] {
            assert!(NhsNumber::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn a_check_of_ten_has_no_number() {
        // 00000000 6: 6 × 2 = 12, 11 − (12 mod 11) = 10: no valid number starts so.
        assert_eq!(
            NhsNumber::from_first_nine([0, 0, 0, 0, 0, 0, 0, 0, 6]),
            None
        );
        assert_eq!(
            NhsNumber::from_first_nine([9, 0, 0, 0, 0, 0, 0, 0, 0]).map(|n| n.to_string()),
            Some("9000000009".into())
        );
        assert_eq!(
            NhsNumber::from_first_nine([10, 0, 0, 0, 0, 0, 0, 0, 0]),
            None
        );
    }

    proptest! {
        #[test]
        fn completed_numbers_parse_and_one_changed_digit_does_not(
            nine in proptest::array::uniform9(0u8..10),
            at in 0usize..10,
            by in 1u8..10,
        ) {
            if let Some(n) = NhsNumber::from_first_nine(nine) {
                let text = n.to_string();
                prop_assert_eq!(NhsNumber::parse(&text), Some(n));
                // Modulus 11 with distinct weights catches every single-digit error.
                let mut bytes = text.into_bytes();
                bytes[at] = b'0' + (bytes[at] - b'0' + by) % 10;
                let changed = String::from_utf8(bytes).unwrap();
                prop_assert_eq!(NhsNumber::parse(&changed), None);
            }
        }
    }
}
