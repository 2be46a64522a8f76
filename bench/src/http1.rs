//! Minimal HTTP/1.1 message reading for the benchmark tools.

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt};

/// A request or response head.
#[derive(Debug, Default, Clone)]
pub struct Head {
    /// Request line or status line.
    pub start: String,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
}

impl Head {
    /// First value of header `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// `content-length`, 0 when absent.
    pub fn content_length(&self) -> u64 {
        self.header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// Whether the body is sent with `transfer-encoding: chunked`.
    pub fn chunked(&self) -> bool {
        self.header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    }

    /// Whether the peer asked to close the connection.
    pub fn closes(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }

    /// The status code of a response head.
    pub fn status(&self) -> u16 {
        self.start
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }
}

/// Reads a head; `Ok(None)` at a clean end of stream.
pub async fn read_head<R: AsyncBufRead + Unpin>(r: &mut R) -> std::io::Result<Option<Head>> {
    let mut line = String::new();
    if r.read_line(&mut line).await? == 0 {
        return Ok(None);
    }
    let mut head = Head {
        start: line.trim_end().to_owned(),
        headers: Vec::new(),
    };
    loop {
        line.clear();
        if r.read_line(&mut line).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let l = line.trim_end();
        if l.is_empty() {
            return Ok(Some(head));
        }
        if let Some((n, v)) = l.split_once(':') {
            head.headers
                .push((n.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
}

/// Reads and discards `len` body bytes.
pub async fn skip_body<R: AsyncBufRead + Unpin>(r: &mut R, len: u64) -> std::io::Result<()> {
    let copied = tokio::io::copy(&mut r.take(len), &mut tokio::io::sink()).await?;
    if copied < len {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}

/// Reads and discards the body that `head` announces: chunked, or `content-length` bytes.
pub async fn skip_message_body<R: AsyncBufRead + Unpin>(
    r: &mut R,
    head: &Head,
) -> std::io::Result<()> {
    if !head.chunked() {
        return skip_body(r, head.content_length()).await;
    }
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let digits = line.trim_end().split(';').next().unwrap_or_default();
        let size = u64::from_str_radix(digits.trim(), 16)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "bad chunk size"))?;
        if size == 0 {
            break;
        }
        skip_body(r, size + 2).await?;
    }
    // Trailers, up to the blank line.
    loop {
        line.clear();
        if r.read_line(&mut line).await? == 0 || line.trim_end().is_empty() {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn chunked_and_sized_bodies_are_skipped_to_the_next_message() {
        let wire: &[u8] = b"PUT / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n\
            5;ext=1\r\nhello\r\n3\r\nabc\r\n0\r\nx-trailer: 1\r\n\r\n\
            PUT / HTTP/1.1\r\ncontent-length: 2\r\n\r\nokGET /next HTTP/1.1\r\n\r\n";
        let mut r = tokio::io::BufReader::new(wire);
        for _ in 0..2 {
            let head = read_head(&mut r).await.unwrap().unwrap();
            skip_message_body(&mut r, &head).await.unwrap();
        }
        let next = read_head(&mut r).await.unwrap().unwrap();
        assert_eq!(next.start, "GET /next HTTP/1.1");
    }
}
