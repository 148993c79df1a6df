//! Properties of the JSON-lines directory loader (API.md 8.1, 8.2): whatever the files
//! hold, loading never panics and a refusal names a real line; well-formed mailboxes and
//! workflows load and are found under their normalised ids.

use mesh_server::directory::{Directory, DirectoryError};
use proptest::prelude::*;
use serde_json::json;

/// Lines that are sometimes JSON, sometimes nearly JSON, sometimes anything.
fn line() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,60}",
        "[ \t]{0,3}",
        r#"\{"(mailbox_id|workflow_id|mailbox_name|senders|receivers)": ?("[ -~]{0,8}"|\[("[ -~]{0,6}",?){0,3}\]|[0-9]{1,3}|true|null)\}"#,
        ("[ -~]{0,10}", "[ -~]{0,10}")
            .prop_map(|(id, name)| { json!({"mailbox_id": id, "mailbox_name": name}).to_string() }),
        ("[ -~]{0,10}", proptest::collection::vec("[ -~]{0,8}", 0..4)).prop_map(|(id, r)| {
            json!({"workflow_id": id, "senders": [], "receivers": r}).to_string()
        }),
    ]
}

fn file() -> impl Strategy<Value = String> {
    proptest::collection::vec(line(), 0..8).prop_map(|lines| lines.join("\n"))
}

proptest! {
    #[test]
    fn any_lines_load_or_are_refused_at_a_real_line(mailboxes in file(), workflows in file()) {
        match Directory::from_jsonl(&mailboxes, &workflows) {
            Ok(dir) => {
                prop_assert!(dir.mailbox_count() <= mailboxes.lines().count());
                prop_assert!(dir.workflow_count() <= workflows.lines().count());
            }
            Err(DirectoryError::Line { path, line, .. }) => {
                let text = if path.to_str() == Some("<mailboxes>") { &mailboxes } else { &workflows };
                let bad = text.lines().nth(line - 1);
                prop_assert!(bad.is_some_and(|l| !l.trim().is_empty()), "line {} of {:?}", line, text);
            }
            Err(e) => prop_assert!(false, "no file was read, yet: {}", e),
        }
    }

    #[test]
    fn generated_mailboxes_load_and_are_found_by_id(
        boxes in proptest::collection::vec(
            ("[ ]{0,2}[A-Za-z0-9]{1,10}[ ]{0,2}", "[ -~]{0,20}", "[ -~]{0,20}", any::<bool>()),
            1..12,
        ),
        receivers in proptest::collection::vec(" ?[A-Za-z0-9]{1,10} ?", 0..6),
    ) {
        // One line per id: a second definition is refused (tested below).
        let mut boxes = boxes;
        let mut seen = std::collections::HashSet::new();
        boxes.retain(|(id, ..)| seen.insert(id.trim().to_ascii_uppercase()));
        let mailboxes: String = boxes
            .iter()
            .map(|(id, name, password, active)| {
                json!({"mailbox_id": id, "mailbox_name": name, "password": password,
                       "active": active, "ods_code": " x26 "})
                .to_string() + "\n\n"
            })
            .collect();
        let workflows = json!({"workflow_id": " WF ", "senders": [], "receivers": receivers}).to_string();
        let dir = Directory::from_jsonl(&mailboxes, &workflows).unwrap();

        let mut ids: Vec<String> = boxes.iter().map(|(id, ..)| id.trim().to_ascii_uppercase()).collect();
        for (id, ..) in &boxes {
            let key = id.trim().to_ascii_uppercase();
            let (_, want_name, want_password, want_active) = boxes
                .iter()
                .find(|(other, ..)| other.trim().to_ascii_uppercase() == key)
                .unwrap();
            let mb = dir.mailbox(&key).unwrap();
            prop_assert_eq!(&mb.mailbox_id, &key);
            prop_assert_eq!(&mb.mailbox_name, want_name);
            prop_assert_eq!(&mb.password, want_password);
            prop_assert_eq!(mb.active, *want_active);
            prop_assert_eq!(&mb.ods_code, "X26");
        }
        ids.sort();
        ids.dedup();
        prop_assert_eq!(dir.mailbox_count(), ids.len());

        let want: Vec<String> = receivers
            .iter()
            .map(|r| r.trim().to_ascii_uppercase())
            .filter(|r| ids.contains(r))
            .collect();
        let got: Vec<String> = dir.receivers("WF").iter().map(|m| m.mailbox_id.clone()).collect();
        prop_assert_eq!(got, want);
        prop_assert_eq!(dir.workflow_count(), 1);
    }

    #[test]
    fn a_second_line_for_an_id_is_refused_at_that_line(
        id in "[A-Za-z0-9]{1,10}",
        gap in 0usize..3,
        spaces in "[ ]{0,2}",
    ) {
        let first = json!({"mailbox_id": id, "mailbox_name": "first"}).to_string();
        let second = json!({"mailbox_id": format!("{spaces}{}{spaces}", id.to_ascii_lowercase()),
                            "mailbox_name": "second"}).to_string();
        let text = format!("{first}\n{}{second}\n", "\n".repeat(gap));
        let err = Directory::from_jsonl(&text, "").unwrap_err();
        match err {
            DirectoryError::Line { line, reason, .. } => {
                prop_assert_eq!(line, 2 + gap);
                prop_assert!(reason.starts_with("duplicate mailbox_id"), "{}", reason);
                prop_assert!(reason.ends_with("<mailboxes> line 1"), "{}", reason);
            }
            other => prop_assert!(false, "{}", other),
        }
    }
}
