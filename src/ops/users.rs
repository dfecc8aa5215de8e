//! Users and how they sign in: adding, listing, disabling users, setting passwords
//! (Argon2id) and issuing personal API tokens (shown once, kept as SHA-256); signing in
//! with name and password into a server-side session (a random 256-bit id kept as
//! SHA-256, with an expiry), resolving a bearer token or session to an [`Actor`], and
//! signing out. Every change and every sign-in, failed or not, is audited.

use super::audit::AuditEntry;
use super::{Missing, Ops, OpsError, Result};
use crate::domain::{Actor, Role};
use crate::store::{NewUser, SessionOwner, UserRow};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use chrono::{DateTime, Utc};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// How long a session lasts after sign-in.
pub const SESSION_HOURS: i64 = 8;
/// Passwords shorter than this are refused.
pub const MIN_PASSWORD: usize = 10;
/// Personal tokens start with this, so a leaked one is recognisable.
pub const TOKEN_PREFIX: &str = "bt_";

/// A user to add.
#[derive(Clone, Copy)]
pub struct AddUserInput<'a> {
    pub name: &'a str,
    pub role: &'a str,
    pub password: &'a SecretString,
}

/// A personal API token, issued once: the only time it is shown.
#[derive(Serialize, utoipa::ToSchema)]
pub struct IssuedToken {
    pub name: String,
    /// The token: `Authorization: Bearer TOKEN`. Not stored (only its SHA-256).
    #[serde(serialize_with = "expose")]
    #[schema(value_type = String)]
    pub token: SecretString,
}

fn expose<S: serde::Serializer>(s: &SecretString, ser: S) -> std::result::Result<S::Ok, S::Error> {
    ser.serialize_str(s.expose_secret())
}

impl std::fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedToken")
            .field("name", &self.name)
            .field("token", &"[REDACTED]")
            .finish()
    }
}

/// A session begun by signing in: its id goes into the browser's cookie, and nowhere else.
pub struct NewSession {
    pub id: SecretString,
    pub actor: Actor,
    pub expires: DateTime<Utc>,
}

impl std::fmt::Debug for NewSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewSession")
            .field("actor", &self.actor)
            .field("expires", &self.expires)
            .finish_non_exhaustive()
    }
}

/// Why a sign-in failed: the same answer for a wrong name and a wrong password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginRefused {
    /// No such user, a wrong password, or a disabled user.
    BadCredentials,
}

/// SHA-256 (hex) of a token or session id: what the store keeps and looks up.
pub fn secret_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// 256 random bits, hex.
fn random_hex() -> String {
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// A user name: 1 to 64 of letters, digits and `.`, `_`, `-`, `@`, starting with a
/// letter or digit (so it cannot be mistaken for the CLI's `cli:` actors or the
/// bootstrap administrator).
pub fn check_name(name: &str) -> Result<&str> {
    let ok = (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if !ok {
        return Err(OpsError::invalid(
            "name",
            format!(
                "`{}` is not a user name: 1 to 64 letters, digits, `.`, `_`, `-` or `@`, starting with a letter or digit",
                name.escape_default()
            ),
        ));
    }
    if name == Actor::BOOTSTRAP_NAME {
        return Err(OpsError::invalid(
            "name",
            format!("`{name}` is the bootstrap administrator's name"),
        ));
    }
    Ok(name)
}

fn check_password(p: &SecretString) -> Result<()> {
    let n = p.expose_secret().chars().count();
    if n < MIN_PASSWORD {
        return Err(OpsError::invalid(
            "password",
            format!("must be at least {MIN_PASSWORD} characters (it has {n})"),
        ));
    }
    if p.expose_secret().len() > 1024 {
        return Err(OpsError::invalid("password", "must be at most 1024 bytes"));
    }
    Ok(())
}

/// Argon2id (the crate's defaults: 19 MiB, 2 passes), as a PHC string; on a blocking thread.
async fn hash_password(p: &SecretString) -> Result<String> {
    let p = p.clone();
    tokio::task::spawn_blocking(move || {
        let mut salt = [0u8; 16];
        rand::rng().fill_bytes(&mut salt);
        let salt = SaltString::encode_b64(&salt).map_err(|e| OpsError::invalid("password", e))?;
        Argon2::default()
            .hash_password(p.expose_secret().as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| OpsError::invalid("password", e))
    })
    .await
    .map_err(|e| OpsError::invalid("password", format!("hashing failed: {e}")))?
}

/// Whether `p` matches the PHC string `hash`; on a blocking thread.
async fn verify_password(p: &str, hash: String) -> bool {
    let p = SecretString::from(p.to_string());
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&hash).is_ok_and(|h| {
            Argon2::default()
                .verify_password(p.expose_secret().as_bytes(), &h)
                .is_ok()
        })
    })
    .await
    .unwrap_or(false)
}

/// A hash no password matches, verified when the user does not exist so that a wrong
/// name takes as long as a wrong password.
const DECOY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$YmFkLXNhbHQtZGVjb3k$4rNFQcIY3bnIU6ISdXlfkDwGgi2lRP9EEv1CzUe1VW0";

fn actor_of(u: &UserRow) -> Actor {
    Actor {
        name: u.name.clone(),
        role: u.role,
    }
}

fn no_user(name: &str) -> OpsError {
    OpsError::not_found(Missing::User, format!("no user `{name}`"))
}

impl Ops {
    /// Every user, by name.
    pub async fn users(&self) -> Result<Vec<UserRow>> {
        Ok(self.store.users().await?)
    }

    /// One user.
    pub async fn user(&self, name: &str) -> Result<UserRow> {
        self.store.user(name).await?.ok_or_else(|| no_user(name))
    }

    /// Adds a user with a role and a password. Refused if the name is taken.
    pub async fn add_user(&self, actor: &Actor, input: AddUserInput<'_>) -> Result<UserRow> {
        let name = check_name(input.name)?;
        let role: Role = input
            .role
            .parse()
            .map_err(|e| OpsError::invalid("role", e))?;
        check_password(input.password)?;
        let hash = hash_password(input.password).await?;
        let created = self
            .store
            .create_user(
                &NewUser {
                    name,
                    role,
                    password_hash: &hash,
                },
                self.clock.now(),
            )
            .await?;
        if !created {
            return Err(OpsError::invalid(
                "name",
                format!("there is already a user `{name}`"),
            ));
        }
        let u = self.user(name).await?;
        self.audit(
            actor,
            AuditEntry::new("user.add", format!("user:{name}"))
                .after(serde_json::json!({"role": role})),
        )
        .await;
        Ok(u)
    }

    /// Disables a user (their sessions end; their token and password stop working), or
    /// enables them again.
    pub async fn set_user_disabled(
        &self,
        actor: &Actor,
        name: &str,
        disabled: bool,
    ) -> Result<UserRow> {
        let before = self.user(name).await?;
        if !self
            .store
            .set_user_disabled(name, disabled, self.clock.now())
            .await?
        {
            return Err(no_user(name));
        }
        let after = self.user(name).await?;
        let action = if disabled {
            "user.disable"
        } else {
            "user.enable"
        };
        self.audit(
            actor,
            AuditEntry::new(action, format!("user:{name}"))
                .before(serde_json::json!({"disabled": before.disabled_at.is_some()}))
                .after(serde_json::json!({"disabled": disabled})),
        )
        .await;
        Ok(after)
    }

    /// Sets a user's password; their sessions end.
    pub async fn set_password(
        &self,
        actor: &Actor,
        name: &str,
        password: &SecretString,
    ) -> Result<UserRow> {
        self.user(name).await?;
        check_password(password)?;
        let hash = hash_password(password).await?;
        if !self
            .store
            .set_user_password(name, &hash, self.clock.now())
            .await?
        {
            return Err(no_user(name));
        }
        self.audit(
            actor,
            AuditEntry::new("user.password", format!("user:{name}")),
        )
        .await;
        self.user(name).await
    }

    /// Issues a personal API token for a user, replacing any earlier one. The token is in
    /// the answer only; the store keeps its SHA-256.
    pub async fn issue_token(&self, actor: &Actor, name: &str) -> Result<IssuedToken> {
        let before = self.user(name).await?;
        let token = format!("{TOKEN_PREFIX}{}", random_hex());
        if !self
            .store
            .set_user_token(name, &secret_hash(&token), self.clock.now())
            .await?
        {
            return Err(no_user(name));
        }
        self.audit(
            actor,
            AuditEntry::new("user.token", format!("user:{name}"))
                .before(serde_json::json!({"had_token": before.has_token})),
        )
        .await;
        Ok(IssuedToken {
            name: name.to_string(),
            token: SecretString::from(token),
        })
    }

    /// The actor a bearer token stands for: the bootstrap administrator's token, or an
    /// enabled user's personal token. None: no such token (or a disabled user's).
    pub async fn actor_for_token(&self, token: &str) -> Result<Option<Actor>> {
        let token = token.trim();
        if let Some(admin) = &self.config.admin.token {
            let a = Sha256::digest(token.as_bytes());
            let b = Sha256::digest(admin.expose_secret().as_bytes());
            if bool::from(a.ct_eq(&b)) {
                return Ok(Some(Actor::bootstrap_admin()));
            }
        }
        if !token.starts_with(TOKEN_PREFIX) {
            return Ok(None);
        }
        Ok(self
            .store
            .user_by_token(&secret_hash(token))
            .await?
            .filter(|u| u.disabled_at.is_none())
            .map(|u| actor_of(&u)))
    }

    /// The actor a session id stands for, if the session is live and its user enabled
    /// (a bootstrap session only while an admin token is configured).
    pub async fn actor_for_session(&self, id: &str) -> Result<Option<Actor>> {
        Ok(
            match self
                .store
                .session(&secret_hash(id), self.clock.now())
                .await?
            {
                Some(SessionOwner::Bootstrap) if self.config.admin.token.is_some() => {
                    Some(Actor::bootstrap_admin())
                }
                Some(SessionOwner::User(u)) if u.disabled_at.is_none() => Some(actor_of(&u)),
                _ => None,
            },
        )
    }

    /// Signs a user in with name and password: a new session. A failure is audited as
    /// `login.failed` (with the address) and answers the same whatever was wrong.
    pub async fn login(
        &self,
        name: &str,
        password: &SecretString,
        address: Option<std::net::IpAddr>,
    ) -> Result<std::result::Result<NewSession, LoginRefused>> {
        let found = self.store.user_password_hash(name.trim()).await?;
        let (user, hash) = match found {
            Some((u, h)) => (Some(u), h),
            None => (None, DECOY_HASH.to_string()),
        };
        let matches = verify_password(password.expose_secret(), hash).await;
        let address = address.map(|a| a.to_string());
        let user = match user {
            Some(u) if matches && u.disabled_at.is_none() => u,
            _ => {
                let tried = Actor {
                    name: name.trim().chars().take(64).collect(),
                    role: Role::Viewer,
                };
                self.audit(
                    &tried,
                    AuditEntry::new("login.failed", format!("user:{}", tried.name))
                        .after(serde_json::json!({"address": address})),
                )
                .await;
                return Ok(Err(LoginRefused::BadCredentials));
            }
        };
        let actor = actor_of(&user);
        let session = self.begin_session(Some(user.id), actor).await?;
        self.audit(
            &session.actor,
            AuditEntry::new("login", format!("user:{}", user.name))
                .after(serde_json::json!({"address": address})),
        )
        .await;
        Ok(Ok(session))
    }

    /// Signs the bootstrap administrator in with the admin token: a new session.
    pub async fn login_with_admin_token(
        &self,
        token: &str,
        address: Option<std::net::IpAddr>,
    ) -> Result<std::result::Result<NewSession, LoginRefused>> {
        let address = address.map(|a| a.to_string());
        match self.actor_for_token(token).await? {
            Some(a) if a.name == Actor::BOOTSTRAP_NAME => {
                let session = self.begin_session(None, a).await?;
                self.audit(
                    &session.actor,
                    AuditEntry::new("login", format!("user:{}", Actor::BOOTSTRAP_NAME))
                        .after(serde_json::json!({"address": address})),
                )
                .await;
                Ok(Ok(session))
            }
            _ => {
                let tried = Actor {
                    name: Actor::BOOTSTRAP_NAME.into(),
                    role: Role::Viewer,
                };
                self.audit(
                    &tried,
                    AuditEntry::new("login.failed", format!("user:{}", Actor::BOOTSTRAP_NAME))
                        .after(serde_json::json!({"address": address})),
                )
                .await;
                Ok(Err(LoginRefused::BadCredentials))
            }
        }
    }

    async fn begin_session(&self, user_id: Option<i64>, actor: Actor) -> Result<NewSession> {
        let id = random_hex();
        let now = self.clock.now();
        let expires = now + chrono::Duration::hours(SESSION_HOURS);
        self.store
            .create_session(&secret_hash(&id), user_id, now, expires)
            .await?;
        Ok(NewSession {
            id: SecretString::from(id),
            actor,
            expires,
        })
    }

    /// Ends a session (signing out).
    pub async fn logout(&self, actor: &Actor, session_id: &str) -> Result<bool> {
        let ended = self
            .store
            .delete_session(&secret_hash(session_id), self.clock.now())
            .await?;
        if ended {
            self.audit(
                actor,
                AuditEntry::new("logout", format!("user:{}", actor.name)),
            )
            .await;
        }
        Ok(ended)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing;

    fn admin() -> Actor {
        Actor::bootstrap_admin()
    }

    #[tokio::test]
    async fn a_user_signs_in_and_is_refused_once_disabled_or_after_a_new_password() {
        let t = testing::ops().await;
        let ops = t.ops.clone();
        let pw = SecretString::from("correct horse battery".to_string());
        let u = ops
            .add_user(
                &admin(),
                AddUserInput {
                    name: "mai",
                    role: "approver",
                    password: &pw,
                },
            )
            .await
            .unwrap();
        assert_eq!(u.role, Role::Approver);
        let s = ops.login("mai", &pw, None).await.unwrap().unwrap();
        assert_eq!(s.actor.name, "mai");
        let id = s.id.expose_secret().to_string();
        assert_eq!(id.len(), 64, "256 bits, hex");
        assert_eq!(
            ops.actor_for_session(&id).await.unwrap().map(|a| a.role),
            Some(Role::Approver)
        );
        let wrong = SecretString::from("wrong horse battery".to_string());
        assert!(ops.login("mai", &wrong, None).await.unwrap().is_err());
        assert!(ops.login("nobody", &pw, None).await.unwrap().is_err());

        // A new password ends the session.
        let pw2 = SecretString::from("another long password".to_string());
        ops.set_password(&admin(), "mai", &pw2).await.unwrap();
        assert_eq!(ops.actor_for_session(&id).await.unwrap(), None);
        assert!(ops.login("mai", &pw, None).await.unwrap().is_err());

        // Disabling ends sessions and refuses the token and the password.
        let s = ops.login("mai", &pw2, None).await.unwrap().unwrap();
        let token = ops.issue_token(&admin(), "mai").await.unwrap();
        assert!(format!("{token:?}").contains("REDACTED"));
        let tok = token.token.expose_secret().to_string();
        assert!(ops.actor_for_token(&tok).await.unwrap().is_some());
        ops.set_user_disabled(&admin(), "mai", true).await.unwrap();
        assert_eq!(
            ops.actor_for_session(s.id.expose_secret()).await.unwrap(),
            None
        );
        assert_eq!(ops.actor_for_token(&tok).await.unwrap(), None);
        assert!(ops.login("mai", &pw2, None).await.unwrap().is_err());

        let log = ops
            .audit_log(&super::super::audit::AuditQuery {
                limit: 100,
                ..Default::default()
            })
            .await
            .unwrap();
        let actions: Vec<(&str, &str)> = log
            .entries
            .iter()
            .rev()
            .map(|e| (e.actor.as_str(), e.action.as_str()))
            .collect();
        assert_eq!(
            actions,
            vec![
                ("admin-token", "user.add"),
                ("mai", "login"),
                ("mai", "login.failed"),
                ("nobody", "login.failed"),
                ("admin-token", "user.password"),
                ("mai", "login.failed"),
                ("mai", "login"),
                ("admin-token", "user.token"),
                ("admin-token", "user.disable"),
                ("mai", "login.failed"),
            ]
        );
    }

    #[tokio::test]
    async fn names_roles_and_passwords_are_checked() {
        let t = testing::ops().await;
        let short = SecretString::from("short".to_string());
        let good = SecretString::from("long enough password".to_string());
        let add = |name: &'static str, role: &'static str, pw: &'static SecretString| {
            let ops = t.ops.clone();
            async move {
                ops.add_user(
                    &admin(),
                    AddUserInput {
                        name,
                        role,
                        password: pw,
                    },
                )
                .await
            }
        };
        let short: &'static SecretString = Box::leak(Box::new(short));
        let good: &'static SecretString = Box::leak(Box::new(good));
        for (name, role, pw, field) in [
            ("", "viewer", good, "name"),
            ("-x", "viewer", good, "name"),
            ("admin-token", "viewer", good, "name"),
            ("ok", "boss", good, "role"),
            ("ok", "viewer", short, "password"),
        ] {
            match add(name, role, pw).await {
                Err(OpsError::Invalid { field: f, .. }) => assert_eq!(f, field, "{name} {role}"),
                other => panic!("{name} {role}: {other:?}"),
            }
        }
        add("ok", "viewer", good).await.unwrap();
        match add("ok", "viewer", good).await {
            Err(OpsError::Invalid { field, message }) => {
                assert_eq!(field, "name");
                assert!(message.contains("already"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_decoy_hash_parses() {
        assert!(PasswordHash::new(DECOY_HASH).is_ok());
    }
}
