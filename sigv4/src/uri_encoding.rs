//! SigV4's percent-encoding: every byte but `A-Z a-z 0-9 - . _ ~` becomes `%XY` (upper-case
//! hex). Object keys keep `/` unencoded in the path; query names and values encode it.

use thiserror::Error;

/// A `%` that is not followed by two hex digits.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("invalid percent-encoding at byte {offset}")]
pub struct DecodeError {
    /// Where in the input the bad escape starts.
    pub offset: usize,
}

/// Whether `/` is left as it is (object key paths) or encoded (query parameters).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slash {
    /// Keep `/`: the canonical URI of an S3 request.
    Keep,
    /// Encode `/` as `%2F`: canonical query names and values.
    Encode,
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Whether `b` stands for itself in the encoded form: unreserved, or `/` where kept.
fn stands_for_itself(b: u8, slash: Slash) -> bool {
    is_unreserved(b) || (b == b'/' && slash == Slash::Keep)
}

/// Percent-encodes `bytes` the way SigV4 canonical requests require.
pub fn encode(bytes: &[u8], slash: Slash) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(bytes.len() + bytes.len() / 2);
    for &b in bytes {
        if stands_for_itself(b, slash) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
    }
    out
}

/// Decodes `%XY` escapes; every other byte (including `+`) stands for itself.
pub fn decode(s: &str) -> Result<Vec<u8>, DecodeError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hi = bytes.get(i + 1).and_then(|b| hex_value(*b));
            let lo = bytes.get(i + 2).and_then(|b| hex_value(*b));
            match (hi, lo) {
                (Some(hi), Some(lo)) => out.push(hi << 4 | lo),
                _ => return Err(DecodeError { offset: i }),
            }
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(out)
}

/// Decodes and re-encodes, so that any valid encoding of the same bytes maps to one form.
///
/// Text made only of bytes that stay as they are (the unreserved ones, and `/` where kept) is
/// its own canonical form and is copied as it is: most object keys and query parameters, and
/// every path and parameter is canonicalized twice per request (target, signature).
pub fn canonicalize(s: &str, slash: Slash) -> Result<String, DecodeError> {
    if s.bytes().all(|b| stands_for_itself(b, slash)) {
        return Ok(s.to_owned());
    }
    Ok(encode(&decode(s)?, slash))
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_reserved_bytes_and_unicode() {
        assert_eq!(encode(b"a b+c/d", Slash::Keep), "a%20b%2Bc/d");
        assert_eq!(encode(b"a b+c/d", Slash::Encode), "a%20b%2Bc%2Fd");
        assert_eq!(encode("é~_.-".as_bytes(), Slash::Keep), "%C3%A9~_.-");
    }

    #[test]
    fn decoding_keeps_plus_and_rejects_bad_escapes() {
        assert_eq!(decode("a+b%2fc").as_deref(), Ok(&b"a+b/c"[..]));
        assert_eq!(decode("a%2"), Err(DecodeError { offset: 1 }));
        assert_eq!(decode("%zz"), Err(DecodeError { offset: 0 }));
    }

    #[test]
    fn canonical_form_is_a_fixed_point() {
        for raw in [
            "/b/a%2fb",
            "/b/a+b",
            "/b//x/./y",
            "/b/%E2%82%AC",
            "/b/%e2%82%ac",
        ] {
            let once = canonicalize(raw, Slash::Keep).unwrap();
            assert_eq!(canonicalize(&once, Slash::Keep).unwrap(), once, "{raw}");
        }
        assert_eq!(canonicalize("/b//x/./y", Slash::Keep).unwrap(), "/b//x/./y");
    }

    #[test]
    fn plain_text_is_its_own_form_and_the_rest_is_recoded() {
        assert_eq!(canonicalize("/b/k-1_.~", Slash::Keep).unwrap(), "/b/k-1_.~");
        assert_eq!(canonicalize("a/b", Slash::Encode).unwrap(), "a%2Fb");
        assert_eq!(canonicalize("a%7e", Slash::Keep).unwrap(), "a~");
        assert_eq!(
            canonicalize("a%2", Slash::Keep),
            Err(DecodeError { offset: 1 })
        );
    }
}
