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
