//! The byte layout of the shared cache's values: little-endian integers, strings and byte
//! strings after their `u32` length. A reader that meets anything malformed gives `None`, and
//! the value counts as absent.

/// Builds one value.
#[derive(Default)]
pub(super) struct Writer(Vec<u8>);

impl Writer {
    pub(super) fn u8(&mut self, value: u8) {
        self.0.push(value);
    }

    pub(super) fn u16(&mut self, value: u16) {
        self.0.extend_from_slice(&value.to_le_bytes());
    }

    pub(super) fn u64(&mut self, value: u64) {
        self.0.extend_from_slice(&value.to_le_bytes());
    }

    pub(super) fn f64(&mut self, value: f64) {
        self.u64(value.to_bits());
    }

    pub(super) fn bytes(&mut self, value: &[u8]) {
        // Values are bounded far below 4 GiB (an answer by `max_entry_bytes`).
        self.0
            .extend_from_slice(&u32::try_from(value.len()).unwrap_or(u32::MAX).to_le_bytes());
        self.0.extend_from_slice(value);
    }

    pub(super) fn str(&mut self, value: &str) {
        self.bytes(value.as_bytes());
    }

    pub(super) fn opt_str(&mut self, value: Option<&str>) {
        match value {
            None => self.u8(0),
            Some(value) => {
                self.u8(1);
                self.str(value);
            }
        }
    }

    pub(super) fn opt_u64(&mut self, value: Option<u64>) {
        match value {
            None => self.u8(0),
            Some(value) => {
                self.u8(1);
                self.u64(value);
            }
        }
    }

    pub(super) fn finish(self) -> Vec<u8> {
        self.0
    }
}

/// Reads one value front to back.
pub(super) struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    pub(super) fn new(value: &'a [u8]) -> Self {
        Self(value)
    }

    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }

    pub(super) fn u8(&mut self) -> Option<u8> {
        self.take::<1>().map(|[b]| b)
    }

    pub(super) fn u16(&mut self) -> Option<u16> {
        self.take().map(u16::from_le_bytes)
    }

    pub(super) fn u64(&mut self) -> Option<u64> {
        self.take().map(u64::from_le_bytes)
    }

    pub(super) fn f64(&mut self) -> Option<f64> {
        self.u64().map(f64::from_bits)
    }

    pub(super) fn bool(&mut self) -> Option<bool> {
        match self.u8()? {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        }
    }

    pub(super) fn bytes(&mut self) -> Option<&'a [u8]> {
        let len = usize::try_from(u32::from_le_bytes(self.take()?)).ok()?;
        if len > self.0.len() {
            return None;
        }
        let (value, rest) = self.0.split_at(len);
        self.0 = rest;
        Some(value)
    }

    pub(super) fn str(&mut self) -> Option<&'a str> {
        std::str::from_utf8(self.bytes()?).ok()
    }

    pub(super) fn opt_str(&mut self) -> Option<Option<&'a str>> {
        match self.bool()? {
            false => Some(None),
            true => self.str().map(Some),
        }
    }

    pub(super) fn opt_u64(&mut self) -> Option<Option<u64>> {
        match self.bool()? {
            false => Some(None),
            true => self.u64().map(Some),
        }
    }

    /// `Some` if the whole value was read.
    pub(super) fn end(self) -> Option<()> {
        self.0.is_empty().then_some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_written_reads_back_and_a_cut_value_does_not() {
        let mut w = Writer::default();
        w.u8(7);
        w.u16(513);
        w.u64(u64::MAX - 1);
        w.f64(1.5);
        w.bytes(b"\x00\xff");
        w.str("k\u{e9}y");
        w.opt_str(None);
        w.opt_str(Some(""));
        w.opt_u64(Some(9));
        let value = w.finish();
        let read = |value: &[u8]| {
            let mut r = Reader::new(value);
            let out = (
                r.u8()?,
                r.u16()?,
                r.u64()?,
                r.f64()?,
                r.bytes()?.to_vec(),
                r.str()?.to_owned(),
                r.opt_str()?.map(str::to_owned),
                r.opt_str()?.map(str::to_owned),
                r.opt_u64()?,
            );
            r.end().map(|()| out)
        };
        assert_eq!(
            read(&value),
            Some((
                7,
                513,
                u64::MAX - 1,
                1.5,
                vec![0, 255],
                "k\u{e9}y".to_owned(),
                None,
                Some(String::new()),
                Some(9)
            ))
        );
        for cut in 0..value.len() {
            assert_eq!(read(&value[..cut]), None, "cut at {cut}");
        }
        let mut longer = value.clone();
        longer.push(0);
        assert_eq!(read(&longer), None, "a byte too many");
        assert_eq!(Reader::new(&[2]).bool(), None);
        assert_eq!(Reader::new(&[9, 0, 0, 0, b'x']).bytes(), None);
    }
}
