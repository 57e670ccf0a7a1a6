//! The README's promises that a fresh clone depends on: two commands (run, test)
//! that CI executes verbatim, and a keys directory that never leaks keys into git.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

use crate::support::workspace_root;

fn readme_command(section: &str) -> String {
    let root = workspace_root();
    tessera_testkit::process::stdout_of(
        Command::new("bash")
            .arg(root.join("scripts/readme-command.sh"))
            .arg(section),
    )
}

#[test]
fn the_readme_opens_with_a_run_and_a_test_command() {
    let readme = std::fs::read_to_string(workspace_root().join("README.md")).unwrap();
    let run_at = readme.find("\n## Run\n").expect("a Run section");
    let test_at = readme.find("\n## Test\n").expect("a Test section");
    assert!(run_at < test_at, "Run comes first");
    assert!(
        readme[..run_at]
            .lines()
            .filter(|l| l.starts_with("## "))
            .count()
            == 0,
        "nothing but the introduction before Run"
    );
    for section in ["Run", "Test"] {
        let command = readme_command(section);
        assert_eq!(
            command.lines().count(),
            1,
            "{section}: one line: {command:?}"
        );
        assert!(command.starts_with("cargo "), "{section}: {command:?}");
    }
    assert!(
        readme_command("Test").contains("--workspace"),
        "the test command runs every test"
    );
}

#[test]
fn ci_runs_both_readme_commands_verbatim() {
    let ci = std::fs::read_to_string(workspace_root().join(".ci/run")).unwrap();
    for section in ["Run", "Test"] {
        assert!(
            ci.contains(&format!("readme-command.sh {section}")),
            ".ci/run must take the {section} command from the README"
        );
    }
}

#[test]
fn private_keys_are_never_committed() {
    let root = workspace_root();
    let ignore = std::fs::read_to_string(root.join(".gitignore")).unwrap();
    assert!(ignore.lines().any(|l| l == "/keys/*"), "keys/ is ignored");
    assert!(root.join("keys/README.md").is_file());
    // When the checkout is a git repository, nothing key-like is tracked.
    let Ok(out) = Command::new("git")
        .arg("-C")
        .arg(&root)
        .arg("ls-files")
        .output()
    else {
        return;
    };
    if !out.status.success() {
        return;
    }
    let tracked = String::from_utf8(out.stdout).unwrap();
    let keys: Vec<&str> = tracked
        .lines()
        .filter(|f| {
            let key_file = [".pem", ".key", ".der", ".p8"]
                .iter()
                .any(|ext| f.ends_with(ext));
            (key_file && !f.contains("/fixtures/"))
                || (f.starts_with("keys/") && *f != "keys/README.md")
        })
        .collect();
    assert!(keys.is_empty(), "key material tracked by git: {keys:?}");
}
