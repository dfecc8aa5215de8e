//! Bulletins in the readers' languages (issue 16, the language core): a record in each
//! label locale gets that locale's labels and date, `<html lang>`, `Content-Language` and
//! the sender name and contact block configured for the language; unknown locales in
//! the configuration are refused at their line.

use crate::harness::*;
use bulletin::channel::email::EmailChannel;
use bulletin::channel::{Job, PreparedBulletin};
use bulletin::config::Config;
use bulletin::domain::record::parse_record;
use bulletin::domain::SessionRecord;
use bulletin::render::{render_bulletin, render_wechat_article, RenderedBulletin};
use std::path::Path;

/// The test configuration, plus per-language texts for Simplified Chinese and Thai.
fn config() -> Config {
    let text = config_text(Path::new("/nonexistent/bulletin.db"), &Options::default());
    let text = format!(
        "{text}\n\
         [publisher.i18n.zh-Hans]\n\
         names = [\"澜沧江-湄公河环境合作中心\", \"生态环境部对外合作与交流中心\"]\n\
         address = [\"北京市西城区后英房胡同5号\"]\n\
         [publisher.i18n.th]\n\
         names = [\"ศูนย์ความร่วมมือด้านสิ่งแวดล้อมล้านช้าง-แม่โขง\"]\n\
         [email.i18n.zh-Hans]\n\
         from_name = \"澜湄环境合作简报\"\n\
         [email.i18n.th]\n\
         from_name = \"จดหมายข่าว LMEC\"\n"
    );
    Config::parse(&text, Path::new("test.toml"), &|_| None).expect("test config")
}

fn record_in(language: &str) -> SessionRecord {
    let seed = std::fs::read_to_string(repo_path(SEED_RECORD)).unwrap();
    let source = seed.replace("language = \"en\"", &format!("language = \"{language}\""));
    assert!(
        seed.contains("language = \"en\""),
        "the seed record names its language"
    );
    parse_record(&source, "seed", "en").unwrap()
}

/// The raw message the e-mail channel builds for one reader of `rendered`.
fn message(config: &Config, rendered: &RenderedBulletin) -> String {
    let signer = std::sync::Arc::new(bulletin::unsubscribe::UnsubscribeSigner::new(
        vec![7; 32],
        "https://news.example.org",
    ));
    let channel = EmailChannel::new(&config.email, signer, "tag".into()).unwrap();
    let prepared = PreparedBulletin {
        id: 1,
        kind: bulletin::store::BulletinKind::Record,
        language: rendered.language.clone(),
        subject: rendered.subject.clone(),
        web_url: None,
        html: rendered.html.clone(),
        text: rendered.text.clone(),
        images: vec![],
        wechat: None,
        email_bodies: Default::default(),
        versions: vec![],
        reader_versions: Default::default(),
    };
    let claimed = crate::harness::email_row(9);
    let m = channel
        .build(&Job {
            delivery: &claimed,
            bulletin: &prepared,
        })
        .unwrap();
    String::from_utf8(m.formatted()).unwrap()
}

#[test]
fn each_language_gets_its_labels_date_lang_and_content_language() {
    let config = config();
    // (record language, a label, the date, a format name, the footer's first words)
    let cases = [
        ("en", "Attendees", "30 July 2020", "Online", "You receive"),
        (
            "zh-Hans",
            "参会人员",
            "2020年7月30日",
            "线上",
            "您收到本简报",
        ),
        (
            "zh-Hant",
            "與會人員",
            "2020年7月30日",
            "線上",
            "您收到本簡報",
        ),
        ("th", "ผู้เข้าร่วม", "30 กรกฎาคม 2563", "ออนไลน์", "ท่านได้รับ"),
        (
            "vi",
            "Thành phần tham dự",
            "30 tháng 7 2020",
            "Trực tuyến",
            "Quý vị nhận được",
        ),
        ("km", "អ្នកចូលរួម", "30 កក្កដា 2020", "តាមអនឡាញ", "លោកអ្នកទទួលបាន"),
        ("lo", "ຜູ້ເຂົ້າຮ່ວມ", "30 ກໍລະກົດ 2020", "ອອນລາຍ", "ທ່ານໄດ້ຮັບ"),
        ("my", "တက်ရောက်သူများ", "၂၀၂၀ ဇူလိုင် ၃၀", "အွန်လိုင်း", "ကျွန်ုပ်တို့၏"),
    ];
    for (lang, attendees, date, online, why) in cases {
        let record = record_in(lang);
        let r =
            render_bulletin(std::slice::from_ref(&record), &[], &config.publisher, "en").unwrap();
        assert_eq!(r.language, lang);
        assert_eq!(
            r.subject, record.title,
            "{lang}: the subject is the record's"
        );
        assert!(
            r.html.contains(&format!("<html lang=\"{lang}\">")),
            "{lang}: no <html lang>"
        );
        for (part, body) in [("HTML", &r.html), ("text", &r.text)] {
            assert!(
                body.contains(date),
                "{lang}: the {part} lacks the date {date}"
            );
            assert!(body.contains(online), "{lang}: the {part} lacks {online}");
            assert!(
                body.contains(why),
                "{lang}: the {part} lacks the footer {why}"
            );
        }
        assert!(
            r.html.contains(&format!(">{attendees}</h2>")),
            "{lang}: {attendees}"
        );
        assert!(
            r.text.contains(&attendees.to_uppercase()),
            "{lang}: the text lacks {attendees}"
        );
        if lang != "en" {
            assert!(!r.html.contains("Attendees"), "{lang}: English label left");
            assert!(
                !r.html.contains("30 July 2020"),
                "{lang}: English date left"
            );
        }
        let raw = message(&config, &r);
        let headers = &raw[..raw.find("\r\n\r\n").unwrap()];
        assert!(
            headers.contains(&format!("\r\nContent-Language: {lang}\r\n")),
            "{lang}: no Content-Language in\n{headers}"
        );
        // The WeChat article takes the same labels and date.
        let a = render_wechat_article(std::slice::from_ref(&record), &config.publisher, "en", "")
            .unwrap();
        assert!(
            a.html.contains(attendees) && a.html.contains(date),
            "{lang}: WeChat"
        );
        assert!(
            a.html.contains(&format!("lang=\"{lang}\"")),
            "{lang}: WeChat lang"
        );
    }
}

#[test]
fn labels_match_the_text_and_the_font_stack_its_script() {
    let config = config();
    let render =
        |lang: &str| render_bulletin(&[record_in(lang)], &[], &config.publisher, "en").unwrap();
    // A record tagged by region gets its script's labels: zh-Hant-TW Traditional, zh-CN
    // Simplified (it used to get Simplified for both).
    let tw = render("zh-Hant-TW");
    assert!(tw.html.contains("<html lang=\"zh-Hant-TW\">"));
    assert!(tw.html.contains("與會人員") && !tw.html.contains("参会人员"));
    let cn = render("zh-CN");
    assert!(cn.html.contains("参会人员") && !cn.html.contains("與會人員"));
    // A language without labels gets English labels, its own tag, and the date in the
    // international English form.
    let fr = render("fr");
    assert!(fr.html.contains("<html lang=\"fr\">") && fr.html.contains(">Attendees</h2>"));
    // The body's font stack puts the text's script first and covers the others.
    let family = |r: &RenderedBulletin| {
        let start = r.html.find("font-family:").unwrap();
        r.html[start..start + r.html[start..].find(';').unwrap()].to_string()
    };
    let th = family(&render("th"));
    assert!(
        th.find("Noto Sans Thai").unwrap() < th.find("PingFang SC").unwrap(),
        "{th}"
    );
    for font in [
        "Khmer OS",
        "Myanmar Text",
        "Noto Sans Lao",
        "Microsoft YaHei",
    ] {
        assert!(th.contains(font), "{font} not in {th}");
    }
    let tw = family(&tw);
    assert!(
        tw.find("PingFang TC").unwrap() < tw.find("PingFang SC").unwrap(),
        "{tw}"
    );
}

#[test]
fn the_contact_block_and_sender_follow_the_language() {
    let config = config();
    let render =
        |lang: &str| render_bulletin(&[record_in(lang)], &[], &config.publisher, "en").unwrap();
    // zh-CN takes [publisher.i18n.zh-Hans]: names and address replaced, the rest kept.
    let zh = render("zh-CN");
    assert!(zh
        .html
        .contains("<strong>澜沧江-湄公河环境合作中心</strong>"));
    assert!(
        zh.text.contains("地址: 北京市西城区后英房胡同5号"),
        "{}",
        zh.text
    );
    assert!(!zh.html.contains("Houyingfang"));
    assert!(
        zh.html.contains("+86-010-82268277/8221"),
        "the phone is the default's"
    );
    let en = render("en");
    assert!(en
        .html
        .contains("<strong>Lancang-Mekong Environmental Cooperation Center</strong>"));
    // zh-Hant has no table of its own: the default block.
    assert!(render("zh-TW").html.contains("Houyingfang"));
    // A digest's subject names the language's publisher.
    let digest = render_bulletin(
        &[record_in("th"), record_in("th")],
        &[],
        &config.publisher,
        "en",
    )
    .unwrap();
    assert_eq!(
        digest.subject,
        "ศูนย์ความร่วมมือด้านสิ่งแวดล้อมล้านช้าง-แม่โขง: รายงานการประชุม 2 รายการ"
    );
    // The sender's display name, per language; the address stays.
    let from = |r: &RenderedBulletin| {
        let raw = message(&config, r);
        let line = raw
            .lines()
            .find(|l| l.starts_with("From: "))
            .unwrap()
            .to_string();
        let parsed = mail_parser::MessageParser::default()
            .parse(raw.as_bytes())
            .unwrap();
        let a = parsed.from().unwrap().first().unwrap();
        (
            a.name().map(str::to_string),
            a.address().map(str::to_string),
            line,
        )
    };
    let (name, address, _) = from(&zh);
    assert_eq!(name.as_deref(), Some("澜湄环境合作简报"));
    assert_eq!(address.as_deref(), Some("bulletin@example.org"));
    let (name, _, _) = from(&render("th-TH"));
    assert_eq!(name.as_deref(), Some("จดหมายข่าว LMEC"));
    let (name, _, _) = from(&en);
    assert_eq!(name.as_deref(), Some("LMEC Bulletin"));
}

#[test]
fn unknown_locales_in_the_configuration_are_refused_at_their_line() {
    let base = config_text(Path::new("/nonexistent/bulletin.db"), &Options::default());
    for (table, key, want) in [
        (
            "[publisher.i18n.fr]\nnames = [\"Centre\"]\n",
            "publisher.i18n.fr",
            "unknown locale `fr`",
        ),
        (
            "[email.i18n.zh-CN]\nfrom_name = \"简报\"\n",
            "email.i18n.zh-CN",
            "unknown locale `zh-CN`",
        ),
        (
            "[publisher.i18n.th]\nnames = []\n",
            "publisher.i18n.th.names",
            "non-empty name",
        ),
        (
            "[email.i18n.th]\nfrom_name = \"\"\n",
            "email.i18n.th.from_name",
            "",
        ),
    ] {
        let text = format!("{base}\n{table}");
        let line = text[..text.find(table).unwrap()].lines().count() + 1;
        let e = Config::parse(&text, Path::new("test.toml"), &|_| None).unwrap_err();
        assert_eq!(e.key.as_deref(), Some(key), "{e}");
        assert_eq!(e.line, Some(line), "{e}");
        assert!(e.to_string().contains(want), "{e}");
        if want.starts_with("unknown") {
            assert!(
                e.to_string()
                    .contains("en, km, lo, my, th, vi, zh-Hans, zh-Hant"),
                "{e}"
            );
        }
    }
    // Any case and `_` name a locale.
    let text = format!("{base}\n[email.i18n.ZH_hans]\nfrom_name = \"简报\"\n");
    let c = Config::parse(&text, Path::new("test.toml"), &|_| None).unwrap();
    assert_eq!(c.email.from_for("zh").name.as_deref(), Some("简报"));
}

#[test]
fn notices_take_the_labels_and_contact_block_of_their_language() {
    let config = config();
    let req = bulletin::notice::NoticeRequest::parse(
        "会场变更",
        "会议改在 **B 厅** 举行。",
        "urgent",
        &["partners".to_string()],
        "ops",
        None,
    )
    .unwrap();
    let zh = bulletin::notice::render_notice(&req, &config.publisher, "zh-CN").unwrap();
    assert_eq!(zh.subject, "[紧急] 会场变更");
    assert!(zh.html.contains("<html lang=\"zh-CN\">"));
    assert!(
        zh.html.contains("澜沧江-湄公河环境合作中心 · 紧急"),
        "masthead"
    );
    assert!(zh.text.starts_with("[紧急] 会场变更"), "{}", zh.text);
    assert!(zh.text.contains("退订: "), "{}", zh.text);
    let th = bulletin::notice::render_notice(&req, &config.publisher, "th").unwrap();
    assert_eq!(th.subject, "[ด่วน] 会场变更");
    assert!(th.html.contains("ยกเลิกการรับจดหมายข่าว"));
    let en = bulletin::notice::render_notice(&req, &config.publisher, "en").unwrap();
    assert_eq!(en.subject, "[Urgent] 会场变更");
}
