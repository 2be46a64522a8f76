//! The `sts:` section of a profile: where and how its temporary credentials are obtained.

use std::path::PathBuf;

use serde::Deserialize;

/// Shortest session accepted. AWS STS, MinIO and Ceph RGW refuse less than 900 s (their error
/// then names the limit); shorter sessions are for stores that allow them, such as tests.
pub const MIN_DURATION_SECONDS: u64 = 10;
/// Longest session any STS issues (AWS: 12 h, for roles configured so).
pub const MAX_DURATION_SECONDS: u64 = 43_200;

/// Temporary credentials from the store's STS, one session per caller identity, instead of one
/// key shared by every caller a rule maps to the profile: the store can tell workloads apart
/// (its access logs name the session) and can narrow each one with a session policy.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StsSpec {
    /// The STS endpoint: `https://sts.<region>.amazonaws.com`, or the store's own URL (MinIO
    /// and Ceph RGW answer STS on their S3 port).
    pub endpoint: String,
    /// The role each session assumes.
    pub role_arn: String,
    /// `AssumeRoleWithWebIdentity` with the token in this file (ext-authz's projected
    /// service-account token), read again for every call so a rotated token is used. Without
    /// it: `AssumeRole`, signed with the profile's `credentials_dir` or `secret`.
    #[serde(default)]
    pub web_identity_token_file: Option<PathBuf>,
    /// Session lifetime asked for; a session is renewed in the background once less than a
    /// third of it remains, and no grant outlives it.
    #[serde(default = "default_duration_seconds")]
    pub duration_seconds: u64,
    /// Pass a session policy generated from the caller's rules that name this profile
    /// (buckets, prefixes, operation classes as S3 actions), so that the store enforces the
    /// same scope as s3mesh. Off by default: the role's own policy then bounds the session.
    #[serde(default)]
    pub session_policy: bool,
    /// Region the STS calls are signed for (default: `signing.region`).
    #[serde(default)]
    pub region: Option<String>,
}

fn default_duration_seconds() -> u64 {
    3_600
}

impl StsSpec {
    /// Checks the section on its own; the error's field is relative to it. `has_base`: the
    /// profile also names `credentials_dir` or `secret`.
    pub fn validate(&self, has_base: bool) -> Result<(), (String, String)> {
        let scheme_ok = ["http://", "https://"]
            .iter()
            .any(|s| self.endpoint.starts_with(s))
            && self
                .endpoint
                .parse::<http::Uri>()
                .is_ok_and(|u| u.host().is_some());
        if !scheme_ok {
            return Err((
                "endpoint".to_owned(),
                format!("{:?} is not an http:// or https:// URL", self.endpoint),
            ));
        }
        if !self.role_arn.starts_with("arn:") {
            return Err((
                "role_arn".to_owned(),
                format!(
                    "{:?} is not a role ARN (arn:aws:iam::<account>:role/<name>)",
                    self.role_arn
                ),
            ));
        }
        if !(MIN_DURATION_SECONDS..=MAX_DURATION_SECONDS).contains(&self.duration_seconds) {
            return Err((
                "duration_seconds".to_owned(),
                format!(
                    "must be between {MIN_DURATION_SECONDS} and {MAX_DURATION_SECONDS} (stores usually accept 900 and up)"
                ),
            ));
        }
        match (&self.web_identity_token_file, has_base) {
            (Some(_), true) => Err((
                "web_identity_token_file".to_owned(),
                "a web identity needs no base credentials: drop the profile's credentials_dir or secret".to_owned(),
            )),
            (None, false) => Err((
                "role_arn".to_owned(),
                "AssumeRole is signed with base credentials: give the profile a credentials_dir or secret, or set web_identity_token_file".to_owned(),
            )),
            _ => Ok(()),
        }
    }
}
