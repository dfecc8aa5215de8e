//! Secrets (passwords, tokens): read from an environment variable, else from a file;
//! never printed.

use super::Env;
use secrecy::SecretString;
use std::path::{Path, PathBuf};

/// A secret file that cannot be used. Names the file, never its content.
#[derive(Debug, thiserror::Error)]
pub enum SecretFileError {
    #[error("cannot read secret file {}: {source}", file.display())]
    Unreadable {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("secret file {} is empty", file.display())]
    Empty { file: PathBuf },
}

/// Reads a secret from the environment variable `env_name`, else from `file`.
pub(super) fn read_secret(
    env: Env,
    env_name: &str,
    file: Option<&Path>,
) -> Result<Option<SecretString>, SecretFileError> {
    if let Some(v) = env(env_name).filter(|v| !v.is_empty()) {
        return Ok(Some(SecretString::from(v)));
    }
    let Some(f) = file else {
        return Ok(None);
    };
    let v = std::fs::read_to_string(f).map_err(|source| SecretFileError::Unreadable {
        file: f.to_path_buf(),
        source,
    })?;
    let v = v.trim_end_matches(['\r', '\n']).to_string();
    if v.is_empty() {
        return Err(SecretFileError::Empty {
            file: f.to_path_buf(),
        });
    }
    Ok(Some(SecretString::from(v)))
}

/// Whether a secret is shorter than `min` characters.
pub(super) fn shorter_than(secret: &SecretString, min: usize) -> bool {
    use secrecy::ExposeSecret;
    secret.expose_secret().len() < min
}
