//! The inbox `workflow_filter` grammar (API.md 3.2).

/// A parsed `workflow_filter` value. The quirk of SBX is kept on purpose: a value starting
/// with `*` loses its first and last characters and becomes "contains", so `*ACK` tests
/// "contains `AC`". Clients written against the sandbox depend on what it does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkflowFilter {
    negate: bool,
    kind: Kind,
    needle: String,
}

/// How the filter compares, exposed so a store can translate it into its own query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Equals,
    StartsWith,
    Contains,
}

impl WorkflowFilter {
    /// `None` when the value is blank (no filter).
    pub fn parse(value: &str) -> Option<Self> {
        let value = value.trim();
        if value.is_empty() {
            return None;
        }
        let (negate, rest) = match value.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, value),
        };
        let (kind, needle) = if rest.starts_with('*') {
            let mut chars = rest.chars();
            chars.next();
            chars.next_back();
            (Kind::Contains, chars.as_str())
        } else if let Some(prefix) = rest.strip_suffix('*') {
            (Kind::StartsWith, prefix)
        } else {
            (Kind::Equals, rest)
        };
        Some(WorkflowFilter {
            negate,
            kind,
            needle: needle.to_string(),
        })
    }

    /// `(negated, kind, needle)`, for stores that filter in their query language.
    pub fn parts(&self) -> (bool, Kind, &str) {
        (self.negate, self.kind, &self.needle)
    }

    pub fn matches(&self, workflow_id: &str) -> bool {
        let hit = match self.kind {
            Kind::Equals => workflow_id == self.needle,
            Kind::StartsWith => workflow_id.starts_with(&self.needle),
            Kind::Contains => workflow_id.contains(&self.needle),
        };
        hit != self.negate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_six_forms_and_the_sandbox_quirk() {
        let m = |f: &str, w: &str| WorkflowFilter::parse(f).unwrap().matches(w);
        assert!(m("WF_A", "WF_A"));
        assert!(!m("WF_A", "WF_AB"));
        assert!(m("!WF_A", "WF_B"));
        assert!(m("WF*", "WF_B"));
        assert!(!m("!WF*", "WF_B"));
        assert!(m("*_A*", "X_A_Y"));
        assert!(!m("!*_A*", "X_A_Y"));
        assert!(m("*ACK", "XACY"));
        assert!(!m("=WF_A", "WF_A"));
        assert!(!m("wf_a", "WF_A"));
        assert!(WorkflowFilter::parse("  ").is_none());
    }
}
