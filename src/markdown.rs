//! Markdown fields of a record: to sanitised HTML (pulldown-cmark + ammonia) and to plain text.

use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};

fn options() -> Options {
    Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TABLES
}

/// CommonMark to HTML, then sanitised: scripts, styles, event handlers and unknown
/// tags are dropped; links keep their targets.
pub fn to_html(md: &str) -> String {
    let mut html = String::with_capacity(md.len() * 3 / 2);
    pulldown_cmark::html::push_html(&mut html, Parser::new_ext(md, options()));
    ammonia::Builder::default()
        .link_rel(Some("noopener noreferrer"))
        .clean(&html)
        .to_string()
}

/// CommonMark to readable plain text: paragraphs separated by blank lines, list items
/// with dashes, links as `text <url>`, wrapped at `width` columns.
pub fn to_text(md: &str, width: usize) -> String {
    let mut out = String::new();
    let mut para = String::new();
    let mut link_stack: Vec<String> = Vec::new();
    let mut list_depth = 0usize;
    // A list's first item is set off from the paragraph before it by a blank line.
    let mut blank_before_item = false;
    let flush = |out: &mut String, para: &mut String, indent: &str, blank: bool| {
        let p = para.trim();
        if !p.is_empty() {
            let opts = textwrap::Options::new(width)
                .initial_indent(indent)
                .subsequent_indent(if indent.is_empty() { "" } else { "  " })
                .break_words(false)
                .word_splitter(textwrap::WordSplitter::NoHyphenation);
            if !out.is_empty() {
                out.push_str(if blank { "\n\n" } else { "\n" });
            }
            out.push_str(&textwrap::fill(p, opts));
        }
        para.clear();
    };
    for ev in Parser::new_ext(md, options()) {
        match ev {
            Event::Text(t) | Event::Code(t) => para.push_str(&t),
            Event::SoftBreak => para.push(' '),
            Event::HardBreak => para.push('\n'),
            Event::Start(Tag::Link { dest_url, .. }) => link_stack.push(dest_url.to_string()),
            Event::End(TagEnd::Link) => {
                if let Some(url) = link_stack.pop() {
                    if !para.ends_with(url.as_str()) {
                        para.push_str(&format!(" <{url}>"));
                    }
                }
            }
            Event::Start(Tag::List(_)) => {
                flush(&mut out, &mut para, "", true);
                list_depth += 1;
                blank_before_item = true;
            }
            Event::End(TagEnd::List(_)) => list_depth = list_depth.saturating_sub(1),
            Event::End(TagEnd::Item) => {
                flush(&mut out, &mut para, "- ", blank_before_item);
                blank_before_item = false;
            }
            Event::End(TagEnd::Paragraph)
            | Event::End(TagEnd::Heading(_))
            | Event::End(TagEnd::CodeBlock) => {
                if list_depth == 0 {
                    flush(&mut out, &mut para, "", true)
                } else {
                    para.push(' ')
                }
            }
            Event::Html(h) | Event::InlineHtml(h) => {
                let stripped = ammonia::Builder::empty().clean(&h).to_string();
                para.push_str(&stripped);
            }
            Event::Rule => flush(&mut out, &mut para, "", true),
            _ => {}
        }
    }
    flush(&mut out, &mut para, "", true);
    out
}

/// CommonMark to sanitised HTML for a WeChat article: links outside WeChat cannot be
/// followed there, so each becomes its text with a numbered note `[n]`; the URLs are
/// pushed to `notes` (numbering continues across calls). Links to mp.weixin.qq.com stay links.
pub fn to_wechat_html(md: &str, notes: &mut Vec<String>) -> String {
    let mut events = Vec::new();
    let mut open_external = Vec::new();
    for ev in Parser::new_ext(md, options()) {
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
