//! Store URLs: which engine a URL names, the SQLite file in it, a relative SQLite path
//! made absolute, and the URL with its password hidden for messages. A leaf module:
//! configuration and store both read it.

use std::path::{Path, PathBuf};

/// Whether a store URL names PostgreSQL.
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// A `sqlite:` URL whose path is relative, made absolute against the folder of the
/// configuration file `config`, so that every command opens the same store whatever
/// folder it is run from. Other URLs (absolute paths, `:memory:`, PostgreSQL) unchanged.
pub fn resolve_sqlite_url(url: &str, config: &Path) -> String {
    let Some(rest) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    else {
        return url.to_string();
    };
    let (file, query) = match rest.find('?') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if file.is_empty() || file.starts_with(':') || Path::new(file).is_absolute() {
        return url.to_string();
    }
    let folder = config.parent().unwrap_or(Path::new(""));
    let folder = std::path::absolute(folder).unwrap_or_else(|_| folder.to_path_buf());
    format!("sqlite://{}{query}", folder.join(file).display())
}

/// The SQLite file named by a `sqlite://` URL.
pub fn sqlite_path(url: &str) -> Option<PathBuf> {
    url.strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .map(PathBuf::from)
}

/// A URL with any password replaced by `***`, for messages. Read by the `url` crate, as
/// sqlx reads it, so the user, host and the rest are shown as the driver sees them; text
/// that is no URL but has `scheme://…@` shows nothing of what comes before its last `@`.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => match u.set_password(Some("***")) {
            Ok(()) => u.to_string(),
            Err(()) => "(a URL with a password)".into(),
        },
        Ok(_) => url.to_string(),
        Err(_) => match (url.find("://"), url.rfind('@')) {
            (Some(s), Some(at)) if at > s => format!("{}***{}", &url[..s + 3], &url[at..]),
            _ => url.to_string(),
        },
    }
}

/// Whether a URL carries a password (`scheme://user:password@host`), as sqlx will read it.
pub fn url_has_password(url: &str) -> bool {
    url::Url::parse(url).is_ok_and(|u| u.password().is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_sqlite_paths_are_read_from_the_configuration_folder() {
        let r = |u: &str| resolve_sqlite_url(u, Path::new("/etc/bulletin/b.toml"));
        assert_eq!(r("sqlite:b.db"), "sqlite:///etc/bulletin/b.db");
        assert_eq!(r("sqlite:///var/b.db"), "sqlite:///var/b.db");
        assert_eq!(r("sqlite::memory:"), "sqlite::memory:");
        assert_eq!(r("postgres://u@h/db"), "postgres://u@h/db");
        // A configuration named relative to the working folder: made absolute.
        let rel = resolve_sqlite_url("sqlite://b.db", Path::new("config/bulletin.toml"));
        let want = std::env::current_dir().unwrap().join("config/b.db");
        assert_eq!(rel, format!("sqlite://{}", want.display()));
        assert_eq!(
            sqlite_path("sqlite://x/b.db"),
            Some(PathBuf::from("x/b.db"))
        );
        assert_eq!(sqlite_path("postgres://u@h/db"), None);
    }

    #[test]
    fn redacts_passwords_in_urls() {
        assert_eq!(redact_url("postgres://u:pw@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact_url("sqlite://x.db"), "sqlite://x.db");
        // An `@` after the host is not the end of the credentials: the host still shows.
        assert_eq!(
            redact_url("postgres://u:pw@db.example:5432/b?application_name=a@b"),
            "postgres://u:***@db.example:5432/b?application_name=a@b"
        );
        // A percent-encoded `@` in the password is part of the password.
        assert_eq!(
            redact_url("postgres://u:p%40ss@db.example/b"),
            "postgres://u:***@db.example/b"
        );
        assert_eq!(
            redact_url("postgres://u@db.example/b"),
            "postgres://u@db.example/b"
        );
        // Not a URL (the password's `/` ends the authority): nothing before the `@` shows.
        let shown = redact_url("postgres://u:p/ss@db.example/b");
        assert!(
            !shown.contains("p/ss") && shown.ends_with("@db.example/b"),
            "{shown}"
        );
        assert!(url_has_password("postgres://u:pw@h/db"));
        assert!(!url_has_password("postgres://u@h/db"));
    }
}
