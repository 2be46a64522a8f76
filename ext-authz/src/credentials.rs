//! Credential profiles, from Secret-shaped directories or from Secrets read through the API.
//! Both hold the same three entries; errors name the entry, never its content.

use std::path::Path;

use k8s_openapi::api::core::v1::Secret;
use s3mesh_sigv4::Credentials;

use crate::config::ConfigError;

/// The entries of a profile's directory or Secret: key id, secret, and the optional session
/// token.
pub const FILES: [&str; 3] = ["access_key_id", "secret_access_key", "session_token"];
const ACCESS_KEY_ID: &str = FILES[0];
const SECRET_ACCESS_KEY: &str = FILES[1];
const SESSION_TOKEN: &str = FILES[2];

/// Builds credentials from `read` (an entry's trimmed value, or `None` when absent); `missing`
/// makes the error for an absent or empty required entry.
fn assemble(
    read: impl Fn(&str) -> Result<Option<String>, ConfigError>,
    missing: impl Fn(&str) -> ConfigError,
) -> Result<Credentials, ConfigError> {
    let required = |name: &str| match read(name)? {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(missing(name)),
    };
    Ok(Credentials {
        access_key_id: required(ACCESS_KEY_ID)?,
        secret_access_key: required(SECRET_ACCESS_KEY)?,
        session_token: read(SESSION_TOKEN)?.filter(|t| !t.is_empty()),
    })
}

/// Reads `access_key_id`, `secret_access_key` and the optional `session_token` from `dir`.
pub fn load_dir(profile: &str, dir: &Path) -> Result<Credentials, ConfigError> {
    assemble(
        |name| {
            let path = dir.join(name);
            match std::fs::read_to_string(&path) {
                Ok(v) => Ok(Some(v.trim().to_owned())),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(source) => Err(ConfigError::Read { path, source }),
            }
        },
        |name| ConfigError::Invalid {
            path: dir.to_owned(),
            field: format!("profiles.{profile}.credentials_dir"),
            problem: format!("missing or empty file {name:?}"),
        },
    )
}

/// Reads the same entries from a Secret's `data`; `object` names the Secret in errors.
pub fn from_secret(object: &str, secret: &Secret) -> Result<Credentials, ConfigError> {
    let invalid = |field: &str, problem: String| ConfigError::Object {
        object: object.to_owned(),
        field: format!("data.{field}"),
        problem,
    };
    assemble(
        |name| {
            let Some(value) = secret.data.as_ref().and_then(|d| d.get(name)) else {
                return Ok(None);
            };
            String::from_utf8(value.0.clone())
                .map(|v| Some(v.trim().to_owned()))
                .map_err(|_| invalid(name, "is not UTF-8 text".to_owned()))
        },
        |name| invalid(name, "missing or empty".to_owned()),
    )
}
