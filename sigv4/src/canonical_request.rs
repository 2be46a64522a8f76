//! The canonical request: method, canonical URI, canonical query string, canonical headers,
//! signed header names and payload hash, joined by newlines.

use sha2::{Digest, Sha256};

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
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        names.join(";")
    }

    /// Hex SHA-256 of the canonical request: the last line of the string to sign.
    pub fn hash(&self) -> String {
        hex::encode(Sha256::digest(self.to_string().as_bytes()))
    }
}

impl std::fmt::Display for CanonicalRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{}", self.method)?;
        writeln!(f, "{}", self.canonical_uri)?;
        writeln!(f, "{}", self.canonical_query)?;
        for (name, value) in &self.headers {
            writeln!(f, "{name}:{value}")?;
        }
        writeln!(f)?;
        writeln!(f, "{}", self.signed_headers())?;
        write!(f, "{}", self.payload_hash)
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

/// Trims leading and trailing white space and folds inner runs of spaces into one.
fn trim_value(v: &str) -> String {
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
    fn object_keys_are_not_normalized() {
        let cr = CanonicalRequest::new("GET", "/b//a/./c+d", "", &[], "x").unwrap();
        assert!(cr.to_string().starts_with("GET\n/b//a/./c%2Bd\n"));
    }
}
