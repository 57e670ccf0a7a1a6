//! Shapes of operator- and user-supplied names.

/// The longest username accepted, in characters.
pub const MAX_USERNAME_CHARS: usize = 64;

/// A username: 1 to 64 characters, no control characters, no surrounding spaces.
/// Any script is fine (`José`, `李`); it is stored and compared exactly.
pub fn username(name: &str) -> Result<(), String> {
    let chars = name.chars().count();
    if chars == 0 || chars > MAX_USERNAME_CHARS {
        return Err(format!(
            "a username has 1 to {MAX_USERNAME_CHARS} characters"
        ));
    }
    if name.chars().any(char::is_control) || name.trim() != name {
        return Err("a username has no control characters and no surrounding spaces".to_owned());
    }
    Ok(())
}

/// A role: 1 to 64 of `a-z 0-9 _ - . :`.
pub fn role(role: &str) -> Result<(), String> {
    let ok = !role.is_empty()
        && role.len() <= 64
        && role
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-.:".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{role:?} is not a role name (1 to 64 of a-z 0-9 _ - . :)"
        ))
    }
}

/// An OAuth `client_id`: 1 to 64 visible ASCII characters.
pub fn client_id(id: &str) -> Result<(), String> {
    if !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(())
    } else {
        Err("a client_id is 1 to 64 visible ASCII characters".to_owned())
    }
}

/// An OAuth `scope` (RFC 6749 §3.3): space-separated tokens of visible ASCII
/// without `"` or `\`, at most 512 bytes.
pub fn scope(scope: &str) -> Result<(), String> {
    let ok = scope.len() <= 512
        && scope.split(' ').all(|t| {
            !t.is_empty()
                && t.bytes()
                    .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
        });
    if ok {
        Ok(())
    } else {
        Err("not a valid scope".to_owned())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn usernames_and_roles() {
        for ok in ["alice", "José", "李小龍", "a.b-c_d@example.com", "x"] {
            super::username(ok).unwrap();
        }
        for bad in [
            "",
            " alice",
            "alice ",
            "al\nice",
            "a\u{0}b",
            &"x".repeat(65),
        ] {
            assert!(super::username(bad).is_err(), "{bad:?}");
        }
        for ok in ["admin", "user", "billing:read", "team-1.ops"] {
            super::role(ok).unwrap();
        }
        for bad in ["", "Admin", "a b", "x'; DROP TABLE users;--"] {
            assert!(super::role(bad).is_err(), "{bad:?}");
        }
    }
}
