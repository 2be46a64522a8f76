//! The header changes that turn a request into one signed for a credential profile, with that
//! profile's day-scoped key.
//!
//! SigV4 covers exactly what Envoy forwards: `host`, every `x-amz-*` header the request carries,
//! and `content-type`/`content-md5` when present. Headers Envoy adds later (`x-forwarded-*`,
//! `x-envoy-*`, tracing) are never signed.

use serde::{Deserialize, Serialize};

use s3mesh_s3_request::{RequestTarget, S3Error};
use s3mesh_sigv4::payload::PayloadMode;
use s3mesh_sigv4::{sign_with_key, AmzDate, CanonicalRequest, Credentials, Scope, SigningKey};

use crate::request::Request;

/// What signs for one credential profile on one day: the access key id, the session token, the
/// scope and the day-scoped key, never the secret. ext-authz derives it; a grant carries it to
/// the filter. `Debug` redacts the key and the token.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileKey {
    /// Access key id: goes into the `Authorization` header in clear.
    pub access_key_id: String,
    /// STS session token, sent (and signed) as `x-amz-security-token` when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_token: Option<String>,
    /// Region the store expects.
    pub region: String,
    /// Signing name of the service, `s3`.
    pub service: String,
    /// `YYYYMMDD`: the day the key signs for.
    pub date: String,
    /// The signing key for `date/region/service`, hex on the wire.
    #[serde(with = "key_hex")]
    pub key: SigningKey,
}

mod key_hex {
    use s3mesh_sigv4::SigningKey;
    use serde::{de, Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(key: &SigningKey, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&key.to_hex())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SigningKey, D::Error> {
        let text = String::deserialize(d)?;
        SigningKey::from_hex(&text).ok_or_else(|| de::Error::custom("not a 64-digit hex key"))
    }
}

impl std::fmt::Debug for ProfileKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProfileKey")
            .field("access_key_id", &self.access_key_id)
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .field("scope", &self.scope().to_string())
            .field("key", &self.key)
            .finish()
    }
}

impl ProfileKey {
    /// Derives the key of `credentials` for `date` (`YYYYMMDD`).
    pub fn derive(credentials: &Credentials, region: &str, service: &str, date: String) -> Self {
        let scope = Scope {
            date,
            region: region.to_owned(),
            service: service.to_owned(),
        };
        Self {
            access_key_id: credentials.access_key_id.clone(),
            session_token: credentials.session_token.clone(),
            key: SigningKey::derive(&credentials.secret_access_key, &scope),
            region: scope.region,
            service: scope.service,
            date: scope.date,
        }
    }

    /// `date/region/service/aws4_request`.
    pub fn scope(&self) -> Scope {
        Scope {
            date: self.date.clone(),
            region: self.region.clone(),
            service: self.service.clone(),
        }
    }
}

/// Headers s3mesh sets (overwriting) and removes on an allowed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderChanges {
    /// Set with overwrite semantics.
    pub set: Vec<(&'static str, String)>,
    /// Removed before forwarding.
    pub remove: Vec<&'static str>,
}

/// What re-signing the chunks of a chunk-signed upload needs: the chain starts at the new header
/// signature. Holds a day-scoped signing key, never the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkSigning {
    /// The new header signature (the seed of the chunk chain).
    pub seed: String,
    /// `x-amz-date` of the re-signed request.
    pub amz_date: String,
    /// `date/region/service/aws4_request`.
    pub scope: String,
    /// The signing key for that scope.
    pub key: SigningKey,
}

/// A signed request: the header changes, and for a chunk-signed upload what re-signing its
/// chunks needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// Header changes for Envoy.
    pub changes: HeaderChanges,
    /// Present for `STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]`.
    pub chunk_signing: Option<ChunkSigning>,
}

/// Headers the signer owns: whatever the client sent for them is replaced or removed.
const OWNED: [&str; 4] = [
    "authorization",
    "x-amz-date",
    "x-amz-security-token",
    "x-amz-content-sha256",
];

fn is_signed(name: &str) -> bool {
    (name.starts_with("x-amz-") || name == "content-type" || name == "content-md5")
        && !OWNED.contains(&name)
}

/// Signs `request`, whose canonical target is `target`, at `time` with `key`, returning the
/// header changes Envoy must apply. `key` must be the key of `time`'s day.
pub fn sign_request(
    request: &Request<'_>,
    target: &RequestTarget,
    key: &ProfileKey,
    time: AmzDate,
) -> Result<Signed, S3Error> {
    if key.date != time.date() {
        return Err(S3Error::service_unavailable(format!(
            "s3mesh holds a signing key for {}, not for {}; retry",
            key.date,
            time.date()
        )));
    }
    let mode = PayloadMode::from_header(request.header("x-amz-content-sha256"));
    let Some(payload_hash) = mode.signed_value() else {
        return Err(S3Error::invalid_request(format!(
            "x-amz-content-sha256 {:?} is neither a hex SHA-256 nor a payload mode s3mesh supports",
            request.header("x-amz-content-sha256").unwrap_or_default()
        )));
    };
    let amz_date = time.date_time();
    let mut signed: Vec<(&str, &str)> = request
        .headers
        .iter()
        .filter(|(name, _)| is_signed(name))
        .copied()
        .collect();
    signed.push(("host", request.host));
    signed.push(("x-amz-date", &amz_date));
    signed.push(("x-amz-content-sha256", payload_hash));
    if let Some(token) = &key.session_token {
        signed.push(("x-amz-security-token", token));
    }
    let canonical = CanonicalRequest::new(
        request.method,
        &target.path,
        &target.query,
        &signed,
        payload_hash,
    )
    .map_err(|e| S3Error::invalid_uri(format!("cannot sign the request target: {e}")))?;
    let scope = key.scope();
    let out = sign_with_key(&canonical, &key.access_key_id, &key.key, &scope, &time);
    let mut set = vec![
        ("authorization", out.authorization),
        ("x-amz-date", out.amz_date),
        ("x-amz-content-sha256", payload_hash.to_owned()),
    ];
    let mut remove = Vec::new();
    match &key.session_token {
        Some(token) => set.push(("x-amz-security-token", token.clone())),
        None => remove.push("x-amz-security-token"),
    }
    let chunk_signing = matches!(mode, PayloadMode::StreamingSigned { .. }).then(|| ChunkSigning {
        seed: out.signature,
        amz_date,
        scope: scope.to_string(),
        key: key.key.clone(),
    });
    Ok(Signed {
        changes: HeaderChanges { set, remove },
        chunk_signing,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn creds(token: Option<&str>) -> Credentials {
        Credentials {
            access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
            session_token: token.map(Into::into),
        }
    }

    fn run(h: &[(&str, &str)], token: Option<&str>) -> Result<HeaderChanges, S3Error> {
        sign(h, token).map(|s| s.changes)
    }

    fn key(token: Option<&str>) -> ProfileKey {
        ProfileKey::derive(&creds(token), "us-east-1", "s3", "20130524".into())
    }

    fn sign(h: &[(&str, &str)], token: Option<&str>) -> Result<Signed, S3Error> {
        let target = RequestTarget::canonicalize("/test.txt").unwrap();
        let req = Request {
            method: "GET",
            host: "examplebucket.s3.amazonaws.com",
            path: "/test.txt",
            headers: h,
        };
        sign_request(
            &req,
            &target,
            &key(token),
            AmzDate::from_unix_seconds(1_369_353_600),
        )
    }

    #[test]
    fn signs_host_date_and_the_client_payload_hash() {
        let h = [("x-amz-content-sha256", s3mesh_sigv4::payload::EMPTY_SHA256)];
        let changes = run(&h, None).unwrap();
        let auth = &changes.set[0].1;
        assert!(
            auth.contains("SignedHeaders=host;x-amz-content-sha256;x-amz-date,"),
            "{auth}"
        );
        assert_eq!(changes.remove, vec!["x-amz-security-token"]);
    }

    #[test]
    fn signs_unsigned_requests_as_unsigned_payload_and_ignores_client_credentials() {
        let h = [
            ("authorization", "AWS4-HMAC-SHA256 Credential=evil"),
            ("x-amz-date", "19990101T000000Z"),
            ("x-amz-meta-a", "1"),
            ("content-type", "text/plain"),
            ("x-forwarded-for", "1.2.3.4"),
        ];
        let changes = run(&h, Some("tok")).unwrap();
        let get = |n: &str| {
            changes
                .set
                .iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("x-amz-content-sha256"), Some("UNSIGNED-PAYLOAD"));
        assert_eq!(get("x-amz-date"), Some("20130524T000000Z"));
        assert_eq!(get("x-amz-security-token"), Some("tok"));
        let auth = get("authorization").unwrap();
        assert!(auth.contains(
            "SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date;x-amz-meta-a;x-amz-security-token,"
        ), "{auth}");
        assert!(!auth.contains("EXAMPLEKEY"));
    }

    #[test]
    fn chunk_signed_uploads_keep_their_mode_and_hand_over_seed_date_scope_and_day_key() {
        for mode in [
            "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
            "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
        ] {
            let h = [
                ("x-amz-content-sha256", mode),
                ("x-amz-decoded-content-length", "66560"),
            ];
            let signed = sign(&h, None).unwrap();
            let set: HashMap<_, _> = signed.changes.set.iter().cloned().collect();
            assert_eq!(set["x-amz-content-sha256"], mode);
            let chunks = signed.chunk_signing.expect("re-signing material");
            assert!(set["authorization"].ends_with(&format!("Signature={}", chunks.seed)));
            assert!(set["authorization"].contains("x-amz-decoded-content-length"));
            assert_eq!(chunks.amz_date, "20130524T000000Z");
            assert_eq!(chunks.scope, "20130524/us-east-1/s3/aws4_request");
            let scope = Scope {
                date: "20130524".into(),
                region: "us-east-1".into(),
                service: "s3".into(),
            };
            let secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
            assert_eq!(chunks.key, SigningKey::derive(secret, &scope));
            assert!(!format!("{chunks:?}").contains(secret));
        }
        let plain = [("x-amz-content-sha256", "UNSIGNED-PAYLOAD")];
        assert_eq!(sign(&plain, None).unwrap().chunk_signing, None);
    }
}
