//! Chunk-signed uploads in the `post` role: once the header signature is replaced, every
//! `chunk-signature=` in the `aws-chunked` body (and the trailer signature) must chain from the
//! new one. Per request, ext-authz hands over the material in dynamic metadata
//! ([`s3mesh_s3_request::chunk_signing`]); in grant mode the filter signed the headers itself
//! and has it at hand. [`s3mesh_sigv4::aws_chunked::Resigner`] rewrites the body as it streams,
//! holding at most one chunk.

use s3mesh_access::signing::ChunkSigning;
use s3mesh_s3_request::{chunk_signing, S3Error};
use s3mesh_sigv4::aws_chunked::{ChunkSigner, FramingError, Resigner};
use s3mesh_sigv4::payload::PayloadMode;
use s3mesh_sigv4::SigningKey;

/// The largest chunk held for re-signing, which bounds memory per upload. Clients use 64 KiB
/// (minio-go, AWS SDKs) to 8 MiB chunks.
pub const MAX_CHUNK_BYTES: u64 = 16 << 20;

/// A re-signer for a request whose `x-amz-content-sha256` is `mode`, built from the metadata
/// `material` looks up; `Ok(None)` when the body needs no re-signing. Missing or malformed
/// material is s3mesh's own fault, so the request fails closed with `503`.
pub fn resigner(
    mode: Option<&str>,
    material: impl Fn(&str) -> Option<String>,
) -> Result<Option<Resigner>, S3Error> {
    let PayloadMode::StreamingSigned { trailer } = PayloadMode::from_header(mode) else {
        return Ok(None);
    };
    let missing = |what: &str| {
        S3Error::service_unavailable(format!(
            "s3mesh cannot re-sign this chunk-signed upload: ext_authz sent no {what}; check that ext-authz and the filter are the same release"
        ))
    };
    let seed = material(chunk_signing::SEED_SIGNATURE).ok_or_else(|| missing("seed signature"))?;
    let amz_date = material(chunk_signing::AMZ_DATE).ok_or_else(|| missing("signing date"))?;
    let scope = material(chunk_signing::SCOPE).ok_or_else(|| missing("scope"))?;
    let key = material(chunk_signing::SIGNING_KEY)
        .and_then(|k| SigningKey::from_hex(&k))
        .ok_or_else(|| missing("signing key"))?;
    let signing = ChunkSigning {
        seed,
        amz_date,
        scope,
        key,
    };
    Ok(Some(build(&signing, trailer)))
}

/// Grant mode: a re-signer from the filter's own header signature, for a request whose
/// `x-amz-content-sha256` is `mode`.
pub fn own_resigner(mode: Option<&str>, signing: &ChunkSigning) -> Option<Resigner> {
    match PayloadMode::from_header(mode) {
        PayloadMode::StreamingSigned { trailer } => Some(build(signing, trailer)),
        _ => None,
    }
}

fn build(signing: &ChunkSigning, trailer: bool) -> Resigner {
    let signer = ChunkSigner::new(
        signing.key.clone(),
        &signing.amz_date,
        &signing.scope,
        &signing.seed,
    );
    Resigner::new(signer, trailer, MAX_CHUNK_BYTES)
}

/// The client's error for a body that is not well-formed aws-chunked.
pub fn framing_error(error: &FramingError) -> S3Error {
    let message = format!("malformed aws-chunked upload body: {error}");
    match error {
        FramingError::EndedEarly { .. } => S3Error {
            code: "IncompleteBody",
            ..S3Error::invalid_request(message)
        },
        _ => S3Error::invalid_request(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn material(key: Option<&'static str>) -> impl Fn(&str) -> Option<String> {
        move |name: &str| match name {
            chunk_signing::SEED_SIGNATURE => Some("ab".repeat(32)),
            chunk_signing::AMZ_DATE => Some("20130524T000000Z".into()),
            chunk_signing::SCOPE => Some("20130524/us-east-1/s3/aws4_request".into()),
            chunk_signing::SIGNING_KEY => key.map(str::to_owned),
            _ => None,
        }
    }

    #[test]
    fn only_chunk_signed_bodies_are_resigned_and_only_with_complete_material() {
        let key = "11".repeat(32).leak();
        assert!(resigner(Some("UNSIGNED-PAYLOAD"), material(Some(key)))
            .unwrap()
            .is_none());
        assert!(resigner(None, material(None)).unwrap().is_none());
        for mode in [
            "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
            "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
        ] {
            assert!(resigner(Some(mode), material(Some(key))).unwrap().is_some());
            let error = resigner(Some(mode), material(None)).unwrap_err();
            assert_eq!(error.status, 503);
            assert!(error.message.contains("signing key"), "{}", error.message);
            let error = resigner(Some(mode), material(Some("not-hex"))).unwrap_err();
            assert_eq!(error.status, 503);
        }
    }

    #[test]
    fn framing_errors_are_client_errors() {
        let early = framing_error(&FramingError::EndedEarly { chunk: 3 });
        assert_eq!((early.status, early.code), (400, "IncompleteBody"));
        let size = framing_error(&FramingError::BadSize { chunk: 0 });
        assert_eq!((size.status, size.code), (400, "InvalidRequest"));
        assert!(size.message.contains("not hexadecimal"));
    }
}
