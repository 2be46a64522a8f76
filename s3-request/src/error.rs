//! S3-style XML error responses: what every refusal of s3mesh looks like to a client.

/// An error as S3 clients expect it: an HTTP status and an `<Error>` document whose `Code` the
/// SDKs map to exceptions and whose `Message` tells a person what to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Error {
    /// HTTP status code.
    pub status: u16,
    /// S3 error code, e.g. `AccessDenied`, `InvalidRequest`, `InvalidURI`.
    pub code: &'static str,
    /// Human-readable reason. Must never contain a secret.
    pub message: String,
}

impl S3Error {
    /// 403 `AccessDenied`.
    pub fn access_denied(message: impl Into<String>) -> Self {
        Self {
            status: 403,
            code: "AccessDenied",
            message: message.into(),
        }
    }

    /// 400 `InvalidRequest`.
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self {
            status: 400,
            code: "InvalidRequest",
            message: message.into(),
        }
    }

    /// 400 `InvalidURI`.
    pub fn invalid_uri(message: impl Into<String>) -> Self {
        Self {
            status: 400,
            code: "InvalidURI",
            message: message.into(),
        }
    }

    /// 503 `ServiceUnavailable`: s3mesh cannot decide now; the client may retry.
    pub fn service_unavailable(message: impl Into<String>) -> Self {
        Self {
            status: 503,
            code: "ServiceUnavailable",
            message: message.into(),
        }
    }

    /// 500 `InternalError`: s3mesh itself failed; nothing was sent to the store.
    pub fn internal_error(message: impl Into<String>) -> Self {
        Self {
            status: 500,
            code: "InternalError",
            message: message.into(),
        }
    }

    /// The XML body, naming the resource and the request id so a report can be traced.
    pub fn to_xml(&self, resource: &str, request_id: &str) -> String {
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{}</Code><Message>{}</Message>\
             <Resource>{}</Resource><RequestId>{}</RequestId></Error>",
            self.code,
            xml_escape(&self.message),
            xml_escape(resource),
            xml_escape(request_id)
        )
    }
}

fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() => out.push_str(&format!("&#x{:X};", u32::from(c))),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_escaped_xml() {
        let xml = S3Error::access_denied("bucket <b> & \"c\"").to_xml("/b/k", "r-1");
        assert!(xml.contains("<Code>AccessDenied</Code>"));
        assert!(xml.contains("<Message>bucket &lt;b&gt; &amp; &quot;c&quot;</Message>"));
        assert!(xml.contains("<Resource>/b/k</Resource><RequestId>r-1</RequestId>"));
    }
}
