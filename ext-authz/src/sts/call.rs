//! One STS call: `AssumeRole` (signed with SigV4 by the base credentials) or
//! `AssumeRoleWithWebIdentity` (the token is the proof, the call is unsigned), as the
//! form-encoded POST every STS accepts (AWS, MinIO, Ceph RGW), and the session read from its
//! XML answer. Building the request and reading the answer are plain functions; only
//! [`Client::send`] does I/O.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use quick_xml::events::Event;
use s3mesh_sigv4::{AmzDate, Credentials, SigningParams};
use sha2::{Digest, Sha256};

/// The STS API version every implementation answers.
const VERSION: &str = "2011-06-15";
/// The longest an STS call may take before the caller's request fails over to what is cached.
const TIMEOUT: Duration = Duration::from_secs(5);
/// Largest answer read: an STS answer is about 1-2 KiB.
const MAX_ANSWER: usize = 64 * 1024;

/// How a session is asked for.
#[derive(Debug, Clone)]
pub enum Proof {
    /// `AssumeRole`, signed with these credentials.
    Base(Credentials),
    /// `AssumeRoleWithWebIdentity` with this token (read from the token file just before).
    WebIdentity(String),
}

/// One call to make.
#[derive(Debug, Clone)]
pub struct Ask<'a> {
    /// The STS URL.
    pub endpoint: &'a str,
    /// Region the call is signed for.
    pub region: &'a str,
    /// The role to assume.
    pub role_arn: &'a str,
    /// `RoleSessionName`.
    pub session_name: &'a str,
    /// `DurationSeconds`.
    pub duration_seconds: u64,
    /// The session policy, JSON.
    pub policy: Option<&'a str>,
    /// How the caller proves it may assume the role.
    pub proof: &'a Proof,
}

/// Temporary credentials and when they stop working.
#[derive(Debug, Clone)]
pub struct Session {
    /// Key id, secret and session token.
    pub credentials: Credentials,
    /// `Expiration` as STS stated it.
    pub expires_at: SystemTime,
}

/// Why no session was had. Every kind is the store's side or the network's: the client gets
/// `503` while no cached session remains.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StsError {
    /// No answer: connection refused, timeout, TLS failure.
    #[error("STS at {endpoint} did not answer: {reason}")]
    Unreachable {
        /// The STS URL.
        endpoint: String,
        /// The transport's error.
        reason: String,
    },
    /// STS answered with an error.
    #[error("STS at {endpoint} refused {action} ({status} {code}: {message})")]
    Refused {
        /// The STS URL.
        endpoint: String,
        /// `AssumeRole` or `AssumeRoleWithWebIdentity`.
        action: &'static str,
        /// HTTP status.
        status: u16,
        /// STS's error code, e.g. `AccessDenied`.
        code: String,
        /// STS's message.
        message: String,
    },
    /// A success that does not hold credentials.
    #[error("STS at {endpoint} answered {action} without usable credentials: {problem}")]
    Malformed {
        /// The STS URL.
        endpoint: String,
        /// The action.
        action: &'static str,
        /// What is missing.
        problem: String,
    },
    /// The web identity token file could not be read.
    #[error("cannot read the web identity token file {path}: {reason}")]
    Token {
        /// The file.
        path: String,
        /// The I/O error.
        reason: String,
    },
}

impl StsError {
    /// The error's kind, as metrics name it.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Unreachable { .. } => "unreachable",
            Self::Refused { .. } => "refused",
            Self::Malformed { .. } => "malformed",
            Self::Token { .. } => "token",
        }
    }
}

impl Ask<'_> {
    fn action(&self) -> &'static str {
        match self.proof {
            Proof::Base(_) => "AssumeRole",
            Proof::WebIdentity(_) => "AssumeRoleWithWebIdentity",
        }
    }

    /// The form body.
    fn body(&self) -> String {
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("Action", self.action())
            .append_pair("Version", VERSION)
            .append_pair("RoleArn", self.role_arn)
            .append_pair("RoleSessionName", self.session_name)
            .append_pair("DurationSeconds", &self.duration_seconds.to_string());
        if let Some(policy) = self.policy {
            form.append_pair("Policy", policy);
        }
        if let Proof::WebIdentity(token) = self.proof {
            form.append_pair("WebIdentityToken", token);
        }
        form.finish()
    }

    /// The HTTP request at `now`: signed for service `sts` with the base credentials, or
    /// unsigned with a web identity.
    pub fn request(&self, now: SystemTime) -> Result<http::Request<Full<Bytes>>, StsError> {
        let uri: http::Uri = self.endpoint.parse().map_err(|e| self.unreachable(&e))?;
        let authority = uri
            .authority()
            .map(|a| a.as_str().to_owned())
            .unwrap_or_default();
        let path = uri.path().to_owned();
        let body = self.body();
        let mut headers: Vec<(&str, String)> = vec![
            ("host", authority),
            (
                "content-type",
                "application/x-www-form-urlencoded; charset=utf-8".to_owned(),
            ),
        ];
        if let Proof::Base(credentials) = self.proof {
            let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
            let time = AmzDate::from_unix_seconds(secs);
            let payload_hash = hex::encode(Sha256::digest(body.as_bytes()));
            headers.push(("x-amz-date", time.date_time()));
            headers.push(("x-amz-content-sha256", payload_hash.clone()));
            if let Some(token) = &credentials.session_token {
                headers.push(("x-amz-security-token", token.clone()));
            }
            let signed: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
            let params = SigningParams {
                region: self.region,
                service: "sts",
                time,
            };
            let signature = s3mesh_sigv4::sign(
                "POST",
                &path,
                "",
                &signed,
                &payload_hash,
                credentials,
                &params,
            )
            .map_err(|e| self.unreachable(&e))?;
            headers.push(("authorization", signature.authorization));
        }
        let mut builder = http::Request::post(uri);
        for (name, value) in headers {
            builder = builder.header(name, value);
        }
        builder
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| self.unreachable(&e))
    }

    fn unreachable(&self, reason: &dyn std::fmt::Display) -> StsError {
        StsError::Unreachable {
            endpoint: self.endpoint.to_owned(),
            reason: reason.to_string(),
        }
    }

    /// Reads STS's answer: the session, or the error it names.
    pub fn answer(&self, status: u16, body: &[u8]) -> Result<Session, StsError> {
        let fields = xml_fields(body);
        let field = |name: &str| {
            fields
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        if !(200..300).contains(&status) {
            return Err(StsError::Refused {
                endpoint: self.endpoint.to_owned(),
                action: self.action(),
                status,
                code: field("Code").unwrap_or_else(|| "-".to_owned()),
                message: field("Message").unwrap_or_else(|| "no message".to_owned()),
            });
        }
        let malformed = |problem: &str| StsError::Malformed {
            endpoint: self.endpoint.to_owned(),
            action: self.action(),
            problem: problem.to_owned(),
        };
        let required = |name: &str| {
            field(name)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| malformed(&format!("no {name}")))
        };
        let expiration = required("Expiration")?;
        let expires_at = expiration
            .parse::<jiff::Timestamp>()
            .ok()
            .and_then(|t| u64::try_from(t.as_second()).ok())
            .map(|secs| UNIX_EPOCH + Duration::from_secs(secs))
            .ok_or_else(|| {
                malformed(&format!(
                    "Expiration {expiration:?} is not an ISO 8601 time"
                ))
            })?;
        Ok(Session {
            credentials: Credentials {
                access_key_id: required("AccessKeyId")?,
                secret_access_key: required("SecretAccessKey")?,
                session_token: Some(required("SessionToken")?),
            },
            expires_at,
        })
    }
}

/// Every leaf element's local name and text, in document order (STS answers are flat enough
/// that the names `AccessKeyId`, `Expiration`, `Code`, `Message` are unique in them).
fn xml_fields(body: &[u8]) -> Vec<(String, String)> {
    let mut reader = quick_xml::Reader::from_reader(body);
    let mut fields = Vec::new();
    let mut open: Option<String> = None;
    let mut buf = Vec::new();
    loop {
        match reader.read_event_into(&mut buf) {
            Ok(Event::Start(start)) => {
                open = Some(String::from_utf8_lossy(start.local_name().as_ref()).into_owned());
            }
            Ok(Event::Text(text)) => {
                if let (Some(name), Ok(value)) = (&open, text.decode()) {
                    fields.push((name.clone(), value.trim().to_owned()));
                }
            }
            Ok(Event::End(_)) => open = None,
            Ok(Event::Eof) | Err(_) => break,
            Ok(_) => {}
        }
        buf.clear();
    }
    fields
}

/// The HTTP(S) client STS calls go through (system roots for `https://`).
#[derive(Clone, Debug)]
pub struct Client(
    hyper_util::client::legacy::Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
);

impl Client {
    /// A client trusting the system's root certificates.
    pub fn new() -> std::io::Result<Self> {
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Self(
            hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build(connector),
        ))
    }

    /// Makes the call `ask` at `now`.
    pub async fn send(&self, ask: &Ask<'_>, now: SystemTime) -> Result<Session, StsError> {
        let request = ask.request(now)?;
        let exchange = async {
            let response = self
                .0
                .request(request)
                .await
                .map_err(|e| ask.unreachable(&e))?;
            let status = response.status().as_u16();
            let body = http_body_util::Limited::new(response.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| ask.unreachable(&e))?
                .to_bytes();
            Ok::<_, StsError>((status, body))
        };
        let (status, body) = tokio::time::timeout(TIMEOUT, exchange)
            .await
            .map_err(|_| ask.unreachable(&format!("no answer within {} s", TIMEOUT.as_secs())))??;
        ask.answer(status, &body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Proof {
        Proof::Base(Credentials {
            access_key_id: "AKIDBASE".into(),
            secret_access_key: "base-secret-not-real".into(),
            session_token: None,
        })
    }

    fn ask(proof: &Proof) -> Ask<'_> {
        Ask {
            endpoint: "https://sts.example.com/",
            region: "us-east-1",
            role_arn: "arn:aws:iam::123456789012:role/s3mesh",
            session_name: "team-a-0011aabb",
            duration_seconds: 900,
            policy: Some(r#"{"Version":"2012-10-17"}"#),
            proof,
        }
    }

    #[test]
    fn assume_role_is_a_signed_form_post() {
        let proof = base();
        let request = ask(&proof)
            .request(UNIX_EPOCH + Duration::from_secs(1_700_000_000))
            .unwrap();
        assert_eq!(request.method(), "POST");
        let headers = request.headers();
        let authorization = headers["authorization"].to_str().unwrap();
        assert!(
            authorization.starts_with(
                "AWS4-HMAC-SHA256 Credential=AKIDBASE/20231114/us-east-1/sts/aws4_request, "
            ) || authorization.starts_with(
                "AWS4-HMAC-SHA256 Credential=AKIDBASE/20231114/us-east-1/sts/aws4_request,"
            ),
            "{authorization}"
        );
        assert!(
            authorization
                .contains("SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date"),
            "{authorization}"
        );
        assert_eq!(headers["host"], "sts.example.com");
        let body = ask(&proof).body();
        assert!(body.starts_with("Action=AssumeRole&Version=2011-06-15&RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fs3mesh&RoleSessionName=team-a-0011aabb&DurationSeconds=900&Policy="), "{body}");
        assert!(!format!("{request:?}").contains("base-secret-not-real"));
    }

    #[test]
    fn web_identity_is_unsigned_and_carries_the_token() {
        let proof = Proof::WebIdentity("eyJtoken".into());
        let request = ask(&proof).request(UNIX_EPOCH).unwrap();
        assert!(request.headers().get("authorization").is_none());
        let body = ask(&proof).body();
        assert!(
            body.starts_with("Action=AssumeRoleWithWebIdentity&"),
            "{body}"
        );
        assert!(body.ends_with("&WebIdentityToken=eyJtoken"), "{body}");
    }

    /// The answer's shape from AWS's `AssumeRole` API reference.
    #[test]
    fn reads_the_session_from_an_answer() {
        let body = br#"<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleResult>
    <SourceIdentity>Alice</SourceIdentity>
    <AssumedRoleUser>
      <Arn>arn:aws:sts::123456789012:assumed-role/demo/TestAR</Arn>
      <AssumedRoleId>ARO123EXAMPLE123:TestAR</AssumedRoleId>
    </AssumedRoleUser>
    <Credentials>
      <AccessKeyId>ASIAIOSFODNN7EXAMPLE</AccessKeyId>
      <SecretAccessKey>wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY</SecretAccessKey>
      <SessionToken>AQoDYXdzEPT//////////wEXAMPLEtc764</SessionToken>
      <Expiration>2019-10-02T17:47:16Z</Expiration>
    </Credentials>
    <PackedPolicySize>8</PackedPolicySize>
  </AssumeRoleResult>
  <ResponseMetadata><RequestId>c6104cbe-af31-11e0-8154-cbc7ccf896c7</RequestId></ResponseMetadata>
</AssumeRoleResponse>"#;
        let proof = base();
        let session = ask(&proof).answer(200, body).unwrap();
        assert_eq!(session.credentials.access_key_id, "ASIAIOSFODNN7EXAMPLE");
        assert_eq!(
            session.credentials.session_token.as_deref(),
            Some("AQoDYXdzEPT//////////wEXAMPLEtc764")
        );
        assert_eq!(
            session.expires_at,
            UNIX_EPOCH + Duration::from_secs(1_570_038_436)
        );
    }

    #[test]
    fn an_error_answer_names_code_and_message() {
        let body = br#"<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <Error><Type>Sender</Type><Code>AccessDenied</Code><Message>User is not authorized to perform: sts:AssumeRole</Message></Error>
  <RequestId>1</RequestId></ErrorResponse>"#;
        let proof = base();
        let error = ask(&proof).answer(403, body).unwrap_err();
        assert_eq!(
            error.to_string(),
            "STS at https://sts.example.com/ refused AssumeRole (403 AccessDenied: User is not authorized to perform: sts:AssumeRole)"
        );
        let empty = ask(&proof)
            .answer(200, b"<AssumeRoleResponse/>")
            .unwrap_err();
        assert!(empty.to_string().contains("no Expiration"), "{empty}");
    }
}
