//! Plugin versions: a registered plugin is only replaced by a newer version.

use std::cmp::Ordering;

use sigil_core::Error;

use crate::manifest::PluginManifest;

/// Refuses a manifest whose version is not newer than the registered one.
pub fn check_newer(old: &PluginManifest, new: &PluginManifest) -> Result<(), Error> {
    if is_newer(&new.version, &old.version) {
        Ok(())
    } else {
        Err(Error::conflict(
            "version_not_newer",
            format!(
                "version {} is not newer than the registered {}",
                new.version, old.version
            ),
        ))
    }
}

/// Whether `new` comes after `old` in [`version_cmp`] order.
pub fn is_newer(new: &str, old: &str) -> bool {
    version_cmp(new, old) == Ordering::Greater
}

/// Compares versions in semver order: dotted core parts (numbers as numbers, missing parts
/// as 0), then a release is newer than its pre-releases (`2.0.0` > `2.0.0-rc.1`), whose
/// dotted identifiers compare like the core; build metadata (`+...`) is ignored. A
/// leading `v` is allowed.
pub fn version_cmp(a: &str, b: &str) -> Ordering {
    let (core_a, pre_a) = split(a);
    let (core_b, pre_b) = split(b);
    for i in 0..core_a.len().max(core_b.len()) {
        let x = core_a.get(i).copied().unwrap_or("0");
        let y = core_b.get(i).copied().unwrap_or("0");
        match identifier_cmp(x, y) {
            Ordering::Equal => {}
            other => return other,
        }
    }
    match (pre_a, pre_b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(x), Some(y)) => x
            .iter()
            .zip(&y)
            .map(|(x, y)| identifier_cmp(x, y))
            .find(|o| *o != Ordering::Equal)
            .unwrap_or_else(|| x.len().cmp(&y.len())),
    }
}

/// The dotted core parts and, for a pre-release, its dotted identifiers.
fn split(version: &str) -> (Vec<&str>, Option<Vec<&str>>) {
    let v = version.trim().trim_start_matches(['v', 'V']);
    let v = v.split_once('+').map_or(v, |(v, _build)| v);
    let (core, pre) = match v.split_once('-') {
        Some((core, pre)) => (core, Some(pre)),
        None => (v, None),
    };
    (
        core.split('.').collect(),
        pre.map(|p| p.split('.').collect()),
    )
}

/// Numbers compare as numbers and before words; words compare as text.
fn identifier_cmp(x: &str, y: &str) -> Ordering {
    match (x.parse::<u64>(), y.parse::<u64>()) {
        (Ok(x), Ok(y)) => x.cmp(&y),
        (Ok(_), Err(_)) => Ordering::Less,
        (Err(_), Ok(_)) => Ordering::Greater,
        (Err(_), Err(_)) => x.cmp(y),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::test_support::manifest;

    #[test]
    fn semver_order() {
        for (new, old) in [
            ("1.10.0", "1.9.0"),
            ("2.0.0", "2.0.0-rc.1"),
            ("2.0.0-rc.1", "2.0.0-beta.10"),
            ("2.0.0-beta.10", "2.0.0-beta.9"),
            ("2.0.0-beta.1", "2.0.0-beta"),
            ("2.0.0-alpha.beta", "2.0.0-alpha.1"),
            ("1.0.1", "1.0"),
            ("v1.2", "1.1.9"),
            ("10", "9.9.9"),
        ] {
            assert!(is_newer(new, old), "{new} > {old}");
            assert!(!is_newer(old, new), "{old} < {new}");
        }
    }

    #[test]
    fn equal_versions_are_not_newer() {
        for (a, b) in [
            ("1.0", "1.0.0"),
            ("2.0.0+b1", "2.0.0+b2"),
            ("8.3", "8.3"),
            ("V1.0", "1.0"),
            (" 1.0 ", "1.0"),
        ] {
            assert_eq!(version_cmp(a, b), Ordering::Equal, "{a} = {b}");
            assert!(!is_newer(a, b) && !is_newer(b, a), "{a} = {b}");
        }
    }

    #[test]
    fn a_downgrade_or_the_same_version_is_a_conflict() {
        let old = manifest("crm", "2.0.0", &["crm.a"]);
        for version in ["2.0.0", "1.9.9", "2.0.0-rc.1", "2.0.0+build"] {
            let new = manifest("crm", version, &["crm.a"]);
            let err = check_newer(&old, &new).unwrap_err();
            assert!(
                matches!(
                    err,
                    Error::Conflict {
                        code: "version_not_newer",
                        ..
                    }
                ),
                "{version}: {err:?}"
            );
            assert_eq!(
                err.to_string(),
                format!("version {version} is not newer than the registered 2.0.0")
            );
        }
        assert!(check_newer(&old, &manifest("crm", "2.0.1", &["crm.a"])).is_ok());
    }
}
