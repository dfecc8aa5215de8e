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
