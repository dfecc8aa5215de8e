//! Markdown fields of a record: to sanitised HTML (pulldown-cmark + ammonia) and to plain text.
//!
//! Raw HTML in a field is honoured only for the tags the sanitiser permits (and
//! `<script>`/`<style>`, which it drops with their content); any other `<word>` — `<and>`,
//! `<draft>`, `<MONRE>`, `<iframe>` — is text and is shown as typed, in every part.

use pulldown_cmark::{Alignment, Event, Options, Parser, Tag, TagEnd};
use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::OnceLock;

fn options() -> Options {
    Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TABLES
}

/// The tags raw HTML may use: those the sanitiser keeps, and those it drops with their
/// content. Everything else in angle brackets is text.
fn permitted_tags() -> &'static HashSet<&'static str> {
    static TAGS: OnceLock<HashSet<&'static str>> = OnceLock::new();
    TAGS.get_or_init(|| {
        let b = ammonia::Builder::default();
        let mut tags = b.clone_tags();
        tags.extend(b.clone_clean_content_tags());
        tags
    })
}

/// Byte offsets (in `fragment`) of each `<` that opens a tag outside [`permitted_tags`].
fn unpermitted_tag_starts(fragment: &str) -> Vec<usize> {
    let b = fragment.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while let Some(off) = memchr::memchr(b'<', &b[i..]) {
        let lt = i + off;
        i = lt + 1;
        if fragment[lt..].starts_with("<!--") {
            // A comment: the sanitiser drops it whole, tag-like text inside included.
            i = fragment[lt + 4..]
                .find("-->")
                .map_or(b.len(), |e| lt + 4 + e + 3);
            continue;
        }
        let mut j = lt + 1;
        if b.get(j) == Some(&b'/') {
            j += 1;
        }
        let name_start = j;
        if !b.get(j).is_some_and(u8::is_ascii_alphabetic) {
            continue;
        }
        while b
            .get(j)
            .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'-')
        {
            j += 1;
        }
        let ends_name = b
            .get(j)
            .is_none_or(|c| c.is_ascii_whitespace() || *c == b'/' || *c == b'>');
        if !ends_name {
            continue;
        }
        let name = fragment[name_start..j].to_ascii_lowercase();
        if !permitted_tags().contains(name.as_str()) {
            found.push(lt);
        }
    }
    found
}

/// Rewrites `md` so that every `<` pulldown-cmark would read as a tag outside
/// [`permitted_tags`] becomes `&lt;`, which both Markdown and HTML show as `<`. Code
/// spans and blocks are untouched (they are never raw HTML). Repeats until no such tag
/// is left, as escaping one can change how the rest parses (an HTML block that opened
/// with `<draft>` becomes a paragraph); each round removes at least one `<`, so it ends.
fn escape_unpermitted_tags(md: &str) -> Cow<'_, str> {
    let mut md = Cow::Borrowed(md);
    loop {
        let mut starts = Vec::new();
        for (ev, range) in Parser::new_ext(&md, options()).into_offset_iter() {
            if let Event::Html(_) | Event::InlineHtml(_) = ev {
                starts.extend(
                    unpermitted_tag_starts(&md[range.clone()])
                        .into_iter()
                        .map(|o| range.start + o),
                );
            }
        }
        if starts.is_empty() {
            return md;
        }
        starts.sort_unstable();
        starts.dedup();
        let mut out = String::with_capacity(md.len() + 3 * starts.len());
        let mut last = 0;
        for s in starts {
            out.push_str(&md[last..s]);
            out.push_str("&lt;");
            last = s + 1;
        }
        out.push_str(&md[last..]);
        md = Cow::Owned(out);
    }
}

/// CommonMark to HTML, then sanitised: scripts, styles, event handlers and unsafe tags
/// are dropped; links keep their targets; text that only looks like a tag stays text.
pub fn to_html(md: &str) -> String {
    let md = escape_unpermitted_tags(md);
    let mut html = String::with_capacity(md.len() * 3 / 2);
    pulldown_cmark::html::push_html(&mut html, Parser::new_ext(&md, options()));
    ammonia::Builder::default()
        .link_rel(Some("noopener noreferrer"))
        .clean(&html)
        .to_string()
}

/// The text a fragment of permitted raw HTML shows: tags removed, `<script>`/`<style>`
/// with their content, character references decoded.
fn html_fragment_text(h: &str) -> String {
    // A line break or a block element parts the words on either side: say so in text
    // before the tags go.
    let mut spaced = String::with_capacity(h.len() + 16);
    let mut rest = h;
    while let Some(lt) = rest.find('<') {
        let Some(gt) = rest[lt..].find('>').map(|g| lt + g) else {
            break;
        };
        spaced.push_str(&rest[..=gt]);
        if let Some(c) = breaking_tag(&rest[lt..=gt]) {
            spaced.push(c);
        }
        rest = &rest[gt + 1..];
    }
    spaced.push_str(rest);
    let cleaned = ammonia::Builder::empty()
        .clean_content_tags(["script", "style"].into_iter().collect())
        .clean(&spaced)
        .to_string();
    // The serialiser escapes exactly these in text.
    cleaned
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&nbsp;", "\u{a0}")
        .replace("&amp;", "&")
}

/// For one inline HTML tag that parts words: `\n` for `<br>`, a space for a block
/// element (`<p>`, `<div>`, `<li>`, …); `None` for anything else.
fn breaking_tag(h: &str) -> Option<char> {
    let name: String = h
        .trim_start_matches('<')
        .trim_start_matches('/')
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_ascii_lowercase();
    const BLOCKS: &[&str] = &[
        "address",
        "article",
        "aside",
        "blockquote",
        "caption",
        "center",
        "dd",
        "details",
        "div",
        "dl",
        "dt",
        "figcaption",
        "figure",
        "footer",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "header",
        "hgroup",
        "hr",
        "li",
        "nav",
        "ol",
        "p",
        "pre",
        "summary",
        "table",
        "tbody",
        "td",
        "tfoot",
        "th",
        "thead",
        "tr",
        "ul",
    ];
    match name.as_str() {
        "br" => Some('\n'),
        n if BLOCKS.contains(&n) => Some(' '),
        _ => None,
    }
}

/// Whether `h` (one inline HTML tag) opens or closes an element whose content the
/// sanitiser drops.
fn dropped_content_tag(h: &str) -> Option<bool> {
    let l = h.to_ascii_lowercase();
    for t in ["script", "style"] {
        if l.starts_with(&format!("</{t}")) {
            return Some(false);
        }
        if l.starts_with(&format!("<{t}")) && !l.contains(&format!("</{t}")) {
            return Some(true);
        }
    }
    None
}

/// Whether a run of non-blank characters is a URL (or an address in angle brackets).
fn is_url(token: &str) -> bool {
    let t = token.trim_start_matches(['<', '(', '[']);
    t.contains("://") || t.starts_with("www.") || t.starts_with("mailto:")
}

/// Ideographs, kana, CJK punctuation and full-width forms: text written without spaces,
/// where a line (or a cut) may fall between any two characters.
pub(crate) fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x2E80..=0x303F | 0x3040..=0x30FF | 0x3100..=0x31FF | 0x3400..=0x4DBF
        | 0x4E00..=0x9FFF | 0xF900..=0xFAFF | 0xFE30..=0xFE4F | 0xFF00..=0xFFEF
        | 0x20000..=0x3FFFF)
}

/// Line-break opportunities: at spaces, and in text with CJK characters by the Unicode
/// rules (between characters); never inside a URL, which those rules break at `/`.
/// Other runs stay whole: Thai, Khmer and Burmese would need dictionaries the
/// segmenter does not carry (it logs a warning for each run it is given).
fn find_words(line: &str) -> Box<dyn Iterator<Item = textwrap::core::Word<'_>> + '_> {
    let mut segments = Vec::new();
    let mut start = 0;
    let mut in_space = false;
    for (i, c) in line.char_indices() {
        if c == ' ' {
            in_space = true;
        } else if in_space {
            segments.push(&line[start..i]);
            start = i;
            in_space = false;
        }
    }
    segments.push(&line[start..]);
    Box::new(segments.into_iter().flat_map(|seg| {
        let words: Vec<textwrap::core::Word<'_>> =
            if is_url(seg.trim_end_matches(' ')) || !seg.chars().any(is_cjk) {
                vec![textwrap::core::Word::from(seg)]
            } else {
                textwrap::WordSeparator::UnicodeBreakProperties
                    .find_words(seg)
                    .collect()
            };
        words
    }))
}

/// Wraps `text` at `width` columns with the given indents. Words are never split, so a
/// URL longer than a line stands whole on a line of its own.
pub fn fill(text: &str, width: usize, initial: &str, subsequent: &str) -> String {
    let opts = textwrap::Options::new(width)
        .initial_indent(initial)
        .subsequent_indent(subsequent)
        .break_words(false)
        // Fill each line in turn: the optimal-fit algorithm shortens the lines before a
        // long URL to even out the ragged edge, which reads worse here.
        .wrap_algorithm(textwrap::WrapAlgorithm::FirstFit)
        .word_separator(textwrap::WordSeparator::Custom(find_words))
        .word_splitter(textwrap::WordSplitter::NoHyphenation);
    textwrap::fill(text, opts)
}

struct ListLevel {
    /// The next number of an ordered list; `None` for bullets.
    next: Option<u64>,
    /// Column of this list's markers.
    indent: usize,
    /// Column of the current item's text.
    content: usize,
}

struct Table {
    aligns: Vec<Alignment>,
    rows: Vec<Vec<String>>,
    row: Vec<String>,
}

/// Plain-text writer: blocks separated by blank lines, lists indented by level.
struct TextWriter {
    width: usize,
    out: String,
    para: String,
    lists: Vec<ListLevel>,
    /// The marker (`- `, `3. `) the current item's first block starts with.
    marker: Option<String>,
    /// The next block is the first of a top-level list: set it off by a blank line.
    list_opening: bool,
    table: Option<Table>,
}

impl TextWriter {
    fn push_block(&mut self, block: &str) {
        if block.is_empty() {
            return;
        }
        if !self.out.is_empty() {
            let blank = self.lists.is_empty() || std::mem::take(&mut self.list_opening);
            self.out.push_str(if blank { "\n\n" } else { "\n" });
        }
        self.list_opening = false;
        self.out.push_str(block);
    }

    fn flush(&mut self) {
        let p = std::mem::take(&mut self.para);
        let p = p.trim();
        if p.is_empty() {
            return;
        }
        let content = self.lists.last().map_or(0, |l| l.content);
        let subsequent = " ".repeat(content);
        let initial = match self.marker.take() {
            Some(m) => format!(
                "{}{m}",
                " ".repeat(content.saturating_sub(m.chars().count()))
            ),
            None => subsequent.clone(),
        };
        let block = fill(p, self.width, &initial, &subsequent);
        self.push_block(&block);
    }

    fn start_item(&mut self) {
        self.flush();
        if let Some(l) = self.lists.last_mut() {
            let m = match &mut l.next {
                Some(n) => {
                    *n += 1;
                    format!("{}. ", *n - 1)
                }
                None => "- ".to_string(),
            };
            l.content = l.indent + m.chars().count();
            self.marker = Some(m);
        }
    }

    fn end_table(&mut self) {
        let Some(t) = self.table.take() else { return };
        let cols = t.rows.iter().map(Vec::len).max().unwrap_or(0);
        let w = |s: &str| textwrap::core::display_width(s);
        let mut widths = vec![0; cols];
        for r in &t.rows {
            for (i, c) in r.iter().enumerate() {
                widths[i] = widths[i].max(w(c));
            }
        }
        let indent = self.lists.last().map_or(0, |l| l.content);
        let total = indent + widths.iter().sum::<usize>() + 2 * cols.saturating_sub(1);
        let pad = " ".repeat(indent);
        let mut lines = Vec::new();
        if total <= self.width {
            for (ri, r) in t.rows.iter().enumerate() {
                let cells: Vec<String> = (0..cols)
                    .map(|i| {
                        let c = r.get(i).map_or("", String::as_str);
                        let gap = widths[i] - w(c);
                        match t.aligns.get(i) {
                            Some(Alignment::Right) => format!("{}{c}", " ".repeat(gap)),
                            Some(Alignment::Center) => {
                                format!("{}{c}{}", " ".repeat(gap / 2), " ".repeat(gap - gap / 2))
                            }
                            _ => format!("{c}{}", " ".repeat(gap)),
                        }
                    })
                    .collect();
                lines.push(format!("{pad}{}", cells.join("  ").trim_end()));
                if ri == 0 {
                    let rule: Vec<String> = widths.iter().map(|n| "-".repeat(*n)).collect();
                    lines.push(format!("{pad}{}", rule.join("  ")));
                }
            }
        } else {
            // Too wide for aligned columns: each row as "heading: value" lines.
            let head = t.rows.first().cloned().unwrap_or_default();
            for r in t.rows.iter().skip(1) {
                if !lines.is_empty() {
                    lines.push(String::new());
                }
                for (i, c) in r.iter().enumerate() {
                    let h = head.get(i).map_or("", String::as_str);
                    let line = if h.is_empty() {
                        c.clone()
                    } else {
                        format!("{h}: {c}")
                    };
                    lines.push(fill(&line, self.width, &pad, &format!("{pad}  ")));
                }
            }
        }
        let block = lines.join("\n");
        self.push_block(&block);
    }
}

/// CommonMark to readable plain text: paragraphs separated by blank lines, bullets as
/// dashes and numbered items with their numbers (nested lists indented), tables as
/// aligned columns, links as `text <url>`, wrapped at `width` columns.
pub fn to_text(md: &str, width: usize) -> String {
    let md = escape_unpermitted_tags(md);
    let mut w = TextWriter {
        width,
        out: String::new(),
        para: String::new(),
        lists: Vec::new(),
        marker: None,
        list_opening: false,
        table: None,
    };
    let mut link_stack: Vec<String> = Vec::new();
    // Inside a `<script>` or `<style>` element written inline: its text is not shown.
    let mut hidden = false;
    // The raw lines of the HTML block being read.
    let mut html_block: Option<String> = None;
    for ev in Parser::new_ext(&md, options()) {
        match ev {
            Event::Text(_) | Event::Code(_) if hidden => {}
            Event::Text(t) | Event::Code(t) => w.para.push_str(&t),
            Event::SoftBreak => w.para.push(' '),
            Event::HardBreak => w.para.push('\n'),
            Event::Start(Tag::Link { dest_url, .. }) => link_stack.push(dest_url.to_string()),
            Event::End(TagEnd::Link) => {
                if let Some(url) = link_stack.pop() {
                    if !w.para.ends_with(url.as_str()) {
                        w.para.push_str(&format!(" <{url}>"));
                    }
                }
            }
            Event::Start(Tag::List(start)) => {
                w.flush();
                if w.lists.is_empty() {
                    w.list_opening = true;
                }
                let indent = w.lists.last().map_or(0, |l| l.content);
                w.lists.push(ListLevel {
                    next: start,
                    indent,
                    content: indent,
                });
            }
            Event::End(TagEnd::List(_)) => {
                w.flush();
                w.marker = None;
                w.lists.pop();
            }
            Event::Start(Tag::Item) => w.start_item(),
            Event::End(TagEnd::Item) => {
                w.flush();
                // An empty item shows nothing; its marker must not go to the next block.
                w.marker = None;
            }
            Event::End(TagEnd::Paragraph)
            | Event::End(TagEnd::Heading(_))
            | Event::End(TagEnd::CodeBlock)
            | Event::Rule => w.flush(),
            Event::Start(Tag::Table(aligns)) => {
                w.flush();
                w.table = Some(Table {
                    aligns,
                    rows: Vec::new(),
                    row: Vec::new(),
                });
            }
            Event::End(TagEnd::TableCell) => {
                let cell = std::mem::take(&mut w.para);
                let cell = cell.split_whitespace().collect::<Vec<_>>().join(" ");
                if let Some(t) = &mut w.table {
                    t.row.push(cell);
                }
            }
            Event::End(TagEnd::TableHead) | Event::End(TagEnd::TableRow) => {
                if let Some(t) = &mut w.table {
                    let row = std::mem::take(&mut t.row);
                    t.rows.push(row);
                }
            }
            Event::End(TagEnd::Table) => w.end_table(),
            Event::End(TagEnd::HtmlBlock) => {
                if let Some(b) = html_block.take() {
                    w.para.push_str(&html_fragment_text(&b));
                }
                w.flush();
            }
            Event::InlineHtml(h) => match dropped_content_tag(&h) {
                Some(opens) => hidden = opens,
                None => {
                    // A line break, or a block element, parts the words on either side.
                    match breaking_tag(&h) {
                        Some('\n') => w.para.push('\n'),
                        Some(_) => w.para.push(' '),
                        None => w.para.push_str(&html_fragment_text(&h)),
                    }
                }
            },
            Event::Start(Tag::HtmlBlock) => html_block = Some(String::new()),
            Event::Html(h) => match &mut html_block {
                Some(b) => b.push_str(&h),
                None => w.para.push_str(&html_fragment_text(&h)),
            },
            _ => {}
        }
    }
    w.flush();
    w.out
}

/// CommonMark to sanitised HTML for a WeChat article: links outside WeChat cannot be
/// followed there, so each becomes its text with a numbered note `[n]`; the URLs are
/// pushed to `notes` (numbering continues across calls). Links to mp.weixin.qq.com stay links.
pub fn to_wechat_html(md: &str, notes: &mut Vec<String>) -> String {
    let mut events = Vec::new();
    let mut open_external = Vec::new();
    let md = escape_unpermitted_tags(md);
    for ev in Parser::new_ext(&md, options()) {
        match ev {
            Event::Start(Tag::Link { ref dest_url, .. }) => {
                let internal = dest_url.starts_with("https://mp.weixin.qq.com/")
                    || dest_url.starts_with("http://mp.weixin.qq.com/");
                open_external.push((!internal).then(|| dest_url.to_string()));
                if internal {
                    events.push(ev);
                }
            }
            Event::End(TagEnd::Link) => match open_external.pop().flatten() {
                Some(url) => {
                    let n = match notes.iter().position(|u| *u == url) {
                        Some(i) => i + 1,
                        None => {
                            notes.push(url);
                            notes.len()
                        }
                    };
                    events.push(Event::InlineHtml(format!("<sup>[{n}]</sup>").into()));
                }
                None => events.push(ev),
            },
            // Raw images cannot be shown in WeChat unless uploaded: keep only their alt text.
            Event::Start(Tag::Image { .. }) | Event::End(TagEnd::Image) => {}
            other => events.push(other),
        }
    }
    let mut html = String::with_capacity(md.len() * 3 / 2);
    pulldown_cmark::html::push_html(&mut html, events.into_iter());
    ammonia::Builder::default()
        .rm_tags(["img"])
        .add_tags(["sup"])
        .clean(&html)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_sanitised() {
        let h = to_html("Hello **world** <script>alert(1)</script> [x](https://e.org) <img src=x onerror=alert(1)>");
        assert!(h.contains("<strong>world</strong>"));
        assert!(!h.contains("<script"));
        assert!(!h.contains("onerror"));
        assert!(h.contains("href=\"https://e.org\""));
    }

    #[test]
    fn wechat_html_turns_outside_links_into_notes() {
        let mut notes = Vec::new();
        let h = to_wechat_html(
            "See [the centre](http://www.mepfeco.org.cn) and [our post](https://mp.weixin.qq.com/s/x). <script>x</script>",
            &mut notes,
        );
        assert_eq!(notes, vec!["http://www.mepfeco.org.cn".to_string()]);
        assert!(h.contains("the centre<sup>[1]</sup>"), "{h}");
        assert!(!h.contains("mepfeco.org.cn"), "{h}");
        assert!(!h.contains("<script"));
        let again = to_wechat_html(
            "[again](http://www.mepfeco.org.cn) [new](https://e.org)",
            &mut notes,
        );
        assert!(
            again.contains("again<sup>[1]</sup>") && again.contains("new<sup>[2]</sup>"),
            "{again}"
        );
    }

    #[test]
    fn words_in_angle_brackets_are_text_everywhere() {
        let md = "R&D <and> more text, <or> <Or/>\n\n<draft>\nThe *MONRE* said <MONRE> yes.\n\n<div>\nkept <x-y>\n</div>";
        let h = to_html(md);
        assert!(
            h.contains("<p>R&amp;D &lt;and&gt; more text, &lt;or&gt; &lt;Or/&gt;</p>"),
            "{h}"
        );
        assert!(
            h.contains("&lt;draft&gt;\nThe <em>MONRE</em> said &lt;MONRE&gt; yes."),
            "{h}"
        );
        assert!(h.contains("<div>\nkept &lt;x-y&gt;\n</div>"), "{h}");
        let w = to_wechat_html(md, &mut Vec::new());
        assert!(w.contains("R&amp;D &lt;and&gt; more text"), "{w}");
        assert!(w.contains("said &lt;MONRE&gt; yes."), "{w}");
        assert_eq!(
            to_text(md, 72),
            "R&D <and> more text, <or> <Or/>\n\n<draft> The MONRE said <MONRE> yes.\n\nkept <x-y>"
        );
        // Permitted tags still work, unsafe ones are shown, scripts are dropped in both parts.
        let md = "a <b>bold</b> <iframe src=x> <!-- <note> --> <script>alert(1)</script>end";
        assert_eq!(
            to_html(md),
            "<p>a <b>bold</b> &lt;iframe src=x&gt;  end</p>\n"
        );
        assert_eq!(to_text(md, 72), "a bold <iframe src=x>  end");
        // A line break or a block element parts words, inline or in an HTML block.
        for md in [
            "a<br>b <!-- x --> c<div>d</div>",
            "<!-- x --> a<br>b c<div>d</div>",
        ] {
            let t = to_text(md, 72);
            assert_eq!(
                t.split_whitespace().collect::<Vec<_>>(),
                ["a", "b", "c", "d"],
                "{t:?}"
            );
            assert!(t.contains("a\nb"), "{t:?}");
        }
        // Code is never raw HTML: untouched.
        assert!(to_html("`<and>`").contains("<code>&lt;and&gt;</code>"));
    }

    #[test]
    fn numbered_lists_keep_numbers_and_nesting() {
        let t = to_text(
            "Intro.\n\n3. three\n4. four, which is a long item that has to wrap onto a second line of text\n   - sub a\n   - sub b\n     1. deep\n5. five\n\nAfter.",
            40,
        );
        assert_eq!(
            t,
            "Intro.\n\n3. three\n4. four, which is a long item that has\n   to wrap onto a second line of text\n   - sub a\n   - sub b\n     1. deep\n5. five\n\nAfter."
        );
    }

    #[test]
    fn tables_become_aligned_columns() {
        let t = to_text(
            "| Country | Delegates |\n|---|--:|\n| Thailand | 5 |\n| Lao PDR | 12 |\n| 泰国 | 3 |",
            72,
        );
        assert_eq!(
            t,
            "Country   Delegates\n--------  ---------\nThailand          5\nLao PDR          12\n泰国              3"
        );
        // Too wide for the line: one "heading: value" line per cell, rows apart.
        let long = "x".repeat(50);
        let t = to_text(
            &format!("| A | B |\n|---|---|\n| {long} | {long} |\n| 1 | 2 |"),
            72,
        );
        assert_eq!(t, format!("A: {long}\nB: {long}\n\nA: 1\nB: 2"));
    }

    #[test]
    fn urls_are_never_broken_and_cjk_wraps() {
        let url = "https://example.org/a-b/c_d?x=1&y=2#frag/long/path/that/goes/on/for/more/than/seventy-two/columns.html";
        let t = to_text(&format!("See {url} and [the page]({url}) now."), 72);
        assert_eq!(t, format!("See\n{url}\nand the page\n<{url}>\nnow."));
        let zh = "澜湄合作".repeat(30);
        let t = to_text(&zh, 72);
        assert!(
            t.lines().count() > 1 && t.lines().all(|l| textwrap::core::display_width(l) <= 72),
            "{t}"
        );
        assert_eq!(t.replace('\n', ""), zh);
    }

    #[test]
    fn text_keeps_words_and_links() {
        let t = to_text(
            "One *two*.\n\n- a\n- b [site](https://e.org)\n\n泰国 ประเทศไทย",
            72,
        );
        assert_eq!(
            t,
            "One two.\n\n- a\n- b site <https://e.org>\n\n泰国 ประเทศไทย"
        );
    }
}
