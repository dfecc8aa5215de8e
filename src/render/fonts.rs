//! Font stacks that cover every script the centre's partners write (Latin with
//! Vietnamese diacritics, Han Simplified and Traditional, Thai, Khmer, Lao, Myanmar),
//! from fonts the readers' systems carry (Windows, macOS/iOS, Android/Linux Noto). The
//! text's own script comes first, so that Han is drawn with Simplified or Traditional
//! forms as the text is written; the others follow for names and quotes in other scripts.

/// Latin (and Vietnamese): first, since the script fonts' Latin letters are poorer.
const LATIN: &[&str] = &["Arial", "Helvetica Neue", "Helvetica", "Noto Sans"];
const HANS: &[&str] = &[
    "PingFang SC",
    "Hiragino Sans GB",
    "Microsoft YaHei",
    "Noto Sans CJK SC",
    "Noto Sans SC",
];
const HANT: &[&str] = &[
    "PingFang TC",
    "Microsoft JhengHei",
    "Noto Sans CJK TC",
    "Noto Sans TC",
];
const THAI: &[&str] = &["Noto Sans Thai", "Leelawadee UI", "Thonburi", "Tahoma"];
const KHMER: &[&str] = &["Noto Sans Khmer", "Khmer UI", "Khmer OS", "Khmer Sangam MN"];
const LAO: &[&str] = &["Noto Sans Lao", "Lao UI", "Lao Sangam MN", "Phetsarath OT"];
const MYANMAR: &[&str] = &[
    "Noto Sans Myanmar",
    "Myanmar Text",
    "Myanmar Sangam MN",
    "Padauk",
];

/// The script fonts in the order a text in `locale` (a label locale) wants them.
fn scripts(locale: &str) -> Vec<&'static [&'static str]> {
    let own: &[&str] = match locale {
        "zh-Hans" => HANS,
        "zh-Hant" => HANT,
        "th" => THAI,
        "km" => KHMER,
        "lo" => LAO,
        "my" => MYANMAR,
        _ => &[],
    };
    let mut out = vec![own];
    for s in [HANS, HANT, THAI, KHMER, LAO, MYANMAR] {
        if s != own {
            out.push(s);
        }
    }
    out
}

fn stack(locale: &str, quote: char) -> String {
    let mut names: Vec<&str> = LATIN.to_vec();
    for s in scripts(locale) {
        names.extend_from_slice(s);
    }
    let mut out: Vec<String> = names
        .iter()
        .map(|n| {
            if n.contains(' ') {
                format!("{quote}{n}{quote}")
            } else {
                n.to_string()
            }
        })
        .collect();
    out.push("sans-serif".into());
    out.join(", ")
}

/// The e-mail's `font-family` for a text in label locale `locale`.
pub fn email_font_stack(locale: &str) -> String {
    stack(locale, '"')
}

/// The WeChat article's `font-family`: short (WeChat counts the article's styles against
/// its size limit), the system font then the text's own script.
pub fn wechat_font_stack(locale: &str) -> String {
    let own = scripts(locale)[0];
    let mut names = vec!["-apple-system".to_string()];
    let fonts = if own.is_empty() { HANS } else { own };
    names.extend(fonts.iter().take(3).map(|n| format!("'{n}'")));
    names.push("sans-serif".into());
    names.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_script_is_covered_with_the_texts_own_first() {
        let all = email_font_stack("en");
        for font in [
            "\"PingFang SC\"",
            "\"Microsoft YaHei\"",
            "\"Noto Sans Thai\"",
            "\"Leelawadee UI\"",
            "\"Khmer OS\"",
            "\"Noto Sans Lao\"",
            "\"Myanmar Text\"",
            "\"Noto Sans Myanmar\"",
        ] {
            assert!(all.contains(font), "{font} not in {all}");
        }
        assert!(all.starts_with("Arial, ") && all.ends_with(", sans-serif"));
        let pos = |stack: &str, font: &str| stack.find(font).unwrap();
        let hant = email_font_stack("zh-Hant");
        assert!(pos(&hant, "PingFang TC") < pos(&hant, "PingFang SC"));
        let hans = email_font_stack("zh-Hans");
        assert!(pos(&hans, "PingFang SC") < pos(&hans, "PingFang TC"));
        let my = email_font_stack("my");
        assert!(pos(&my, "Myanmar Text") < pos(&my, "PingFang SC"));
        assert_eq!(
            wechat_font_stack("th"),
            "-apple-system,'Noto Sans Thai','Leelawadee UI','Thonburi',sans-serif"
        );
        assert!(wechat_font_stack("zh-Hans").contains("'PingFang SC'"));
    }
}
