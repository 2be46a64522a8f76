//! The header changes that turn a request into one signed with a profile's key.
//!
//! SigV4 covers exactly what Envoy forwards: `host`, every `x-amz-*` header the request carries,
//! and `content-type`/`content-md5` when present. Headers Envoy adds later (`x-forwarded-*`,
//! `x-envoy-*`, tracing) are never signed.

use std::collections::HashMap;

use s3mesh_s3_request::{RequestTarget, S3Error};
use s3mesh_sigv4::payload::PayloadMode;
use s3mesh_sigv4::{sign, AmzDate, Credentials, Scope, SigningKey, SigningParams};

/// Headers s3mesh sets (overwriting) and removes on an allowed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderChanges {
    /// Set with overwrite semantics.
    pub set: Vec<(&'static str, String)>,
    /// Removed before forwarding.
    pub remove: Vec<&'static str>,
}

/// What the `post` filter needs to re-sign the chunks of a chunk-signed upload: the chain
/// starts at the new header signature. Holds a day-scoped signing key, never the secret.
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

/// The request as Envoy will forward it.
#[derive(Debug, Clone, Copy)]
pub struct OutgoingRequest<'a> {
    /// `:method`.
    pub method: &'a str,
    /// `:authority`, sent upstream as `Host`.
    pub host: &'a str,
    /// The canonical request target.
    pub target: &'a RequestTarget,
    /// Request headers, lower-case names (Envoy joins repeated ones with `,`).
    pub headers: &'a HashMap<String, String>,
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

/// Signs `request` with `credentials`, returning the header changes Envoy must apply.
pub fn sign_request(
    request: &OutgoingRequest<'_>,
    credentials: &Credentials,
    region: &str,
    service: &str,
    time: AmzDate,
) -> Result<Signed, S3Error> {
    let mode = PayloadMode::from_header(
        request
            .headers
            .get("x-amz-content-sha256")
            .map(String::as_str),
    );
    let Some(payload_hash) = mode.signed_value() else {
        return Err(S3Error::invalid_request(format!(
            "x-amz-content-sha256 {:?} is neither a hex SHA-256 nor a payload mode s3mesh supports",
            request
                .headers
                .get("x-amz-content-sha256")
                .map_or("", String::as_str)
        )));
    };
    let amz_date = time.date_time();
    let mut signed: Vec<(&str, &str)> = request
        .headers
        .iter()
        .filter(|(name, _)| is_signed(name))
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    signed.push(("host", request.host));
    signed.push(("x-amz-date", &amz_date));
    signed.push(("x-amz-content-sha256", payload_hash));
    if let Some(token) = &credentials.session_token {
        signed.push(("x-amz-security-token", token));
    }
    let params = SigningParams {
        region,
        service,
        time,
    };
    let out = sign(
        request.method,
        &request.target.path,
        &request.target.query,
        &signed,
        payload_hash,
        credentials,
        &params,
    )
    .map_err(|e| S3Error::invalid_uri(format!("cannot sign the request target: {e}")))?;
    let mut set = vec![
        ("authorization", out.authorization),
        ("x-amz-date", out.amz_date),
        ("x-amz-content-sha256", payload_hash.to_owned()),
    ];
    let mut remove = Vec::new();
    match &credentials.session_token {
        Some(token) => set.push(("x-amz-security-token", token.clone())),
        None => remove.push("x-amz-security-token"),
    }
    let chunk_signing = matches!(mode, PayloadMode::StreamingSigned { .. }).then(|| {
        let scope = Scope {
            date: time.date(),
            region: region.to_owned(),
            service: service.to_owned(),
        };
        ChunkSigning {
            seed: out.signature.clone(),
            amz_date: amz_date.clone(),
            scope: scope.to_string(),
            key: SigningKey::derive(&credentials.secret_access_key, &scope),
        }
    });
    Ok(Signed {
        changes: HeaderChanges { set, remove },
        chunk_signing,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(token: Option<&str>) -> Credentials {
        Credentials {
            access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
            session_token: token.map(Into::into),
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn run(h: &HashMap<String, String>, token: Option<&str>) -> Result<HeaderChanges, S3Error> {
        sign(h, token).map(|s| s.changes)
    }

    fn sign(h: &HashMap<String, String>, token: Option<&str>) -> Result<Signed, S3Error> {
        let target = RequestTarget::canonicalize("/test.txt").unwrap();
        let req = OutgoingRequest {
            method: "GET",
            host: "examplebucket.s3.amazonaws.com",
            target: &target,
            headers: h,
        };
        sign_request(
            &req,
            &creds(token),
            "us-east-1",
            "s3",
            AmzDate::from_unix_seconds(1_369_353_600),
        )
    }

    #[test]
    fn signs_host_date_and_the_client_payload_hash() {
        let h = headers(&[("x-amz-content-sha256", s3mesh_sigv4::payload::EMPTY_SHA256)]);
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
        let h = headers(&[
            ("authorization", "AWS4-HMAC-SHA256 Credential=evil"),
            ("x-amz-date", "19990101T000000Z"),
            ("x-amz-meta-a", "1"),
            ("content-type", "text/plain"),
            ("x-forwarded-for", "1.2.3.4"),
        ]);
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
            let h = headers(&[
                ("x-amz-content-sha256", mode),
                ("x-amz-decoded-content-length", "66560"),
            ]);
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
        let plain = headers(&[("x-amz-content-sha256", "UNSIGNED-PAYLOAD")]);
        assert_eq!(sign(&plain, None).unwrap().chunk_signing, None);
    }
}
