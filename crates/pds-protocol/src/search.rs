//! `GET /Patient` parameters (API.md §7): parsed and checked in the NHS sandbox's order,
//! each refusal with its exact OperationOutcome. Matching and scoring are the store's.
//!
//! **OpenSpine** where the sources give no text: a bad boolean, `_max-results` outside
//! 1–50, a name over 35 characters and a wildcard in a name's first two characters are
//! `INVALID_VALUE` in the catalogue's field style; both postcode aliases at once is
//! `INVALID_SEARCH_DATA` saying so. Repeated single-valued parameters: the last wins.

use crate::error::{Outcome, SpineCode};

/// Longest `family` or `given` value.
pub const MAX_NAME: usize = 35;
/// Most results a healthcare worker may ask for (and the default).
pub const MAX_RESULTS: u32 = 50;
/// Most parameters one search may carry; more is a 400 rather than work.
pub const MAX_PARAMETERS: usize = 64;

const KNOWN: &[&str] = &[
    "family",
    "given",
    "gender",
    "birthdate",
    "death-date",
    "address-postalcode",
    "address-postcode",
    "general-practitioner",
    "email",
    "phone",
    "_fuzzy-match",
    "_exact-match",
    "_history",
    "_max-results",
    // Sent by the NHS's Postman collection; accepted and ignored.
    "history",
];

/// `eq`, `ge` or `le` before a date; none means `eq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    Eq,
    Ge,
    Le,
}

/// One `birthdate` or `death-date` value: a bound and an ISO date (`yyyy-mm-dd`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DateBound {
    pub bound: Bound,
    pub date: String,
}

/// A checked search.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchQuery {
    pub family: Option<String>,
    pub given: Vec<String>,
    pub gender: Option<String>,
    pub birthdate: Vec<DateBound>,
    pub death_date: Vec<DateBound>,
    pub postcode: Option<String>,
    pub general_practitioner: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub fuzzy: bool,
    pub exact: bool,
    pub history: bool,
    /// As asked; the access mode decides what it may be (API.md §3).
    pub max_results: Option<u32>,
}

impl SearchQuery {
    /// Whether a name or the postcode holds a `*`.
    pub fn has_wildcards(&self) -> bool {
        self.family
            .iter()
            .chain(&self.given)
            .chain(&self.postcode)
            .any(|v| v.contains('*'))
    }
}

fn search_data(why: &str) -> Outcome {
    Outcome::new(
        SpineCode::InvalidSearchData,
        Some(&format!("Invalid search data provided - '{why}'")),
    )
}

/// Parses decoded `(name, value)` pairs, in the order they came.
pub fn parse(params: &[(String, String)]) -> Result<SearchQuery, Outcome> {
    let params: Vec<&(String, String)> = params.iter().filter(|(n, _)| !n.is_empty()).collect();
    // 1. Nothing asked.
    if params.is_empty() {
        return Err(Outcome::new(SpineCode::UnsupportedService, None));
    }
    if params.len() > MAX_PARAMETERS {
        return Err(search_data("Too many search parameters were given"));
    }
    // 2. Names the API does not know, each once, in the order given.
    let mut unknown: Vec<&str> = Vec::new();
    for (name, _) in &params {
        if !KNOWN.contains(&name.as_str()) && !unknown.contains(&name.as_str()) {
            unknown.push(name);
        }
    }
    if !unknown.is_empty() {
        let list = unknown
            .iter()
            .map(|n| format!("'{}'", n.chars().take(64).collect::<String>()))
            .collect::<Vec<_>>()
            .join(", ");
        let verb = if unknown.len() == 1 { "was" } else { "were" };
        return Err(Outcome::new(
            SpineCode::AdditionalProperties,
            Some(&format!(
                "Invalid request with error - Additional properties are not allowed ({list} {verb} unexpected)"
            )),
        ));
    }
    let mut q = SearchQuery::default();
    let mut postal = None;
    let mut postcode_alias = None;
    // 3. Each value's own form.
    for (name, value) in &params {
        let value = value.as_str();
        let field_error = || Outcome::invalid_value(value, name);
        match name.as_str() {
            "family" | "given" => {
                if value.chars().count() > MAX_NAME
                    || value.chars().take(2).any(|c| c == '*')
                    || value.trim().is_empty()
                {
                    return Err(field_error());
                }
                if name == "family" {
                    q.family = Some(value.to_string());
                } else {
                    q.given.push(value.to_string());
                }
            }
            "gender" => {
                if !["male", "female", "other", "unknown"].contains(&value) {
                    return Err(field_error());
                }
                q.gender = Some(value.to_string());
            }
            "birthdate" | "death-date" => {
                let bound = date_bound(value).ok_or_else(field_error)?;
                if name == "birthdate" {
                    q.birthdate.push(bound);
                } else {
                    q.death_date.push(bound);
                }
            }
            "address-postalcode" => postal = Some(value.to_string()),
            "address-postcode" => postcode_alias = Some(value.to_string()),
            "general-practitioner" => q.general_practitioner = Some(value.to_string()),
            "email" => q.email = Some(value.to_string()),
            "phone" => q.phone = Some(value.to_string()),
            "_fuzzy-match" => q.fuzzy = boolean(value).ok_or_else(field_error)?,
            "_exact-match" => q.exact = boolean(value).ok_or_else(field_error)?,
            "_history" => q.history = boolean(value).ok_or_else(field_error)?,
            "_max-results" => {
                let n: u32 = value.parse().map_err(|_| field_error())?;
                if !(1..=MAX_RESULTS).contains(&n) {
                    return Err(field_error());
                }
                q.max_results = Some(n);
            }
            _ => {}
        }
    }
    q.postcode = match (postal, postcode_alias) {
        (Some(_), Some(_)) => {
            return Err(search_data(
                "Only one of address-postalcode and address-postcode may be given",
            ))
        }
        (a, b) => a.or(b),
    };
    // 4. A birth date, always.
    if q.birthdate.is_empty() {
        return Err(Outcome::missing_value(
            "birth_date/birth_date_range_start/birth_date_range_end",
        ));
    }
    if !q.fuzzy {
        // 5. A plain search needs a family name.
        if q.family.is_none() {
            return Err(search_data("No searches were performed as the search criteria did not meet the minimum requirements"));
        }
    } else {
        // 6. A fuzzy search: one of three sets, and no wildcards.
        let (given, family, gender, postcode) = (
            !q.given.is_empty(),
            q.family.is_some(),
            q.gender.is_some(),
            q.postcode.is_some(),
        );
        let enough =
            (given && family) || (family && gender && postcode) || (given && gender && postcode);
        if !enough || q.has_wildcards() {
            return Err(search_data("A fuzzy search was requested however the data given did not meet the fuzzy search criteria"));
        }
    }
    Ok(q)
}

/// `^(eq|ge|le)?\d{4}-\d{2}-\d{2}$`.
fn date_bound(value: &str) -> Option<DateBound> {
    let (bound, date) = match value.get(..2) {
        Some("eq") => (Bound::Eq, &value[2..]),
        Some("ge") => (Bound::Ge, &value[2..]),
        Some("le") => (Bound::Le, &value[2..]),
        _ => (Bound::Eq, value),
    };
    let b = date.as_bytes();
    let ok = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    ok.then(|| DateBound {
        bound,
        date: date.to_string(),
    })
}

fn boolean(value: &str) -> Option<bool> {
    match value {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Result<SearchQuery, Outcome> {
        parse(
            &pairs
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect::<Vec<_>>(),
        )
    }

    fn refusal(r: Result<SearchQuery, Outcome>) -> (u16, String, Option<String>) {
        let o = r.expect_err("refused");
        let diagnostics = o.diagnostics().map(str::to_string);
        (o.status, o.spine_code().to_string(), diagnostics)
    }

    #[test]
    fn a_good_search_is_parsed() {
        let s = q(&[
            ("family", "Smith"),
            ("given", "Jane"),
            ("gender", "female"),
            ("birthdate", "ge2010-10-22"),
            ("birthdate", "le2010-10-23"),
            ("address-postcode", "DN19 7UD"),
            ("_max-results", "10"),
            ("", "ignored"),
            ("history", "true"),
        ])
        .unwrap();
        assert_eq!(s.family.as_deref(), Some("Smith"));
        assert_eq!(
            s.birthdate[0],
            DateBound {
                bound: Bound::Ge,
                date: "2010-10-22".into()
            }
        );
        assert_eq!(s.birthdate[1].bound, Bound::Le);
        assert_eq!(s.postcode.as_deref(), Some("DN19 7UD"));
        assert_eq!(s.max_results, Some(10));
        assert!(!s.fuzzy);
    }

    #[test]
    fn each_check_of_the_sandbox_order_has_its_text() {
        assert_eq!(refusal(q(&[])), (400, "UNSUPPORTED_SERVICE".into(), None));
        assert_eq!(
            refusal(q(&[("", "x")])),
            (400, "UNSUPPORTED_SERVICE".into(), None)
        );
        assert_eq!(
            refusal(q(&[("family", "Smith"), ("year", "2020")])).2.as_deref(),
            Some("Invalid request with error - Additional properties are not allowed ('year' was unexpected)")
        );
        assert_eq!(
            refusal(q(&[("model", "a"), ("manufacturer", "b"), ("year", "c"), ("model", "d")])).2.as_deref(),
            Some("Invalid request with error - Additional properties are not allowed ('model', 'manufacturer', 'year' were unexpected)")
        );
        assert_eq!(
            refusal(q(&[("family", "Smith"), ("birthdate", "20101022")])),
            (
                400,
                "INVALID_VALUE".into(),
                Some("Invalid value - '20101022' in field 'birthdate'".into())
            )
        );
        assert_eq!(
            refusal(q(&[
                ("family", "Smith"),
                ("birthdate", "2010-10-22"),
                ("death-date", "gt2020-01-01")
            ]))
            .2
            .as_deref(),
            Some("Invalid value - 'gt2020-01-01' in field 'death-date'")
        );
        assert_eq!(
            refusal(q(&[
                ("family", "Smith"),
                ("gender", "mal"),
                ("birthdate", "2010-10-22")
            ]))
            .2
            .as_deref(),
            Some("Invalid value - 'mal' in field 'gender'")
        );
        assert_eq!(
            refusal(q(&[("email", "jane.smith@example.com")])),
            (
                400,
                "MISSING_VALUE".into(),
                Some(
                    "Missing value - 'birth_date/birth_date_range_start/birth_date_range_end'"
                        .into()
                )
            )
        );
        assert_eq!(
            refusal(q(&[("given", "Jane"), ("birthdate", "2010-10-22")])).2.as_deref(),
            Some("Invalid search data provided - 'No searches were performed as the search criteria did not meet the minimum requirements'")
        );
        let fuzzy_refused = Some("Invalid search data provided - 'A fuzzy search was requested however the data given did not meet the fuzzy search criteria'".to_string());
        assert_eq!(
            refusal(q(&[
                ("family", "Smith"),
                ("birthdate", "2010-10-22"),
                ("_fuzzy-match", "true")
            ]))
            .2,
            fuzzy_refused
        );
        assert_eq!(
            refusal(q(&[
                ("family", "Sm*"),
                ("given", "Jane"),
                ("birthdate", "2010-10-22"),
                ("_fuzzy-match", "true")
            ]))
            .2,
            fuzzy_refused,
            "no wildcards in a fuzzy search"
        );
        assert_eq!(
            refusal(q(&[
                ("family", "Smith"),
                ("birthdate", "2010-10-22"),
                ("address-postcode", "A"),
                ("address-postalcode", "A")
            ]))
            .1,
            "INVALID_SEARCH_DATA"
        );
    }

    #[test]
    fn the_three_fuzzy_sets_are_enough() {
        let fuzzy = |extra: &[(&str, &str)]| {
            let mut p = vec![("birthdate", "2010-10-22"), ("_fuzzy-match", "true")];
            p.extend_from_slice(extra);
            q(&p)
        };
        assert!(fuzzy(&[("given", "Jane"), ("family", "Smyth")]).is_ok());
        assert!(fuzzy(&[
            ("family", "Smyth"),
            ("gender", "female"),
            ("address-postalcode", "DN19 7UD")
        ])
        .is_ok());
        assert!(fuzzy(&[
            ("given", "Jane"),
            ("gender", "female"),
            ("address-postalcode", "DN19 7UD")
        ])
        .is_ok());
        assert!(fuzzy(&[("given", "Jane"), ("gender", "female")]).is_err());
    }

    #[test]
    fn names_wildcards_booleans_and_limits() {
        let base = [("birthdate", "2010-10-22")];
        let with = |extra: (&str, &str)| {
            let mut p = base.to_vec();
            p.push(("family", "Smith"));
            p.push(extra);
            q(&p)
        };
        assert!(q(&[("family", "Sm*t*"), base[0]]).is_ok());
        assert!(
            q(&[("family", "S*"), base[0]]).is_err(),
            "a wildcard needs two characters before it"
        );
        assert!(q(&[("family", &"a".repeat(36)), base[0]]).is_err());
        assert!(with(("_history", "yes")).is_err());
        assert!(with(("_max-results", "51")).is_err());
        assert!(with(("_max-results", "0")).is_err());
        assert!(with(("_exact-match", "true")).unwrap().exact);
    }
}
