//! Recovery codes: ten single-use codes a person keeps for when the authenticator is
//! gone. Each is 10 characters of Crockford's base32 (50 random bits), shown as
//! `xxxxx-xxxxx`. They are random, not chosen by people, so a keyed SHA-256 (HMAC under
//! a key derived from the master key, with the user id in the message) stores them
//! safely; a slow password hash would add nothing.

use sigil_core::{crypto, Result, UserId};

pub const COUNT: usize = 10;
const LEN: usize = 10;
/// Crockford's base32, lower case: no i, l, o or u.
const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// Ten new codes, formatted for people.
pub fn generate() -> Vec<String> {
    (0..COUNT)
        .map(|_| {
            let bytes = crypto::random_bytes::<LEN>();
            let chars: String = bytes
                .iter()
                .map(|b| char::from(ALPHABET[usize::from(b & 31)]))
                .collect();
            format!("{}-{}", &chars[..5], &chars[5..])
        })
        .collect()
}

/// The canonical form of a typed code (case, dashes and spaces ignored; o, i and l read
/// as 0, 1 and 1), or `None` when it cannot be a recovery code.
pub fn normalise(input: &str) -> Option<String> {
    let code: String = input
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| match c.to_ascii_lowercase() {
            'o' => '0',
            'i' | 'l' => '1',
            c => c,
        })
        .collect();
    (code.len() == LEN && code.bytes().all(|b| ALPHABET.contains(&b))).then_some(code)
}

/// The stored form of a normalised code of `user`.
pub fn hash(key: &[u8; 32], user: UserId, normalised: &str) -> Result<String> {
    let message = format!("{}:{normalised}", user.0);
    Ok(hex::encode(crypto::hmac_sha256(key, message.as_bytes())?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_read_back() {
        let codes = generate();
        assert_eq!(codes.len(), COUNT);
        let mut unique = codes.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), COUNT);
        for code in &codes {
            assert_eq!(code.len(), 11);
            let n = normalise(code).unwrap();
            assert_eq!(normalise(&code.to_uppercase()).as_deref(), Some(n.as_str()));
            assert_eq!(normalise(&n.replace('-', " ")).as_deref(), Some(n.as_str()));
        }
        assert_eq!(normalise("123456"), None);
        assert_eq!(normalise("uuuuu-uuuuu"), None);
        assert_eq!(normalise("OOOOO-IIIII").as_deref(), Some("0000011111"));
    }

    #[test]
    fn hashes_depend_on_key_and_user() {
        let (a, b) = ([1u8; 32], [2u8; 32]);
        let (u1, u2) = (UserId::new(), UserId::new());
        let h = hash(&a, u1, "0123456789").unwrap();
        assert_eq!(h.len(), 64);
        assert_eq!(h, hash(&a, u1, "0123456789").unwrap());
        assert_ne!(h, hash(&b, u1, "0123456789").unwrap());
        assert_ne!(h, hash(&a, u2, "0123456789").unwrap());
    }
}
