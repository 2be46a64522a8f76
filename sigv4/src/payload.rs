//! The values of `x-amz-content-sha256`: how the payload is covered by the signature.

/// The payload is not covered by the signature.
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
/// `aws-chunked` body, chunks unsigned, checksum in a trailer (current AWS SDK default).
pub const STREAMING_UNSIGNED_PAYLOAD_TRAILER: &str = "STREAMING-UNSIGNED-PAYLOAD-TRAILER";
/// `aws-chunked` body with a signature per chunk, chained from the header signature.
pub const STREAMING_SIGNED_PAYLOAD: &str = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD";
/// As [`STREAMING_SIGNED_PAYLOAD`], with a signed trailer after the last chunk.
pub const STREAMING_SIGNED_PAYLOAD_TRAILER: &str = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER";
/// SHA-256 of the empty string.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// What a client declared in `x-amz-content-sha256`, and so how the signer must treat the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadMode<'a> {
    /// Absent or `UNSIGNED-PAYLOAD`: sign as `UNSIGNED-PAYLOAD`, body untouched.
    Unsigned,
    /// A hex SHA-256 of the body: reuse it; the server checks the body against it.
    Sha256(&'a str),
    /// `STREAMING-UNSIGNED-PAYLOAD-TRAILER`: only the header signature changes.
    StreamingUnsignedTrailer,
    /// `STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]`: every chunk signature must be redone.
    StreamingSigned {
        /// Whether the body ends with a signed trailer.
        trailer: bool,
    },
    /// Anything else (including the ECDSA `STREAMING-AWS4-ECDSA-…` modes): refuse.
    Unsupported(&'a str),
}

impl<'a> PayloadMode<'a> {
    /// Classifies the header value (`None` when the header is absent).
    pub fn from_header(value: Option<&'a str>) -> Self {
        match value {
            None | Some(UNSIGNED_PAYLOAD) => Self::Unsigned,
            Some(STREAMING_UNSIGNED_PAYLOAD_TRAILER) => Self::StreamingUnsignedTrailer,
            Some(STREAMING_SIGNED_PAYLOAD) => Self::StreamingSigned { trailer: false },
            Some(STREAMING_SIGNED_PAYLOAD_TRAILER) => Self::StreamingSigned { trailer: true },
            Some(v) if v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()) => Self::Sha256(v),
            Some(v) => Self::Unsupported(v),
        }
    }

    /// The value the re-signed request carries in `x-amz-content-sha256` (and its canonical
    /// request's payload hash); `None` for a mode s3mesh cannot sign. Chunk-signed bodies also
    /// need their chunks re-signed ([`crate::aws_chunked`]).
    pub fn signed_value(&self) -> Option<&'a str> {
        match self {
            Self::Unsigned => Some(UNSIGNED_PAYLOAD),
            Self::Sha256(v) => Some(v),
            Self::StreamingUnsignedTrailer => Some(STREAMING_UNSIGNED_PAYLOAD_TRAILER),
            Self::StreamingSigned { trailer: false } => Some(STREAMING_SIGNED_PAYLOAD),
            Self::StreamingSigned { trailer: true } => Some(STREAMING_SIGNED_PAYLOAD_TRAILER),
            Self::Unsupported(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_every_mode() {
        assert_eq!(PayloadMode::from_header(None), PayloadMode::Unsigned);
        assert_eq!(
            PayloadMode::from_header(Some(EMPTY_SHA256)),
            PayloadMode::Sha256(EMPTY_SHA256)
        );
        assert_eq!(
            PayloadMode::from_header(Some(STREAMING_SIGNED_PAYLOAD_TRAILER)),
            PayloadMode::StreamingSigned { trailer: true }
        );
        assert_eq!(
            PayloadMode::from_header(Some("abc")),
            PayloadMode::Unsupported("abc")
        );
        assert_eq!(PayloadMode::from_header(Some("abc")).signed_value(), None);
    }
}
