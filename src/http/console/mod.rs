//! The operator console: server-rendered pages (Askama, `templates/console/`, no script)
//! for the daily work — records, bulletins, notices, lists, schedules — and the audit log. Each handler takes
//! the signed-in [`Principal`], checks a permission and calls operations, never the store.
//! Every form that changes something carries the session's CSRF token, and a POST the
//! browser marks as cross-site (`Sec-Fetch-Site`, `Origin`) is refused before anything
//! else is read. Action buttons are shown only to roles that may use them; the handler
//! refuses the action anyway.

mod audit;
mod bulletins;
mod lists;
mod notices;
mod records;
mod schedules;

use super::auth::Principal;
use super::HttpContext;
use crate::domain::Permission;
use crate::ops::OpsError;
use askama::Template;
use axum::extract::FromRequestParts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The console's pages and form handlers, documented like every admin route.
pub(super) fn routes() -> OpenApiRouter<HttpContext> {
    OpenApiRouter::new()
        .routes(routes!(home))
        .routes(routes!(records::page))
        .routes(routes!(records::approve))
        .routes(routes!(records::send_back))
        .routes(routes!(audit::page))
        .routes(routes!(records::upload))
        .routes(routes!(bulletins::list))
        .routes(routes!(bulletins::detail, bulletins::act))
        .routes(routes!(bulletins::confirm))
        .routes(routes!(notices::form, notices::submit))
        .routes(routes!(lists::all))
        .routes(routes!(lists::one, lists::change))
        .routes(routes!(lists::import))
        .routes(routes!(lists::export))
        .routes(routes!(schedules::page))
        .routes(routes!(schedules::confirm, schedules::fire))
}

/// The console's start: the records page
#[utoipa::path(get, path = "/console", tag = "console",
    responses((status = 303, description = "to /console/records")))]
async fn home() -> Redirect {
    Redirect::to("/console/records")
}

/// The signed-in person of a console request; a browser nobody signed in with is sent to
/// the login form instead of getting an error.
pub(super) struct Signed(pub Principal);

impl FromRequestParts<HttpContext> for Signed {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        ctx: &HttpContext,
    ) -> Result<Self, Self::Rejection> {
        Principal::from_request_parts(parts, ctx)
            .await
            .map(Signed)
            .map_err(|_| Redirect::to("/login").into_response())
    }
}

/// What every console page shows around its content: who is signed in, their role, the
/// sign-out form's CSRF token, the navigation, and which actions the role may see.
pub(super) struct Chrome {
    pub publisher: String,
    pub user: String,
    pub role: String,
    pub csrf: String,
    /// The navigation entry of this page.
    pub nav: &'static str,
    pub can_edit: bool,
    pub can_approve: bool,
    pub can_operate: bool,
}

impl Chrome {
    pub fn new(ctx: &HttpContext, p: &Principal, nav: &'static str) -> Chrome {
        Chrome::of(&ctx.config.publisher.names[0], p, nav)
    }

    /// The chrome of `p`'s pages under the heading `publisher`.
    pub fn of(publisher: &str, p: &Principal, nav: &'static str) -> Chrome {
        Chrome {
            publisher: publisher.to_string(),
            user: p.actor.name.clone(),
            role: p.actor.role.to_string(),
            csrf: p.csrf_token(),
            nav,
            can_edit: p.actor.may(Permission::EditRecords),
            can_approve: p.actor.may(Permission::Approve),
            can_operate: p.actor.may(Permission::Operate),
        }
    }

    /// Whether `entry` is this page's navigation entry (for `aria-current`).
    pub fn at(&self, entry: &str) -> bool {
        self.nav == entry
    }
}

/// A page that only says something: an error, a refusal, an outcome.
#[derive(Template)]
#[template(path = "console/message.html")]
struct MessagePage<'a> {
    c: &'a Chrome,
    title: &'a str,
    message: &'a str,
    /// Where to go on from here.
    back: &'a str,
}

/// A rendered page as a response (`no-store`: pages show live state and a CSRF token).
pub(super) fn html<T: Template>(status: StatusCode, page: &T) -> Response {
    match page.render() {
        Ok(body) => (
            status,
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            body,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "console template failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

/// A message page with `status`.
pub(super) fn message(
    c: &Chrome,
    status: StatusCode,
    title: &str,
    text: &str,
    back: &str,
) -> Response {
    html(
        status,
        &MessagePage {
            c,
            title,
            message: text,
            back,
        },
    )
}

/// An operation's error as a page: what was wrong, with the status the API would give.
pub(super) fn failed(c: &Chrome, e: OpsError, back: &str) -> Response {
    let status = match &e {
        OpsError::Invalid { .. } | OpsError::Record(_) => StatusCode::UNPROCESSABLE_ENTITY,
        OpsError::NotFound { .. } => StatusCode::NOT_FOUND,
        OpsError::Refused { .. } => StatusCode::CONFLICT,
        OpsError::Render(_) | OpsError::Write(_) => StatusCode::INTERNAL_SERVER_ERROR,
        OpsError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    if status.is_server_error() {
        tracing::error!(error = %e, "console: operation failed");
    }
    message(c, status, "Not done", &e.to_string(), back)
}

/// Whether the browser says this request comes from another site. `Sec-Fetch-Site`,
/// which every current browser sends, decides when present: anything but `same-origin`
/// or `none` (typed by the user) is cross-site. Without it, an `Origin` that is neither
/// this request's `Host` nor `public_url` (`admin.public_url`) is; `Origin: null` proves
/// nothing (our `Referrer-Policy: no-referrer` makes browsers send it for our own forms),
/// so the CSRF token decides then.
pub(super) fn cross_site(public_url: Option<&str>, headers: &HeaderMap) -> bool {
    let mut sites = headers
        .get_all(header::HeaderName::from_static("sec-fetch-site"))
        .iter()
        .peekable();
    if sites.peek().is_some() {
        return !sites.all(|v| matches!(v.to_str(), Ok("same-origin" | "none")));
    }
    let get = |n: header::HeaderName| headers.get(n).and_then(|v| v.to_str().ok());
    let Some(origin) = get(header::ORIGIN).filter(|o| *o != "null") else {
        return false;
    };
    let origin = origin.trim_end_matches('/');
    let host = get(header::HOST).unwrap_or("");
    let same_host = origin
        .split_once("://")
        .is_some_and(|(_, h)| !host.is_empty() && h.eq_ignore_ascii_case(host));
    let public = public_url.is_some_and(|u| {
        url::Url::parse(u)
            .map(|u| {
                u.origin()
                    .ascii_serialization()
                    .eq_ignore_ascii_case(origin)
            })
            .unwrap_or(false)
    });
    !(same_host || public)
}

/// Why a state-changing form is refused, checked in order: cross-site, the session's
/// CSRF token, the permission. None: it may proceed.
pub(super) fn refusal(
    public_url: Option<&str>,
    p: &Principal,
    headers: &HeaderMap,
    csrf: &str,
    need: Permission,
) -> Option<String> {
    if cross_site(public_url, headers) {
        tracing::warn!(actor = %p.actor.name, "console: a cross-site form POST refused");
        return Some(
            "This form was sent from another site, so it was refused. Use the console's own pages."
                .into(),
        );
    }
    if !p.csrf_ok(csrf) {
        return Some(
            "The form's security token is missing or belongs to another session: reload the page and try again."
                .into(),
        );
    }
    if !p.actor.may(need) {
        return Some(format!(
            "{} (role {}) may not {}.",
            p.actor.name,
            p.actor.role,
            need.as_str()
        ));
    }
    None
}

/// [`refusal`] as a 403 page, in front of every state-changing form.
// The error is the page to answer with; it is built once per refused request.
#[allow(clippy::result_large_err)]
pub(super) fn gate(
    ctx: &HttpContext,
    p: &Principal,
    headers: &HeaderMap,
    csrf: &str,
    need: Permission,
    c: &Chrome,
) -> Result<(), Response> {
    match refusal(
        ctx.config.admin.public_url.as_deref(),
        p,
        headers,
        csrf,
        need,
    ) {
        None => Ok(()),
        Some(why) => Err(message(
            c,
            StatusCode::FORBIDDEN,
            "Refused",
            &why,
            "/console",
        )),
    }
}

/// `fmt` for pages: minutes, UTC.
pub(super) fn when(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// The pairs of an `application/x-www-form-urlencoded` body, repeated keys kept (a
/// notice's lists and channels are checkboxes).
pub(super) fn form_pairs(body: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

/// The first value of `key` in `pairs`, or "".
pub(super) fn field<'a>(pairs: &'a [(String, String)], key: &str) -> &'a str {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or("")
}

/// Every value of `key` in `pairs`.
pub(super) fn fields(pairs: &[(String, String)], key: &str) -> Vec<String> {
    pairs
        .iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
        .collect()
}

/// An uploaded form (`multipart/form-data`): its text fields and its one file (name and
/// bytes), read whole within `max` bytes.
pub(super) struct Upload {
    pub pairs: Vec<(String, String)>,
    pub file_name: String,
    pub file: Vec<u8>,
}

/// Reads a multipart form; Err: a message for the page.
pub(super) async fn read_upload(
    mut form: axum::extract::Multipart,
    max: usize,
) -> Result<Upload, String> {
    let mut out = Upload {
        pairs: Vec::new(),
        file_name: String::new(),
        file: Vec::new(),
    };
    while let Some(mut f) = form
        .next_field()
        .await
        .map_err(|e| format!("the upload could not be read: {e}"))?
    {
        let name = f.name().unwrap_or("").to_string();
        if let Some(file) = f.file_name() {
            out.file_name = file.to_string();
            while let Some(chunk) = f
                .chunk()
                .await
                .map_err(|e| format!("the upload could not be read: {e}"))?
            {
                if out.file.len() + chunk.len() > max {
                    return Err(format!("the file is larger than {max} bytes"));
                }
                out.file.extend_from_slice(&chunk);
            }
        } else {
            let v = f
                .text()
                .await
                .map_err(|e| format!("the upload could not be read: {e}"))?;
            out.pairs.push((name, v));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Actor, Role};
    use axum::http::HeaderValue;

    fn principal(role: Role) -> Principal {
        Principal {
            actor: Actor {
                name: "mai".into(),
                role,
            },
            session: Some("session-1".into()),
        }
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn a_form_is_refused_cross_site_then_without_its_token_then_for_its_role() {
        let op = principal(Role::Operator);
        let token = op.csrf_token();
        let same = headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080"),
            ("sec-fetch-site", "same-origin"),
        ]);
        let why = |p: &Principal, h: &HeaderMap, csrf: &str, need| refusal(None, p, h, csrf, need);
        assert_eq!(why(&op, &same, &token, Permission::Operate), None);
        // The browser's own word, or a foreign Origin, is enough to refuse.
        for h in [
            headers(&[("host", "127.0.0.1:8080"), ("sec-fetch-site", "cross-site")]),
            headers(&[("host", "127.0.0.1:8080"), ("sec-fetch-site", "same-site")]),
            headers(&[
                ("host", "127.0.0.1:8080"),
                ("origin", "http://evil.example"),
            ]),
            headers(&[
                ("host", "127.0.0.1:8080"),
                ("origin", "null"),
                ("sec-fetch-site", "cross-site"),
            ]),
        ] {
            let m = why(&op, &h, &token, Permission::Operate).expect("refused");
            assert!(m.contains("another site"), "{m}");
        }
        // `Origin: null` (what no-referrer makes of our own forms) leaves it to the token.
        let null = headers(&[("host", "127.0.0.1:8080"), ("origin", "null")]);
        assert_eq!(why(&op, &null, &token, Permission::Operate), None);
        // Behind a proxy the public URL's origin is ours too.
        let proxied = headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "https://admin.example.org"),
        ]);
        assert_eq!(
            refusal(
                Some("https://admin.example.org/"),
                &op,
                &proxied,
                &token,
                Permission::Operate
            ),
            None
        );
        let m = why(&op, &same, "", Permission::Operate).unwrap();
        assert!(m.contains("security token"), "{m}");
        let m = why(
            &op,
            &same,
            &principal(Role::Admin).csrf_token().replace('0', "1"),
            Permission::Operate,
        )
        .unwrap();
        assert!(m.contains("security token"), "{m}");
        let viewer = principal(Role::Viewer);
        let m = why(&viewer, &same, &viewer.csrf_token(), Permission::Operate).unwrap();
        assert_eq!(m, "mai (role viewer) may not operate.");
        let m = why(&op, &same, &token, Permission::Approve).unwrap();
        assert_eq!(m, "mai (role operator) may not approve records.");
    }

    #[test]
    fn a_viewer_sees_no_action_button() {
        let viewer = Chrome::of("LMEC", &principal(Role::Viewer), "records");
        assert!(!viewer.can_edit && !viewer.can_approve && !viewer.can_operate);
        let admin = Chrome::of("LMEC", &principal(Role::Admin), "records");
        assert!(admin.can_edit && admin.can_approve && admin.can_operate);
        for (c, shown) in [(viewer, false), (admin, true)] {
            let page = records::test_page(c);
            for action in ["/console/records/upload", "id=\"approve-r1\""] {
                assert_eq!(page.contains(action), shown, "{action} in {page}");
            }
            // Only the sign-out form posts.
            let posts = page.matches("method=\"post\"").count();
            assert_eq!(posts > 1, shown, "{page}");
        }
    }

    #[test]
    fn a_repeated_form_key_keeps_every_value() {
        let p = form_pairs(b"lists=a&lists=b&title=Hi+there&x=%26");
        assert_eq!(fields(&p, "lists"), vec!["a", "b"]);
        assert_eq!(field(&p, "title"), "Hi there");
        assert_eq!(field(&p, "x"), "&");
        assert_eq!(field(&p, "missing"), "");
    }
}
