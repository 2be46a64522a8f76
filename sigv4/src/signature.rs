//! The string to sign, the signature, and the `Authorization` header built from them.

use crate::amz_date::AmzDate;
use crate::canonical_request::CanonicalRequest;
use crate::signing_key::{Scope, SigningKey};
use crate::uri_encoding::DecodeError;

/// The algorithm name that starts every SigV4 string to sign and `Authorization` header.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// Long-lived (or session) credentials of a profile. Never logged: `Debug` redacts the secret.
#[derive(Clone)]
pub struct Credentials {
    /// Access key id: goes into the `Authorization` header in clear.
    pub access_key_id: String,
    /// Secret access key: only ever used to derive signing keys.
    pub secret_access_key: String,
    /// STS session token, sent as `x-amz-security-token` (and signed) when present.
    pub session_token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// Where and when the signature is valid.
#[derive(Debug, Clone)]
pub struct SigningParams<'a> {
    /// Region of the credential scope.
    pub region: &'a str,
    /// Service signing name, `s3`.
    pub service: &'a str,
    /// Signing time (becomes `x-amz-date`).
    pub time: AmzDate,
}

/// The `string to sign`: algorithm, `x-amz-date` timestamp, credential scope
/// (`date/region/service/aws4_request`) and the canonical request's hash.
pub fn string_to_sign(amz_date: &str, scope: &str, canonical_request_hash: &str) -> String {
    [ALGORITHM, amz_date, scope, canonical_request_hash].join("\n")
}

/// What a signed request carries: the `Authorization` value and the seed signature
/// (the one chunk signatures chain from).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedRequest {
    /// Value of the `Authorization` header.
    pub authorization: String,
    /// The bare hex signature inside `authorization`.
    pub signature: String,
    /// Value of the `x-amz-date` header that was signed.
    pub amz_date: String,
}

/// Signs a request whose signed headers (including `host`, `x-amz-date`,
/// `x-amz-content-sha256` and, with session credentials, `x-amz-security-token`) are all in
/// `headers`, exactly as they will be sent.
pub fn sign(
    method: &str,
    path: &str,
    query: &str,
    headers: &[(&str, &str)],
    payload_hash: &str,
    credentials: &Credentials,
    params: &SigningParams<'_>,
) -> Result<SignedRequest, DecodeError> {
    let scope = Scope {
        date: params.time.date(),
        region: params.region.to_owned(),
        service: params.service.to_owned(),
    };
    let key = SigningKey::derive(&credentials.secret_access_key, &scope);
    let request = CanonicalRequest::new(method, path, query, headers, payload_hash)?;
    Ok(sign_with_key(
        &request,
        &credentials.access_key_id,
        &key,
        &scope,
        &params.time,
    ))
}

/// Signs a canonical request with a day-scoped key for `scope`, which must be the key of
/// `time`'s date: how a holder of the key but not the secret (the wasm filter with a grant)
/// signs.
pub fn sign_with_key(
    request: &CanonicalRequest,
    access_key_id: &str,
    key: &SigningKey,
    scope: &Scope,
    time: &AmzDate,
) -> SignedRequest {
    let (amz_date, scope) = (time.date_time(), scope.to_string());
    let signature = key.sign(&string_to_sign(&amz_date, &scope, &request.hash()));
    // `AWS4-HMAC-SHA256 Credential=<key id>/<scope>,SignedHeaders=<names>,Signature=<hex>`,
    // concatenated rather than formatted: this runs for every signed request.
    let signed_headers = request.signed_headers();
    let authorization = [
        ALGORITHM,
        " Credential=",
        access_key_id,
        "/",
        &scope,
        ",SignedHeaders=",
        &signed_headers,
        ",Signature=",
        &signature,
    ]
    .concat();
    SignedRequest {
        authorization,
        signature,
        amz_date,
    }
}

#[cfg(test)]
mod tests {
    //! Known answers from AWS's S3 documentation ("Signature Calculations for the
    //! Authorization Header: Transferring Payload in a Single Chunk"): access key
    //! `AKIAIOSFODNN7EXAMPLE`, bucket `examplebucket`, 2013-05-24T00:00:00Z, us-east-1.
    use super::*;
    use crate::payload::EMPTY_SHA256;

    const HOST: &str = "examplebucket.s3.amazonaws.com";
    const DATE: &str = "20130524T000000Z";

    fn creds() -> Credentials {
        Credentials {
            access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
            session_token: None,
        }
    }

    fn params() -> SigningParams<'static> {
        SigningParams {
            region: "us-east-1",
            service: "s3",
            time: AmzDate::from_unix_seconds(1_369_353_600),
        }
    }

    fn signature(
        method: &str,
        path: &str,
        query: &str,
        extra: &[(&str, &str)],
        hash: &str,
    ) -> String {
        let mut headers = vec![
            ("host", HOST),
            ("x-amz-date", DATE),
            ("x-amz-content-sha256", hash),
        ];
        headers.extend_from_slice(extra);
        sign(method, path, query, &headers, hash, &creds(), &params())
            .unwrap()
            .signature
    }

    #[test]
    fn aws_example_get_object() {
        assert_eq!(
            signature(
                "GET",
                "/test.txt",
                "",
                &[("range", "bytes=0-9")],
                EMPTY_SHA256
            ),
            "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }

    #[test]
    fn aws_example_put_object() {
        let hash = "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072";
        assert_eq!(
            signature(
                "PUT",
                "/test%24file.text",
                "",
                &[
                    ("date", "Fri, 24 May 2013 00:00:00 GMT"),
                    ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
                ],
                hash
            ),
            "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"
        );
    }

    #[test]
    fn aws_example_get_bucket_lifecycle() {
        assert_eq!(
            signature("GET", "/", "lifecycle", &[], EMPTY_SHA256),
            "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543"
        );
    }

    #[test]
    fn aws_example_list_objects() {
        assert_eq!(
            signature("GET", "/", "max-keys=2&prefix=J", &[], EMPTY_SHA256),
            "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"
        );
    }

    #[test]
    fn authorization_header_names_key_scope_and_headers_but_not_the_secret() {
        let signed = sign(
            "GET",
            "/test.txt",
            "",
            &[
                ("host", HOST),
                ("x-amz-date", DATE),
                ("x-amz-content-sha256", EMPTY_SHA256),
            ],
            EMPTY_SHA256,
            &creds(),
            &params(),
        )
        .unwrap();
        assert!(signed.authorization.starts_with(
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,\
             SignedHeaders=host;x-amz-content-sha256;x-amz-date,Signature="
        ));
        assert!(!signed.authorization.contains("EXAMPLEKEY"));
        assert!(!format!("{:?}", creds()).contains("EXAMPLEKEY"));
    }
}
