//! Which of an app's product scopes a token gets (API.md 4.4, 5, 7), and the access mode
//! a service derives from a token's scopes (7): data each service declares, not code.

pub const APP_LEVEL3: &str = "urn:nhsd:apim:app:level3:";

/// The scopes of a client-credentials token: those that start `urn:nhsd:apim:app:level3:`.
pub fn application_restricted(app_scopes: &[String]) -> Vec<String> {
    app_scopes
        .iter()
        .filter(|s| s.starts_with(APP_LEVEL3))
        .cloned()
        .collect()
}

/// A CIS2 user's scopes: those naming the user's authentication assurance level
/// (`:aal3:` for level 3).
pub fn cis2(app_scopes: &[String], assurance_level: &str) -> Vec<String> {
    let marker = format!(":aal{assurance_level}:");
    app_scopes
        .iter()
        .filter(|s| s.contains(&marker))
        .cloned()
        .collect()
}

/// An NHS login user's scopes: those naming the first two characters of the identity
/// proofing level (`:P9:` for `P9`).
pub fn nhs_login(app_scopes: &[String], proofing_level: &str) -> Vec<String> {
    let level: String = proofing_level.chars().take(2).collect();
    if level.is_empty() {
        return Vec::new();
    }
    let marker = format!(":{level}:");
    app_scopes
        .iter()
        .filter(|s| s.contains(&marker))
        .cloned()
        .collect()
}

/// One line of a service's scope table: a token holding `scope` gets `mode`. Rules are
/// applied in order and a later match wins (PDS: app-restricted, then user-restricted,
/// then patient access; API.md 7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRule {
    pub scope: String,
    pub mode: AccessMode,
}

/// What a service lets a caller do, by the kind of token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AccessMode {
    ApplicationRestricted,
    UserRestricted,
    PatientAccess,
    PrivilegedApplicationRestricted,
    /// The token's scopes are refused outright (NHS login P0/P5 on PDS).
    Refused,
}

impl AccessMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AccessMode::ApplicationRestricted => "application-restricted",
            AccessMode::UserRestricted => "user-restricted",
            AccessMode::PatientAccess => "patient-access",
            AccessMode::PrivilegedApplicationRestricted => "privileged-application-restricted",
            AccessMode::Refused => "refused",
        }
    }
}

/// The mode the last matching rule gives, or `None` when no rule matches (the token
/// opens nothing of this service).
pub fn access_mode(token_scopes: &[String], rules: &[AccessRule]) -> Option<AccessMode> {
    rules
        .iter()
        .rev()
        .find(|r| token_scopes.contains(&r.scope))
        .map(|r| r.mode)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn each_grant_keeps_only_the_scopes_of_its_level() {
        let app = v(&[
            "urn:nhsd:apim:app:level3:personal-demographics-service",
            "urn:nhsd:apim:user-nhs-cis2:aal3:personal-demographics-service",
            "urn:nhsd:apim:user-nhs-id:aal3:personal-demographics-service",
            "urn:nhsd:apim:user-nhs-login:P9:personal-demographics-service",
            "urn:nhsd:apim:user-nhs-login:P5:personal-demographics-service",
        ]);
        assert_eq!(application_restricted(&app), app[..1].to_vec());
        assert_eq!(cis2(&app, "3"), app[1..3].to_vec());
        assert!(cis2(&app, "2").is_empty());
        assert_eq!(nhs_login(&app, "P9"), app[3..4].to_vec());
        assert_eq!(nhs_login(&app, "P5"), app[4..5].to_vec());
        assert!(nhs_login(&app, "").is_empty());
    }

    #[test]
    fn the_last_matching_rule_gives_the_mode() {
        let rules = vec![
            AccessRule {
                scope: "a".into(),
                mode: AccessMode::ApplicationRestricted,
            },
            AccessRule {
                scope: "u".into(),
                mode: AccessMode::UserRestricted,
            },
        ];
        assert_eq!(
            access_mode(&v(&["u", "a"]), &rules),
            Some(AccessMode::UserRestricted)
        );
        assert_eq!(
            access_mode(&v(&["a"]), &rules),
            Some(AccessMode::ApplicationRestricted)
        );
        assert_eq!(access_mode(&v(&["x"]), &rules), None);
    }
}
