//! The public archive on the public listener: `/archive` (published bulletins, newest
//! first, per language with `?lang=`, paged with `?before=`), `/archive/{id}` and
//! `/archive/{id}/{lang}` (a bulletin's web version: the e-mail's HTML without any
//! personal link), `/archive/{id}/images/{cid}` (its images) and
//! `/archive/feed.atom?lang=` (an Atom feed, written with `atom_syndication`). Mounted
//! only with `[archive] enabled`; everything comes from `crate::ops::archive`.

use super::HttpContext;
use crate::domain::language::{known_locale, label_locale};
use crate::ops::archive::{ArchivePage, WebVersion};
use crate::ops::OpsError;
use crate::render::{email_font_stack, format_date, Labels};
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// The archive's pages show images from this listener and nothing else from anywhere.
const ARCHIVE_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; \
     form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

/// How long a list or feed may be cached: a new bulletin shows within 5 minutes.
const LIST_CACHE: &str = "public, max-age=300";
/// A web version or image never changes once published.
const VERSION_CACHE: &str = "public, max-age=86400";

/// The archive's routes (added to the public router when the archive is on).
pub(super) fn routes() -> Router<HttpContext> {
    Router::new()
        .route("/archive", get(list))
        .route("/archive/feed.atom", get(feed))
        .route("/archive/{id}", get(primary_version))
        .route("/archive/{id}/{lang}", get(version))
        .route("/archive/{id}/images/{cid}", get(image))
}

#[derive(serde::Deserialize)]
struct ListQuery {
    lang: Option<String>,
    before: Option<i64>,
}

#[derive(serde::Deserialize)]
struct FeedQuery {
    lang: Option<String>,
}

struct LanguageLink {
    tag: String,
    name: String,
    current: bool,
}

struct EntryView {
    language: String,
    subject: String,
    path: String,
    datetime: String,
    date: String,
}

#[derive(Template)]
#[template(path = "public/archive.html")]
struct ListPage<'a> {
    lang: &'a str,
    fonts: String,
    publisher: &'a str,
    labels: &'a Labels,
    current: Option<&'a str>,
    languages: Vec<LanguageLink>,
    entries: Vec<EntryView>,
    older: Option<String>,
    paged: bool,
    newest: String,
    feed: String,
}

/// A language's own name for a label locale (the archive's language links), else the tag.
fn endonym(tag: &str) -> String {
    let name = match known_locale(tag) {
        Some("en") => "English",
        Some("zh-Hans") => "简体中文",
        Some("zh-Hant") => "繁體中文",
        Some("th") => "ไทย",
        Some("vi") => "Tiếng Việt",
        Some("km") => "ខ្មែរ",
        Some("lo") => "ລາວ",
        Some("my") => "မြန်မာ",
        _ => tag,
    };
    name.to_string()
}

/// `?lang=TAG` (URL-encoded), or nothing.
fn lang_query(lang: Option<&str>, sep: char) -> String {
    lang.map(|l| format!("{sep}lang={}", crate::config::url_segment(l)))
        .unwrap_or_default()
}

fn refused(e: OpsError) -> Response {
    let status = match &e {
        OpsError::NotFound { .. } => StatusCode::NOT_FOUND,
        OpsError::Invalid { .. } => StatusCode::BAD_REQUEST,
        _ => {
            tracing::error!(error = %e, "archive: store error");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::CACHE_CONTROL, "no-store")],
                "The archive is not available just now; please try again later.\n",
            )
                .into_response();
        }
    };
    (
        status,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        format!("{e}\n"),
    )
        .into_response()
}

fn html_response(html: String, language: &str, cache: &'static str) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(ARCHIVE_CSP),
    );
    if let Ok(v) = HeaderValue::from_str(&crate::config::url_segment(language)) {
        headers.insert(header::CONTENT_LANGUAGE, v);
    }
    (StatusCode::OK, headers, html).into_response()
}

async fn list(State(ctx): State<HttpContext>, Query(q): Query<ListQuery>) -> Response {
    match ctx.ops.archive_page(q.lang.as_deref(), q.before).await {
        Ok(page) => list_page(&ctx, page, q.before.is_some()),
        Err(e) => refused(e),
    }
}

fn list_page(ctx: &HttpContext, page: ArchivePage, paged: bool) -> Response {
    let lang = page
        .language
        .as_deref()
        .unwrap_or(crate::domain::language::FALLBACK_LOCALE);
    let labels = Labels::for_language(lang);
    let publisher = ctx.config.publisher.for_language(lang);
    let current = page.language.as_deref();
    let wanted = current.and_then(crate::domain::language::parse_tag);
    let page_lang = crate::config::url_segment(lang);
    let p = ListPage {
        lang: &page_lang,
        fonts: email_font_stack(label_locale(lang)),
        publisher: &publisher.names[0],
        labels,
        current,
        languages: page
            .languages
            .iter()
            .map(|l| LanguageLink {
                tag: crate::config::url_segment(l),
                name: endonym(l),
                current: wanted.is_some() && crate::domain::language::parse_tag(l) == wanted,
            })
            .collect(),
        entries: page
            .entries
            .iter()
            .map(|e| EntryView {
                language: crate::config::url_segment(&e.language),
                subject: e.subject.clone(),
                path: e.path.clone(),
                datetime: e
                    .published_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                date: format_date(e.published_at.date_naive(), lang),
            })
            .collect(),
        older: page
            .older
            .map(|b| format!("/archive?before={b}{}", lang_query(current, '&'))),
        paged,
        newest: format!("/archive{}", lang_query(current, '?')),
        feed: format!("/archive/feed.atom{}", lang_query(current, '?')),
    };
    match p.render() {
        Ok(html) => html_response(html, lang, LIST_CACHE),
        Err(e) => {
            tracing::error!(error = %e, "archive page did not render");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

fn version_response(v: WebVersion) -> Response {
    html_response(v.html, &v.language, VERSION_CACHE)
}

async fn primary_version(State(ctx): State<HttpContext>, Path(id): Path<i64>) -> Response {
    match ctx.ops.archive_web_version(id, None).await {
        Ok(v) => version_response(v),
        Err(e) => refused(e),
    }
}

async fn version(
    State(ctx): State<HttpContext>,
    Path((id, lang)): Path<(i64, String)>,
) -> Response {
    match ctx.ops.archive_web_version(id, Some(&lang)).await {
        Ok(v) => version_response(v),
        Err(e) => refused(e),
    }
}

async fn image(State(ctx): State<HttpContext>, Path((id, cid)): Path<(i64, String)>) -> Response {
    match ctx.ops.archive_image(id, &cid).await {
        Ok(im) => {
            let ct = HeaderValue::from_str(&im.content_type)
                .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"));
            (
                StatusCode::OK,
                [
                    (header::CONTENT_TYPE, ct),
                    (
                        header::CACHE_CONTROL,
                        HeaderValue::from_static(VERSION_CACHE),
                    ),
                ],
                im.bytes,
            )
                .into_response()
        }
        Err(e) => refused(e),
    }
}

/// The archive's absolute URL: the configured public URL, else this request's host.
fn base_url(ctx: &HttpContext, headers: &HeaderMap) -> String {
    if let Some(b) = &ctx.config.archive.base_url {
        return b.clone();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            h.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
        })
        .unwrap_or("localhost");
    format!("http://{host}")
}

async fn feed(
    State(ctx): State<HttpContext>,
    headers: HeaderMap,
    Query(q): Query<FeedQuery>,
) -> Response {
    let page = match ctx.ops.archive_page(q.lang.as_deref(), None).await {
        Ok(p) => p,
        Err(e) => return refused(e),
    };
    let base = base_url(&ctx, &headers);
    let xml = atom_feed(&ctx, &page, &base);
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/atom+xml; charset=utf-8"),
            (header::CACHE_CONTROL, LIST_CACHE),
        ],
        xml,
    )
        .into_response()
}

/// The Atom document (RFC 4287) of one archive page: the feed's id is its own URL, each
/// entry's id and alternate link its web version's URL.
fn atom_feed(ctx: &HttpContext, page: &ArchivePage, base: &str) -> String {
    use atom_syndication::{Entry, Feed, FixedDateTime, Link, Person, Text};
    let lang = page.language.as_deref();
    let labels = Labels::for_language(lang.unwrap_or(crate::domain::language::FALLBACK_LOCALE));
    let publisher = ctx
        .config
        .publisher
        .for_language(lang.unwrap_or(&ctx.config.default_language));
    let self_url = format!("{base}/archive/feed.atom{}", lang_query(lang, '?'));
    let fixed = |t: chrono::DateTime<chrono::Utc>| -> FixedDateTime { t.fixed_offset() };
    let link = |href: String, rel: &str, mime: &str, hreflang: Option<&str>| Link {
        href,
        rel: rel.to_string(),
        mime_type: Some(mime.to_string()),
        hreflang: hreflang.map(str::to_string),
        ..Default::default()
    };
    let entries: Vec<Entry> = page
        .entries
        .iter()
        .map(|e| {
            let url = format!("{base}{}", e.path);
            Entry {
                id: url.clone(),
                title: Text::plain(e.subject.clone()),
                updated: fixed(e.published_at),
                published: Some(fixed(e.published_at)),
                links: vec![link(url, "alternate", "text/html", Some(&e.language))],
                ..Default::default()
            }
        })
        .collect();
    let updated = page
        .entries
        .first()
        .map_or_else(|| ctx.clock.now(), |e| e.published_at);
    let feed = Feed {
        id: self_url.clone(),
        title: Text::plain(format!("{} · {}", labels.archive, publisher.names[0])),
        updated: fixed(updated),
        authors: vec![Person {
            name: publisher.names[0].clone(),
            uri: publisher.website.clone(),
            ..Default::default()
        }],
        links: vec![
            link(self_url, "self", "application/atom+xml", None),
            link(
                format!("{base}/archive{}", lang_query(lang, '?')),
                "alternate",
                "text/html",
                lang,
            ),
        ],
        lang: lang.map(str::to_string),
        entries,
        ..Default::default()
    };
    feed.to_string()
}
