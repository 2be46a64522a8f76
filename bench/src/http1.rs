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
