//! Text fidelity (issue 12, items 1–4): what a record says reaches every part of a
//! bulletin — the plain text, the HTML and the WeChat article — word for word, wrapped
//! for reading, with WeChat's limits known before anything is sent.

use crate::harness::*;
use bulletin::config::{Config, Publisher};
use bulletin::domain::record::parse_record;
use bulletin::domain::DeliveryStatus;
use bulletin::domain::SessionRecord;
use bulletin::render::{render_bulletin, render_wechat_article};
use html5ever::tokenizer::{
    BufferQueue, Tag, TagKind, Token, TokenSink, TokenSinkResult, Tokenizer, TokenizerOpts,
};
use rand::{Rng, SeedableRng};
use std::cell::{Cell, RefCell};
use std::path::Path;

pub fn publisher() -> Publisher {
    let text = config_text(Path::new("/nonexistent/bulletin.db"), &Options::default());
    Config::parse(&text, Path::new("test.toml"), &|_| None)
        .expect("test config")
        .publisher
}

/// The text a reader sees: character data outside `<head>`, `<script>` and `<style>`,
/// image alt text in its place, block elements apart. Tokenised by html5ever (WHATWG).
struct Visible {
    text: RefCell<String>,
    hidden: Cell<usize>,
}

impl TokenSink for Visible {
    type Handle = ();
    fn process_token(&self, token: Token, _line: u64) -> TokenSinkResult<()> {
        match token {
            Token::CharacterTokens(t) if self.hidden.get() == 0 => {
                self.text.borrow_mut().push_str(&t)
            }
            Token::TagToken(Tag {
                kind, name, attrs, ..
            }) => {
                let name: &str = &name;
                let hides = matches!(name, "head" | "script" | "style" | "title");
                match kind {
                    TagKind::StartTag if hides => self.hidden.set(self.hidden.get() + 1),
                    TagKind::EndTag if hides => {
                        self.hidden.set(self.hidden.get().saturating_sub(1))
                    }
                    _ => {}
                }
                if kind == TagKind::StartTag && name == "img" {
                    if let Some(a) = attrs.iter().find(|a| &*a.name.local == "alt") {
                        let alt = format!(" {} ", a.value);
                        self.text.borrow_mut().push_str(&alt);
                    }
                }
                if !matches!(
                    name,
                    "a" | "b" | "strong" | "em" | "i" | "span" | "sup" | "code" | "del" | "s"
                ) {
                    self.text.borrow_mut().push(' ');
                }
            }
            _ => {}
        }
        TokenSinkResult::Continue
    }
}

pub fn visible_text(html: &str) -> String {
    let tok = Tokenizer::new(
        Visible {
            text: RefCell::new(String::new()),
            hidden: Cell::new(0),
        },
        TokenizerOpts::default(),
    );
    let input = BufferQueue::default();
    input.push_back(html.into());
    let _ = tok.feed(&input);
    tok.end();
    tok.sink.text.take()
}

/// The words of the plain-text part that must be visible in the HTML, in order: the
/// body up to the unsubscribe footer, without the text-only furniture (title rule, the
/// `—` joining a speaker to their role,
/// list markers, table rules, `<url>` after a link's text, `[Image: …]` lines, whose alt
/// text the HTML carries as an attribute).
fn plain_words(text: &str) -> Vec<String> {
    let body = text.split("\n--\n").next().unwrap();
    let mut words = Vec::new();
    let mut in_image = false;
    for line in body.lines() {
        if line.starts_with("[Image: ") {
            in_image = true;
        }
        if in_image {
            in_image = !line.ends_with(']');
            continue;
        }
        for w in line.split_whitespace() {
            let furniture = w.chars().all(|c| "=-—".contains(c))
                || (w.ends_with('.') && w[..w.len() - 1].chars().all(|c| c.is_ascii_digit()))
                || is_link_target(w);
            if !furniture {
                words.push(w.to_lowercase());
            }
        }
    }
    words
}

/// `<https://…>` (possibly followed by punctuation): a link's target after its text.
fn is_link_target(w: &str) -> bool {
    let Some(rest) = w.strip_prefix('<') else {
        return false;
    };
    let scheme: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || "+.-".contains(*c))
        .collect();
    !scheme.is_empty() && rest[scheme.len()..].starts_with(':')
}

/// Every plain-text word is found in `visible`, each after the one before.
fn assert_words_in_order(what: &str, text: &str, html: &str) {
    let visible = visible_text(html).to_lowercase();
    let mut at = 0;
    for w in plain_words(text) {
        match visible[at..].find(&w) {
            Some(i) => at += i + w.len(),
            None => panic!(
                "{what}: the plain-text word `{w}` is not in the visible text after position {at}:\n…{}\n\nplain text:\n{text}",
                &visible[(0..=at.saturating_sub(200))
                    .rev()
                    .find(|i| visible.is_char_boundary(*i))
                    .unwrap_or(0)..]
            ),
        }
    }
}

fn check_record(what: &str, r: &SessionRecord, p: &Publisher) {
    let b = render_bulletin(std::slice::from_ref(r), &[], p, "en").unwrap();
    assert_words_in_order(&format!("{what} (e-mail HTML)"), &b.text, &b.html);
    let w = render_wechat_article(std::slice::from_ref(r), p, "en", "LMEC").unwrap();
    assert_words_in_order(&format!("{what} (WeChat article)"), &b.text, &w.html);
}

fn file_records() -> Vec<(String, SessionRecord)> {
    ["config/examples/records", "tests/corpus/accepted"]
        .iter()
        .flat_map(|d| std::fs::read_dir(repo_path(d)).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .map(|p| {
            let name = p.display().to_string();
            let src = std::fs::read_to_string(&p).unwrap();
            let r = parse_record(&src, &name, "en").unwrap();
            (name, r)
        })
        .collect()
}

const PIECES: &[&str] = &[
    "<and>",
    "<or>",
    "<draft>",
    "<MONRE>",
    "<Word>",
    "R&D",
    "&",
    "&amp;",
    "*",
    "2 * 3",
    "**bold**",
    "*em*",
    "a<br>b",
    "c<div>d</div>e",
    "<li>",
    "a*b",
    "<b>x</b>",
    "<i>",
    "</span>",
    "[the site](https://example.org/a/b?c=d&e=f)",
    "<https://example.org/auto>",
    "`<code>`",
    "泰国",
    "ประเทศไทย",
    "ខ្មែរ",
    "\\<esc>",
    "x<y",
    "<!-- c -->",
    "Delegates",
    "water",
    "energy",
    "\"quoted\"",
    "50%",
    "#tag",
    "_under_",
];

fn generated_markdown(rng: &mut rand::rngs::StdRng) -> String {
    let mut md = String::new();
    for _ in 0..rng.random_range(1..5) {
        match rng.random_range(0..6) {
            0 => md.push_str("1. "),
            1 => md.push_str("- "),
            2 => md.push_str("<draft>\n"),
            _ => {}
        }
        for _ in 0..rng.random_range(1..25) {
            md.push_str(PIECES[rng.random_range(0..PIECES.len())]);
            md.push(if rng.random_range(0..8) == 0 {
                '\n'
            } else {
                ' '
            });
        }
        md.push_str("\n\n");
    }
    md
}

fn generated_line(rng: &mut rand::rngs::StdRng) -> String {
    let n = rng.random_range(1..20);
    (0..n)
        .map(|_| PIECES[rng.random_range(0..PIECES.len())].replace(['`', '\\', '"'], ""))
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(190)
        .collect::<String>()
        .trim()
        .to_string()
}

fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// Item 1: over the example, the accepted corpus and generated records full of `<word>`s,
/// `&`, `*` and links, every word of the plain-text part is in the visible text of the
/// HTML part and of the WeChat article, in the same order.
#[test]
fn every_plain_text_word_is_visible_in_the_html_and_the_wechat_article() {
    let p = publisher();
    for (name, r) in file_records() {
        check_record(&name, &r, &p);
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(12);
    for i in 0..150 {
        let src = format!(
            "id = \"gen-{i}\"\ntitle = {}\nevent = {}\nsession = {}\nheld_on = 2026-02-27\nformat = \"online\"\nsummary = {}\nattendees = {}\ntopics = [{}]\n[[highlights]]\nspeaker = {}\nrole = {}\nview = {}\n",
            toml_str(&generated_line(&mut rng)),
            toml_str(&generated_line(&mut rng)),
            toml_str(&generated_line(&mut rng)),
            toml_str(&generated_markdown(&mut rng)),
            toml_str(&generated_markdown(&mut rng)),
            toml_str(&generated_line(&mut rng)),
            toml_str(&generated_line(&mut rng)),
            toml_str(&generated_line(&mut rng)),
            toml_str(&generated_markdown(&mut rng)),
        );
        let r = parse_record(&src, &format!("gen-{i}.toml"), "en")
            .unwrap_or_else(|e| panic!("{e}\n{src}"));
        check_record(&format!("generated record {i}:\n{src}"), &r, &p);
    }
}

/// Item 2: every line of the plain-text part, one-line fields included, fits 72
/// columns, except a line that is one URL, which stands whole; numbered lists keep
/// their numbers and nesting; tables are aligned columns.
#[test]
fn plain_text_is_wrapped_urls_whole_lists_numbered_tables_aligned() {
    let p = publisher();
    for (name, r) in file_records() {
        let b = render_bulletin(std::slice::from_ref(&r), &[], &p, "en").unwrap();
        for line in b.text.lines() {
            let width = textwrap::core::display_width(line);
            assert!(
                width <= 72 || !line.trim().contains(' '),
                "{name}: a {width}-column line: {line:?}\n{}",
                b.text
            );
        }
        if !name.ends_with("angle-words.toml") {
            continue;
        }
        let t = &b.text;
        assert!(
            t.starts_with("R&D <and> Innovation <or> Cooperation: <draft> Report of the\nLancang-Mekong Roundtable on Water Resources, Ecology and Sustainable\nDevelopment in the Basin Countries\n=====================================================================\n"),
            "the title is wrapped and underlined as wide as its widest line:\n{t}"
        );
        for url in [
            "https://meet.example.org/rooms/lancang-mekong-roundtable-2026-session-a-very-long-room-name",
            "<https://example.org/reports/2026/lancang-mekong/roundtable-session-a-final-report-with-annexes.pdf>.",
        ] {
            assert!(t.lines().any(|l| l == url), "{url} whole on its own line:\n{t}");
        }
        assert!(t.contains("\n1. First point\n2. Second point, long enough to wrap onto the next line of the\n   plain-text part of the bulletin\n   - a nested bullet\n   - another <or> one\n3. Third point\n"), "{t}");
        assert!(t.contains("\nCountry   Delegates  Notes\n--------  ---------  --------------\nThailand          5  <MONRE> & ONEP\nLao PDR          12  MONRE\n"), "{t}");
        assert!(t.contains("\n- A topic long enough that it has to be wrapped in the plain-text part\n  of the bulletin, which is 72 columns\n"), "{t}");
        assert!(t.contains("\nSponsored by: Ministry <of> Ecology and Environment of the People's\nRepublic of China;"), "{t}");
    }
}

/// Item 3: the WeChat title and digest are cut at a word (CJK: a character) with an
/// ellipsis; a record may give its own short title and digest for WeChat.
#[test]
fn wechat_title_and_digest_are_cut_at_words_or_given_by_the_record() {
    let p = publisher();
    let (_, seed) = file_records()
        .into_iter()
        .find(|(n, _)| n.ends_with(SEED_RECORD))
        .unwrap();
    let a = render_wechat_article(std::slice::from_ref(&seed), &p, "en", "LMEC").unwrap();
    // "Parallel Session 2: Sharing Practice on Lancang-Mekong …" (124 characters).
    assert_eq!(a.title, "Parallel Session 2: Sharing…");
    assert!(
        a.digest.chars().count() <= 120 && a.digest.ends_with('…'),
        "{}",
        a.digest
    );
    let kept = a.digest.trim_end_matches('…');
    let summary = seed
        .summary
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(summary.starts_with(kept), "{kept}");
    let next = summary[kept.len()..].chars().next();
    assert!(
        next.is_none_or(|c| c == ' ' || c == ',' || c == '.'),
        "cut mid-word: {kept}"
    );

    let src = std::fs::read_to_string(repo_path(SEED_RECORD)).unwrap().replacen(
        "\ntitle = ",
        "\nwechat_title = \"LMC Parallel Session 2\"\nwechat_digest = \"Experts shared practice on green infrastructure.\"\ntitle = ",
        1,
    );
    let r = parse_record(&src, "short.toml", "en").unwrap();
    let a = render_wechat_article(std::slice::from_ref(&r), &p, "en", "LMEC").unwrap();
    assert_eq!(a.title, "LMC Parallel Session 2");
    assert_eq!(a.digest, "Experts shared practice on green infrastructure.");
    assert!(
        a.html.contains(&seed.title),
        "the full title stays in the article"
    );
    assert_ne!(
        r.content_hash(&[]),
        seed.content_hash(&[]),
        "the short title is content: changing it needs approval again"
    );

    let zh = src.replace(
        "LMC Parallel Session 2",
        "澜湄合作绿色经济发展带圆桌对话在昆明成功举行并发布联合声明和行动计划",
    );
    let e = parse_record(&zh, "zh.toml", "en").unwrap_err().to_string();
    assert!(
        e.starts_with("zh.toml:18:16: wechat_title: is 34 characters long; the limit is 32"),
        "{e}"
    );
}

/// The seed record with its highlights repeated to `speakers` speakers.
pub fn record_with_speakers(speakers: usize) -> String {
    let src = std::fs::read_to_string(repo_path(SEED_RECORD)).unwrap();
    let start = src.find("[[highlights]]").unwrap();
    let end = src[start..]
        .find("[[images]]")
        .map_or(src.len(), |e| start + e);
    let blocks: Vec<String> = src[start..end]
        .split("[[highlights]]")
        .filter(|b| !b.trim().is_empty())
        .map(|b| format!("[[highlights]]{b}"))
        .collect();
    let mut out = src[..start].to_string();
    for i in 0..speakers {
        out.push_str(&blocks[i % blocks.len()]);
        if !out.ends_with('\n') {
            out.push('\n');
        }
    }
    out.push_str(&src[end..]);
    out
}

fn article_size(src: &str) -> usize {
    let r = parse_record(src, "x.toml", "en").unwrap();
    let a = render_wechat_article(std::slice::from_ref(&r), &publisher(), "en", "LMEC").unwrap();
    bulletin::render::wechat_content_size(&a.html)
}

/// Item 4: a typical session's article fits WeChat's 20,000 characters with room to
/// spare (before the styles were cut: seed 10,097, 18 speakers 19,562).
#[test]
fn a_typical_session_fits_wechat_with_room_to_spare() {
    let seed = article_size(&std::fs::read_to_string(repo_path(SEED_RECORD)).unwrap());
    assert!(seed < 9_000, "the seed article is {seed} characters");
    let eighteen = article_size(&record_with_speakers(18));
    assert!(eighteen < 18_000, "18 speakers: {eighteen} characters");
    let thirty = article_size(&record_with_speakers(30));
    assert!(thirty >= 20_000, "30 speakers: {thirty} characters");
}

/// A folder with a configuration whose schedule sends over e-mail and WeChat (to the
/// WeChat outbox: nothing leaves the machine) and a record with `speakers` speakers.
fn wechat_store(speakers: usize) -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bulletin.toml");
    let o = Options {
        channels: r#"["email", "wechat"]"#,
        wechat: Some(format!(
            "[wechat]\nappid = \"wx0123456789abcdef\"\nauthor = \"LMEC\"\ncover_image = \"{}\"\noutbox_dir = \"{}\"\n",
            repo_path("config/examples/cover.png").display(),
            dir.path().join("wechat-outbox").display()
        )),
        ..Default::default()
    };
    std::fs::write(&config, config_text(&dir.path().join("b.db"), &o)).unwrap();
    let record = dir.path().join("long.toml");
    // Without the seed's images, which are not next to the copy.
    let body = record_with_speakers(speakers);
    std::fs::write(
        &record,
        &body[..body.find("[[images]]").unwrap_or(body.len())],
    )
    .unwrap();
    (dir, config, record)
}

/// Item 4: the size is shown at import and by `preview --channel wechat`, and a record
/// whose article is too long cannot be approved while a schedule sends over WeChat.
#[test]
fn an_article_too_long_for_wechat_is_shown_and_cannot_be_approved() {
    use crate::crash::{cli, run_ok};
    let (_dir, config, record) = wechat_store(30);
    let size =
        bulletin::render::thousands(article_size(&std::fs::read_to_string(&record).unwrap()));
    run_ok(cli(&config).args(["store", "init"]));
    let out = run_ok(cli(&config).arg("import").arg(&record));
    assert!(
        out.contains(&format!("WeChat article: {size} of 20,000 characters; too long to approve while schedule `weekday-morning` sends over WeChat")),
        "{out}"
    );
    let out = cli(&config)
        .args([
            "preview",
            "lmc-2020-parallel-session-2",
            "--channel",
            "wechat",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("article: {size} of 20,000 characters")),
        "{stderr}"
    );

    let out = cli(&config)
        .args(["approve", "lmc-2020-parallel-session-2", "--by", "editor"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "approved: {stderr}");
    assert!(
        stderr.contains(&format!("record `lmc-2020-parallel-session-2` cannot be approved: its WeChat article is {size} characters and WeChat takes under 20,000 (schedule `weekday-morning` sends over WeChat)")),
        "{stderr}"
    );
    let records = run_ok(cli(&config).args(["records", "--json"]));
    assert!(records.contains("\"state\": \"draft\""), "{records}");
}

/// Item 4: the admin API's approve refuses it too (422, with size, limit and schedule);
/// without a WeChat schedule the same record is approved.
#[tokio::test]
async fn the_admin_api_refuses_to_approve_an_article_too_long_for_wechat() {
    let body = record_with_speakers(30);
    let body = &body[..body.find("[[images]]").unwrap_or(body.len())];
    for (channels, refused) in [(r#"["email", "wechat"]"#, true), (r#"["email"]"#, false)] {
        let t = spawn_app(Options {
            channels,
            wechat: Some(format!(
                "[wechat]\nappid = \"wx0123456789abcdef\"\ncover_image = \"{}\"\noutbox_dir = \"wechat-outbox\"\n",
                repo_path("config/examples/cover.png").display()
            )),
            ..Default::default()
        })
        .await;
        let id = t.import(&t.write_record("long.toml", body)).await;
        let http = t.start_http().await;
        let r = http
            .post(&format!("/api/records/{id}/approve"))
            .json(&serde_json::json!({"by": "editor"}))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let v: serde_json::Value = r.json().await.unwrap();
        if refused {
            assert_eq!(status, 422, "{v}");
            let m = v.to_string();
            assert!(
                m.contains("article_too_long")
                    && m.contains("WeChat takes under 20,000")
                    && m.contains("schedule `weekday-morning`"),
                "{v}"
            );
        } else {
            assert_eq!(status, 200, "{v}");
        }
    }
}

/// Item 4: the dry-run (outbox) WeChat backend refuses what the real API would: the
/// delivery fails, permanently, with the reason; it is not recorded `sent`.
#[tokio::test]
async fn the_wechat_outbox_enforces_the_api_limits() {
    let body = record_with_speakers(30);
    let body = &body[..body.find("[[images]]").unwrap_or(body.len())];
    let t =
        spawn_app(Options {
            channels: r#"["wechat"]"#,
            wechat: Some(format!(
            "[wechat]\nappid = \"wx0123456789abcdef\"\ncover_image = \"{}\"\noutbox_dir = \"{}\"\n",
            repo_path("config/examples/cover.png").display(),
            std::env::temp_dir().join("bulletin-fidelity-outbox").display()
        )),
            ..Default::default()
        })
        .await;
    t.list_with("partners", &[("a@example.org", None)]).await;
    let id = t.import(&t.write_record("long.toml", body)).await;
    // Approved past the check (as a store written by an older version could hold it).
    t.app
        .store
        .approve_record(&id, "approver", t.clock_now())
        .await
        .unwrap();
    t.app.fire_now("weekday-morning").await.unwrap();
    t.app.run_pending(None).await.unwrap();
    let rows = t
        .app
        .store
        .deliveries(&bulletin::store::DeliveryFilter {
            channel: Some(bulletin::domain::ChannelKind::Wechat),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(row.status, DeliveryStatus::Failed, "{row:?}");
    let reply = format!("{row:?}");
    assert!(reply.contains("WeChat takes under 20,000"), "{reply}");
}
