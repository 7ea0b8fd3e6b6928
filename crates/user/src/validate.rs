//! The field rules of a user: username, display name and email.

use sigil_core::{Error, FieldError, Result};

pub fn validate_username(username: &str) -> Result<()> {
    let ok = (1..=64).contains(&username.len())
        && username
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@'));
    if !ok {
        return Err(Error::invalid_field(
            "invalid_username",
            "username",
            "username must be 1-64 characters of letters, digits, '.', '_', '-' and '@'",
        ));
    }
    Ok(())
}

pub(crate) fn validate_contact(display_name: &str, email: Option<&str>) -> Result<()> {
    let mut errors = Vec::new();
    if display_name.trim().is_empty() || display_name.chars().count() > 200 {
        errors.push(FieldError::new(
            "display_name",
            "display_name must be 1-200 characters",
        ));
    }
    if let Some(email) = email {
        let valid = email.len() <= 254
            && email
                .split_once('@')
                .is_some_and(|(l, d)| !l.is_empty() && d.contains('.'))
            && !email.chars().any(char::is_whitespace);
        if !valid {
            errors.push(FieldError::new("email", "email is not a valid address"));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Error::invalid_with(
            "invalid_user",
            "the user's fields are invalid",
            errors,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(r: Result<()>) -> Vec<String> {
        match r {
            Err(Error::Invalid { errors, .. }) => errors.into_iter().map(|f| f.field).collect(),
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn usernames_are_short_and_plain() {
        for good in [
            "bob",
            "bob.smith",
            "ci-bot_2",
            "bob@example.com",
            &"a".repeat(64),
        ] {
            assert!(validate_username(good).is_ok(), "{good}");
        }
        for bad in ["", "bob smith", "bøb", "bob/1", &"a".repeat(65)] {
            assert_eq!(fields(validate_username(bad)), ["username"], "{bad}");
        }
    }

    #[test]
    fn contacts_name_every_bad_field() {
        assert!(validate_contact("Bob", None).is_ok());
        assert!(validate_contact("Bob", Some("bob@example.com")).is_ok());
        assert_eq!(fields(validate_contact(" ", None)), ["display_name"]);
        assert_eq!(
            fields(validate_contact(&"b".repeat(201), Some("bob"))),
            ["display_name", "email"]
        );
        for bad in ["bob@localhost", "@example.com", "bob @example.com"] {
            assert_eq!(
                fields(validate_contact("Bob", Some(bad))),
                ["email"],
                "{bad}"
            );
        }
    }
}
