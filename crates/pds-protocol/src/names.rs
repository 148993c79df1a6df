//! Names as fuzzy search compares them (API.md §7): folded to plain lower-case letters
//! (accents dropped: `ATTSÖN` → `attson`), then coded with Soundex, so that Smith, Smythe
//! and Smyth meet. The codes come from `rphonetic` (Apache commons-codec's algorithms).

use rphonetic::{Encoder, Soundex};
use unicode_normalization::UnicodeNormalization;

/// `name` in lower case with accents and everything but letters, spaces, hyphens and
/// apostrophes dropped, runs of spaces made one: what comparisons and codes start from.
pub fn fold(name: &str) -> String {
    let letters: String = name
        .nfd()
        .filter(|c| !unicode_normalization::char::is_combining_mark(*c))
        .flat_map(char::to_lowercase)
        .filter(|c| c.is_alphabetic() || matches!(c, ' ' | '-' | '\''))
        .collect();
    letters.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The Soundex code of a folded name (its letters only), `None` when it has no ASCII
/// letter to code.
pub fn soundex(name: &str) -> Option<String> {
    let ascii: String = fold(name)
        .chars()
        .filter(|c| c.is_ascii_alphabetic())
        .collect();
    if ascii.is_empty() {
        return None;
    }
    let code = Soundex::default().encode(&ascii);
    (!code.is_empty()).then_some(code)
}

/// Whether two names sound alike: the same Soundex code.
pub fn sound_alike(a: &str, b: &str) -> bool {
    matches!((soundex(a), soundex(b)), (Some(x), Some(y)) if x == y)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn homophones_meet_and_others_do_not() {
        for (a, b) in [
            ("Smith", "Smythe"),
            ("Smith", "Smyth"),
            ("SMITH", "smith"),
            ("Matt", "Mat"),
        ] {
            assert!(sound_alike(a, b), "{a} ~ {b}");
        }
        for (a, b) in [("Smith", "Jones"), ("Jane", "Mary"), ("", "")] {
            assert!(!sound_alike(a, b), "{a} !~ {b}");
        }
        assert_eq!(soundex("Smythe").as_deref(), Some("S530"));
        // Soundex is coarse: Jane and John share J500. Scoring (with the names' own text)
        // is what tells them apart.
        assert!(sound_alike("Jane", "John"));
    }

    #[test]
    fn accents_and_punctuation_are_folded() {
        assert_eq!(fold("ATTSÖN"), "attson");
        assert_eq!(fold("  Zoë   O'Brien-Smith. "), "zoe o'brien-smith");
        assert!(sound_alike("Attsön", "Attson"));
        assert_eq!(soundex("123"), None);
    }
}
