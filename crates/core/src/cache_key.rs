//! Keys for caches of secret-derived decisions: HMAC-SHA256 under a per-process random key over
//! length-prefixed fields, as kube-apiserver keys its token cache, so no cache ever holds a
//! credential and no two field lists collide.

use aws_lc_rs::hmac;

/// Derives cache keys; the secret is the caller's (the core draws no randomness).
pub struct CacheKeyer(hmac::Key);

impl std::fmt::Debug for CacheKeyer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CacheKeyer(<secret>)")
    }
}

impl CacheKeyer {
    pub fn new(secret: [u8; 32]) -> Self {
        Self(hmac::Key::new(hmac::HMAC_SHA256, &secret))
    }

    /// HMAC over `len(field) field` for each of `fields`, then `count(audiences)` and
    /// `len(audience) audience` for each audience (lengths u32 big-endian).
    pub fn key(&self, fields: &[&str], audiences: &[String]) -> [u8; 32] {
        let len = |n: usize| u32::try_from(n).unwrap_or(u32::MAX).to_be_bytes();
        let mut ctx = hmac::Context::with_key(&self.0);
        for field in fields {
            ctx.update(&len(field.len()));
            ctx.update(field.as_bytes());
        }
        ctx.update(&len(audiences.len()));
        for audience in audiences {
            ctx.update(&len(audience.len()));
            ctx.update(audience.as_bytes());
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.sign().as_ref());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_and_audiences_do_not_run_together() {
        let keyer = CacheKeyer::new([7; 32]);
        let a = keyer.key(&["ab"], &["c".to_owned()]);
        assert_ne!(a, keyer.key(&["a"], &["bc".to_owned()]));
        assert_ne!(a, keyer.key(&["ab", "c"], &[]));
        assert_eq!(a, keyer.key(&["ab"], &["c".to_owned()]));
        assert_ne!(a, CacheKeyer::new([8; 32]).key(&["ab"], &["c".to_owned()]), "the secret matters");
    }
}
