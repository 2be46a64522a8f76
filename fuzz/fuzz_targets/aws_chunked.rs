//! Arbitrary aws-chunked bodies, cut at arbitrary points, through the chunk re-signer: never a
//! panic, never more than one chunk held, and a body it accepts keeps its length exactly.
#![no_main]

use libfuzzer_sys::fuzz_target;
use s3mesh_sigv4::aws_chunked::{ChunkSigner, Resigner};
use s3mesh_sigv4::SigningKey;

const MAX_CHUNK: u64 = 4096;

fuzz_target!(|input: (bool, Vec<u16>, Vec<u8>)| {
    let (trailer, cuts, body) = input;
    let key = SigningKey::from_hex(&"11".repeat(32)).expect("a valid key");
    let signer = ChunkSigner::new(key, "20130524T000000Z", "20130524/us-east-1/s3/aws4_request", &"0".repeat(64));
    let mut resigner = Resigner::new(signer, trailer, MAX_CHUNK);
    let mut out = Vec::new();
    let mut rest = body.as_slice();
    let mut ok = true;
    for cut in cuts.iter().chain(std::iter::once(&u16::MAX)) {
        let (piece, tail) = rest.split_at((*cut as usize).min(rest.len()));
        rest = tail;
        if resigner.push(piece, &mut out).is_err() {
            ok = false;
            break;
        }
        assert!(resigner.held() as u64 <= MAX_CHUNK + 4096 + 2, "more than one chunk held");
    }
    assert!(out.len() <= body.len());
    if ok && rest.is_empty() && resigner.finish().is_ok() {
        assert_eq!(out.len(), body.len(), "an accepted body keeps its length");
    }
});
