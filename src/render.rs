//! Rendering: records → a bulletin (subject, e-mail HTML with inlined CSS, plain text),
//! once per bulletin, with Askama templates. Pure: no IO, no clock, no randomness.
//! The per-recipient part (the unsubscribe URL) is left as [`UNSUBSCRIBE_MARK`]: the
//! e-mail channel splices each recipient's link into bodies it encoded once
//! (`channel::email`), and previews fill it in with [`personalise`], which defines the
//! result.

mod dates;
mod fonts;
mod labels;

use crate::config::Publisher;
use crate::domain::record::SessionRecord;
pub use crate::domain::wechat::WechatArticle;
use crate::markdown;
use askama::Template;
pub use dates::format_date;
pub use fonts::{email_font_stack, wechat_font_stack};
pub use labels::{message, Labels};

/// Stands where the recipient's unsubscribe URL goes. Input text cannot contain U+E000.
pub const UNSUBSCRIBE_MARK: &str = "\u{E000}unsubscribe\u{E000}";
/// Stands where the bulletin's web version URL goes ("View in your browser"): the
/// bulletin's id is known only once it is stored, and the link only with a public URL
/// (see [`with_web_url`]).
pub const WEB_VERSION_MARK: &str = "\u{E000}webversion\u{E000}";
const TEXT_WIDTH: usize = 72;

/// A bulletin rendered once, shared by every recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedBulletin {
    pub language: String,
    pub subject: String,
    pub html: String,
    pub text: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("template error: {0}")]
    Template(#[from] askama::Error),
    #[error("CSS inlining failed: {0}")]
    Css(String),
    #[error("a bulletin needs at least one record")]
    Empty,
}

/// A record image as the templates see it.
#[derive(Debug, Clone)]
pub struct ImageRef {
    pub cid: String,
    pub alt: String,
    pub caption: Option<String>,
    pub width: u32,
}

/// The Content-ID of a record's image in e-mail.
pub fn image_cid(record_id: &str, position: usize) -> String {
    format!("img{position}.{record_id}@bulletin")
}

struct HighlightView<'a> {
    speaker: &'a str,
    role: &'a str,
    view_html: String,
    view_text: String,
}

struct Item<'a> {
    record: &'a SessionRecord,
    /// The title wrapped for the plain-text part, and a rule as wide as its widest line.
    title_text: String,
    underline: String,
    date: String,
    format: &'a str,
    summary_html: String,
    summary_text: String,
    attendees_html: String,
    attendees_text: String,
    closing_html: Option<String>,
    closing_text: Option<String>,
    highlights: Vec<HighlightView<'a>>,
    images: Vec<ImageRef>,
}

#[derive(Template)]
#[template(path = "email.html")]
struct EmailHtml<'a> {
    lang: &'a str,
    /// The `font-family` for the text's script ([`email_font_stack`]).
    fonts: &'a str,
    subject: &'a str,
    items: &'a [Item<'a>],
    publisher: &'a Publisher,
    labels: &'a Labels,
    unsubscribe_url: &'a str,
    web_url: &'a str,
}

#[derive(Template)]
#[template(path = "email.txt")]
struct EmailText<'a> {
    items: &'a [Item<'a>],
    publisher: &'a Publisher,
    labels: &'a Labels,
    unsubscribe_url: &'a str,
    web_url: &'a str,
}

fn item<'a>(
    r: &'a SessionRecord,
    labels: &'a Labels,
    image_widths: &[u32],
    to_html: &mut dyn FnMut(&str) -> String,
) -> Item<'a> {
    let title_text = markdown::fill(&r.title, TEXT_WIDTH, "", "");
    let width = title_text.lines().map(unicode_width).max().unwrap_or(0);
    Item {
        record: r,
        title_text,
        underline: "=".repeat(width.max(3)),
        date: format_date(r.held_on, &r.language),
        format: labels.format(r.format),
        summary_html: to_html(&r.summary),
        summary_text: markdown::to_text(&r.summary, TEXT_WIDTH),
        attendees_html: to_html(&r.attendees),
        attendees_text: markdown::to_text(&r.attendees, TEXT_WIDTH),
        closing_html: r.closing.as_deref().map(&mut *to_html),
        closing_text: r
            .closing
            .as_deref()
            .map(|c| markdown::to_text(c, TEXT_WIDTH)),
        highlights: r
            .highlights
            .iter()
            .map(|h| HighlightView {
                speaker: &h.speaker,
                role: &h.role,
                view_html: to_html(&h.view),
                view_text: markdown::to_text(&h.view, TEXT_WIDTH),
            })
            .collect(),
        images: r
            .images
            .iter()
            .enumerate()
            .map(|(i, im)| ImageRef {
                cid: image_cid(r.id.as_str(), i),
                alt: im.alt.clone(),
                caption: im.caption.clone(),
                width: image_widths.get(i).copied().unwrap_or(600).min(584),
            })
            .collect(),
    }
}

fn unicode_width(s: &str) -> usize {
    textwrap::core::display_width(s)
}

/// Renders one bulletin from one record (its own title as subject) or several (a digest).
/// `image_widths[i]` holds the pixel widths of record `i`'s images.
pub fn render_bulletin(
    records: &[SessionRecord],
    image_widths: &[Vec<u32>],
    publisher: &Publisher,
    default_language: &str,
) -> Result<RenderedBulletin, RenderError> {
    let first = records.first().ok_or(RenderError::Empty)?;
    let language = if records.len() == 1 {
        first.language.clone()
    } else {
        let l = &first.language;
        if records.iter().all(|r| &r.language == l) {
            l.clone()
        } else {
            default_language.to_string()
        }
    };
    let labels = Labels::for_language(&language);
    let publisher = &*publisher.for_language(&language);
    let subject = if records.len() == 1 {
        first.title.clone()
    } else {
        labels.digest_subject(&publisher.names[0], records.len())
    };
    let items: Vec<Item> = records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            item(
                r,
                labels,
                image_widths.get(i).map_or(&[], |v| v.as_slice()),
                &mut markdown::to_html,
            )
        })
        .collect();
    let html = EmailHtml {
        lang: &language,
        fonts: &email_font_stack(labels.locale),
        subject: &subject,
        items: &items,
        publisher,
        labels,
        unsubscribe_url: UNSUBSCRIBE_MARK,
        web_url: WEB_VERSION_MARK,
    }
    .render()?;
    let html = css_inline::inline(&html).map_err(|e| RenderError::Css(e.to_string()))?;
    let text = EmailText {
        items: &items,
        publisher,
        labels,
        unsubscribe_url: UNSUBSCRIBE_MARK,
        web_url: WEB_VERSION_MARK,
    }
    .render()?;
    Ok(RenderedBulletin {
        language,
        subject,
        html,
        text: wrap_long_lines(&tidy_text(&text)),
    })
}

/// Wraps every line wider than [`TEXT_WIDTH`] (the one-line fields, the contact block):
/// continuation lines keep the line's indent, under the text of a `- ` item. Markdown
/// fields arrive wrapped already; a line that is one long word (a URL) stays whole.
fn wrap_long_lines(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 32);
    for line in text.split_inclusive('\n') {
        let body = line.trim_end_matches('\n');
        if unicode_width(body) <= TEXT_WIDTH {
            out.push_str(line);
            continue;
        }
        let rest = body.trim_start_matches(' ');
        let indent = &body[..body.len() - rest.len()];
        let hang = if rest.starts_with("- ") {
            format!("{indent}  ")
        } else {
            indent.to_string()
        };
        out.push_str(&markdown::fill(rest, TEXT_WIDTH, indent, &hang));
        if line.ends_with('\n') {
            out.push('\n');
        }
    }
    out
}

/// WeChat's documented limits, applied conservatively as the reference advises (§4.1).
pub const WECHAT_TITLE_MAX: usize = crate::domain::record::WECHAT_TITLE_MAX;
pub const WECHAT_AUTHOR_MAX: usize = 8;
pub const WECHAT_DIGEST_MAX: usize = crate::domain::record::WECHAT_DIGEST_MAX;
/// `content` must stay under 20,000 characters (§6).
pub const WECHAT_CONTENT_MAX: usize = 20_000;

#[derive(Template)]
#[template(path = "wechat_article.html")]
struct WechatHtml<'a> {
    lang: &'a str,
    /// The `font-family` for the text's script ([`wechat_font_stack`]).
    fonts: &'a str,
    items: &'a [Item<'a>],
    notes: &'a [String],
    publisher: &'a Publisher,
    labels: &'a Labels,
    h2_style: &'static str,
}

/// The style of a WeChat section heading (the border takes the text's colour).
const WECHAT_H2: &str =
    "font-size:17px;color:#0b5d4b;border-left:4px solid;padding-left:8px;margin:24px 0 10px";

/// A Markdown fragment of a WeChat article with the inline styles WeChat needs on the
/// elements that would otherwise run together (it ignores <style>): paragraph and list
/// spacing. Everything else inherits from the article's container.
fn wechat_fragment(html: String) -> String {
    html.replace("<p>", "<p style=\"margin:0 0 14px\">")
        .replace("<ul>", "<ul style=\"margin:0 0 14px;padding-left:22px\">")
        .replace("<ol>", "<ol style=\"margin:0 0 14px;padding-left:22px\">")
}

/// Cuts `s` to at most `max` characters (on a character boundary), ending with `…` if cut.
pub fn truncate_chars(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out = out.trim_end().to_string();
    out.push('…');
    out
}

/// Cuts `s` to at most `max` characters at a word boundary — a space, or either side of
/// a CJK character — ending with `…` if cut; punctuation left hanging at the cut goes.
/// Only text with no boundary at all before the limit (one long word, or Thai, Khmer
/// or Burmese, which are written without spaces) is cut at a character.
pub fn truncate_words(s: &str, max: usize) -> String {
    let s = s.trim();
    let chars: Vec<char> = s.chars().collect();
    if chars.len() <= max {
        return s.to_string();
    }
    let limit = max.saturating_sub(1);
    let boundary = |k: usize| {
        let (a, b) = (chars[k - 1], chars[k]);
        a.is_whitespace() || b.is_whitespace() || markdown::is_cjk(a) || markdown::is_cjk(b)
    };
    let hanging = |c: char| c.is_whitespace() || ",;:-–—·/(（、，：；“‘\"'".contains(c);
    let cut_at = |k: usize| {
        let kept: String = chars[..k].iter().collect();
        kept.trim_end_matches(hanging).to_string()
    };
    let mut out = (1..=limit)
        .rev()
        .filter(|&k| boundary(k))
        .map(cut_at)
        .find(|t| !t.is_empty())
        .unwrap_or_else(|| {
            chars[..limit]
                .iter()
                .collect::<String>()
                .trim_end()
                .to_string()
        });
    out.push('…');
    out
}

/// Renders the WeChat article for one record or a digest. Title, author and digest are cut
/// to WeChat's limits; the full title stays in the body.
pub fn render_wechat_article(
    records: &[SessionRecord],
    publisher: &Publisher,
    default_language: &str,
    author: &str,
) -> Result<WechatArticle, RenderError> {
    let first = records.first().ok_or(RenderError::Empty)?;
    let language = if records.iter().all(|r| r.language == first.language) {
        first.language.clone()
    } else {
        default_language.to_string()
    };
    let labels = Labels::for_language(&language);
    let publisher = &*publisher.for_language(&language);
    let mut notes = Vec::new();
    let items: Vec<Item> = records
        .iter()
        .map(|r| {
            item(r, labels, &[], &mut |md| {
                wechat_fragment(markdown::to_wechat_html(md, &mut notes))
            })
        })
        .collect();
    let html = WechatHtml {
        lang: &language,
        fonts: &wechat_font_stack(labels.locale),
        items: &items,
        notes: &notes,
        publisher,
        labels,
        h2_style: WECHAT_H2,
    }
    .render()?
    .trim()
    .to_string();
    let title = if records.len() == 1 {
        first
            .wechat_title
            .clone()
            .unwrap_or_else(|| first.title.clone())
    } else {
        labels.digest_subject(&publisher.names[0], records.len())
    };
    let digest = match (&first.wechat_digest, records.len()) {
        (Some(d), 1) => d.clone(),
        _ => {
            let summary = markdown::to_text(&first.summary, usize::MAX);
            summary.split_whitespace().collect::<Vec<_>>().join(" ")
        }
    };
    Ok(WechatArticle {
        title: truncate_words(&title, WECHAT_TITLE_MAX),
        author: truncate_chars(author, WECHAT_AUTHOR_MAX),
        digest: truncate_words(&digest, WECHAT_DIGEST_MAX),
        html,
    })
}

/// What an image's `cid:` reference is counted as in [`wechat_content_size`]: the length
/// of a long `media/uploadimg` URL (`http://mmbiz.qpic.cn/mmbiz_jpg/…/0?wx_fmt=jpeg`),
/// which replaces it when the article is sent.
const WECHAT_IMAGE_URL_CHARS: usize = 160;

/// The size WeChat counts for an article's `content` (§4.1, §6: characters, limit
/// [`WECHAT_CONTENT_MAX`]), each image reference counted as an uploaded image's URL.
pub fn wechat_content_size(html: &str) -> usize {
    let refs = html.matches("src=\"cid:").count();
    let ref_chars: usize = html
        .split("src=\"cid:")
        .skip(1)
        .map(|rest| "cid:".len() + rest.find('"').unwrap_or(0))
        .sum();
    html.chars().count() - ref_chars + refs * WECHAT_IMAGE_URL_CHARS
}

/// An article over one of WeChat's limits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WechatLimitError {
    /// The title, author or digest is too long (or the title empty).
    #[error("the article's {part} is {chars} characters; WeChat takes at most {max}")]
    Part {
        part: &'static str,
        chars: usize,
        max: usize,
    },
    /// The content is too large.
    #[error(
        "the article is {} characters; WeChat takes under {} (and under 1 MB)",
        thousands(*chars),
        thousands(WECHAT_CONTENT_MAX)
    )]
    Content { chars: usize },
}

/// The limits WeChat's draft/add enforces on an article (§4.1, §6), as this client
/// applies them: title, author and digest lengths and the content size. The outbox
/// (dry-run) backend refuses what the real API would.
pub fn check_wechat_limits(a: &WechatArticle) -> Result<(), WechatLimitError> {
    let over =
        |part: &'static str, chars: usize, max: usize| WechatLimitError::Part { part, chars, max };
    let n = a.title.chars().count();
    if n == 0 || n > WECHAT_TITLE_MAX {
        return Err(over("title", n, WECHAT_TITLE_MAX));
    }
    let n = a.author.chars().count();
    if n > WECHAT_AUTHOR_MAX {
        return Err(over("author", n, WECHAT_AUTHOR_MAX));
    }
    let n = a.digest.chars().count();
    if n > WECHAT_DIGEST_MAX {
        return Err(over("digest", n, WECHAT_DIGEST_MAX));
    }
    let n = wechat_content_size(&a.html);
    if n >= WECHAT_CONTENT_MAX || a.html.len() >= 1 << 20 {
        return Err(WechatLimitError::Content { chars: n });
    }
    Ok(())
}

/// `n` with thousands separators (`14,210`), for messages about sizes.
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The size of `record`'s WeChat article as `config` renders it, and the first schedule
/// that sends over WeChat (`None`: no schedule does, the size does not matter).
pub fn wechat_article_size(
    config: &crate::config::Config,
    record: &SessionRecord,
) -> Result<(usize, Option<String>), RenderError> {
    let author = config.wechat.as_ref().map_or("", |w| w.author.as_str());
    let a = render_wechat_article(
        std::slice::from_ref(record),
        &config.publisher,
        &config.default_language,
        author,
    )?;
    let schedule = config
        .schedules
        .iter()
        .find(|s| s.channels.contains(&crate::domain::ChannelKind::Wechat))
        .map(|s| s.name.clone());
    Ok((wechat_content_size(&a.html), schedule))
}

/// Why a record cannot be approved.
#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    #[error(transparent)]
    Render(#[from] RenderError),
    /// Its WeChat article is over WeChat's limit while a schedule sends over WeChat.
    #[error(
        "record `{record}` cannot be approved: its WeChat article is {} characters and WeChat takes under {} (schedule `{schedule}` sends over WeChat); shorten the record or split it",
        thousands(*size),
        thousands(WECHAT_CONTENT_MAX)
    )]
    ArticleTooLong {
        record: String,
        size: usize,
        schedule: String,
    },
}

/// The check before a record is approved (CLI and admin API): while a schedule sends
/// over WeChat, its article must fit WeChat's limit. The error gives the size, the limit
/// and the schedule.
pub fn check_approvable(
    config: &crate::config::Config,
    record: &SessionRecord,
) -> Result<(), ApprovalError> {
    let (size, schedule) = wechat_article_size(config, record)?;
    match schedule {
        Some(schedule) if size >= WECHAT_CONTENT_MAX => Err(ApprovalError::ArticleTooLong {
            record: record.id.to_string(),
            size,
            schedule,
        }),
        _ => Ok(()),
    }
}

/// Collapses runs of blank lines the template's conditionals leave behind.
pub(crate) fn tidy_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut blank = 0;
    for line in s.lines() {
        let line = line.trim_end();
        if line.is_empty() {
            blank += 1;
            if blank > 1 {
                continue;
            }
        } else {
            blank = 0;
        }
        out.push_str(line);
        out.push('\n');
    }
    out.trim_start_matches('\n').to_string()
}

/// The "View in your browser" block of the HTML, as the templates write it.
const WEB_BLOCK_START: &str = "<div class=\"webview\"";

/// Removes the first `<div class="webview"…>…</div>` (the templates' "View in your
/// browser" block, which holds one link and no other `div`).
fn without_web_block(html: &str) -> String {
    let Some(start) = html.find(WEB_BLOCK_START) else {
        return html.to_string();
    };
    let Some(len) = html[start..].find("</div>") else {
        return html.to_string();
    };
    let mut end = start + len + "</div>".len();
    if html[end..].starts_with('\n') {
        end += 1;
    }
    format!("{}{}", &html[..start], &html[end..])
}

/// A rendered HTML or text body with its "View in your browser" link made real: `url`
/// in place of [`WEB_VERSION_MARK`], or without a URL (no public archive) the link's
/// block (HTML) or line (text) left out.
pub fn with_web_url(body: &str, url: Option<&str>) -> String {
    match url {
        Some(u) => body.replace(WEB_VERSION_MARK, u),
        None if body.contains(WEB_BLOCK_START) => without_web_block(body),
        None => body
            .split_inclusive('\n')
            .filter(|l| !l.contains(WEB_VERSION_MARK))
            .collect(),
    }
}

/// The web version of a bulletin from its stored HTML: the e-mail's HTML without any
/// personal link (the unsubscribe link goes, with its `<a>` element; the words around
/// it stay), without the "View in your browser" block, and with each inline image
/// (`cid:CID`) at `image_base` + CID.
pub fn web_version(html: &str, image_base: &str) -> String {
    let mut out = without_web_block(html);
    while let Some(mark) = out.find(UNSUBSCRIBE_MARK) {
        let (Some(open), Some(close)) = (
            out[..mark].rfind("<a "),
            out[mark..].find("</a>").map(|c| mark + c + "</a>".len()),
        ) else {
            out = out.replace(UNSUBSCRIBE_MARK, "");
            break;
        };
        out.replace_range(open..close, "");
    }
    out.replace("src=\"cid:", &format!("src=\"{image_base}"))
        .replace(WEB_VERSION_MARK, "")
}

/// Fills in one recipient's unsubscribe URL (previews; the e-mail channel produces the
/// same text, already encoded).
pub fn personalise(rendered: &str, unsubscribe_url: &str) -> String {
    rendered.replace(UNSUBSCRIBE_MARK, unsubscribe_url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wechat_titles_are_cut_at_words_or_cjk_characters() {
        let t = "Parallel Session 2: Sharing Practice on Lancang-Mekong Sustainable Infrastructure";
        assert_eq!(truncate_words(t, 32), "Parallel Session 2: Sharing…");
        assert_eq!(truncate_words("Short title", 32), "Short title");
        // Never mid-word; punctuation at the cut goes.
        assert_eq!(
            truncate_words("Water, energy, food and ecosystems", 16),
            "Water, energy…"
        );
        assert_eq!(
            truncate_words(
                "澜湄合作绿色经济发展带圆桌对话在昆明成功举行并发布联合声明和行动计划",
                10
            ),
            "澜湄合作绿色经济发…"
        );
        assert_eq!(
            truncate_words("澜湄合作：绿色经济发展带圆桌对话", 6),
            "澜湄合作…"
        );
        // Mixed: the cut may fall before an ideograph, never inside the Latin word.
        assert_eq!(truncate_words("LMC绿色Development圆桌", 12), "LMC绿色…");
        // No boundary at all: one long word is cut at a character.
        let thai = "การประชุมโต๊ะกลมแม่โขงล้านช้างว่าด้วยความร่วมมือ";
        let cut = truncate_words(thai, 10);
        assert_eq!(cut.chars().count(), 10);
        assert!(thai.starts_with(cut.trim_end_matches('…')));
        for s in [
            t,
            thai,
            "澜湄合作绿色经济发展带圆桌对话在昆明成功举行并发布联合声明和行动计划",
        ] {
            for max in 2..40 {
                assert!(truncate_words(s, max).chars().count() <= max);
            }
        }
    }

    #[test]
    fn wechat_size_counts_images_as_uploaded_urls_and_limits_are_checked() {
        let img = r#"<img src="cid:img0.rec@bulletin" alt="x">"#;
        let html = format!("<p>ab</p>{img}{img}");
        let expected =
            html.chars().count() - 2 * "cid:img0.rec@bulletin".len() + 2 * WECHAT_IMAGE_URL_CHARS;
        assert_eq!(wechat_content_size(&html), expected);
        assert_eq!(wechat_content_size("<p>澜湄</p>"), 9);
        assert_eq!(thousands(19_562), "19,562");
        assert_eq!(thousands(999), "999");
        let ok = WechatArticle {
            title: "t".into(),
            author: "a".into(),
            digest: "d".into(),
            html: "<p>x</p>".into(),
        };
        assert_eq!(check_wechat_limits(&ok), Ok(()));
        let long = |f: &dyn Fn(&mut WechatArticle)| {
            let mut a = ok.clone();
            f(&mut a);
            check_wechat_limits(&a).unwrap_err().to_string()
        };
        assert!(long(&|a| a.title = "x".repeat(33)).contains("title is 33 characters"));
        assert!(long(&|a| a.digest = "x".repeat(121)).contains("digest is 121"));
        assert!(long(&|a| a.html = "x".repeat(20_000))
            .contains("20,000 characters; WeChat takes under 20,000"));
    }

    #[test]
    fn the_web_link_is_filled_in_or_left_out_and_the_web_version_has_no_personal_link() {
        let record = crate::domain::record::parse_record(
            include_str!("../config/examples/records/lmc-2020-parallel-session-2.toml"),
            "r.toml",
            "en",
        )
        .unwrap();
        let publisher = Publisher {
            names: vec!["Centre".into()],
            address: vec![],
            phone: None,
            fax: None,
            emails: vec![],
            website: None,
            wechat_id: None,
            i18n: Default::default(),
        };
        let r = render_bulletin(&[record], &[], &publisher, "en").unwrap();
        assert!(r.html.contains(WEB_VERSION_MARK) && r.text.contains(WEB_VERSION_MARK));
        let url = "https://news.example.org/archive/7/en";
        let html = with_web_url(&r.html, Some(url));
        assert!(html.contains(&format!("href=\"{url}\"")), "{html}");
        assert!(html.contains("View in your browser"));
        let text = with_web_url(&r.text, Some(url));
        assert!(
            text.contains(&format!("View in your browser: {url}\n")),
            "{text}"
        );
        // No public URL: no link, nothing else changed.
        let html = with_web_url(&r.html, None);
        assert!(!html.contains("View in your browser") && !html.contains(WEB_VERSION_MARK));
        assert_eq!(html.len(), without_web_block(&r.html).len());
        let text = with_web_url(&r.text, None);
        assert!(!text.contains("View in your browser") && !text.contains(WEB_VERSION_MARK));
        assert!(text.contains("Unsubscribe: "));

        let web = web_version(&r.html, "/archive/7/images/");
        assert!(!web.contains(UNSUBSCRIBE_MARK) && !web.contains(WEB_VERSION_MARK));
        assert!(!web.contains("View in your browser") && !web.contains(">Unsubscribe<"));
        assert!(web.contains("You receive this bulletin because"));
        assert!(!web.contains("cid:"));
        // (The example has no image; an inline one is pointed at the archive.)
        assert_eq!(
            web_version("<img src=\"cid:img0.r@bulletin\">", "/archive/7/images/"),
            "<img src=\"/archive/7/images/img0.r@bulletin\">"
        );
        assert!(web.starts_with("<!DOCTYPE html>") && web.contains("<html lang=\"en\">"));
    }

    #[test]
    fn truncation_respects_characters() {
        assert_eq!(truncate_chars("short", 32), "short");
        let thai = "การประชุมโต๊ะกลมแม่โขง-ล้านช้างว่าด้วยความร่วมมือ";
        let t = truncate_chars(thai, 10);
        assert_eq!(t.chars().count(), 10);
        assert!(t.ends_with('…') && thai.starts_with(t.trim_end_matches('…')));
        assert_eq!(
            truncate_chars("澜湄合作绿色经济发展带圆桌对话", 5),
            "澜湄合作…"
        );
    }
}
