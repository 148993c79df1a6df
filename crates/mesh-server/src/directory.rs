//! Loading the directory: the mailbox and workflow files read from disk and handed to
//! the parser in `mesh-protocol`, which holds the rules.

pub use mesh_protocol::directory::{Directory, DirectoryError};
use std::path::{Path, PathBuf};

/// Where the directory came from, so the sandbox "reset all" call and SIGHUP can reload it.
#[derive(Debug, Clone, Default)]
pub struct DirectorySource {
    pub mailboxes: Option<PathBuf>,
    pub workflows: Option<PathBuf>,
    /// Add the demo set (X26ABC1..3 and the TEST_WORKFLOW family).
    pub demo: bool,
}

/// Reads the files of `source` and builds the directory.
pub fn load(source: &DirectorySource) -> Result<Directory, DirectoryError> {
    let mailboxes = source.mailboxes.as_deref().map(read).transpose()?;
    let workflows = source.workflows.as_deref().map(read).transpose()?;
    Directory::build(
        source.demo,
        mailboxes.as_ref().map(|(p, t)| (p.as_path(), t.as_str())),
        workflows.as_ref().map(|(p, t)| (p.as_path(), t.as_str())),
    )
}

fn read(path: &Path) -> Result<(PathBuf, String), DirectoryError> {
    std::fs::read_to_string(path)
        .map(|text| (path.to_path_buf(), text))
        .map_err(|source| DirectoryError::Read {
            path: path.to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_set_answers_the_sandbox_lookups() {
        let dir = load(&DirectorySource {
            demo: true,
            ..Default::default()
        })
        .unwrap();
        let ids = |wf: &str| -> Vec<String> {
            dir.receivers(wf)
                .iter()
                .map(|m| m.mailbox_id.clone())
                .collect()
        };
        assert_eq!(ids("TEST_WORKFLOW"), ["X26ABC2"]);
        assert_eq!(ids("TEST_WORKFLOW_ACK"), ["X26ABC1", "X26ABC3"]);
        assert_eq!(ids("TEST_WORKFLOW2"), ["X26ABC1", "X26ABC2", "X26ABC3"]);
        assert!(ids("NOPE").is_empty());
        assert_eq!(
            dir.mailbox("X26ABC2").unwrap().billing_entity.as_deref(),
            Some("Wales")
        );
    }

    #[test]
    fn a_bad_line_is_reported_with_its_number() {
        let tmp = std::env::temp_dir().join(format!("mb-{}.jsonl", std::process::id()));
        std::fs::write(
            &tmp,
            "{\"mailbox_id\":\"a\",\"mailbox_name\":\"A\"}\n\nnot json\n",
        )
        .unwrap();
        let err = load(&DirectorySource {
            mailboxes: Some(tmp.clone()),
            ..Default::default()
        })
        .unwrap_err();
        std::fs::remove_file(&tmp).ok();
        assert!(err.to_string().contains("line 3"), "{err}");
    }

    #[test]
    fn a_misspelt_field_is_refused_with_its_line() {
        let err = Directory::from_jsonl(
            "{\"mailbox_id\":\"A\",\"mailbox_name\":\"A\",\"password\":\"x\"}\n\
             {\"mailbox_id\":\"B\",\"mailbox_name\":\"B\",\"pasword\":\"secret\"}\n",
            "",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("<mailboxes> line 2: unknown field `pasword`"),
            "{err}"
        );
        let err = Directory::from_jsonl("", "{\"workflow_id\":\"W\",\"reciever\":[]}")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 1: unknown field `reciever`"), "{err}");
    }

    #[test]
    fn a_second_definition_is_refused_naming_the_first() {
        let err = Directory::from_jsonl(
            "{\"mailbox_id\":\"a1\",\"mailbox_name\":\"A\"}\n\n{\"mailbox_id\":\" A1 \",\"mailbox_name\":\"B\"}",
            "",
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            "<mailboxes> line 3: duplicate mailbox_id A1: already defined at <mailboxes> line 1"
        );
        let err = Directory::from_jsonl("", "{\"workflow_id\":\"W\"}\n{\"workflow_id\":\"W \"}")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "<workflows> line 2: duplicate workflow_id W: already defined at <workflows> line 1"
        );
    }

    #[test]
    fn a_file_may_redefine_a_demo_mailbox_once() {
        let tmp = std::env::temp_dir().join(format!("mb-demo-{}.jsonl", std::process::id()));
        let line = r#"{"mailbox_id":"X26ABC1","mailbox_name":"BOUND","certificate_cns":["cn"]}"#;
        std::fs::write(&tmp, format!("{line}\n")).unwrap();
        let source = DirectorySource {
            mailboxes: Some(tmp.clone()),
            demo: true,
            ..Default::default()
        };
        let dir = load(&source).unwrap();
        assert_eq!(dir.mailbox("X26ABC1").unwrap().mailbox_name, "BOUND");
        assert_eq!(dir.mailbox_count(), 3);
        std::fs::write(&tmp, format!("{line}\n{line}\n")).unwrap();
        let err = load(&source).unwrap_err().to_string();
        std::fs::remove_file(&tmp).ok();
        assert!(
            err.contains("line 2: duplicate mailbox_id X26ABC1"),
            "{err}"
        );
    }

    #[test]
    fn a_workflow_naming_an_unknown_mailbox_loads_with_a_warning() {
        let dir = Directory::from_jsonl(
            "{\"mailbox_id\":\"A\",\"mailbox_name\":\"A\"}",
            "{\"workflow_id\":\"W\",\"senders\":[\"A\"],\"receivers\":[\"A\",\"TYPO\"]}",
        )
        .unwrap();
        assert_eq!(
            dir.warnings(),
            ["<workflows> line 1: workflow W names receiver TYPO, which is not a configured mailbox"]
        );
        assert_eq!(dir.receivers("W").len(), 1);
    }
}
