//! `RoleSessionName` from a caller's identity: what the store's access logs and CloudTrail-like
//! audit name, so it must say who the workload is and never be shared by two of them.

use sha2::{Digest, Sha256};

/// STS's limit.
const MAX_LEN: usize = 64;
/// The hash suffix: `-` and 8 hex digits.
const SUFFIX_LEN: usize = 9;

/// The session name of `identity`: its characters outside STS's set (`[A-Za-z0-9+=,.@_-]`)
/// replaced by `-`, cut to fit, and followed by 8 hex digits of the identity's SHA-256, so that
/// identities that read alike once sanitized (`team-a/reader`, `team-a-reader`) stay apart.
pub fn for_identity(identity: &str) -> String {
    let readable: String = identity
        .chars()
        .map(|c| match c {
            'A'..='Z' | 'a'..='z' | '0'..='9' | '+' | '=' | ',' | '.' | '@' | '_' | '-' => c,
            _ => '-',
        })
        .take(MAX_LEN - SUFFIX_LEN)
        .collect();
    let digest = hex::encode(Sha256::digest(identity.as_bytes()));
    format!("{readable}-{}", &digest[..SUFFIX_LEN - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readable_unique_and_within_sts_rules() {
        let a = for_identity("team-a/reader");
        let b = for_identity("team-a-reader");
        assert!(a.starts_with("team-a-reader-") && b.starts_with("team-a-reader-"));
        assert_ne!(a, b);
        let long = for_identity(&format!(
            "spiffe://cluster.local/ns/{}/sa/x",
            "n".repeat(80)
        ));
        assert_eq!(long.len(), MAX_LEN);
        assert!(long
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c)));
        assert_eq!(for_identity("x"), for_identity("x"), "stable");
    }
}
