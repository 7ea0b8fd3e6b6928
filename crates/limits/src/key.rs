//! Which counter a limit uses: its holder (a token, or an owner shared by all of the
//! owner's tokens) and its name. Keys are `Copy` and fixed-size, so looking one up on the
//! request path allocates nothing.

use serde::Serialize;
use sigil_core::{TokenId, UserId};
use uuid::Uuid;

use crate::spec::MAX_NAME_LEN;

/// Whose limit it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    Token,
    Owner,
}

/// The holder of a counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Holder {
    Token(TokenId),
    Owner(UserId),
}

impl Holder {
    pub fn scope(&self) -> Scope {
        match self {
            Self::Token(_) => Scope::Token,
            Self::Owner(_) => Scope::Owner,
        }
    }

    pub fn uuid(&self) -> Uuid {
        match self {
            Self::Token(t) => t.0,
            Self::Owner(u) => u.0,
        }
    }

    /// Spreads holders over `shards` (a power of two). Ids are UUIDv7, whose low bits are
    /// random; mixing them still keeps sequential test ids apart.
    pub(crate) fn shard(&self, shards: usize) -> usize {
        let v = self.uuid().as_u128();
        let folded = (v as u64) ^ ((v >> 64) as u64);
        let mixed = folded.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        (mixed >> 32) as usize & (shards - 1)
    }
}

/// A limit's name, inline. Names are validated to at most 32 ASCII characters; a longer
/// one is cut at a character boundary.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct LimitName {
    len: u8,
    bytes: [u8; MAX_NAME_LEN],
}

impl LimitName {
    pub const EMPTY: Self = Self {
        len: 0,
        bytes: [0; MAX_NAME_LEN],
    };

    pub fn new(name: &str) -> Self {
        let mut end = name.len().min(MAX_NAME_LEN);
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        let mut bytes = [0; MAX_NAME_LEN];
        bytes[..end].copy_from_slice(&name.as_bytes()[..end]);
        Self {
            len: end as u8,
            bytes,
        }
    }

    pub fn as_str(&self) -> &str {
        // Built from a &str cut at a character boundary.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }
}

impl std::fmt::Debug for LimitName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl std::fmt::Display for LimitName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One counter: a holder's limit of a name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LimitKey {
    pub holder: Holder,
    pub name: LimitName,
}

/// A multiply-rotate hasher for the in-memory maps (the one rustc uses, "Fx"): a few
/// nanoseconds per key instead of SipHash's tens. Flooding does not apply: ids are
/// random and server-made, and a holder has at most 8 names.
#[derive(Clone, Copy, Default)]
pub(crate) struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }

    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(c);
            self.write_u64(u64::from_le_bytes(word));
        }
        for b in chunks.remainder() {
            self.write_u64(u64::from(*b));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.write_u64(u64::from(i));
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(5) ^ i).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }
}

/// Builds [`KeyHasher`]s.
pub(crate) type KeyHash = std::hash::BuildHasherDefault<KeyHasher>;

impl LimitKey {
    pub fn token(token: TokenId, name: &str) -> Self {
        Self {
            holder: Holder::Token(token),
            name: LimitName::new(name),
        }
    }

    pub fn owner(owner: UserId, name: &str) -> Self {
        Self {
            holder: Holder::Owner(owner),
            name: LimitName::new(name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_inline_and_cut_at_char_boundaries() {
        assert_eq!(LimitName::new("per-minute").as_str(), "per-minute");
        assert_eq!(LimitName::new(&"a".repeat(40)).as_str(), "a".repeat(32));
        let accented = format!("{}é", "a".repeat(31));
        assert_eq!(LimitName::new(&accented).as_str(), "a".repeat(31));
    }

    #[test]
    fn token_and_owner_keys_differ() {
        let id = Uuid::now_v7();
        assert_ne!(
            LimitKey::token(TokenId(id), "x"),
            LimitKey::owner(UserId(id), "x")
        );
    }

    #[test]
    fn shards_spread_sequential_ids() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..256 {
            seen.insert(Holder::Token(TokenId::new()).shard(64));
        }
        assert!(seen.len() > 32, "only {} shards used", seen.len());
    }
}
