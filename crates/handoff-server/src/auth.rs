//! Who is asking: the admin (organisers, operators) or a device (a carrier's phone). Tokens
//! are random, shown once, and kept only as SHA-256 hashes; comparisons are on hashes.

use axum::http::HeaderMap;
use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// SHA-256 of a token, lowercase hex: what the store keeps.
#[must_use]
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A new random token (256 bits, hex).
///
/// # Errors
/// When the operating system's random source fails.
pub fn new_token() -> Result<String, ApiError> {
    let mut buf = [0u8; 32];
    getrandom::fill(&mut buf).map_err(|e| {
        ApiError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "random",
            format!("no randomness: {e}"),
        )
    })?;
    Ok(hex::encode(buf))
}

/// The `Authorization: Bearer …` token, if any.
#[must_use]
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The least entropy an admin token should have (a generated one has 256 bits).
pub const MIN_TOKEN_BITS: f64 = 128.0;

/// An upper estimate of a token's entropy in bits: its length times the bits of the character
/// classes it uses (digits, lower case, upper case, others). A token made by a person ("secret",
/// "password123") scores far below [`MIN_TOKEN_BITS`]; 24 random bytes in base64 score above.
#[must_use]
pub fn entropy_bits(token: &str) -> f64 {
    let mut alphabet = 0u32;
    if token.chars().any(|c| c.is_ascii_digit()) {
        alphabet += 10;
    }
    if token.chars().any(|c| c.is_ascii_lowercase()) {
        alphabet += 26;
    }
    if token.chars().any(|c| c.is_ascii_uppercase()) {
        alphabet += 26;
    }
    if token.chars().any(|c| !c.is_ascii_alphanumeric()) {
        alphabet += 32;
    }
    // Repeats say less than their length: count each distinct character once more than the
    // rest, so "aaaaaaaa…" is not long random text.
    let distinct = token
        .chars()
        .collect::<std::collections::HashSet<_>>()
        .len();
    let len = token.chars().count().min(distinct * 2);
    #[allow(clippy::cast_precision_loss)]
    let bits = len as f64 * f64::from(alphabet.max(1)).log2();
    bits
}

/// The admin token, kept hashed; `Debug` never shows it.
#[derive(Clone)]
pub struct AdminToken {
    hash: String,
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

impl AdminToken {
    #[must_use]
    pub fn new(token: &str) -> Self {
        Self {
            hash: token_hash(token),
        }
    }

    /// From a stored SHA-256 hex hash (the token itself was shown once and not kept).
    #[must_use]
    pub fn from_hash(hash: &str) -> Self {
        Self {
            hash: hash.trim().to_ascii_lowercase(),
        }
    }

    #[must_use]
    pub fn hash(&self) -> &str {
        &self.hash
    }

    #[must_use]
    pub fn matches(&self, headers: &HeaderMap) -> bool {
        bearer(headers).is_some_and(|t| token_hash(t) == self.hash)
    }

    /// # Errors
    /// 401 unless the request carries the admin token.
    pub fn require(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        if self.matches(headers) {
            Ok(())
        } else {
            Err(ApiError::unauthorized(
                "this needs the admin token: Authorization: Bearer <token>",
            ))
        }
    }
}

#[cfg(test)]
mod entropy_tests {
    use super::*;

    #[test]
    fn weak_tokens_score_below_the_minimum_and_generated_ones_above() {
        for weak in ["secret", "password123", "test-admin-token", &"a".repeat(64)] {
            assert!(
                entropy_bits(weak) < MIN_TOKEN_BITS,
                "{weak}: {}",
                entropy_bits(weak)
            );
        }
        let generated = new_token().unwrap();
        assert!(entropy_bits(&generated) >= MIN_TOKEN_BITS, "{generated}");
        assert!(entropy_bits("kX9vQ2mZr7LtW4pN8bYc1Hs6") >= MIN_TOKEN_BITS);
    }
}
