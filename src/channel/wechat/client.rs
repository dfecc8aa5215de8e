//! The WeChat official account HTTP client: access tokens (stable_token, cached by the
//! returned `expires_in`, refreshed ahead of expiry, one refresh at a time, dropped and
//! refreshed once on 40001/42001/40014, then force-refreshed once if WeChat refuses the
//! refreshed one too), JSON calls and multipart uploads, and the
//! reading of WeChat's errcodes. Section numbers (§) refer to
//! shared/reference/wechat-official-account-api.md. The token never reaches a log line,
//! an error message or `Debug` output.

use crate::channel::{FailureKind, SendError};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// Errcodes that mean "this token is no good" (§2.4): drop it, refresh, retry once.
const TOKEN_ERRORS: [i64; 3] = [40001, 40014, 42001];
/// The least time between two forced token refreshes (§2.2: at least 30 s apart).
const FORCE_SPACING: Duration = Duration::from_secs(30);

/// The HTTP client could not be set up (TLS backend, system configuration).
#[derive(Debug, thiserror::Error)]
#[error("cannot build the HTTP client: {0}")]
pub struct ClientBuildError(#[source] reqwest::Error);

/// A failed WeChat call.
#[derive(Debug, Clone)]
pub enum WechatApiError {
    /// WeChat answered with an errcode (HTTP 200, §1.3). `body` is the whole reply.
    Wechat {
        errcode: i64,
        errmsg: String,
        body: Value,
    },
    /// A non-2xx HTTP status.
    Http { status: u16, body: String },
    /// Timeout or connection lost after the request was sent: WeChat may have carried
    /// it out. The text never contains the URL (it carries the token).
    Transport(String),
    /// No connection was made (refused, DNS, TLS): the request never reached WeChat.
    Connect(String),
    /// A token errcode (§2.4) after a refresh and a forced refresh (this call's, or one
    /// less than 30 s ago): the tokens are refused, not the AppSecret.
    TokenRefused { errcode: i64, errmsg: String },
    /// A reply that was not the JSON we expect.
    Decode(String),
}

impl WechatApiError {
    pub fn errcode(&self) -> Option<i64> {
        match self {
            Self::Wechat { errcode, .. } | Self::TokenRefused { errcode, .. } => Some(*errcode),
            _ => None,
        }
    }

    /// Whether WeChat may have carried out the call although no answer says so: a
    /// timeout, a connection lost after sending, an HTTP 5xx (a gateway's answer) or a
    /// reply we could not read. A WeChat errcode or a failed connect means it did not.
    pub fn may_have_reached(&self) -> bool {
        match self {
            Self::Transport(_) | Self::Decode(_) => true,
            Self::Http { status, .. } => *status >= 500,
            Self::Connect(_) | Self::Wechat { .. } | Self::TokenRefused { .. } => false,
        }
    }

    /// How the ledger should treat it (the reaction column of §12).
    pub fn to_send_error(&self, call: &str) -> SendError {
        let (kind, code, message, retry_after) = match self {
            Self::Transport(m) | Self::Connect(m) => {
                (FailureKind::Transient, None, format!("{call}: {m}"), None)
            }
            Self::TokenRefused { errcode, errmsg } => (
                FailureKind::Transient,
                Some(*errcode),
                format!(
                    "{call}: WeChat errcode {errcode}: {errmsg} — WeChat keeps refusing fresh access \
                     tokens (refreshed, and force-refreshed within the last 30 s) although it \
                     accepts the AppSecret: another program is probably fetching tokens for this \
                     AppID (/cgi-bin/token or a forced stable_token), which invalidates ours; let \
                     only this daemon fetch them"
                ),
                Some(Duration::from_secs(60)),
            ),
            Self::Decode(m) => (
                FailureKind::Transient,
                None,
                format!("{call}: unexpected reply: {m}"),
                None,
            ),
            Self::Http { status, body } => (
                if *status >= 500 || *status == 429 {
                    FailureKind::Transient
                } else {
                    FailureKind::Permanent
                },
                Some(i64::from(*status)),
                format!(
                    "{call}: HTTP {status}: {}",
                    body.chars().take(200).collect::<String>()
                ),
                None,
            ),
            Self::Wechat {
                errcode, errmsg, ..
            } => {
                let (kind, advice, after) = classify(*errcode, errmsg);
                (
                    kind,
                    Some(*errcode),
                    format!("{call}: WeChat errcode {errcode}: {errmsg}{advice}"),
                    after,
                )
            }
        };
        SendError {
            kind,
            code,
            message,
            maybe_delivered: false,
            message_id: None,
            retry_after,
            halt_channel: false,
        }
    }
}

/// Transient or permanent, what an operator should do, and how long to wait (§11, §12).
fn classify(errcode: i64, errmsg: &str) -> (FailureKind, String, Option<Duration>) {
    use FailureKind::*;
    match errcode {
        -1 => (Transient, String::new(), None),
        45009 => (
            Transient,
            " — the daily API quota is used up; it resets tomorrow (or reset it in the MP console)".into(),
            Some(Duration::from_secs(3600)),
        ),
        45011 | 45066 => (Transient, String::new(), Some(Duration::from_secs(60))),
        45028 => (
            Transient,
            " — no mass-send quota left for this period".into(),
            Some(Duration::from_secs(6 * 3600)),
        ),
        89501 | 89503 => (
            Transient,
            " — an administrator must confirm this server's IP in the MP console".into(),
            Some(Duration::from_secs(300)),
        ),
        40164 => {
            let ip = errmsg
                .split_whitespace()
                .skip_while(|w| *w != "ip")
                .nth(1)
                .unwrap_or("this server's address");
            (
                Permanent,
                format!(" — add {ip} to the account's API IP whitelist (MP console: Settings and Development > Basic configuration)"),
                None,
            )
        }
        48001 => (
            Permanent,
            " — this account may not use this API (publishing and mass send need a verified account); use wechat.mode = \"draft\"".into(),
            None,
        ),
        40013 => (Permanent, " — check wechat.appid".into(), None),
        // 40001 on the token endpoint (GET /cgi-bin/token) is a wrong secret; on a business
        // call it is a refused token, handled (refresh, force refresh) before it gets here.
        40125 => (Permanent, " — check the AppSecret (wechat.secret_env / secret_file)".into(), None),
        45003 | 45004 | 45110 | 45002 | 45166 => (
            Permanent,
            " — WeChat refused the article's content; shorten or change it".into(),
            None,
        ),
        _ => (Permanent, String::new(), None),
    }
}

struct CachedToken {
    value: SecretString,
    refresh_at: Instant,
}

/// A WeChat API client for one AppID.
pub struct WechatClient {
    http: reqwest::Client,
    base: String,
    appid: String,
    secret: SecretString,
    token: Mutex<Option<CachedToken>>,
    refreshes: AtomicU64,
    /// When this process last forced a refresh (force mode is rationed, §2.2).
    last_force: std::sync::Mutex<Option<Instant>>,
    /// Where instances share the token (§2.1: a second fetch by another process would
    /// invalidate ours after the grace window). None: this process only.
    shared: Option<std::sync::Arc<dyn crate::store::Store>>,
}

impl std::fmt::Debug for WechatClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WechatClient")
            .field("base", &self.base)
            .field("appid", &self.appid)
            .finish_non_exhaustive()
    }
}

/// A number or a string, as WeChat sends ids either way (§1.3).
pub fn id_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

impl WechatClient {
    pub fn new(
        base: &str,
        appid: &str,
        secret: SecretString,
        timeout: Duration,
        shared: Option<std::sync::Arc<dyn crate::store::Store>>,
    ) -> Result<Self, ClientBuildError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(ClientBuildError)?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_string(),
            appid: appid.to_string(),
            secret,
            token: Mutex::new(None),
            refreshes: AtomicU64::new(0),
            last_force: std::sync::Mutex::new(None),
            shared,
        })
    }

    pub fn appid(&self) -> &str {
        &self.appid
    }

    /// How many times a token was fetched.
    pub fn token_refreshes(&self) -> u64 {
        self.refreshes.load(Ordering::Relaxed)
    }

    /// A valid token: the cached one, the one another instance shared through the store,
    /// or one fetched now (and shared). Concurrent callers wait for the same fetch (the
    /// lock is held across it) and then reuse its result.
    async fn token(&self) -> Result<SecretString, WechatApiError> {
        let mut guard = self.token.lock().await;
        if let Some(t) = guard.as_ref() {
            if Instant::now() < t.refresh_at {
                return Ok(t.value.clone());
            }
        }
        if let Some(store) = &self.shared {
            if let Ok(Some((token, refresh_at))) = store.shared_token(&self.appid).await {
                if let Ok(left) = (refresh_at - chrono::Utc::now()).to_std() {
                    let value = SecretString::from(token);
                    *guard = Some(CachedToken {
                        value: value.clone(),
                        refresh_at: Instant::now() + left,
                    });
                    return Ok(value);
                }
            }
        }
        let (value, valid_for) = self.fetch_token().await?;
        if let Some(store) = &self.shared {
            let now = chrono::Utc::now();
            let refresh_at = now + chrono::Duration::from_std(valid_for).unwrap_or_default();
            if let Err(e) = store
                .put_shared_token(&self.appid, value.expose_secret(), refresh_at, now)
                .await
            {
                tracing::warn!(appid = %self.appid, error = %e, "could not share the WeChat token through the store");
            }
        }
        *guard = Some(CachedToken {
            value: value.clone(),
            refresh_at: Instant::now() + valid_for,
        });
        Ok(value)
    }

    /// Drops the cached (and shared) token, but only if it is still the one that failed
    /// (another caller may already have replaced it).
    async fn invalidate(&self, failed: &SecretString) {
        let mut guard = self.token.lock().await;
        if guard
            .as_ref()
            .is_some_and(|t| t.value.expose_secret() == failed.expose_secret())
        {
            *guard = None;
        }
        if let Some(store) = &self.shared {
            let _ = store
                .drop_shared_token(&self.appid, failed.expose_secret())
                .await;
        }
    }

    /// POST /cgi-bin/stable_token in normal mode (§2.2): the same token while it is valid,
    /// with its remaining lifetime. Cached until `expires_in` minus a margin (a fifth of the
    /// lifetime, at most 300 s), never a fixed 7200.
    async fn fetch_token(&self) -> Result<(SecretString, Duration), WechatApiError> {
        self.fetch_token_mode(false).await
    }

    async fn fetch_token_mode(
        &self,
        force: bool,
    ) -> Result<(SecretString, Duration), WechatApiError> {
        let body = json!({
            "grant_type": "client_credential",
            "appid": self.appid,
            "secret": self.secret.expose_secret(),
            "force_refresh": force,
        });
        let resp = self
            .http
            .post(format!("{}/cgi-bin/stable_token", self.base))
            .json(&body)
            .send()
            .await
            .map_err(transport)?;
        let v = read(resp).await?;
        let token = v
            .get("access_token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                WechatApiError::Decode("stable_token reply has no access_token".into())
            })?;
        let expires_in = v.get("expires_in").and_then(Value::as_u64).unwrap_or(0);
        let margin = (expires_in / 5).min(300);
        self.refreshes.fetch_add(1, Ordering::Relaxed);
        tracing::info!(appid = %self.appid, expires_in, force, "WeChat access token refreshed");
        Ok((
            SecretString::from(token.to_string()),
            Duration::from_secs(expires_in.saturating_sub(margin)),
        ))
    }

    /// Runs a business call with the token. On a token errcode: drop the token, refresh
    /// (normal mode: the current token, perhaps renewed by another instance) and retry;
    /// if WeChat refuses that one too, one forced refresh (§2.2: a new token, at most 20
    /// a day, so at most one per 30 s) and a last retry; a token errcode after that (or
    /// when a forced refresh was made less than 30 s ago) is `TokenRefused`.
    async fn with_token<F, Fut>(&self, call: F) -> Result<Value, WechatApiError>
    where
        F: Fn(String) -> Fut,
        Fut: std::future::Future<Output = Result<reqwest::Response, reqwest::Error>>,
    {
        let run = |token: SecretString| {
            let fut = call(token.expose_secret().to_string());
            async move { read(fut.await.map_err(transport)?).await }
        };
        let token = self.token().await?;
        match run(token.clone()).await {
            Err(WechatApiError::Wechat { errcode, .. }) if TOKEN_ERRORS.contains(&errcode) => {
                tracing::warn!(appid = %self.appid, errcode, "WeChat rejected the access token; refreshing once");
                self.invalidate(&token).await;
            }
            other => return other,
        }
        let token = self.token().await?;
        match run(token.clone()).await {
            Err(WechatApiError::Wechat {
                errcode, errmsg, ..
            }) if TOKEN_ERRORS.contains(&errcode) => {
                // Force mode: 20 a day, at least 30 s apart (§2.2, §11).
                let now = Instant::now();
                let mut last = self.last_force.lock().expect("force lock");
                if last.is_some_and(|t| now.duration_since(t) < FORCE_SPACING) {
                    return Err(WechatApiError::TokenRefused { errcode, errmsg });
                }
                *last = Some(now);
                tracing::warn!(appid = %self.appid, errcode, "WeChat rejected the refreshed access token too; forcing a new one");
            }
            other => return other,
        }
        let token = self.force_refresh(&token).await?;
        match run(token).await {
            Err(WechatApiError::Wechat {
                errcode, errmsg, ..
            }) if TOKEN_ERRORS.contains(&errcode) => {
                Err(WechatApiError::TokenRefused { errcode, errmsg })
            }
            other => other,
        }
    }

    /// A new token by `stable_token` in force mode (§2.2), cached and shared; unless
    /// another caller already replaced the refused one meanwhile.
    async fn force_refresh(&self, refused: &SecretString) -> Result<SecretString, WechatApiError> {
        let mut guard = self.token.lock().await;
        if let Some(t) = guard.as_ref() {
            if t.value.expose_secret() != refused.expose_secret() && Instant::now() < t.refresh_at {
                return Ok(t.value.clone());
            }
        }
        let (value, valid_for) = self.fetch_token_mode(true).await?;
        if let Some(store) = &self.shared {
            let now = chrono::Utc::now();
            let refresh_at = now + chrono::Duration::from_std(valid_for).unwrap_or_default();
            let _ = store
                .drop_shared_token(&self.appid, refused.expose_secret())
                .await;
            if let Err(e) = store
                .put_shared_token(&self.appid, value.expose_secret(), refresh_at, now)
                .await
            {
                tracing::warn!(appid = %self.appid, error = %e, "could not share the WeChat token through the store");
            }
        }
        *guard = Some(CachedToken {
            value: value.clone(),
            refresh_at: Instant::now() + valid_for,
        });
        Ok(value)
    }

    /// POST a JSON body to a business endpoint.
    pub async fn post_json(&self, path: &str, body: &Value) -> Result<Value, WechatApiError> {
        let url = format!("{}{path}", self.base);
        self.with_token(|token| {
            self.http
                .post(&url)
                .query(&[("access_token", token)])
                .header("Content-Type", "application/json;charset=utf-8")
                .body(serde_json::to_vec(body).expect("JSON body"))
                .send()
        })
        .await
    }

    /// Uploads a file as the multipart part `media` (§3), with extra query parameters.
    pub async fn upload(
        &self,
        path: &str,
        query: &[(&str, &str)],
        filename: &str,
        content_type: &str,
        bytes: &[u8],
    ) -> Result<Value, WechatApiError> {
        let url = format!("{}{path}", self.base);
        self.with_token(|token| {
            let part = reqwest::multipart::Part::bytes(bytes.to_vec())
                .file_name(filename.to_string())
                .mime_str(content_type)
                .expect("a valid MIME type");
            let form = reqwest::multipart::Form::new().part("media", part);
            let mut q: Vec<(&str, String)> =
                query.iter().map(|(k, v)| (*k, v.to_string())).collect();
            q.push(("access_token", token));
            self.http.post(&url).query(&q).multipart(form).send()
        })
        .await
    }
}

fn transport(e: reqwest::Error) -> WechatApiError {
    // without_url: the URL carries the access token.
    let e = e.without_url();
    let connect = e.is_connect();
    let what = if e.is_timeout() {
        "timed out"
    } else if connect {
        "connection failed"
    } else {
        "request failed"
    };
    let mut msg = format!("{what}: {e}");
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        msg.push_str(&format!(": {s}"));
        src = s.source();
    }
    if connect {
        WechatApiError::Connect(msg)
    } else {
        WechatApiError::Transport(msg)
    }
}

/// Reads a reply: non-2xx is an HTTP error; a JSON body with a non-zero errcode is a
/// WeChat error; errcode absent means success (§1.3).
async fn read(resp: reqwest::Response) -> Result<Value, WechatApiError> {
    let status = resp.status();
    let text = resp.text().await.map_err(transport)?;
    if !status.is_success() {
        return Err(WechatApiError::Http {
            status: status.as_u16(),
            body: text,
        });
    }
    let v: Value = serde_json::from_str(&text).map_err(|e| {
        WechatApiError::Decode(format!(
            "{e}: {}",
            text.chars().take(200).collect::<String>()
        ))
    })?;
    match v.get("errcode").and_then(Value::as_i64) {
        None | Some(0) => Ok(v),
        Some(errcode) => Err(WechatApiError::Wechat {
            errcode,
            errmsg: v
                .get("errmsg")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            body: v,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_come_as_numbers_or_strings() {
        assert_eq!(id_string(&json!(2247483655u64)), Some("2247483655".into()));
        assert_eq!(id_string(&json!("100000001")), Some("100000001".into()));
        assert_eq!(id_string(&json!(null)), None);
    }

    #[test]
    fn errcodes_are_classified_with_advice() {
        let e = WechatApiError::Wechat {
            errcode: 40164,
            errmsg: "invalid ip 39.156.73.10 ipv6 ::ffff:39.156.73.10, not in whitelist rid: 6584fd9e-56fbbc7e-310e0214".into(),
            body: json!({}),
        }
        .to_send_error("draft/add");
        assert!(e.is_permanent());
        assert!(
            e.message
                .contains("add 39.156.73.10 to the account's API IP whitelist"),
            "{}",
            e.message
        );
        let busy = WechatApiError::Wechat {
            errcode: -1,
            errmsg: "system error".into(),
            body: json!({}),
        }
        .to_send_error("x");
        assert!(busy.is_transient());
        let quota = WechatApiError::Wechat {
            errcode: 45009,
            errmsg: "reach max api daily quota limit".into(),
            body: json!({}),
        }
        .to_send_error("x");
        assert!(quota.is_transient() && quota.retry_after == Some(Duration::from_secs(3600)));
        assert!(WechatApiError::Http {
            status: 503,
            body: String::new()
        }
        .to_send_error("x")
        .is_transient());
        assert!(WechatApiError::Http {
            status: 404,
            body: String::new()
        }
        .to_send_error("x")
        .is_permanent());
    }
}
