//! The web version and the public archive (issue 16, second half): the web version is the
//! e-mail's HTML (as a real SMTP server received it) without the personal link; each
//! e-mail links to it and names it in `Archived-At`; `/archive` lists published bulletins
//! per language, newest first, paged; the Atom feed parses back; notices only when
//! configured; the WeChat article's "read original" is the web version; the pages fit
//! 420 px in real headless Chromium, with a screenshot per script.

use crate::harness::*;
use std::path::{Path, PathBuf};
use std::process::Command;

const CHROMIUM: &str = "/usr/bin/chromium";
const BASE: &str = "https://news.example.org";

/// A record in `language` with `title` and a summary in that language's script.
fn record_in(id: &str, language: &str, title: &str, summary: &str) -> String {
    small_record(id, title).replace(
        &format!("summary = \"Summary of {id}.\""),
        &format!("summary = \"{summary}\"\nlanguage = \"{language}\""),
    )
}

async fn approve(t: &TestApp, name: &str, body: &str) -> String {
    let id = t.import(&t.write_record(name, body)).await;
    t.app
        .store
        .approve_record(&id, "approver", t.clock_now())
        .await
        .unwrap();
    id
}

fn header(m: &mail_parser::Message<'_>, name: &str) -> Option<String> {
    m.header_raw(name).map(|v| v.trim().to_string())
}

/// Removes the first `<tag …>…</tag>` that starts with `start` from `html`.
fn cut_element(html: &str, start: &str, close: &str) -> String {
    let at = html
        .find(start)
        .unwrap_or_else(|| panic!("no `{start}` in {html}"));
    let end = at + html[at..].find(close).unwrap() + close.len();
    format!("{}{}", &html[..at], &html[end..])
}

#[tokio::test]
async fn the_web_version_is_the_received_html_without_the_personal_link() {
    let sink = SmtpSink::start();
    let t = spawn_app(Options {
        smtp_port: sink.port,
        ..Default::default()
    })
    .await;
    t.list_with("partners", &[("reader@example.org", Some("Reader"))])
        .await;
    std::fs::copy(
        repo_path("config/examples/cover.png"),
        t.dir.path().join("photo.png"),
    )
    .unwrap();
    let body = format!(
        "{}[[images]]\nfile = \"photo.png\"\nalt = \"Delegates\"\n",
        small_record("web1", "Roundtable on green development")
    );
    let rid = approve(&t, "web1.toml", &body).await;
    t.app.fire_now("weekday-morning").await.unwrap();
    assert_eq!(t.app.run_pending(None).await.unwrap().sent, 1);

    let got = sink.wait_for(1);
    let m = got[0].parsed();
    let url = format!("{BASE}/archive/1/en");
    assert_eq!(
        header(&m, "Archived-At").as_deref(),
        Some(format!("<{url}>").as_str())
    );
    let unsubscribe = header(&m, "List-Unsubscribe").unwrap();
    let unsubscribe = unsubscribe.trim_matches(|c| c == '<' || c == '>');
    assert!(unsubscribe.contains("/unsubscribe/"), "{unsubscribe}");
    let html = m.body_html(0).unwrap().replace("\r\n", "\n");
    assert!(
        html.contains(&format!("<a href=\"{url}\"")) && html.contains("View in your browser"),
        "{html}"
    );
    let text = m.body_text(0).unwrap().to_string();
    assert!(
        text.contains(&format!("View in your browser: {url}")),
        "{text}"
    );

    let http = t.start_http().await;
    let get = |path: &str| http.client.get(format!("{}{path}", http.public)).send();
    for path in ["/archive/1", "/archive/1/en", "/archive/1/EN"] {
        let r = get(path).await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.headers()["content-language"], "en");
        assert_eq!(r.headers()["cache-control"], "public, max-age=86400");
        let csp = r.headers()["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("img-src 'self'") && !csp.contains("script-src"));
        let web = r.text().await.unwrap();
        // The e-mail's HTML minus the personal link (the unsubscribe <a> element) and the
        // link to this very page; images from the archive instead of the message.
        let unsub_start = format!("<a href=\"{unsubscribe}\"");
        let mut want = cut_element(&html, "<div class=\"webview\"", "</div>\n");
        want = cut_element(&want, &unsub_start, "</a>");
        let want = want.replace("src=\"cid:", &format!("src=\"{BASE}/archive/1/images/"));
        assert_eq!(web, want, "{path}");
        assert!(!web.contains("/unsubscribe/") && !web.contains(&unsubscribe[BASE.len()..]));
        assert!(!web.contains('\u{E000}'));
        assert!(web.contains("Roundtable on green development"));
    }
    // The image the page shows is the record's.
    let cid = format!("img0.{rid}@bulletin");
    let r = get(&format!("/archive/1/images/{cid}")).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/png");
    let bytes = r.bytes().await.unwrap();
    assert_eq!(
        bytes.as_ref(),
        std::fs::read(repo_path("config/examples/cover.png")).unwrap()
    );
    // Unknown bulletin, version or image: 404; a bad language tag: 400.
    for (path, status) in [
        ("/archive/2", 404),
        ("/archive/1/th", 404),
        ("/archive/1/images/img9.x@bulletin", 404),
        ("/archive/1/%20!", 400),
        ("/archive?lang=%21%21", 400),
    ] {
        let r = get(path).await.unwrap();
        assert_eq!(r.status(), status, "{path}");
        assert_eq!(r.headers()["cache-control"], "no-store", "{path}");
    }
}

/// Three records, in English, Chinese and Thai, sent by one schedule (one bulletin each),
/// plus a draft that is never sent.
async fn three_languages(extra: &'static str) -> (TestApp, SmtpSink) {
    three_languages_on(extra, None).await
}

async fn three_languages_on(extra: &'static str, store_url: Option<String>) -> (TestApp, SmtpSink) {
    let sink = SmtpSink::start();
    let t = spawn_app(Options {
        smtp_port: sink.port,
        extra,
        store_url,
        ..Default::default()
    })
    .await;
    t.list_with("partners", &[("reader@example.org", None)])
        .await;
    approve(
        &t,
        "en.toml",
        &record_in("a-en", "en", "Water and energy", "In English."),
    )
    .await;
    t.clock.advance(chrono::Duration::seconds(1));
    approve(
        &t,
        "zh.toml",
        &record_in("b-zh", "zh-Hans", "澜湄水资源合作圆桌对话", "中文摘要。"),
    )
    .await;
    t.clock.advance(chrono::Duration::seconds(1));
    approve(
        &t,
        "th.toml",
        &record_in("c-th", "th", "การประชุมโต๊ะกลมแม่โขง", "สรุปภาษาไทย"),
    )
    .await;
    t.import(&t.write_record(
        "draft.toml",
        &record_in("d-draft", "en", "Unapproved draft", "Draft."),
    ))
    .await;
    t.app.fire_now("weekday-morning").await.unwrap();
    t.app.run_pending(None).await.unwrap();
    (t, sink)
}

/// The entries of an archive page: (lang attribute, link, title), in page order.
fn entries(page: &str) -> Vec<(String, String, String)> {
    let Some(list) = page.split("<ol class=\"entries\">").nth(1) else {
        return vec![];
    };
    let list = &list[..list.find("</ol>").unwrap()];
    list.split("<li lang=\"")
        .skip(1)
        .map(|e| {
            let lang = &e[..e.find('"').unwrap()];
            let href = e.split("<a href=\"").nth(1).unwrap();
            let (href, rest) = href.split_once("\">").unwrap();
            let title = &rest[..rest.find("</a>").unwrap()];
            (lang.into(), href.into(), title.into())
        })
        .collect()
}

#[tokio::test]
async fn the_archive_lists_published_bulletins_per_language_newest_first_in_pages() {
    let (t, _sink) = three_languages("[archive]\npage_size = 2\n").await;
    let http = t.start_http().await;
    let page = |q: &'static str| {
        let url = format!("{}/archive{q}", http.public);
        let client = http.client.clone();
        async move {
            let r = client.get(url).send().await.unwrap();
            assert_eq!(r.status(), 200);
            assert_eq!(r.headers()["cache-control"], "public, max-age=300");
            r.text().await.unwrap()
        }
    };
    let first = page("").await;
    assert!(first.contains("<html lang=\"en\">") && first.contains("<h1>Bulletin archive</h1>"));
    assert_eq!(
        entries(&first),
        [
            (
                "th".into(),
                "/archive/3/th".into(),
                "การประชุมโต๊ะกลมแม่โขง".into()
            ),
            (
                "zh-Hans".into(),
                "/archive/2/zh-Hans".into(),
                "澜湄水资源合作圆桌对话".into()
            ),
        ]
    );
    assert!(
        first.contains("<a href=\"/archive?before=2\" rel=\"next\">"),
        "{first}"
    );
    let second = page("?before=2").await;
    assert_eq!(
        entries(&second),
        [(
            "en".into(),
            "/archive/1/en".into(),
            "Water and energy".into()
        )]
    );
    assert!(!second.contains("rel=\"next\""));
    assert!(!first.contains("Unapproved draft") && !second.contains("Unapproved draft"));
    // Every language the archive holds is a link, in its own name.
    for l in [
        "/archive?lang=en",
        "/archive?lang=th",
        "/archive?lang=zh-Hans",
    ] {
        assert!(first.contains(&format!("<a href=\"{l}\"")), "{l}: {first}");
    }
    assert!(first.contains(">ไทย</a>") && first.contains(">简体中文</a>"));

    // One language: its own labels and <html lang>.
    let thai = page("?lang=th").await;
    assert!(thai.contains("<html lang=\"th\">") && thai.contains("<h1>คลังจดหมายข่าว</h1>"));
    assert_eq!(entries(&thai).len(), 1);
    assert_eq!(entries(&thai)[0].1, "/archive/3/th");
    let zh = page("?lang=ZH-hans").await;
    assert_eq!(entries(&zh)[0].1, "/archive/2/zh-Hans");
    assert!(entries(&page("?lang=km").await).is_empty());

    let r = http
        .client
        .get(format!("{}/archive/3/th", http.public))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-language"], "th");
    assert!(r.text().await.unwrap().contains("<html lang=\"th\">"));
}

#[tokio::test]
async fn the_archive_query_pages_and_filters_alike_on_postgresql() {
    let Some(db) = crate::pg::fresh().await else {
        return;
    };
    let (t, _sink) = three_languages_on("[archive]\npage_size = 2\n", Some(db.url.clone())).await;
    let ops = t.app.ops();
    let first = ops.archive_page(None, None).await.unwrap();
    let ids: Vec<i64> = first.entries.iter().map(|e| e.id).collect();
    assert_eq!((ids, first.older), (vec![3, 2], Some(2)));
    let second = ops.archive_page(None, Some(2)).await.unwrap();
    assert_eq!(second.entries.len(), 1);
    assert_eq!((second.entries[0].id, second.older), (1, None));
    let zh = ops.archive_page(Some("ZH-hans"), None).await.unwrap();
    assert_eq!(zh.entries.len(), 1);
    assert_eq!(zh.entries[0].path, "/archive/2/zh-Hans");
    assert_eq!(first.languages, ["en", "th", "zh-Hans"]);
    let web = ops.archive_web_version(3, Some("th")).await.unwrap();
    assert!(web.html.contains("<html lang=\"th\">"));
}

#[tokio::test]
async fn the_atom_feed_parses_back_with_ids_titles_links_dates_and_language() {
    let (t, _sink) = three_languages("").await;
    let http = t.start_http().await;
    let get = |q: &'static str| {
        let url = format!("{}/archive/feed.atom{q}", http.public);
        let client = http.client.clone();
        async move {
            let r = client.get(url).send().await.unwrap();
            assert_eq!(r.status(), 200);
            assert_eq!(
                r.headers()["content-type"],
                "application/atom+xml; charset=utf-8"
            );
            let body = r.text().await.unwrap();
            atom_syndication::Feed::read_from(body.as_bytes())
                .unwrap_or_else(|e| panic!("the feed does not parse: {e}\n{body}"))
        }
    };
    let all = get("").await;
    let published = t.app.store.bulletin(3).await.unwrap().unwrap().created_at;
    assert_eq!(all.id(), format!("{BASE}/archive/feed.atom"));
    assert_eq!(
        all.updated().timestamp_millis(),
        published.timestamp_millis()
    );
    assert!(all
        .links()
        .iter()
        .any(|l| l.rel() == "self" && l.href() == format!("{BASE}/archive/feed.atom")));
    let got: Vec<(String, String, String)> = all
        .entries()
        .iter()
        .map(|e| {
            let alt = e.links().iter().find(|l| l.rel() == "alternate").unwrap();
            assert_eq!(alt.href(), e.id());
            (
                e.id().to_string(),
                e.title().as_str().to_string(),
                alt.hreflang().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                format!("{BASE}/archive/3/th"),
                "การประชุมโต๊ะกลมแม่โขง".into(),
                "th".into()
            ),
            (
                format!("{BASE}/archive/2/zh-Hans"),
                "澜湄水资源合作圆桌对话".into(),
                "zh-Hans".into()
            ),
            (
                format!("{BASE}/archive/1/en"),
                "Water and energy".into(),
                "en".into()
            ),
        ]
    );
    for e in all.entries() {
        let id: i64 = e.id().rsplit('/').nth(1).unwrap().parse().unwrap();
        let b = t.app.store.bulletin(id).await.unwrap().unwrap();
        assert_eq!(
            e.updated().timestamp_millis(),
            b.created_at.timestamp_millis()
        );
    }

    let thai = get("?lang=th").await;
    assert_eq!(thai.lang(), Some("th"));
    assert_eq!(thai.id(), format!("{BASE}/archive/feed.atom?lang=th"));
    assert!(thai.title().as_str().starts_with("คลังจดหมายข่าว"));
    assert_eq!(thai.entries().len(), 1);
    assert_eq!(thai.entries()[0].id(), format!("{BASE}/archive/3/th"));
}

#[tokio::test]
async fn notices_are_archived_only_when_configured_and_an_archive_that_is_off_is_not_found() {
    for (extra, listed) in [("", false), ("[archive]\ninclude_notices = true\n", true)] {
        let sink = SmtpSink::start();
        let t = spawn_app(Options {
            smtp_port: sink.port,
            extra,
            ..Default::default()
        })
        .await;
        t.list_with("partners", &[("reader@example.org", None)])
            .await;
        let req = bulletin::notice::NoticeRequest::parse(
            "Venue change",
            "Session 2 moves to Hall B.",
            "urgent",
            &["partners".to_string()],
            "duty officer",
            None,
        )
        .unwrap();
        t.app.notices.send(&req).await.unwrap();
        t.app.run_pending(None).await.unwrap();
        let m = &sink.wait_for(1)[0];
        let m = m.parsed();
        let archived = header(&m, "Archived-At");
        let html = m.body_html(0).unwrap().to_string();
        let http = t.start_http().await;
        let page = http
            .client
            .get(format!("{}/archive", http.public))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let shown = http
            .client
            .get(format!("{}/archive/1", http.public))
            .send()
            .await
            .unwrap()
            .status();
        if listed {
            assert_eq!(
                archived.as_deref(),
                Some("<https://news.example.org/archive/1/en>")
            );
            assert!(html.contains("View in your browser"));
            assert_eq!(entries(&page).len(), 1, "{page}");
            assert_eq!(shown, 200);
        } else {
            assert_eq!(archived, None);
            assert!(!html.contains("View in your browser"));
            assert!(entries(&page).is_empty(), "{page}");
            assert_eq!(shown, 404);
        }
    }

    // Off: no routes, no links.
    let sink = SmtpSink::start();
    let t = spawn_app(Options {
        smtp_port: sink.port,
        extra: "[archive]\nenabled = false\n",
        ..Default::default()
    })
    .await;
    t.list_with("partners", &[("reader@example.org", None)])
        .await;
    t.import_seed_approved().await;
    t.app.fire_now("weekday-morning").await.unwrap();
    t.app.run_pending(None).await.unwrap();
    let m = &sink.wait_for(1)[0];
    let m = m.parsed();
    assert_eq!(header(&m, "Archived-At"), None);
    assert!(!m.body_html(0).unwrap().contains("View in your browser"));
    assert!(!m.body_text(0).unwrap().contains("View in your browser"));
    let http = t.start_http().await;
    for path in ["/archive", "/archive/1", "/archive/feed.atom"] {
        let r = http
            .client
            .get(format!("{}{path}", http.public))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{path}");
    }
}

#[test]
fn without_a_public_url_there_is_no_archive_link_and_check_config_says_so() {
    let text = config_text(Path::new("/nonexistent/bulletin.db"), &Options::default())
        .replace("https://news.example.org", "http://127.0.0.1:8081");
    let c = bulletin::config::Config::parse(&text, Path::new("test.toml"), &|_| None).unwrap();
    assert_eq!(c.archive.base_url, None);
    assert_eq!(c.archive.web_url(1, false, "en"), None);
    let warnings = c.warnings().join("\n");
    assert!(
        warnings.contains("archive: the archive has no public URL")
            && warnings.contains("View in your browser"),
        "{warnings}"
    );
    // archive.base_url gives it one; a bad one is refused at its key.
    let with = format!("{text}\n[archive]\nbase_url = \"https://bulletins.example.org/\"\n");
    let c = bulletin::config::Config::parse(&with, Path::new("test.toml"), &|_| None).unwrap();
    assert_eq!(
        c.archive.web_url(4, false, "zh-Hans").as_deref(),
        Some("https://bulletins.example.org/archive/4/zh-Hans")
    );
    assert_eq!(
        c.archive.web_url(4, true, "en"),
        None,
        "notices are not archived"
    );
    let bad = format!("{text}\n[archive]\nbase_url = \"ftp://x\"\npage_size = 20\n");
    let e = bulletin::config::Config::parse(&bad, Path::new("test.toml"), &|_| None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("archive.base_url") && e.contains("http"), "{e}");
}

#[tokio::test]
async fn the_wechat_article_reads_the_original_at_its_web_version() {
    let fake = crate::fake_wechat::FakeWechat::start().await;
    let t = spawn_app(Options {
        channels: r#"["wechat"]"#,
        wechat: Some(format!(
            "[wechat]\nappid = \"{}\"\napi_base = \"{}\"\nmode = \"draft\"\nauthor = \"LMEC\"\ncover_image = \"{}\"\ntimeout_seconds = 5\n",
            crate::fake_wechat::APPID,
            fake.base(),
            repo_path("config/examples/cover.png").display(),
        )),
        ..Default::default()
    })
    .await;
    t.list_with("partners", &[("a@example.org", None)]).await;
    t.import_seed_approved().await;
    t.app.fire_now("weekday-morning").await.unwrap();
    t.app.run_pending(None).await.unwrap();
    fake.with(|s| {
        let draft = s.drafts.values().next().expect("a draft was added");
        assert_eq!(
            draft["content_source_url"],
            format!("{BASE}/archive/1/en"),
            "{draft}"
        );
    });
}

fn chromium(args: &[&str], profile: &Path) -> std::process::Output {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: tests/run installs Debian's `chromium` package"
    );
    Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            "--allow-file-access-from-files",
            "--virtual-time-budget=5000",
            "--window-size=500,1400",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .output()
        .expect("run chromium")
}

/// Writes a copy of `html` (its relative links resolved against `public`) and a page
/// that shows it in a 420 px wide frame (headless Chromium's window is at least 500 px
/// wide) and, once it is laid out, writes the framed document's scroll width and client
/// width into `data-fit` on its own <body>. Returns the framing page.
fn framed_at_420(html: &str, public: &str, dir: &Path, name: &str) -> PathBuf {
    let page = html.replacen("<head>", &format!("<head><base href=\"{public}/\">"), 1);
    std::fs::write(dir.join(format!("{name}.html")), page).unwrap();
    let frame = dir.join(format!("{name}-at-420.html"));
    std::fs::write(
        &frame,
        format!(
            r#"<!DOCTYPE html><html><body style="margin:0">
<iframe id="f" src="{name}.html" width="420" height="1400" style="border:0;display:block"></iframe>
<script>
const f = document.getElementById("f");
f.addEventListener("load", () => {{
  const d = f.contentDocument.documentElement;
  document.body.setAttribute("data-fit", d.scrollWidth + " " + d.clientWidth);
}});
</script></body></html>"#
        ),
    )
    .unwrap();
    frame
}

/// The (scroll width, client width) Chromium lays the framed page out at.
fn measured(frame: &Path, profile: &Path) -> (u32, u32) {
    let out = chromium(
        &["--dump-dom", &format!("file://{}", frame.display())],
        profile,
    );
    let dom = String::from_utf8_lossy(&out.stdout).to_string();
    let fit = dom.split("data-fit=\"").nth(1).unwrap_or_else(|| {
        panic!(
            "no measurement of {}: {dom}\n{}",
            frame.display(),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let fit = &fit[..fit.find('"').unwrap()];
    let (scroll, client) = fit.split_once(' ').unwrap();
    (scroll.parse().unwrap(), client.parse().unwrap())
}

#[tokio::test]
async fn the_pages_fit_420_px_in_chromium_for_every_script_with_a_screenshot_each() {
    let sink = SmtpSink::start();
    let t = spawn_app(Options {
        smtp_port: sink.port,
        ..Default::default()
    })
    .await;
    t.list_with("partners", &[("reader@example.org", None)])
        .await;
    let scripts = [
        ("latin", "en", "Sharing practice on sustainable infrastructure in the Lancang-Mekong region", "Delegates from six countries compared notes on financing, standards and the monitoring of rivers."),
        ("cjk", "zh-Hans", "澜湄合作绿色经济发展带圆桌对话在昆明成功举行并发布联合声明和行动计划", "来自六国的代表就融资、标准和河流监测交流了经验，并商定了下一步的合作计划。"),
        ("thai", "th", "การประชุมโต๊ะกลมแม่โขงล้านช้างว่าด้วยความร่วมมือด้านเศรษฐกิจสีเขียว", "ผู้แทนจากหกประเทศแลกเปลี่ยนประสบการณ์ด้านการเงินมาตรฐานและการติดตามแม่น้ำอย่างต่อเนื่อง"),
        ("khmer", "km", "កិច្ចប្រជុំតុមូលមេគង្គឡានឆាងស្តីពីកិច្ចសហប្រតិបត្តិការសេដ្ឋកិច្ចបៃតង", "តំណាងមកពីប្រទេសទាំងប្រាំមួយបានចែករំលែកបទពិសោធន៍លើហិរញ្ញវត្ថុ ស្តង់ដារ និងការតាមដានទន្លេ។"),
        ("myanmar", "my", "မဲခေါင်-လန်ချန်း စိမ်းလန်းသောစီးပွားရေး ပူးပေါင်းဆောင်ရွက်မှုဆိုင်ရာ စားပွဲဝိုင်းဆွေးနွေးပွဲ", "နိုင်ငံခြောက်နိုင်ငံမှ ကိုယ်စားလှယ်များသည် ဘဏ္ဍာရေး၊ စံနှုန်းများနှင့် မြစ်များစောင့်ကြည့်ခြင်းဆိုင်ရာ အတွေ့အကြုံများကို ဖလှယ်ခဲ့ကြသည်။"),
    ];
    for (i, (name, lang, title, summary)) in scripts.iter().enumerate() {
        approve(
            &t,
            &format!("{name}.toml"),
            &record_in(&format!("r{i}-{name}"), lang, title, summary),
        )
        .await;
        t.clock.advance(chrono::Duration::seconds(1));
    }
    t.app.fire_now("weekday-morning").await.unwrap();
    t.app.run_pending(None).await.unwrap();
    let http = t.start_http().await;
    let dir = tempfile::tempdir().unwrap();
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("archive-screenshots");
    std::fs::create_dir_all(&shots).unwrap();

    let mut pages: Vec<(String, String, String)> = scripts
        .iter()
        .enumerate()
        .map(|(i, (name, lang, _, _))| {
            (
                name.to_string(),
                lang.to_string(),
                format!("/archive/{}/{lang}", i + 1),
            )
        })
        .collect();
    pages.push(("list".into(), "en".into(), "/archive".into()));
    pages.push(("list-thai".into(), "th".into(), "/archive?lang=th".into()));
    for (name, lang, path) in pages {
        let url = format!("{}{path}", http.public);
        let html = http
            .client
            .get(&url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        // Accessible: the page's language, a heading, and nothing a keyboard cannot
        // reach (plain links only, no tabindex, no click handlers).
        assert!(
            html.contains(&format!("<html lang=\"{lang}\"")),
            "{name}: {html}"
        );
        assert!(html.contains("<h1"), "{name}: no heading");
        assert!(
            !html.contains("tabindex") && !html.contains("onclick"),
            "{name}"
        );
        let frame = framed_at_420(&html, &http.public, dir.path(), &name);
        let profile = dir.path().join(format!("profile-{name}"));
        let f = frame.clone();
        let (scroll, client) = tokio::task::spawn_blocking(move || measured(&f, &profile))
            .await
            .unwrap();
        println!("{name}: scrollWidth {scroll} px in a {client} px wide frame");
        assert!(
            client == 420 && scroll <= client,
            "{name} ({path}) scrolls sideways at 420 px: {scroll} > {client}"
        );

        let shot = shots.join(format!("{name}.png"));
        let _ = std::fs::remove_file(&shot);
        let profile = dir.path().join(format!("profile-shot-{name}"));
        let arg = format!("--screenshot={}", shot.display());
        let target = format!("file://{}", frame.display());
        let out = tokio::task::spawn_blocking(move || chromium(&[&arg, &target], &profile))
            .await
            .unwrap();
        let png = std::fs::read(&shot).unwrap_or_else(|_| {
            panic!(
                "no screenshot of {name}: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        assert!(png.starts_with(b"\x89PNG") && png.len() > 5_000, "{name}");
        println!("screenshot: {}", shot.display());
    }
    // The list shows each entry in its own language.
    let list = http
        .client
        .get(format!("{}/archive", http.public))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for (_, lang, _, _) in scripts {
        assert!(list.contains(&format!("<li lang=\"{lang}\">")), "{lang}");
    }
}
