use super::*;
use crate::signing_key::Scope;

/// AWS's worked example of a chunked upload ("Signature Calculations for the Authorization
/// Header: Transferring Payload in Multiple Chunks", Example: PUT Object): 66,560 bytes of
/// `a` in chunks of 65,536 and 1,024 bytes, then the final zero-size chunk.
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const AMZ_DATE: &str = "20130524T000000Z";
const SCOPE: &str = "20130524/us-east-1/s3/aws4_request";
const SEED: &str = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9";
const CHUNK_1: &str = "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648";
const CHUNK_2: &str = "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497";
const FINAL: &str = "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9";
const STALE: &str = "0000000000000000000000000000000000000000000000000000000000000000";

fn signer() -> ChunkSigner {
    let scope = Scope {
        date: "20130524".into(),
        region: "us-east-1".into(),
        service: "s3".into(),
    };
    ChunkSigner::new(SigningKey::derive(SECRET, &scope), AMZ_DATE, SCOPE, SEED)
}

/// `chunks` framed as aws-chunked with the given signatures; `tail` follows the zero-size
/// chunk's header: `\r\n`, or the trailer.
fn framed(chunks: &[(&[u8], &str)], tail: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    for (data, signature) in chunks {
        body.extend_from_slice(
            format!("{:x};chunk-signature={signature}\r\n", data.len()).as_bytes(),
        );
        if !data.is_empty() {
            body.extend_from_slice(data);
            body.extend_from_slice(b"\r\n");
        }
    }
    body.extend_from_slice(tail);
    body
}

/// Feeds `body` in pieces of `step` bytes and returns everything released.
fn resign(body: &[u8], step: usize, trailer: bool) -> Result<Vec<u8>, FramingError> {
    let mut resigner = Resigner::new(signer(), trailer, 1 << 20);
    let mut out = Vec::new();
    let mut most_held = 0;
    for piece in body.chunks(step.max(1)) {
        resigner.push(piece, &mut out)?;
        most_held = most_held.max(resigner.held());
    }
    resigner.finish()?;
    assert!(
        most_held <= 65536 + 90,
        "held {most_held} bytes: more than one chunk"
    );
    Ok(out)
}

fn example(signatures: [&str; 3]) -> Vec<u8> {
    let (a, b) = (vec![b'a'; 65536], vec![b'a'; 1024]);
    framed(
        &[
            (&a, signatures[0]),
            (&b, signatures[1]),
            (b"", signatures[2]),
        ],
        b"\r\n",
    )
}

#[test]
fn the_chain_matches_aws_worked_example() {
    let mut s = signer();
    let hash = |n| hex::encode(Sha256::digest(vec![b'a'; n]));
    assert_eq!(s.sign_chunk(&hash(65536)), CHUNK_1);
    assert_eq!(s.sign_chunk(&hash(1024)), CHUNK_2);
    assert_eq!(s.sign_chunk(EMPTY_SHA256), FINAL);
}

#[test]
fn stale_signatures_are_rewritten_whatever_the_callback_boundaries() {
    let stale = example([STALE; 3]);
    let want = example([CHUNK_1, CHUNK_2, FINAL]);
    for step in [1, 2, 7, 86, 8192, 65536, 65600, 66000, stale.len()] {
        let out = resign(&stale, step, false).unwrap();
        assert_eq!(
            out.len(),
            stale.len(),
            "step {step}: length must not change"
        );
        assert!(
            out == want,
            "step {step}: signatures not rewritten as AWS computes them"
        );
    }
}

#[test]
fn empty_and_one_byte_objects() {
    let out = resign(&framed(&[(b"", STALE)], b"\r\n"), 3, false).unwrap();
    let mut s = signer();
    let empty = s.sign_chunk(EMPTY_SHA256);
    assert_eq!(out, framed(&[(b"", &empty)], b"\r\n"));

    let out = resign(&framed(&[(b"x", STALE), (b"", STALE)], b"\r\n"), 1, false).unwrap();
    let mut s = signer();
    let one = s.sign_chunk(&hex::encode(Sha256::digest(b"x")));
    let end = s.sign_chunk(EMPTY_SHA256);
    assert_eq!(out, framed(&[(b"x", &one), (b"", &end)], b"\r\n"));
}

#[test]
fn minio_go_trailer_form_is_re_signed_byte_for_byte() {
    // minio-go 7.0.46: `name:value\n`, a blank CRLF line, then the signature line.
    let trailer = |signature: &str| {
        format!("x-amz-checksum-crc32c:sOO8/Q==\n\r\nx-amz-trailer-signature:{signature}\r\n\r\n")
    };
    let stale = framed(&[(b"abc", STALE), (b"", STALE)], trailer(STALE).as_bytes());
    let mut s = signer();
    let first = s.sign_chunk(&hex::encode(Sha256::digest(b"abc")));
    let last = s.sign_chunk(EMPTY_SHA256);
    let signed = s.sign_trailer(b"x-amz-checksum-crc32c:sOO8/Q==\n");
    let want = framed(
        &[(b"abc", &first), (b"", &last)],
        trailer(&signed).as_bytes(),
    );
    assert!(resign(&stale, 3, true).unwrap() == want);
}

#[test]
fn the_trailer_signature_chains_from_the_final_chunk() {
    let trailer = |signature: &str| {
        format!("x-amz-checksum-crc32c:sOO8/Q==\r\nx-amz-trailer-signature:{signature}\r\n\r\n")
    };
    let data = vec![b'z'; 10_000];
    let stale = framed(&[(&data, STALE), (b"", STALE)], trailer(STALE).as_bytes());
    let mut s = signer();
    let first = s.sign_chunk(&hex::encode(Sha256::digest(&data)));
    let last = s.sign_chunk(EMPTY_SHA256);
    let signed = s.sign_trailer(b"x-amz-checksum-crc32c:sOO8/Q==\n");
    let want = framed(
        &[(&data, &first), (b"", &last)],
        trailer(&signed).as_bytes(),
    );
    for step in [1, 5, 4096, stale.len()] {
        assert!(resign(&stale, step, true).unwrap() == want, "step {step}");
    }
}

fn refused(body: &[u8], trailer: bool) -> FramingError {
    resign(body, 5, trailer).unwrap_err()
}

#[test]
fn malformed_framing_is_refused_naming_the_problem() {
    let chunk = |head: &str, data: &[u8]| [head.as_bytes(), data, b"\r\n"].concat();
    let header = |size: &str| format!("{size};chunk-signature={STALE}\r\n");
    assert_eq!(
        refused(&chunk(&header("zz"), b""), false),
        FramingError::BadSize { chunk: 0 }
    );
    assert_eq!(
        refused(&chunk("4;chunk-signature=abc\r\n", b"abcd"), false),
        FramingError::BadHeader { chunk: 0 }
    );
    assert_eq!(
        refused(&chunk("4\r\n", b"abcd"), false),
        FramingError::BadHeader { chunk: 0 }
    );
    // Longer than declared: the data runs on where the CRLF should be.
    assert_eq!(
        refused(&chunk(&header("4"), b"abcdef"), false),
        FramingError::MissingCrlf { chunk: 0, size: 4 }
    );
    // Ends early: inside the data, and after the last data chunk without the final one.
    let mut short = chunk(&header("10"), b"abcd");
    short.truncate(short.len() - 2);
    assert_eq!(
        refused(&short, false),
        FramingError::EndedEarly { chunk: 0 }
    );
    assert_eq!(
        refused(&chunk(&header("4"), b"abcd"), false),
        FramingError::EndedEarly { chunk: 1 }
    );
    let mut after = framed(&[(b"", STALE)], b"\r\n");
    after.extend_from_slice(b"more");
    assert_eq!(refused(&after, false), FramingError::DataAfterEnd);
    assert_eq!(
        resign(&chunk(&header("200000"), b""), 64, false).unwrap_err(),
        FramingError::ChunkTooLarge {
            chunk: 0,
            size: 0x20_0000,
            max: 1 << 20
        }
    );
    assert_eq!(
        refused(&vec![b'1'; MAX_LINE + 1], false),
        FramingError::LineTooLong { chunk: 0 }
    );
    let unsigned_trailer = framed(&[(b"", STALE)], b"x-amz-checksum-crc32:AAAAAA==\r\n\r\n");
    assert!(matches!(
        refused(&unsigned_trailer, true),
        FramingError::BadTrailer(_)
    ));
}
