//! Mailboxes and workflows: parsed from JSON-lines text in the MESH sandbox's format
//! (API.md 8.1, 8.2), or the sandbox's own well-known set. Reading the files is the
//! server's (`mesh_server::directory`); the rules (what a line must hold, which
//! duplicates are refused, which members are probably typos) are here, without I/O.

use crate::{Mailbox, Workflow};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} line {line}: {reason}")]
    Line {
        path: PathBuf,
        line: usize,
        reason: String,
    },
}

/// Known mailboxes and workflows.
#[derive(Debug, Clone, Default)]
pub struct Directory {
    mailboxes: HashMap<String, Mailbox>,
    /// In file order: lookups answer in the order of a workflow's `receivers` list.
    workflows: Vec<Workflow>,
    by_workflow: HashMap<String, usize>,
    /// Where each mailbox and workflow was defined ("file line N"), to name the first
    /// definition when a second one is refused.
    origins: HashMap<(Kind, String), String>,
    /// Things that load but are probably mistakes (a workflow naming a mailbox that does
    /// not exist), each naming its file and line.
    warnings: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Mailbox,
    Workflow,
}

impl Directory {
    /// The demo set when `demo`, then the mailboxes and workflows texts, each named by
    /// the path it was read from (for the messages).
    pub fn build(
        demo: bool,
        mailboxes: Option<(&Path, &str)>,
        workflows: Option<(&Path, &str)>,
    ) -> Result<Self, DirectoryError> {
        let mut dir = Directory::default();
        if demo {
            dir.add_jsonl(
                Path::new(DEMO_MAILBOXES_ORIGIN),
                DEMO_MAILBOXES,
                Self::add_mailbox,
            )?;
            dir.add_jsonl(
                Path::new(DEMO_WORKFLOWS_ORIGIN),
                DEMO_WORKFLOWS,
                Self::add_workflow,
            )?;
        }
        if let Some((path, text)) = mailboxes {
            dir.add_jsonl(path, text, Self::add_mailbox)?;
        }
        if let Some((path, text)) = workflows {
            dir.add_jsonl(path, text, Self::add_workflow)?;
        }
        dir.check_workflow_members();
        Ok(dir)
    }

    /// Probable mistakes that do not stop loading, each with its file and line; logged at
    /// start and reload and printed by `openspine check-config`.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Workflows that name mailboxes nobody defined: the sandbox skips them silently,
    /// which hides a typo in a mailbox id until a send is refused.
    fn check_workflow_members(&mut self) {
        let mut warnings = Vec::new();
        for wf in &self.workflows {
            let origin = self
                .origins
                .get(&(Kind::Workflow, wf.workflow_id.clone()))
                .cloned()
                .unwrap_or_default();
            for (role, ids) in [("sender", &wf.senders), ("receiver", &wf.receivers)] {
                for id in ids.iter().filter(|id| !self.mailboxes.contains_key(*id)) {
                    warnings.push(format!(
                        "{origin}: workflow {} names {role} {id}, which is not a configured mailbox",
                        wf.workflow_id
                    ));
                }
            }
        }
        self.warnings = warnings;
    }

    /// Parses mailboxes and workflows from JSON-lines text, with the same rules as
    /// [`Directory::build`] but no files. It exists for fuzzing and property tests; errors
    /// name the text as `<mailboxes>` or `<workflows>`.
    pub fn from_jsonl(mailboxes: &str, workflows: &str) -> Result<Self, DirectoryError> {
        let mut dir = Directory::default();
        dir.add_jsonl(Path::new("<mailboxes>"), mailboxes, Self::add_mailbox)?;
        dir.add_jsonl(Path::new("<workflows>"), workflows, Self::add_workflow)?;
        dir.check_workflow_members();
        Ok(dir)
    }

    fn add_jsonl(
        &mut self,
        path: &Path,
        text: &str,
        add: fn(&mut Self, &str, String) -> Result<(), String>,
    ) -> Result<(), DirectoryError> {
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let origin = format!("{} line {}", path.display(), i + 1);
            add(self, line, origin).map_err(|reason| DirectoryError::Line {
                path: path.to_path_buf(),
                line: i + 1,
                reason,
            })?;
        }
        Ok(())
    }

    /// Records where `id` is defined, refusing a second definition: silently keeping
    /// one of two lines hides which password or receiver list is in force. The one
    /// exception is the demo set, which is a base the operator's files may redefine
    /// (binding a demo mailbox to a certificate, say).
    fn claim(&mut self, kind: Kind, id: &str, origin: String) -> Result<(), String> {
        let what = match kind {
            Kind::Mailbox => "mailbox_id",
            Kind::Workflow => "workflow_id",
        };
        match self.origins.entry((kind, id.to_string())) {
            std::collections::hash_map::Entry::Occupied(mut first) => {
                if first.get().starts_with(DEMO_ORIGIN) && !origin.starts_with(DEMO_ORIGIN) {
                    first.insert(origin);
                    Ok(())
                } else {
                    Err(format!(
                        "duplicate {what} {id}: already defined at {}",
                        first.get()
                    ))
                }
            }
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(origin);
                Ok(())
            }
        }
    }

    fn add_mailbox(&mut self, line: &str, origin: String) -> Result<(), String> {
        let mut mb: Mailbox = serde_json::from_str(line).map_err(|e| e.to_string())?;
        mb.mailbox_id = mb.mailbox_id.trim().to_ascii_uppercase();
        mb.ods_code = mb.ods_code.trim().to_ascii_uppercase();
        if mb.mailbox_id.is_empty() {
            return Err("mailbox_id is empty".into());
        }
        self.claim(Kind::Mailbox, &mb.mailbox_id, origin)?;
        self.mailboxes.insert(mb.mailbox_id.clone(), mb);
        Ok(())
    }

    fn add_workflow(&mut self, line: &str, origin: String) -> Result<(), String> {
        let mut wf: Workflow = serde_json::from_str(line).map_err(|e| e.to_string())?;
        wf.workflow_id = wf.workflow_id.trim().to_string();
        if wf.workflow_id.is_empty() {
            return Err("workflow_id is empty".into());
        }
        let clean = |ids: &mut Vec<String>| {
            *ids = ids
                .iter()
                .map(|s| s.trim().to_ascii_uppercase())
                .filter(|s| !s.is_empty())
                .collect();
        };
        clean(&mut wf.senders);
        clean(&mut wf.receivers);
        self.claim(Kind::Workflow, &wf.workflow_id, origin)?;
        match self.by_workflow.get(&wf.workflow_id) {
            // A demo workflow redefined by the operator's file.
            Some(&i) => self.workflows[i] = wf,
            None => {
                self.by_workflow
                    .insert(wf.workflow_id.clone(), self.workflows.len());
                self.workflows.push(wf);
            }
        }
        Ok(())
    }

    pub fn mailbox(&self, id: &str) -> Option<&Mailbox> {
        self.mailboxes.get(id)
    }

    pub fn workflow(&self, id: &str) -> Option<&Workflow> {
        self.by_workflow.get(id).map(|&i| &self.workflows[i])
    }

    /// Receivers of a workflow that are known mailboxes, in the workflow's order.
    pub fn receivers(&self, workflow_id: &str) -> Vec<&Mailbox> {
        self.workflow(workflow_id)
            .map(|wf| {
                wf.receivers
                    .iter()
                    .filter_map(|id| self.mailboxes.get(id))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Ids of the mailboxes whose `active` flag is off: messages waiting for them expire
    /// with a "mailbox is deactivated" report.
    pub fn inactive_mailboxes(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .mailboxes
            .values()
            .filter(|m| !m.active)
            .map(|m| m.mailbox_id.clone())
            .collect();
        ids.sort();
        ids
    }

    /// Every mailbox, in no particular order.
    pub fn mailboxes(&self) -> impl Iterator<Item = &Mailbox> {
        self.mailboxes.values()
    }

    /// Every workflow, in file order.
    pub fn workflows(&self) -> impl Iterator<Item = &Workflow> {
        self.workflows.iter()
    }

    pub fn mailbox_count(&self) -> usize {
        self.mailboxes.len()
    }

    pub fn workflow_count(&self) -> usize {
        self.workflows.len()
    }
}

/// How the demo set's lines are named in messages; a file may redefine them.
const DEMO_ORIGIN: &str = "<demo";
const DEMO_MAILBOXES_ORIGIN: &str = "<demo mailboxes>";
const DEMO_WORKFLOWS_ORIGIN: &str = "<demo workflows>";

/// The NHS sandbox's fixture mailboxes (API.md 8.1).
const DEMO_MAILBOXES: &str = r#"
{"mailbox_id":"X26ABC1","mailbox_name":"TESTMB1","billing_entity":"England","ods_code":"X26","org_code":"X26","password":"password"}
{"mailbox_id":"X26ABC2","mailbox_name":"TESTMB2","billing_entity":"Wales","ods_code":"X26","org_code":"X26","password":"password"}
{"mailbox_id":"X26ABC3","mailbox_name":"TESTMB3","billing_entity":"England","ods_code":"X27","org_code":"X27","password":"password"}
"#;

/// The NHS sandbox's fixture workflows (API.md 8.2).
const DEMO_WORKFLOWS: &str = r#"
{"workflow_id":"TEST_WORKFLOW","senders":["X26ABC1"],"receivers":["X26ABC2"]}
{"workflow_id":"TEST_WORKFLOW_ACK","senders":["X26ABC2"],"receivers":["X26ABC1","X26ABC3"]}
{"workflow_id":"TEST_WORKFLOW2","senders":["X26ABC1"],"receivers":["X26ABC1","X26ABC2","X26ABC3"]}
"#;
