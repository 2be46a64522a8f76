//! What AWS S3 puts in a `SignatureDoesNotMatch` error and s3s does not: the store's own
//! `CanonicalRequest` and `StringToSign`, with `AWSAccessKeyId` and `SignatureProvided`
//! (AWS's element names and order). With them the store's refusal can be explained end to end,
//! as it is against AWS: s3mesh logs its side beside the store's and marks the first line that
//! differs (`tests/test_signature_diagnosis.py`).
//!
//! s3s's verdict stands; only its error document gains the elements. The store's side is
//! rebuilt from the request exactly as this store received it, by the same SigV4 rebuild s3mesh
//! applies to the request it forwarded (`s3mesh_filter::signature_diagnosis::Signed`): the two
//! differ where the request changed between them.

use hyper::header::{AUTHORIZATION, CONTENT_LENGTH};
use hyper::{Request, Response, StatusCode};
use s3mesh_filter::signature_diagnosis::{authorization_field, Forwarded, Signed};
use s3s::Body;

/// A request as this store received it: what its refusal would need to be explained.
pub struct Received {
    /// Pseudo-headers `:method` and `:path`, then every header.
    headers: Vec<(String, String)>,
}

impl Received {
    /// `None` for a request without an `Authorization` header: nothing to explain.
    pub fn of<B>(request: &Request<B>) -> Option<Self> {
        request.headers().get(AUTHORIZATION)?;
        let target = request.uri().path_and_query().map_or("/", |t| t.as_str());
        let mut headers = vec![
            (":method".to_owned(), request.method().as_str().to_owned()),
            (":path".to_owned(), target.to_owned()),
        ];
        headers.extend(request.headers().iter().map(|(name, value)| {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            (name.as_str().to_owned(), value)
        }));
        Some(Self { headers })
    }

    /// `answer`, its error document completed the AWS way when it refuses the signature.
    pub fn complete(self, mut answer: Response<Body>) -> Response<Body> {
        if answer.status() != StatusCode::FORBIDDEN {
            return answer;
        }
        let Some(document) = answer.body().bytes() else {
            return answer;
        };
        let Ok(document) = std::str::from_utf8(&document) else {
            return answer;
        };
        let Some(end) = document
            .contains("<Code>SignatureDoesNotMatch</Code>")
            .then(|| document.rfind("</Error>"))
            .flatten()
        else {
            return answer;
        };
        let forwarded = Forwarded::as_received(self.headers);
        let Some(signed) = Signed::rebuild(&forwarded) else {
            return answer;
        };
        let authorization = forwarded.header("authorization").unwrap_or_default();
        let field = |key: &str| authorization_field(authorization, key).unwrap_or_default();
        let key_id = field("Credential=").split('/').next().unwrap_or_default();
        let mut completed = document[..end].to_owned();
        for (name, text) in [
            ("AWSAccessKeyId", key_id),
            ("StringToSign", &signed.string_to_sign),
            ("SignatureProvided", field("Signature=")),
            ("CanonicalRequest", &signed.canonical_request),
        ] {
            completed.push_str(&format!("<{name}>{}</{name}>", escape(text)));
        }
        completed.push_str(&document[end..]);
        answer
            .headers_mut()
            .insert(CONTENT_LENGTH, completed.len().into());
        *answer.body_mut() = Body::from(completed);
        answer
    }
}

/// `text` as XML character data.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
