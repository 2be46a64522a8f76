//! The canonical request: method, canonical URI, canonical query string, canonical headers,
//! signed header names and payload hash, joined by newlines.

use sha2::{Digest, Sha256};

use crate::hex_digest::hex;
use crate::uri_encoding::{self, DecodeError, Slash};

/// A request reduced to exactly the parts SigV4 signs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalRequest {
    method: String,
    canonical_uri: String,
    canonical_query: String,
    /// Lower-case names with trimmed values, sorted by name.
    headers: Vec<(String, String)>,
    payload_hash: String,
}

impl CanonicalRequest {
    /// Builds the canonical request.
    ///
    /// `path` and `query` are as they appear on the wire (percent-encoded); they are decoded and
    /// re-encoded once, the S3 way (no dot-segment removal, no slash merging: object keys are
    /// never normalized). `headers` are the headers to sign, in any order and case; repeated
    /// names are joined with commas as SigV4 requires.
    pub fn new(
        method: &str,
        path: &str,
        query: &str,
        headers: &[(&str, &str)],
        payload_hash: &str,
    ) -> Result<Self, DecodeError> {
        let canonical_uri = if path.is_empty() {
            "/".to_owned()
        } else {
            uri_encoding::canonicalize(path, Slash::Keep)?
        };
        Ok(Self {
            method: method.to_ascii_uppercase(),
            canonical_uri,
            canonical_query: canonical_query(query)?,
            headers: canonical_headers(headers),
            payload_hash: payload_hash.to_owned(),
        })
    }

    /// `host;x-amz-content-sha256;x-amz-date`: the names that were signed, sorted.
    pub fn signed_headers(&self) -> String {
        let mut names = String::with_capacity(64);
        self.push_signed_headers(&mut names);
        names
    }

    /// Appends [`Self::signed_headers`] to `out`, without a string of its own.
    fn push_signed_headers(&self, out: &mut String) {
        for (i, (name, _)) in self.headers.iter().enumerate() {
            if i > 0 {
                out.push(';');
            }
            out.push_str(name);
        }
    }

    /// Hex SHA-256 of the canonical request: the last line of the string to sign.
    pub fn hash(&self) -> String {
        hex(&Sha256::digest(self.text().as_bytes()))
    }

    /// The lines joined by newlines, appended piece by piece: this runs for every signed
    /// request, and the formatting machinery costs more than the copying.
    fn text(&self) -> String {
        let mut out = String::with_capacity(512);
        for line in [&self.method, &self.canonical_uri, &self.canonical_query] {
            out.push_str(line);
            out.push('\n');
        }
        for (name, value) in &self.headers {
            out.push_str(name);
            out.push(':');
            out.push_str(value);
            out.push('\n');
        }
        out.push('\n');
        self.push_signed_headers(&mut out);
        out.push('\n');
        out.push_str(&self.payload_hash);
        out
    }
}

impl std::fmt::Display for CanonicalRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text())
    }
}

/// Sorted `name=value` pairs, each side encoded once with `/` encoded; a parameter without `=`
/// gets an empty value.
pub fn canonical_query(query: &str) -> Result<String, DecodeError> {
    let mut pairs = Vec::new();
    for param in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = param.split_once('=').unwrap_or((param, ""));
        pairs.push((
            uri_encoding::canonicalize(name, Slash::Encode)?,
            uri_encoding::canonicalize(value, Slash::Encode)?,
        ));
    }
    pairs.sort();
    let joined: Vec<String> = pairs.into_iter().map(|(n, v)| format!("{n}={v}")).collect();
    Ok(joined.join("&"))
}

fn canonical_headers(headers: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::with_capacity(headers.len());
    let mut sorted: Vec<(String, String)> = headers
        .iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), trim_value(v)))
        .collect();
    // Stable sort: values of a repeated header keep the order in which they were sent.
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, value) in sorted {
        match out.last_mut() {
            Some((last, joined)) if *last == name => {
                joined.push(',');
                joined.push_str(&value);
            }
            _ => out.push((name, value)),
        }
    }
    out
}

/// Trims leading and trailing white space and folds inner runs of spaces into one. A value
/// with nothing to trim or fold (nearly all) is copied as it is.
fn trim_value(v: &str) -> String {
    let nothing_to_fold = !v.starts_with(' ')
        && !v.ends_with(' ')
        && !v.contains("  ")
        && !v.contains(|c: char| c.is_whitespace() && c != ' ');
    if nothing_to_fold {
        return v.to_owned();
    }
    v.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_is_sorted_and_encoded_once() {
        assert_eq!(
            canonical_query("prefix=a%2Fb&list-type=2&uploads").unwrap(),
            "list-type=2&prefix=a%2Fb&uploads="
        );
        assert_eq!(canonical_query("prefix=a/b c").unwrap(), "prefix=a%2Fb%20c");
        assert_eq!(canonical_query("").unwrap(), "");
    }

    #[test]
    fn headers_are_lowercased_trimmed_sorted_and_joined() {
        let cr = CanonicalRequest::new(
            "get",
            "/",
            "",
            &[
                ("My-Header1", " a   b "),
                ("host", "h"),
                ("my-header1", "c"),
            ],
            "UNSIGNED-PAYLOAD",
        )
        .unwrap();
        assert_eq!(cr.signed_headers(), "host;my-header1");
        assert_eq!(
            cr.to_string(),
            "GET\n/\n\nhost:h\nmy-header1:a b,c\n\nhost;my-header1\nUNSIGNED-PAYLOAD"
        );
    }

    #[test]
    fn values_are_folded_only_where_needed() {
        assert_eq!(trim_value("a b"), "a b");
        assert_eq!(trim_value("a\tb"), "a b");
        assert_eq!(trim_value("a  b "), "a b");
        assert_eq!(trim_value(" "), "");
    }

    #[test]
    fn object_keys_are_not_normalized() {
        let cr = CanonicalRequest::new("GET", "/b//a/./c+d", "", &[], "x").unwrap();
        assert!(cr.to_string().starts_with("GET\n/b//a/./c%2Bd\n"));
    }
}
