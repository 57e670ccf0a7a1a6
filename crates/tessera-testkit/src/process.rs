//! Commands run to completion, as a user runs them from a shell.

use std::process::Command;

/// Runs `command`, which must exit 0, and returns its standard output.
///
/// # Panics
/// If it cannot start, fails (with its standard error in the message), or
/// prints something that is not UTF-8.
pub fn stdout_of(command: &mut Command) -> String {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("running {command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap_or_else(|e| panic!("{command:?} printed non-UTF-8: {e}"))
}
