//! Re-signing an `aws-chunked` body (`STREAMING-AWS4-HMAC-SHA256-PAYLOAD` and its `-TRAILER`
//! variant) as it streams through.
//!
//! Each chunk is `<hex size>;chunk-signature=<sig>\r\n<data>\r\n`, and each signature chains
//! from the previous one, starting at the request's header signature (the seed):
//!
//! ```text
//! AWS4-HMAC-SHA256-PAYLOAD \n <amz-date> \n <scope> \n <previous sig> \n <sha256("")> \n <sha256(data)>
//! ```
//!
//! A zero-size chunk ends the data; with trailers, trailing headers follow it and
//! `x-amz-trailer-signature:<sig>` signs them (`AWS4-HMAC-SHA256-TRAILER` … `sha256(trailers)`).
//! When s3mesh replaces the header signature, every chunk signature must be recomputed from the
//! new seed. A chunk's signature precedes its data, so a chunk is held until its data is
//! complete: memory is one chunk, whatever the object size. Payload bytes and the framing's
//! length are unchanged (signatures are always 64 hex digits), so `Content-Length` stays valid.

use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::hex_digest::hex;
use crate::payload::EMPTY_SHA256;
use crate::signing_key::SigningKey;

const SIGNATURE_FIELD: &[u8] = b";chunk-signature=";
const TRAILER_SIGNATURE: &[u8] = b"x-amz-trailer-signature:";
const SIGNATURE_LEN: usize = 64;
/// Longest chunk header or trailer line accepted.
const MAX_LINE: usize = 4096;

/// Why a body is not well-formed `aws-chunked`: the client's fault, answered `400`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FramingError {
    /// The size before `;chunk-signature=` is not hexadecimal.
    #[error("chunk {chunk}: the size is not hexadecimal")]
    BadSize {
        /// 0-based chunk number.
        chunk: u64,
    },
    /// A chunk header without `;chunk-signature=` and a 64-digit signature.
    #[error("chunk {chunk}: the header has no chunk-signature of 64 hex digits")]
    BadHeader {
        /// 0-based chunk number.
        chunk: u64,
    },
    /// A header or trailer line longer than any real client sends.
    #[error("chunk {chunk}: a header or trailer line is longer than {MAX_LINE} bytes")]
    LineTooLong {
        /// 0-based chunk number.
        chunk: u64,
    },
    /// A chunk larger than the configured bound.
    #[error("chunk {chunk}: {size} bytes is more than the {max} bytes s3mesh holds per chunk")]
    ChunkTooLarge {
        /// 0-based chunk number.
        chunk: u64,
        /// Declared size.
        size: u64,
        /// The bound.
        max: u64,
    },
    /// The data did not end with CRLF where the declared size said it would: the chunk is
    /// longer than declared, or the framing is broken.
    #[error("chunk {chunk}: no CRLF after the declared {size} bytes (the chunk is longer than declared, or the framing is broken)")]
    MissingCrlf {
        /// 0-based chunk number.
        chunk: u64,
        /// Declared size.
        size: u64,
    },
    /// A trailer line that is not `name:value`, or trailers without `x-amz-trailer-signature`.
    #[error("the trailer is malformed: {0}")]
    BadTrailer(&'static str),
    /// Bytes after the end of the aws-chunked body.
    #[error("data follows the end of the aws-chunked body")]
    DataAfterEnd,
    /// The body ended before its final chunk (and trailer).
    #[error("the body ended early, inside chunk {chunk}")]
    EndedEarly {
        /// 0-based chunk number.
        chunk: u64,
    },
}

/// Computes the chain of chunk (and trailer) signatures from a seed.
#[derive(Debug, Clone)]
pub struct ChunkSigner {
    key: SigningKey,
    amz_date: String,
    scope: String,
    previous: String,
}

impl ChunkSigner {
    /// Starts the chain at `seed` (the request's header signature), for requests signed at
    /// `amz_date` (`YYYYMMDDTHHMMSSZ`) in `scope` (`date/region/service/aws4_request`).
    pub fn new(key: SigningKey, amz_date: &str, scope: &str, seed: &str) -> Self {
        Self {
            key,
            amz_date: amz_date.to_owned(),
            scope: scope.to_owned(),
            previous: seed.to_owned(),
        }
    }

    fn chain(&mut self, algorithm: &str, middle: &str, hash: &str) -> String {
        let string_to_sign = format!(
            "{algorithm}\n{}\n{}\n{}\n{middle}{hash}",
            self.amz_date, self.scope, self.previous
        );
        self.previous = self.key.sign(&string_to_sign);
        self.previous.clone()
    }

    /// The signature of the next chunk, whose data hashes to `data_sha256` (hex).
    pub fn sign_chunk(&mut self, data_sha256: &str) -> String {
        self.chain(
            "AWS4-HMAC-SHA256-PAYLOAD",
            &format!("{EMPTY_SHA256}\n"),
            data_sha256,
        )
    }

    /// The `x-amz-trailer-signature` over `trailers` (each `name:value\n`).
    pub fn sign_trailer(&mut self, trailers: &[u8]) -> String {
        let hash = hex(&Sha256::digest(trailers));
        self.chain("AWS4-HMAC-SHA256-TRAILER", "", &hash)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading a chunk header line.
    Header,
    /// Reading `remaining` data bytes of the current chunk.
    Data { size: u64, remaining: u64 },
    /// Reading the CRLF after a chunk's data; `seen` of its 2 bytes so far.
    DataEnd { size: u64, seen: usize },
    /// After the zero-size chunk without trailers: reading the final CRLF.
    FinalCrlf,
    /// After the zero-size chunk with trailers: reading trailer lines.
    Trailer { signed: bool },
    /// The body is complete.
    Done,
}

/// Rewrites the signatures of an aws-chunked body fed to it in pieces of any size.
#[derive(Debug)]
pub struct Resigner {
    signer: ChunkSigner,
    trailer: bool,
    max_chunk: u64,
    state: State,
    /// What is not released yet: a partial line, or the current chunk (header, then data).
    held: Vec<u8>,
    /// Where the current chunk's signature starts in `held`.
    signature_at: usize,
    hasher: Sha256,
    /// Trailer headers seen so far, canonical (`name:value\n`).
    trailers: Vec<u8>,
    /// Whether the last trailing header ended with a bare LF (minio-go's form).
    bare_lf_trailer: bool,
    chunk: u64,
}

impl Resigner {
    /// A re-signer for one body; `trailer` for the `-TRAILER` variant; chunks above
    /// `max_chunk` bytes are refused.
    pub fn new(signer: ChunkSigner, trailer: bool, max_chunk: u64) -> Self {
        Self {
            signer,
            trailer,
            max_chunk,
            state: State::Header,
            held: Vec::new(),
            signature_at: 0,
            hasher: Sha256::new(),
            trailers: Vec::new(),
            bare_lf_trailer: false,
            chunk: 0,
        }
    }

    /// Bytes currently held (at most one chunk and its header).
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Consumes `input`, appending to `out` every byte that is final (re-signed chunks).
    pub fn push(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<(), FramingError> {
        while !input.is_empty() {
            input = match self.state {
                State::Header | State::Trailer { .. } | State::FinalCrlf => {
                    let end = input.iter().position(|&b| b == b'\n');
                    let part = end.map_or(input, |e| &input[..=e]);
                    if self.held.len() + part.len() > MAX_LINE {
                        return Err(FramingError::LineTooLong { chunk: self.chunk });
                    }
                    self.held.extend_from_slice(part);
                    if end.is_some() {
                        self.line(out)?;
                    }
                    &input[part.len()..]
                }
                State::Data { size, remaining } => {
                    let take =
                        usize::try_from(remaining).map_or(input.len(), |r| r.min(input.len()));
                    self.hasher.update(&input[..take]);
                    self.held.extend_from_slice(&input[..take]);
                    let remaining = remaining - take as u64;
                    self.state = match remaining {
                        0 => State::DataEnd { size, seen: 0 },
                        _ => State::Data { size, remaining },
                    };
                    &input[take..]
                }
                State::DataEnd { size, seen } => {
                    if input[0] != b"\r\n"[seen] {
                        return Err(FramingError::MissingCrlf {
                            chunk: self.chunk,
                            size,
                        });
                    }
                    self.held.push(input[0]);
                    if seen == 1 {
                        let hash = hex(&std::mem::take(&mut self.hasher).finalize());
                        self.release_chunk(&hash, out);
                        self.state = State::Header;
                    } else {
                        self.state = State::DataEnd { size, seen: 1 };
                    }
                    &input[1..]
                }
                State::Done => return Err(FramingError::DataAfterEnd),
            };
        }
        Ok(())
    }

    /// Declares the body complete: an error unless the final chunk (and trailer) arrived.
    pub fn finish(&self) -> Result<(), FramingError> {
        match self.state {
            State::Done => Ok(()),
            _ => Err(FramingError::EndedEarly { chunk: self.chunk }),
        }
    }

    /// Signs the held chunk over `data_sha256`, writes the signature into its header and
    /// releases it.
    fn release_chunk(&mut self, data_sha256: &str, out: &mut Vec<u8>) {
        let signature = self.signer.sign_chunk(data_sha256);
        self.held[self.signature_at..self.signature_at + SIGNATURE_LEN]
            .copy_from_slice(signature.as_bytes());
        out.append(&mut self.held);
        self.chunk += 1;
    }

    /// Handles the complete line in `held` (it ends with `\n`).
    fn line(&mut self, out: &mut Vec<u8>) -> Result<(), FramingError> {
        let chunk = self.chunk;
        let crlf = self.held.ends_with(b"\r\n");
        let line = match (crlf, self.state) {
            (true, _) => &self.held[..self.held.len() - 2],
            // minio-go 7.0.46 ends trailing headers with a bare LF, then a blank CRLF line.
            (false, State::Trailer { .. }) => &self.held[..self.held.len() - 1],
            (false, State::FinalCrlf) => return Err(FramingError::MissingCrlf { chunk, size: 0 }),
            (false, _) => return Err(FramingError::BadHeader { chunk }),
        };
        match self.state {
            State::Header => {
                let at = find(line, SIGNATURE_FIELD).ok_or(FramingError::BadHeader { chunk })?;
                let signature = &line[at + SIGNATURE_FIELD.len()..];
                if signature.len() != SIGNATURE_LEN || !signature.iter().all(u8::is_ascii_hexdigit)
                {
                    return Err(FramingError::BadHeader { chunk });
                }
                let size = parse_hex(&line[..at]).ok_or(FramingError::BadSize { chunk })?;
                if size > self.max_chunk {
                    return Err(FramingError::ChunkTooLarge {
                        chunk,
                        size,
                        max: self.max_chunk,
                    });
                }
                self.signature_at = at + SIGNATURE_FIELD.len();
                if size == 0 {
                    self.release_chunk(EMPTY_SHA256, out);
                    self.state = match self.trailer {
                        true => State::Trailer { signed: false },
                        false => State::FinalCrlf,
                    };
                } else {
                    self.state = State::Data {
                        size,
                        remaining: size,
                    };
                }
            }
            State::FinalCrlf => {
                if !line.is_empty() {
                    return Err(FramingError::DataAfterEnd);
                }
                out.append(&mut self.held);
                self.state = State::Done;
            }
            State::Trailer { signed } => {
                if line.is_empty() && !signed && self.bare_lf_trailer {
                    // The blank line minio-go puts between its LF-ended trailers and the
                    // signature.
                } else if line.is_empty() {
                    if !signed {
                        return Err(FramingError::BadTrailer("no x-amz-trailer-signature"));
                    }
                    self.state = State::Done;
                } else if let Some(old) = line.strip_prefix(TRAILER_SIGNATURE) {
                    if signed || old.len() != SIGNATURE_LEN {
                        return Err(FramingError::BadTrailer(
                            "x-amz-trailer-signature is repeated or not 64 hex digits",
                        ));
                    }
                    let signature = self.signer.sign_trailer(&self.trailers);
                    let at = TRAILER_SIGNATURE.len();
                    self.held[at..at + SIGNATURE_LEN].copy_from_slice(signature.as_bytes());
                    self.state = State::Trailer { signed: true };
                } else if signed || !line.contains(&b':') {
                    return Err(FramingError::BadTrailer(
                        "a trailing header is not name:value, or follows the trailer signature",
                    ));
                } else {
                    self.trailers.extend_from_slice(line);
                    self.trailers.push(b'\n');
                    self.bare_lf_trailer = !crlf;
                }
                out.append(&mut self.held);
            }
            State::Data { .. } | State::DataEnd { .. } | State::Done => {}
        }
        Ok(())
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A chunk size: 1 to 16 hex digits.
fn parse_hex(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 16 {
        return None;
    }
    let text = std::str::from_utf8(digits).ok()?;
    u64::from_str_radix(text, 16).ok()
}

#[cfg(test)]
mod tests;
