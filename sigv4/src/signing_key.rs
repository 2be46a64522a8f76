//! The credential scope and the day-scoped signing key derived from the secret.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::hex_digest::hex;

pub(crate) fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail here.
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// `date/region/service/aws4_request`: what a signature (and a signing key) is valid for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// `YYYYMMDD`.
    pub date: String,
    /// Region the store expects, e.g. `us-east-1`.
    pub region: String,
    /// Signing name of the service, `s3`.
    pub service: String,
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for part in [
            self.date.as_str(),
            "/",
            &self.region,
            "/",
            &self.service,
            "/aws4_request",
        ] {
            f.write_str(part)?;
        }
        Ok(())
    }
}

/// The key `HMAC(HMAC(HMAC(HMAC("AWS4"+secret, date), region), service), "aws4_request")`.
///
/// It signs for one day, one region and one service, so it can be handed to a component (the
/// wasm filter re-signing chunks) that must never hold the secret itself.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKey([u8; 32]);

impl SigningKey {
    /// Derives the key for `scope` from the secret access key.
    pub fn derive(secret_access_key: &str, scope: &Scope) -> Self {
        let k_secret = format!("AWS4{secret_access_key}");
        let k_date = hmac_sha256(k_secret.as_bytes(), scope.date.as_bytes());
        let k_region = hmac_sha256(&k_date, scope.region.as_bytes());
        let k_service = hmac_sha256(&k_region, scope.service.as_bytes());
        Self(hmac_sha256(&k_service, b"aws4_request"))
    }

    /// The key as hex, to hand to the component that re-signs chunks. Handle like a secret for
    /// its day: it signs anything in its scope.
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }

    /// The key from [`SigningKey::to_hex`]'s form; `None` unless 64 hex digits.
    pub fn from_hex(text: &str) -> Option<Self> {
        let mut key = [0u8; 32];
        hex::decode_to_slice(text, &mut key).ok()?;
        Some(Self(key))
    }

    /// Hex HMAC-SHA256 of `string_to_sign`: a signature.
    pub fn sign(&self, string_to_sign: &str) -> String {
        hex(&hmac_sha256(&self.0, string_to_sign.as_bytes()))
    }
}

/// Never prints the key material.
impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(<redacted>)")
    }
}
