//! The field rules of a token: its name, description, IP filter and usage limits.

use sigil_core::{Error, FieldError, Result};

/// The most IP filter entries a token may have.
const MAX_IP_ENTRIES: usize = 100;

pub(super) fn validate_text(name: &str, description: &str) -> Result<()> {
    let mut errors = Vec::new();
    if name.trim().is_empty() || name.chars().count() > 200 {
        errors.push(FieldError::new("name", "name must be 1-200 characters"));
    }
    if description.chars().count() > 2000 {
        errors.push(FieldError::new(
            "description",
            "description must be at most 2000 characters",
        ));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Error::invalid_with(
            "invalid_token",
            "the token's fields are invalid",
            errors,
        ))
    }
}

/// The IP filter in its normal form (each entry a network), or every bad entry named.
pub fn validate_ip_filter(entries: &[String]) -> Result<Vec<String>> {
    let mut bad = Vec::new();
    let mut normalised = Vec::new();
    for entry in entries {
        match sigil_tenant::policy::parse_ip_net(entry) {
            Some(net) => normalised.push(net.to_string()),
            None => bad.push(FieldError::new(
                format!("ip_filter[{}]", normalised.len() + bad.len()),
                format!("{entry:?} is not an IP address or CIDR block"),
            )),
        }
    }
    if entries.len() > MAX_IP_ENTRIES {
        bad.push(FieldError::new("ip_filter", "at most 100 entries"));
    }
    if bad.is_empty() {
        Ok(normalised)
    } else {
        Err(Error::invalid_with(
            "invalid_ip_filter",
            "some IP filter entries are not IPs or CIDRs",
            bad,
        ))
    }
}

/// Rate limits and credits, when given (`Some(None)` removes the credits): every problem
/// named by its field, in one answer.
pub(super) fn validate_limits(
    rate_limits: Option<&[sigil_limits::RateLimit]>,
    credits: Option<Option<&sigil_limits::Credits>>,
) -> Result<()> {
    let mut errors = Vec::new();
    let mut collect = |checked: Result<()>| {
        if let Err(Error::Invalid { errors: found, .. }) = checked {
            errors.extend(found);
        }
    };
    if let Some(limits) = rate_limits {
        collect(sigil_limits::spec::validate_rate_limits(
            "rate_limits",
            limits,
        ));
    }
    if let Some(Some(credits)) = credits {
        collect(sigil_limits::spec::validate_credits("credits", credits));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Error::invalid_with(
            "invalid_limits",
            "the token's usage limits are invalid",
            errors,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(e: Error) -> Vec<String> {
        match e {
            Error::Invalid { errors, .. } => errors.into_iter().map(|f| f.field).collect(),
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn a_name_is_one_to_two_hundred_characters() {
        assert!(validate_text("ci", "").is_ok());
        assert!(validate_text(&"é".repeat(200), "").is_ok());
        assert_eq!(fields(validate_text("", "").unwrap_err()), ["name"]);
        assert_eq!(fields(validate_text("   ", "").unwrap_err()), ["name"]);
        assert_eq!(
            fields(validate_text(&"x".repeat(201), "").unwrap_err()),
            ["name"]
        );
    }

    #[test]
    fn a_description_is_at_most_two_thousand_characters() {
        assert!(validate_text("ci", &"d".repeat(2000)).is_ok());
        assert_eq!(
            fields(validate_text("", &"d".repeat(2001)).unwrap_err()),
            ["name", "description"]
        );
    }

    #[test]
    fn ip_filter_entries_are_normalised_networks() {
        let entries = ["10.0.0.1".to_owned(), "192.168.0.0/16".to_owned()];
        assert_eq!(
            validate_ip_filter(&entries).unwrap(),
            ["10.0.0.1/32", "192.168.0.0/16"]
        );
        assert!(validate_ip_filter(&[]).unwrap().is_empty());
    }

    #[test]
    fn every_bad_ip_filter_entry_is_named_by_its_position() {
        let entries = [
            "10.0.0.1".to_owned(),
            "nope".to_owned(),
            "300.1.1.1".to_owned(),
        ];
        assert_eq!(
            fields(validate_ip_filter(&entries).unwrap_err()),
            ["ip_filter[1]", "ip_filter[2]"]
        );
        let many = vec!["10.0.0.1".to_owned(); MAX_IP_ENTRIES + 1];
        assert_eq!(
            fields(validate_ip_filter(&many).unwrap_err()),
            ["ip_filter"]
        );
    }
}
