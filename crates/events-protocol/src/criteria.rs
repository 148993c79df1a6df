//! Subscription criteria (API.md §4.2): `eventType=T` followed by any number of
//! ` AND name=value` clauses, values optionally in single quotes.
//!
//! **OpenSpine** (the NHS does not say): a criteria is an AND of exact, case-sensitive
//! equalities; `name` is a key of the event's `filtering`; a number or boolean matches by
//! its JSON text (`subjectage=42`, `flag=true`); an array matches when any item does; an
//! attribute the event does not carry means no match. There is no OR, NOT or IN.
//!
//! **OpenSpine extension**: `eventType` may name a family, `eventType=mesh-message-*`: every
//! type that starts with the text before `*`, which must end at a `-`. One subscription then
//! receives the whole family in one queue, so in the order the events were accepted (a
//! message's "accepted", "downloaded", "acknowledged"), which separate subscriptions, each
//! its own queue, cannot promise.

use serde_json::Value;
use std::fmt;

/// Longest criteria accepted.
pub const MAX_CRITERIA: usize = 1024;
/// Most clauses after `eventType`.
pub const MAX_CLAUSES: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Criteria {
    /// A type (`pds-change-of-gp-2`) or a family (`mesh-message-*`).
    pub event_type: String,
    /// `(name, value)` pairs, all of which must hold.
    pub clauses: Vec<(String, String)>,
}

impl Criteria {
    /// Parses a criteria, `None` when it breaks the grammar.
    pub fn parse(text: &str) -> Option<Criteria> {
        if text.len() > MAX_CRITERIA {
            return None;
        }
        let mut clauses = Vec::new();
        let mut rest = text;
        loop {
            let (name, value, after) = clause(rest)?;
            clauses.push((name.to_string(), value.to_string()));
            if after.is_empty() {
                break;
            }
            rest = after.strip_prefix(" AND ")?;
        }
        let (first, value) = clauses.remove(0);
        if first != "eventType" || !(crate::event::is_event_type(&value) || is_family(&value)) {
            return None;
        }
        if clauses.len() > MAX_CLAUSES || clauses.iter().any(|(n, _)| n == "eventType") {
            return None;
        }
        Some(Criteria {
            event_type: value,
            clauses,
        })
    }

    /// Whether an event of `event_type` with `filtering` matches.
    pub fn matches(&self, event_type: &str, filtering: &serde_json::Map<String, Value>) -> bool {
        self.covers(event_type)
            && self.clauses.iter().all(|(name, want)| {
                filtering
                    .get(name)
                    .is_some_and(|have| value_matches(have, want))
            })
    }
}

impl Criteria {
    /// Whether the criteria's type or family takes in `event_type`.
    pub fn covers(&self, event_type: &str) -> bool {
        match self.event_type.strip_suffix('*') {
            Some(prefix) => event_type.starts_with(prefix),
            None => self.event_type == event_type,
        }
    }

    /// The value of a clause on `name`, if there is one.
    pub fn clause(&self, name: &str) -> Option<&str> {
        self.clauses
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Every `eventType` value a criteria can have and still take in `event_type`: the type
/// itself and each family it belongs to (`mesh-*`, `mesh-message-*`, …). Stores look
/// subscriptions up by these, so a publish reads only the subscriptions that can match.
pub fn type_keys(event_type: &str) -> Vec<String> {
    let mut keys = vec![event_type.to_string()];
    keys.extend(
        event_type
            .match_indices('-')
            .map(|(i, _)| format!("{}*", &event_type[..=i])),
    );
    keys
}

/// A family: `prefix-*`, the prefix being whole words of a type's name.
fn is_family(value: &str) -> bool {
    let Some(prefix) = value.strip_suffix("-*") else {
        return false;
    };
    !prefix.is_empty()
        && value.len() <= 128
        && prefix.split('-').all(|w| {
            !w.is_empty()
                && w.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
}

/// The canonical text: unquoted where the value allows it. Two criteria that mean the
/// same thing have the same text, which is what duplicate detection compares.
impl fmt::Display for Criteria {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "eventType={}", self.event_type)?;
        for (name, value) in &self.clauses {
            if value.is_empty() || value.contains(' ') {
                write!(f, " AND {name}='{value}'")?;
            } else {
                write!(f, " AND {name}={value}")?;
            }
        }
        Ok(())
    }
}

fn value_matches(have: &Value, want: &str) -> bool {
    match have {
        Value::String(s) => s == want,
        Value::Number(n) => n.to_string() == want,
        Value::Bool(b) => b.to_string() == want,
        Value::Array(items) => items.iter().any(|i| value_matches(i, want)),
        _ => false,
    }
}

/// One `name=value` at the start of `s`; returns it and what follows.
fn clause(s: &str) -> Option<(&str, &str, &str)> {
    let eq = s.find('=')?;
    let name = &s[..eq];
    if name.is_empty()
        || name.len() > 64
        || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return None;
    }
    let after = &s[eq + 1..];
    if let Some(quoted) = after.strip_prefix('\'') {
        let end = quoted.find('\'')?;
        let value = &quoted[..end];
        if value.chars().any(char::is_control) || value.len() > 256 {
            return None;
        }
        Some((name, value, &quoted[end + 1..]))
    } else {
        let end = after.find(' ').unwrap_or(after.len());
        let value = &after[..end];
        let ok = !value.is_empty()
            && value.len() <= 256
            && !value.contains('\'')
            && !value.contains('=')
            && !value.chars().any(char::is_control);
        ok.then_some((name, value, &after[end..]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn filtering(v: Value) -> serde_json::Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn both_styles_of_the_nhs_examples_parse() {
        let c = Criteria::parse("eventType=pds-change-of-gp-2").unwrap();
        assert_eq!(c.event_type, "pds-change-of-gp-2");
        assert!(c.clauses.is_empty());
        let c = Criteria::parse(
            "eventType='patientflags-change-1' AND flagtype='NRAF' AND generalpractitioner='XY11'",
        )
        .unwrap();
        assert_eq!(c.event_type, "patientflags-change-1");
        assert_eq!(
            c.clauses,
            vec![
                ("flagtype".into(), "NRAF".into()),
                ("generalpractitioner".into(), "XY11".into())
            ]
        );
        assert_eq!(
            c.to_string(),
            "eventType=patientflags-change-1 AND flagtype=NRAF AND generalpractitioner=XY11"
        );
    }

    #[test]
    fn bad_criteria_are_refused() {
        for bad in [
            "",
            "eventType=",
            "eventtype=pds-change-of-gp-2",
            "flagtype=NRAF AND eventType=pds-change-of-gp-2",
            "eventType=pds-change-of-gp-2 and flagtype=NRAF",
            "eventType=pds-change-of-gp-2 AND ",
            "eventType=pds-change-of-gp-2 AND flagtype",
            "eventType=pds-change-of-gp-2 AND flag type=NRAF",
            "eventType='pds-change-of-gp-2",
            "eventType=pds-change-of-gp-2 OR flagtype=NRAF",
            "eventType=pds-change-of-gp-2 AND eventType=nhs-number-change-2",
            "eventType=Not-A-Type",
            "eventType=*",
            "eventType=-*",
            "eventType=mesh*",
            "eventType=mesh-mess*",
            "eventType=mesh--*",
            "eventType=mesh-*-1",
            "eventType=Mesh-*",
        ] {
            assert_eq!(Criteria::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn matching_is_an_and_of_exact_equalities() {
        let c = Criteria::parse(
            "eventType=imms-vaccination-record-change-1 AND generalpractitioner=Y12345 AND subjectage=42",
        )
        .unwrap();
        let f = filtering(json!({"generalpractitioner": "Y12345", "subjectage": 42}));
        assert!(c.matches("imms-vaccination-record-change-1", &f));
        assert!(
            !c.matches("imms-vaccination-record-change-2", &f),
            "type must match"
        );
        let f = filtering(json!({"generalpractitioner": "y12345", "subjectage": 42}));
        assert!(
            !c.matches("imms-vaccination-record-change-1", &f),
            "case matters"
        );
        let f = filtering(json!({"generalpractitioner": "Y12345"}));
        assert!(
            !c.matches("imms-vaccination-record-change-1", &f),
            "missing means no"
        );
        let f = filtering(json!({"generalpractitioner": ["A1", "Y12345"], "subjectage": [42]}));
        assert!(
            c.matches("imms-vaccination-record-change-1", &f),
            "any array item"
        );
        let b = Criteria::parse("eventType=t-1 AND changed_name=true").unwrap();
        assert!(b.matches("t-1", &filtering(json!({"changed_name": true}))));
        assert!(!b.matches("t-1", &filtering(json!({"changed_name": false}))));
        let q = Criteria::parse("eventType=t-1 AND name='two words'").unwrap();
        assert!(q.matches("t-1", &filtering(json!({"name": "two words"}))));
        assert_eq!(Criteria::parse(&q.to_string()), Some(q));
    }

    #[test]
    fn a_family_takes_in_every_type_that_starts_with_it() {
        let c = Criteria::parse("eventType=mesh-message-* AND sender=X26ABC1").unwrap();
        let f = filtering(json!({"sender": "X26ABC1"}));
        for t in [
            "mesh-message-accepted-1",
            "mesh-message-acknowledged-1",
            "mesh-message-expired-1",
        ] {
            assert!(c.matches(t, &f), "{t}");
        }
        assert!(!c.matches("mesh-report-generated-1", &f));
        assert!(!c.matches(
            "mesh-message-accepted-1",
            &filtering(json!({"sender": "X26ABC2"}))
        ));
        assert_eq!(c.to_string(), "eventType=mesh-message-* AND sender=X26ABC1");
        assert_eq!(c.clause("sender"), Some("X26ABC1"));
        assert!(Criteria::parse("eventType=mesh-*")
            .unwrap()
            .covers("mesh-report-generated-1"));
    }

    #[test]
    fn type_keys_are_the_type_and_its_families() {
        assert_eq!(
            type_keys("mesh-message-accepted-1"),
            vec![
                "mesh-message-accepted-1",
                "mesh-*",
                "mesh-message-*",
                "mesh-message-accepted-*"
            ]
        );
        // Every family that covers a type is among its keys.
        for family in ["mesh-*", "mesh-message-*", "mesh-message-accepted-*"] {
            let c = Criteria::parse(&format!("eventType={family}")).unwrap();
            assert!(c.covers("mesh-message-accepted-1"));
            assert!(type_keys("mesh-message-accepted-1").contains(&c.event_type));
        }
    }
}
