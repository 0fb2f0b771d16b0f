//! tokenwarden-core: the sans-IO domain of tokenwarden.
//!
//! Objects, signing keys, token minting and verification, the TokenRequest rules and the
//! TokenReview decision. No sockets, no disk, no clock: `now` and random bytes are
//! parameters, so every rule is a pure function that tests can drive exactly.

pub mod authconfig;
pub mod cache_key;
pub mod claims;
pub mod error;
pub mod jwt;
pub mod keys;
pub mod legacy_tokens;
pub mod lookup;
pub mod names;
pub mod object;
pub mod pod;
pub mod pod_spec;
pub mod quantity;
pub mod rbac;
pub mod review;
pub mod selector;
pub mod time;
pub mod token_request;

pub use error::{Error, FieldError, Result};
pub use object::{Object, ObjectKey, Resource};
pub use time::Timestamp;

/// SHA-256 of `bytes`: the digest tokenwarden keeps in place of a secret.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// Formats 16 random bytes as a version-4 UUID (`8-4-4-4-12` lower-case hex).
pub fn uuid_v4(mut bytes: [u8; 16]) -> String {
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(36);
    for (i, b) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn uuid_v4_sets_version_and_variant() {
        let id = super::uuid_v4([0xff; 16]);
        assert_eq!(id, "ffffffff-ffff-4fff-bfff-ffffffffffff");
        assert_eq!(super::uuid_v4([0; 16]), "00000000-0000-4000-8000-000000000000");
    }
}
