//! Credential profiles loaded from Secret-shaped directories.

use std::path::Path;

use s3mesh_sigv4::Credentials;

use crate::config::ConfigError;

/// The files of a profile's directory: key id, secret, and the optional session token.
pub const FILES: [&str; 3] = ["access_key_id", "secret_access_key", "session_token"];
const ACCESS_KEY_ID: &str = FILES[0];
const SECRET_ACCESS_KEY: &str = FILES[1];
const SESSION_TOKEN: &str = FILES[2];

/// Reads `access_key_id`, `secret_access_key` and the optional `session_token` from `dir`.
/// Values are trimmed; errors name the file, never its content.
pub fn load_dir(profile: &str, dir: &Path) -> Result<Credentials, ConfigError> {
    let read = |name: &str| -> Result<Option<String>, ConfigError> {
        let path = dir.join(name);
        match std::fs::read_to_string(&path) {
            Ok(v) => Ok(Some(v.trim().to_owned())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(ConfigError::Read { path, source }),
        }
    };
    let required = |name: &str| -> Result<String, ConfigError> {
        match read(name)? {
            Some(v) if !v.is_empty() => Ok(v),
            _ => Err(ConfigError::Invalid {
                path: dir.to_owned(),
                field: format!("profiles.{profile}.credentials_dir"),
                problem: format!("missing or empty file {name:?}"),
            }),
        }
    };
    Ok(Credentials {
        access_key_id: required(ACCESS_KEY_ID)?,
        secret_access_key: required(SECRET_ACCESS_KEY)?,
        session_token: read(SESSION_TOKEN)?.filter(|t| !t.is_empty()),
    })
}
