//! Credential profiles loaded from Secret-shaped directories.

use std::path::Path;

use s3mesh_sigv4::Credentials;

use crate::config::ConfigError;

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
        access_key_id: required("access_key_id")?,
        secret_access_key: required("secret_access_key")?,
        session_token: read("session_token")?.filter(|t| !t.is_empty()),
    })
}
