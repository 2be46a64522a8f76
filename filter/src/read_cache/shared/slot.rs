//! A slot's value: one answer, with the fill's token and the identity of the request it
//! answers. A reader serves it only if both are what the index named: a slot reused since the
//! reader read the index, or a hash that collided, reads as a miss, never as another answer.

use super::wire::{Reader, Writer};
use crate::read_cache::{Answer, Cacheable};

/// The slot's format; another format's value reads as a miss.
const FORMAT: u8 = 1;

/// The value of the slot holding `answer` to `cacheable`, filled under `token`.
pub(super) fn encode(token: u64, cacheable: &Cacheable, answer: &Answer) -> Vec<u8> {
    let mut w = Writer::default();
    w.u8(FORMAT);
    w.u64(token);
    let (object, variant) = (&cacheable.object, &cacheable.variant);
    w.str(&object.bucket);
    w.bytes(&object.key);
    w.str(&variant.key_id);
    w.u8(u8::from(variant.head));
    w.opt_str(variant.version.as_deref());
    w.opt_str(variant.range.as_deref());
    w.u16(answer.status);
    w.u16(u16::try_from(answer.headers.len()).unwrap_or(u16::MAX));
    for (name, value) in &answer.headers {
        w.str(name);
        w.str(value);
    }
    w.bytes(&answer.body);
    w.finish()
}

/// The token of the fill that wrote `value`; `None` for an empty slot.
pub(super) fn token(value: &[u8]) -> Option<u64> {
    let mut r = Reader::new(value);
    (r.u8()? == FORMAT).then_some(())?;
    r.u64()
}

/// The answer in `value` if it was filled under `token` and answers `cacheable`.
pub(super) fn decode(value: &[u8], token: u64, cacheable: &Cacheable) -> Option<Answer> {
    let mut r = Reader::new(value);
    if r.u8()? != FORMAT || r.u64()? != token {
        return None;
    }
    let (object, variant) = (&cacheable.object, &cacheable.variant);
    let same = r.str()? == object.bucket
        && r.bytes()? == object.key
        && r.str()? == variant.key_id
        && r.bool()? == variant.head
        && r.opt_str()? == variant.version.as_deref()
        && r.opt_str()? == variant.range.as_deref();
    if !same {
        return None;
    }
    let status = r.u16()?;
    let count = r.u16()?;
    let headers = (0..count)
        .map(|_| Some((r.str()?.to_owned(), r.str()?.to_owned())))
        .collect::<Option<Vec<_>>>()?;
    let body = r.bytes()?.to_vec();
    r.end()?;
    Some(Answer {
        status,
        headers,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::read_cache::request::{ObjectId, Variant};

    fn cacheable(key_id: &str, range: Option<&str>) -> Cacheable {
        Cacheable {
            object: ObjectId {
                bucket: "b".into(),
                key: b"k\xff".to_vec(),
            },
            variant: Variant {
                key_id: key_id.into(),
                head: false,
                version: None,
                range: range.map(str::to_owned),
            },
            ttl_ms: 1_000,
        }
    }

    #[test]
    fn a_slot_answers_only_the_token_and_request_it_was_filled_for() {
        let answer = Answer {
            status: 206,
            headers: vec![("etag".into(), "\"e\"".into())],
            body: b"body".to_vec(),
        };
        let filled = cacheable("AKID", Some("bytes=0-3"));
        let value = encode(9, &filled, &answer);
        assert_eq!(decode(&value, 9, &filled), Some(answer));
        assert_eq!((token(&value), token(&[])), (Some(9), None));
        assert_eq!(decode(&value, 8, &filled), None, "another fill's token");
        for other in [
            cacheable("OTHER", Some("bytes=0-3")),
            cacheable("AKID", Some("bytes=0-4")),
            cacheable("AKID", None),
        ] {
            assert_eq!(decode(&value, 9, &other), None, "{other:?}");
        }
        assert_eq!(decode(&value[..value.len() - 1], 9, &filled), None);
        assert_eq!(decode(&[], 9, &filled), None, "an emptied slot");
    }
}
