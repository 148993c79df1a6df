//! The JSON-lines directory loader (API.md 8.1, 8.2) against arbitrary text. The input is
//! the mailboxes file and the workflows file separated by the first NUL byte (no NUL: the
//! whole input is the mailboxes file), so seeds stay readable JSONL.
//!
//! Properties: loading never panics. When it fails, it names the first line that breaks a
//! rule (unreadable, a blank id, or an id already defined in that file), in the right file,
//! and every line before it is valid. When it succeeds, every line's mailbox or workflow is
//! there under its normalised id, the counts are the lines, `receivers` lists known mailboxes in workflow order,
//! and writing the loaded mailboxes and workflows back out loads the same directory.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mesh_protocol::{Mailbox, Workflow};
use mesh_server::directory::{Directory, DirectoryError};
use std::collections::{HashMap, HashSet};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (mailboxes, workflows) = text.split_once('\0').unwrap_or((&text, ""));
    match Directory::from_jsonl(mailboxes, workflows) {
        Ok(dir) => check_loaded(&dir, mailboxes, workflows),
        Err(DirectoryError::Line { path, line, .. }) => {
            let first = if path.to_str() == Some("<mailboxes>") {
                first_bad(mailboxes, mailbox_id)
            } else {
                assert_eq!(path.to_str(), Some("<workflows>"));
                assert_eq!(first_bad(mailboxes, mailbox_id), None);
                first_bad(workflows, workflow_id)
            };
            assert_eq!(first, Some(line), "the first line that breaks a rule");
        }
        Err(e @ DirectoryError::Read { .. }) => panic!("no file was read: {e}"),
    }
});

/// The number of the first non-blank line that the loader must refuse: unreadable, a
/// blank id, or an id (normalised) that an earlier line of the same file defined.
fn first_bad(file: &str, id: fn(&str) -> Option<String>) -> Option<usize> {
    let mut seen = HashSet::new();
    for (i, line) in file.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match id(line) {
            Some(id) if !seen.contains(&id) => {
                seen.insert(id);
            }
            _ => return Some(i + 1),
        }
    }
    None
}

fn mailbox_id(line: &str) -> Option<String> {
    mailbox_line(line).map(|m| m.mailbox_id.trim().to_ascii_uppercase())
}

fn workflow_id(line: &str) -> Option<String> {
    workflow_line(line).map(|w| w.workflow_id.trim().to_string())
}

/// A mailbox line as the loader must read it: JSON, with an id that is not blank.
fn mailbox_line(line: &str) -> Option<Mailbox> {
    let mb: Mailbox = serde_json::from_str(line).ok()?;
    (!mb.mailbox_id.trim().is_empty()).then_some(mb)
}

fn workflow_line(line: &str) -> Option<Workflow> {
    let wf: Workflow = serde_json::from_str(line).ok()?;
    (!wf.workflow_id.trim().is_empty()).then_some(wf)
}

fn check_loaded(dir: &Directory, mailboxes: &str, workflows: &str) {
    let mut last_mailbox: HashMap<String, Mailbox> = HashMap::new();
    for line in mailboxes.lines().filter(|l| !l.trim().is_empty()) {
        let mb = mailbox_line(line).expect("an accepted line is valid");
        last_mailbox.insert(mb.mailbox_id.trim().to_ascii_uppercase(), mb);
    }
    assert_eq!(dir.mailbox_count(), last_mailbox.len());
    for (id, line) in &last_mailbox {
        let mb = dir.mailbox(id).expect("every mailbox is found by its id");
        assert_eq!(&mb.mailbox_id, id);
        assert_eq!(mb.ods_code, line.ods_code.trim().to_ascii_uppercase());
        assert_eq!(mb.mailbox_name, line.mailbox_name);
        assert_eq!(mb.password, line.password);
        assert_eq!(mb.active, line.active);
    }

    let mut order: Vec<String> = Vec::new();
    let mut last_workflow: HashMap<String, Workflow> = HashMap::new();
    for line in workflows.lines().filter(|l| !l.trim().is_empty()) {
        let wf = workflow_line(line).expect("an accepted line is valid");
        let id = wf.workflow_id.trim().to_string();
        if !last_workflow.contains_key(&id) {
            order.push(id.clone());
        }
        last_workflow.insert(id, wf);
    }
    assert_eq!(dir.workflow_count(), order.len());
    let clean = |ids: &[String]| -> Vec<String> {
        ids.iter()
            .map(|s| s.trim().to_ascii_uppercase())
            .filter(|s| !s.is_empty())
            .collect()
    };
    for id in &order {
        let wf = dir.workflow(id).expect("every workflow is found by its id");
        let line = &last_workflow[id];
        assert_eq!(&wf.workflow_id, id);
        assert_eq!(wf.senders, clean(&line.senders));
        assert_eq!(wf.receivers, clean(&line.receivers));
        let known: Vec<&String> = wf
            .receivers
            .iter()
            .filter(|r| dir.mailbox(r).is_some())
            .collect();
        let receivers: Vec<&String> = dir.receivers(id).iter().map(|m| &m.mailbox_id).collect();
        assert_eq!(receivers, known);
    }

    // Written back out (one JSON object a line), the directory loads as itself.
    let ids: HashSet<&String> = last_mailbox.keys().collect();
    let mailbox_text: String = ids
        .iter()
        .map(|id| serde_json::to_string(dir.mailbox(id).unwrap()).unwrap() + "\n")
        .collect();
    let workflow_text: String = order
        .iter()
        .map(|id| serde_json::to_string(dir.workflow(id).unwrap()).unwrap() + "\n")
        .collect();
    let again = Directory::from_jsonl(&mailbox_text, &workflow_text).expect("round trip");
    assert_eq!(again.mailbox_count(), dir.mailbox_count());
    assert_eq!(again.workflow_count(), dir.workflow_count());
    for id in ids {
        assert_eq!(again.mailbox(id), dir.mailbox(id));
    }
    for id in &order {
        assert_eq!(again.workflow(id), dir.workflow(id));
    }
}
