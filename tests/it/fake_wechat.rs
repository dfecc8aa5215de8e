//! A fake WeChat official account API server, the one stand-in in our tests (nobody can
//! reach WeChat from here). Each behaviour follows shared/reference/wechat-official-account-api.md;
//! the section it imitates is cited (§). Knobs let tests inject the faults the reference
//! lists: errcodes, HTTP errors, revoked tokens, slow token issue, publish outcomes, and
//! calls WeChat carries out whose reply never arrives ("processed, but the reply was
//! lost": answered after the client gave up, or the connection dropped).

// Handlers return ready HTTP responses as their error values; boxing them buys nothing here.
#![allow(clippy::result_large_err)]

use axum::extract::{Multipart, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const APPID: &str = "wx1234567890abcdef";
pub const SECRET: &str = "fake-app-secret-0123456789";

/// A scripted failure for the next `times` calls to `path`.
#[derive(Debug, Clone)]
pub struct Fault {
    pub path: &'static str,
    pub errcode: Option<i64>,
    pub errmsg: &'static str,
    pub http_status: Option<u16>,
    /// Perform the call, then answer with the fault (a reply lost on the way back).
    pub after_effect: bool,
    pub times: u32,
}

/// How a reply is lost after WeChat has done the work.
#[derive(Debug, Clone, Copy)]
pub enum Lost {
    /// The answer comes this late (beyond the client's timeout).
    Slow(Duration),
    /// The connection is closed without an answer.
    Dropped,
}

/// The next `times` calls to `path` are carried out, and their reply is lost.
#[derive(Debug, Clone)]
pub struct LostReply {
    pub path: &'static str,
    pub how: Lost,
    pub times: u32,
}

#[derive(Default)]
pub struct FakeState {
    pub lost_replies: Vec<LostReply>,
    /// Calls being answered now, and the most seen at once.
    in_flight: u32,
    pub max_in_flight: u32,
    pub token_lifetime: Duration,
    pub token_delay: Duration,
    tokens: HashMap<String, Instant>,
    stable: Option<String>,
    pub revoke_next: bool,
    pub faults: Vec<Fault>,
    pub calls: HashMap<String, u32>,
    pub verified: bool,
    /// freepublish/get answers 1 (publishing) this many times, then `final_status`.
    pub publishing_polls: u32,
    pub final_status: i64,
    next_id: u64,
    uploaded_urls: HashSet<String>,
    materials: HashSet<String>,
    /// Permanent images, oldest first: (media_id, file name, url).
    pub material_list: Vec<(String, String, String)>,
    pub drafts: HashMap<String, Value>,
    /// publish_id → (draft, polls left while publishing, final status fixed at submit).
    publishes: HashMap<String, (String, u32, i64)>,
    /// stable_token calls in force mode (§2.2).
    pub force_refreshes: u32,
    /// Published articles, oldest first: (article_id, article, publish_id).
    pub articles: Vec<(String, Value, String)>,
    pub mass_sends: HashMap<String, u64>,
    pub mass_texts: Vec<String>,
}

impl FakeState {
    fn id(&mut self) -> u64 {
        self.next_id += 1;
        2_247_483_600 + self.next_id
    }
    pub fn count(&self, path: &str) -> u32 {
        self.calls.get(path).copied().unwrap_or(0)
    }
    /// Publishes still in progress finish now, with `final_status`.
    pub fn finish_publishing(&mut self) {
        let pids: Vec<String> = self
            .publishes
            .iter()
            .filter(|(_, (_, left, _))| *left > 0)
            .map(|(p, _)| p.clone())
            .collect();
        for pid in pids {
            self.publishes.get_mut(&pid).unwrap().1 = 0;
            self.complete(&pid);
        }
    }
    /// A publish reached its final status: on success the draft leaves the draft box
    /// (§4.4) and the article is listed by freepublish/batchget (§5.4). Once only.
    fn complete(&mut self, pid: &str) {
        if self.publishes[pid].2 != 0 || self.articles.iter().any(|(_, _, p)| p == pid) {
            return;
        }
        let draft = self.publishes[pid].0.clone();
        if let Some(mut a) = self.drafts.remove(&draft) {
            a["url"] = json!(format!("https://mp.weixin.qq.com/s/fake{pid}"));
            self.articles
                .push((format!("ARTICLE_{pid}"), a, pid.to_string()));
        }
    }
    /// Articles published from drafts with this title (the test's view of "went live").
    pub fn published_titles(&self) -> Vec<String> {
        self.articles
            .iter()
            .map(|(_, a, _)| a["title"].as_str().unwrap_or("").to_string())
            .collect()
    }
}

type Shared = Arc<Mutex<FakeState>>;

/// The running fake; dropped with the test's runtime.
pub struct FakeWechat {
    pub addr: SocketAddr,
    pub state: Shared,
}

impl FakeWechat {
    pub async fn start() -> Self {
        let state: Shared = Arc::new(Mutex::new(FakeState {
            token_lifetime: Duration::from_secs(7200),
            verified: true,
            ..Default::default()
        }));
        let app = Router::new()
            .route("/cgi-bin/stable_token", post(stable_token))
            .route("/cgi-bin/media/uploadimg", post(uploadimg))
            .route("/cgi-bin/material/add_material", post(add_material))
            .route("/cgi-bin/draft/add", post(draft_add))
            .route(
                "/cgi-bin/material/batchget_material",
                post(batchget_material),
            )
            .route("/cgi-bin/freepublish/submit", post(publish_submit))
            .route("/cgi-bin/freepublish/get", post(publish_get))
            .route("/cgi-bin/freepublish/batchget", post(publish_batchget))
            .route("/cgi-bin/draft/get", post(draft_get))
            .route("/cgi-bin/draft/batchget", post(draft_batchget))
            .route("/cgi-bin/message/mass/sendall", post(mass_sendall))
            .layer(axum::middleware::from_fn_with_state(
                state.clone(),
                lose_replies,
            ))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { addr, state }
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn with<R>(&self, f: impl FnOnce(&mut FakeState) -> R) -> R {
        f(&mut self.state.lock().unwrap())
    }
}

/// "Processed, but the reply was lost": the call is carried out in full (the handler
/// runs), then its answer comes after the client's timeout or never (the connection is
/// closed). WeChat documents no idempotency for draft/add or freepublish/submit (§4.1,
/// §5.1; only mass send has `clientmsgid`, §7.1), so a client cannot tell either case
/// from a call that never arrived.
async fn lose_replies(
    State(st): State<Shared>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = req.uri().path().to_string();
    let how = {
        let mut s = st.lock().unwrap();
        s.in_flight += 1;
        s.max_in_flight = s.max_in_flight.max(s.in_flight);
        s.lost_replies
            .iter_mut()
            .find(|l| l.path == path && l.times > 0)
            .map(|l| {
                l.times -= 1;
                l.how
            })
    };
    let resp = next.run(req).await;
    st.lock().unwrap().in_flight -= 1;
    match how {
        None => resp,
        Some(Lost::Slow(d)) => {
            tokio::time::sleep(d).await;
            resp
        }
        // Unwinding out of the connection's task closes the socket with no answer sent
        // (resume_unwind runs no panic hook: nothing is printed).
        Some(Lost::Dropped) => std::panic::resume_unwind(Box::new("reply dropped")),
    }
}

/// JSON with WeChat's non-standard content type (§1.3).
fn reply(v: Value) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json; encoding=utf-8")],
        v.to_string(),
    )
        .into_response()
}

/// Errors come with HTTP 200 and a ` rid:` suffix on errmsg (§1.3).
fn error(errcode: i64, errmsg: &str) -> Response {
    reply(
        json!({"errcode": errcode, "errmsg": format!("{errmsg} rid: 6584fd9e-56fbbc7e-310e0214")}),
    )
}

/// Counts the call and applies a scripted fault, if any.
fn fault(s: &mut FakeState, path: &str) -> Option<Fault> {
    *s.calls.entry(path.to_string()).or_default() += 1;
    let f = s
        .faults
        .iter_mut()
        .find(|f| f.path == path && f.times > 0)?;
    f.times -= 1;
    Some(f.clone())
}

fn fault_response(f: &Fault) -> Response {
    match (f.http_status, f.errcode) {
        (Some(status), _) => (
            StatusCode::from_u16(status).unwrap(),
            "<html>503 Service Unavailable</html>",
        )
            .into_response(),
        (None, Some(code)) => error(code, f.errmsg),
        _ => error(-1, "system error"),
    }
}

/// Business calls carry `?access_token=` (§1.1); missing 41001, unknown 40001, expired 42001 (§2.4).
fn check_token(s: &mut FakeState, q: &HashMap<String, String>) -> Result<(), Response> {
    let Some(t) = q.get("access_token") else {
        return Err(error(41001, "access_token missing"));
    };
    if s.revoke_next {
        s.revoke_next = false;
        s.tokens.remove(t);
        s.stable = None;
        return Err(error(
            40001,
            "invalid credential, access_token is invalid or not latest",
        ));
    }
    match s.tokens.get(t) {
        None => Err(error(
            40001,
            "invalid credential, access_token is invalid or not latest",
        )),
        Some(exp) if *exp <= Instant::now() => Err(error(42001, "access_token expired")),
        Some(_) => Ok(()),
    }
}

/// POST /cgi-bin/stable_token (§2.2): normal mode returns the current token with its
/// *remaining* lifetime; wrong appid 40013, wrong secret 40125.
async fn stable_token(State(st): State<Shared>, Json(body): Json<Value>) -> Response {
    let delay = {
        let mut s = st.lock().unwrap();
        if let Some(f) = fault(&mut s, "/cgi-bin/stable_token") {
            return fault_response(&f);
        }
        s.token_delay
    };
    tokio::time::sleep(delay).await;
    let mut s = st.lock().unwrap();
    if body["grant_type"] != "client_credential" {
        return error(40002, "invalid grant_type");
    }
    if body["appid"] != APPID {
        return error(40013, "invalid appid");
    }
    if body["secret"] != SECRET {
        return error(40125, "invalid appsecret");
    }
    let force = body["force_refresh"].as_bool().unwrap_or(false);
    if force {
        s.force_refreshes += 1;
    } else {
        if let Some(t) = s.stable.clone() {
            if let Some(exp) = s.tokens.get(&t).copied() {
                let left = exp.saturating_duration_since(Instant::now()).as_secs();
                if left > 0 {
                    return reply(json!({"access_token": t, "expires_in": left}));
                }
            }
        }
    }
    let n = s.id();
    let token = format!("{n}_{}", "Fake".repeat(30)); // 100+ characters (§13.1)
    let lifetime = s.token_lifetime;
    s.tokens.insert(token.clone(), Instant::now() + lifetime);
    s.stable = Some(token.clone());
    reply(json!({"access_token": token, "expires_in": lifetime.as_secs()}))
}

/// Reads the multipart part `media` (§3); 41005 when missing, 40005 without a file extension.
async fn media_part(mut mp: Multipart) -> Result<(String, Vec<u8>), Response> {
    while let Ok(Some(field)) = mp.next_field().await {
        if field.name() == Some("media") {
            let name = field.file_name().unwrap_or("").to_string();
            let bytes = field
                .bytes()
                .await
                .map_err(|_| error(41005, "media data missing"))?;
            if !name.contains('.') {
                return Err(error(40005, "invalid file type"));
            }
            return Ok((name, bytes.to_vec()));
        }
    }
    Err(error(41005, "media data missing"))
}

fn image_kind(b: &[u8]) -> Option<&'static str> {
    if b.starts_with(b"\x89PNG") {
        Some("png")
    } else if b.starts_with(&[0xFF, 0xD8]) {
        Some("jpg")
    } else if b.starts_with(b"GIF8") {
        Some("gif")
    } else {
        None
    }
}

/// POST /cgi-bin/media/uploadimg (§3.1): jpg/png under 1 MB → an http mmbiz URL.
async fn uploadimg(
    State(st): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
    mp: Multipart,
) -> Response {
    {
        let mut s = st.lock().unwrap();
        if let Some(f) = fault(&mut s, "/cgi-bin/media/uploadimg") {
            return fault_response(&f);
        }
        if let Err(r) = check_token(&mut s, &q) {
            return r;
        }
    }
    let (_, bytes) = match media_part(mp).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    if !matches!(image_kind(&bytes), Some("png" | "jpg")) {
        return error(40005, "invalid file type");
    }
    if bytes.len() >= 1024 * 1024 {
        return error(40009, "invalid image size");
    }
    let mut s = st.lock().unwrap();
    let url = format!("http://mmbiz.qpic.cn/mmbiz_png/fake{}/0", s.id());
    s.uploaded_urls.insert(url.clone());
    reply(json!({"url": url}))
}

/// POST /cgi-bin/material/add_material?type=image (§3.2): up to 10 MB → media_id + url.
async fn add_material(
    State(st): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
    mp: Multipart,
) -> Response {
    {
        let mut s = st.lock().unwrap();
        if let Some(f) = fault(&mut s, "/cgi-bin/material/add_material") {
            return fault_response(&f);
        }
        if let Err(r) = check_token(&mut s, &q) {
            return r;
        }
        if q.get("type").map(String::as_str) != Some("image") {
            return error(40004, "invalid media type");
        }
    }
    let (name, bytes) = match media_part(mp).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    if image_kind(&bytes).is_none() {
        return error(40005, "invalid file type");
    }
    if bytes.len() > 10 * 1024 * 1024 {
        return error(40009, "invalid image size");
    }
    let mut s = st.lock().unwrap();
    let id = format!("MATERIAL_{}", s.id());
    let url = format!("http://mmbiz.qpic.cn/mmbiz_png/{id}/0");
    s.materials.insert(id.clone());
    s.material_list.push((id.clone(), name, url.clone()));
    reply(json!({"media_id": id, "url": url}))
}

/// POST /cgi-bin/draft/add (§4.1): checks title/author/digest limits (45003/45110/45004),
/// the cover (40007), the content size (45002), no script, images only from uploadimg (§6).
/// Success is `{"media_id": ...}` with no errcode (§1.3).
async fn draft_add(
    State(st): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
    Json(body): Json<Value>,
) -> Response {
    let mut s = st.lock().unwrap();
    let f = fault(&mut s, "/cgi-bin/draft/add");
    if let Some(f) = f.as_ref().filter(|f| !f.after_effect) {
        return fault_response(f);
    }
    if let Err(r) = check_token(&mut s, &q) {
        return r;
    }
    let Some(a) = body["articles"].as_array().and_then(|a| a.first()).cloned() else {
        return error(44003, "empty news data");
    };
    let chars = |k: &str| a[k].as_str().map_or(0, |v| v.chars().count());
    if chars("title") == 0 || chars("title") > 32 {
        return error(45003, "title size out of limit");
    }
    if chars("author") > 16 {
        return error(45110, "author size out of limit");
    }
    if chars("digest") > 128 {
        return error(45004, "description size out of limit");
    }
    if !s
        .materials
        .contains(a["thumb_media_id"].as_str().unwrap_or(""))
    {
        return error(40007, "invalid media_id");
    }
    let content = a["content"].as_str().unwrap_or("");
    if content.chars().count() >= 20_000 || content.len() >= 1024 * 1024 {
        return error(45002, "content size out of limit");
    }
    if content.contains("<script") {
        return error(45166, "invalid content");
    }
    let id = format!("DRAFT_{}", s.id());
    s.drafts.insert(id.clone(), a);
    if let Some(f) = f {
        return fault_response(&f);
    }
    reply(json!({"media_id": id}))
}

/// POST /cgi-bin/freepublish/submit (§5.1): 48001 for unverified accounts; a numeric publish_id.
async fn publish_submit(
    State(st): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
    Json(body): Json<Value>,
) -> Response {
    let mut s = st.lock().unwrap();
    let f = fault(&mut s, "/cgi-bin/freepublish/submit");
    if let Some(f) = f.as_ref().filter(|f| !f.after_effect) {
        return fault_response(f);
    }
    if let Err(r) = check_token(&mut s, &q) {
        return r;
    }
    if !s.verified {
        return error(48001, "api unauthorized");
    }
    let draft = body["media_id"].as_str().unwrap_or("").to_string();
    if !s.drafts.contains_key(&draft) {
        return error(40007, "invalid media_id");
    }
    let id = s.id();
    let polls = s.publishing_polls;
    let status = s.final_status;
    s.publishes.insert(id.to_string(), (draft, polls, status));
    if polls == 0 {
        s.complete(&id.to_string());
    }
    reply(json!({"errcode": 0, "errmsg": "ok", "publish_id": id, "msg_data_id": id + 7}))
}

/// POST /cgi-bin/freepublish/get (§5.2): status 1 while publishing, then the final status;
/// article_id and article_detail only on 0, fail_idx on 2/4; the draft is removed on success (§4.4).
async fn publish_get(
    State(st): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
    Json(body): Json<Value>,
) -> Response {
    let mut s = st.lock().unwrap();
    if let Some(f) = fault(&mut s, "/cgi-bin/freepublish/get") {
        return fault_response(&f);
    }
    if let Err(r) = check_token(&mut s, &q) {
        return r;
    }
    let pid = match &body["publish_id"] {
        Value::String(v) => v.clone(),
        Value::Number(n) => n.to_string(),
        _ => return error(40002, "invalid argument"),
    };
    let Some((_, left, final_status)) = s.publishes.get_mut(&pid) else {
        return error(40002, "invalid argument");
    };
    let numeric: u64 = pid.parse().unwrap();
    let final_status = *final_status;
    if *left > 0 {
        *left -= 1;
        return reply(json!({"publish_id": numeric, "publish_status": 1, "fail_idx": [1]}));
    }
    s.complete(&pid);
    match final_status {
        0 => reply(json!({
            "publish_id": numeric, "publish_status": 0,
            "article_id": format!("ARTICLE_{pid}"),
            "article_detail": {"count": 1, "item": [{"idx": 1, "article_url": format!("https://mp.weixin.qq.com/s/fake{pid}")}]},
            "fail_idx": []
        })),
        status => reply(json!({"publish_id": numeric, "publish_status": status, "fail_idx": [1]})),
    }
}

/// POST /cgi-bin/message/mass/sendall (§7.1): a clientmsgid seen before → 45065 with the
/// existing msg_id; 48001 for unverified accounts.
async fn mass_sendall(
    State(st): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
    Json(body): Json<Value>,
) -> Response {
    let mut s = st.lock().unwrap();
    let f = fault(&mut s, "/cgi-bin/message/mass/sendall");
    if let Some(f) = f.as_ref().filter(|f| !f.after_effect) {
        return fault_response(f);
    }
    if let Err(r) = check_token(&mut s, &q) {
        return r;
    }
    if !s.verified {
        return error(48001, "api unauthorized");
    }
    let key = body["clientmsgid"].as_str().unwrap_or("").to_string();
    if key.len() > 64 {
        return error(45067, "clientmsgid size out of limit");
    }
    if let Some(id) = s.mass_sends.get(&key) {
        return reply(
            json!({"errcode": 45065, "errmsg": "clientmsgid exist rid: 6584fd9e-56fbbc7e-310e0214", "msg_id": id}),
        );
    }
    // mpnews needs a known draft; the text variant needs a content (§7.1).
    match body["msgtype"].as_str() {
        Some("mpnews") => {
            if !s
                .drafts
                .contains_key(body["mpnews"]["media_id"].as_str().unwrap_or(""))
            {
                return error(40007, "invalid media_id");
            }
        }
        Some("text") => match body["text"]["content"].as_str().filter(|t| !t.is_empty()) {
            Some(t) => s.mass_texts.push(t.to_string()),
            None => return error(44002, "empty post data"),
        },
        _ => return error(40004, "invalid media type"),
    }
    let id = s.id();
    s.mass_sends.insert(key, id);
    if let Some(f) = f {
        return fault_response(&f);
    }
    reply(
        json!({"errcode": 0, "errmsg": "send job submission success", "msg_id": id, "msg_data_id": id + 3}),
    )
}

/// POST /cgi-bin/draft/get (§4.2): the draft's articles, or 40007 once it has left the
/// draft box (after a publish, §4.4).
async fn draft_get(
    State(st): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
    Json(body): Json<Value>,
) -> Response {
    let mut s = st.lock().unwrap();
    if let Some(f) = fault(&mut s, "/cgi-bin/draft/get") {
        return fault_response(&f);
    }
    if let Err(r) = check_token(&mut s, &q) {
        return r;
    }
    match s.drafts.get(body["media_id"].as_str().unwrap_or("")) {
        Some(a) => reply(json!({ "news_item": [a] })),
        None => error(40007, "invalid media_id"),
    }
}

/// A page of `(id, article)` items, newest first, as the two batchget calls return them:
/// `{"total_count","item_count","item":[...]}` with `count` 1..20 (§4.4, §5.4).
fn page(mut items: Vec<(String, Value, &str)>, body: &Value) -> Response {
    let offset = body["offset"].as_u64().unwrap_or(0) as usize;
    let count = body["count"].as_u64().unwrap_or(0) as usize;
    if !(1..=20).contains(&count) {
        return error(40002, "invalid argument");
    }
    let no_content = body["no_content"].as_i64() == Some(1);
    items.reverse();
    let total = items.len();
    let item: Vec<Value> = items
        .into_iter()
        .skip(offset)
        .take(count)
        .map(|(id, mut a, key)| {
            if no_content {
                a.as_object_mut().unwrap().remove("content");
            }
            let mut v = json!({ "content": { "news_item": [a] }, "update_time": 1_700_000_000 });
            v[key] = json!(id);
            v
        })
        .collect();
    reply(json!({ "total_count": total, "item_count": item.len(), "item": item }))
}

fn numeric_suffix(id: &str) -> u64 {
    id.rsplit('_')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// POST /cgi-bin/draft/batchget (§4.4): the drafts in the draft box, newest first.
async fn draft_batchget(
    State(st): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
    Json(body): Json<Value>,
) -> Response {
    let mut s = st.lock().unwrap();
    if let Some(f) = fault(&mut s, "/cgi-bin/draft/batchget") {
        return fault_response(&f);
    }
    if let Err(r) = check_token(&mut s, &q) {
        return r;
    }
    let mut items: Vec<(String, Value, &str)> = s
        .drafts
        .iter()
        .map(|(id, a)| (id.clone(), a.clone(), "media_id"))
        .collect();
    items.sort_by_key(|(id, _, _)| numeric_suffix(id));
    page(items, &body)
}

/// POST /cgi-bin/freepublish/batchget (§5.4): published articles, newest first. A
/// publish still in progress is not listed (its draft is still in the draft box).
async fn publish_batchget(
    State(st): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
    Json(body): Json<Value>,
) -> Response {
    let mut s = st.lock().unwrap();
    if let Some(f) = fault(&mut s, "/cgi-bin/freepublish/batchget") {
        return fault_response(&f);
    }
    if let Err(r) = check_token(&mut s, &q) {
        return r;
    }
    let items = s
        .articles
        .iter()
        .map(|(id, a, _)| (id.clone(), a.clone(), "article_id"))
        .collect();
    page(items, &body)
}

/// POST /cgi-bin/material/batchget_material (§3.2) `{"type","offset","count"}` (count
/// 1..20): permanent images, newest first, each with `media_id`, the `name` it was
/// uploaded with, `update_time` and `url` (the item shape of the official page; the
/// reference lists the call only).
async fn batchget_material(
    State(st): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
    Json(body): Json<Value>,
) -> Response {
    let mut s = st.lock().unwrap();
    if let Some(f) = fault(&mut s, "/cgi-bin/material/batchget_material") {
        return fault_response(&f);
    }
    if let Err(r) = check_token(&mut s, &q) {
        return r;
    }
    if body["type"] != "image" {
        return error(40004, "invalid media type");
    }
    let offset = body["offset"].as_u64().unwrap_or(0) as usize;
    let count = body["count"].as_u64().unwrap_or(0) as usize;
    if !(1..=20).contains(&count) {
        return error(40002, "invalid argument");
    }
    let item: Vec<Value> = s
        .material_list
        .iter()
        .rev()
        .skip(offset)
        .take(count)
        .map(|(id, name, url)| json!({"media_id": id, "name": name, "update_time": 1_700_000_000, "url": url}))
        .collect();
    reply(json!({"total_count": s.material_list.len(), "item_count": item.len(), "item": item}))
}
