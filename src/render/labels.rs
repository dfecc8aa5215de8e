//! Labels: the fixed wording of bulletins, notices and WeChat articles, in the text's
//! language, from the Project Fluent resources `templates/locales/<locale>/bulletin.ftl`
//! (embedded at build time by build.rs, read with `fluent-bundle`). A message a locale
//! lacks is taken from English.

use crate::domain::language::{label_locale, label_locales, FALLBACK_LOCALE};
use crate::domain::record::SessionFormat;
use fluent_bundle::concurrent::FluentBundle;
use fluent_bundle::{FluentArgs, FluentResource};
use std::sync::OnceLock;

// `LOCALE_FILES`: (locale, Fluent source) for every folder of `templates/locales/`.
include!(concat!(env!("OUT_DIR"), "/locale_files.rs"));

type Bundle = FluentBundle<FluentResource>;

/// One bundle per label locale, built on first use.
fn bundles() -> &'static [(&'static str, Bundle)] {
    static BUNDLES: OnceLock<Vec<(&'static str, Bundle)>> = OnceLock::new();
    BUNDLES.get_or_init(|| {
        LOCALE_FILES
            .iter()
            .map(|(locale, source)| (*locale, bundle(locale, source)))
            .collect()
    })
}

/// The Fluent resource of a locale: what parses of it (a test holds every file free of
/// errors).
fn resource(source: &str) -> FluentResource {
    FluentResource::try_new(source.to_string()).unwrap_or_else(|(partial, _)| partial)
}

fn bundle(locale: &str, source: &str) -> Bundle {
    let id = locale
        .parse::<unic_langid::LanguageIdentifier>()
        .unwrap_or_default();
    let mut b = FluentBundle::new_concurrent(vec![id]);
    // No Unicode isolation marks around placeables: the text goes into e-mail subjects
    // and plain-text bodies, where they would show or break searches.
    b.set_use_isolating(false);
    // Duplicate ids keep the first: the test that checks the files reports them.
    let _ = b.add_resource(resource(source));
    b
}

/// Message `id` in `locale`, falling back to English; the id itself if English lacks
/// it too (a test holds every id the code asks for in English).
pub fn message(locale: &str, id: &str, args: Option<&FluentArgs>) -> String {
    message_in(bundles(), locale, id, args)
}

fn message_in(
    bundles: &[(&str, Bundle)],
    locale: &str,
    id: &str,
    args: Option<&FluentArgs>,
) -> String {
    let bundle_for = |l: &str| bundles.iter().find(|(b, _)| *b == l).map(|(_, b)| b);
    for b in [bundle_for(locale), bundle_for(FALLBACK_LOCALE)]
        .into_iter()
        .flatten()
    {
        if let Some(pattern) = b.get_message(id).and_then(|m| m.value()) {
            let mut errors = Vec::new();
            return b.format_pattern(pattern, args, &mut errors).into_owned();
        }
    }
    id.to_string()
}

/// Fixed wording, in one label locale.
#[derive(Debug, Clone)]
pub struct Labels {
    /// The label locale (a folder of `templates/locales/`).
    pub locale: &'static str,
    pub organizers: String,
    pub sponsors: String,
    pub supporters: String,
    pub co_organizers: String,
    pub attendees: String,
    pub topics: String,
    pub highlights: String,
    pub contact: String,
    pub address: String,
    pub tel: String,
    pub fax: String,
    pub email: String,
    pub web: String,
    pub wechat: String,
    pub image: String,
    pub why: String,
    pub unsubscribe: String,
    pub notice: String,
    pub urgent: String,
    /// The e-mail's link to its web version.
    pub view_in_browser: String,
    /// The public archive's page wording.
    pub archive: String,
    pub archive_languages: String,
    pub archive_all: String,
    pub archive_older: String,
    pub archive_newest: String,
    pub archive_feed: String,
    pub archive_empty: String,
    online: String,
    in_person: String,
    hybrid: String,
}

impl Labels {
    fn load(locale: &'static str) -> Self {
        let m = |id: &str| message(locale, id, None);
        Self {
            locale,
            organizers: m("organizers"),
            sponsors: m("sponsors"),
            supporters: m("supporters"),
            co_organizers: m("co-organizers"),
            attendees: m("attendees"),
            topics: m("topics"),
            highlights: m("highlights"),
            contact: m("contact"),
            address: m("address"),
            tel: m("tel"),
            fax: m("fax"),
            email: m("email"),
            web: m("web"),
            wechat: m("wechat"),
            image: m("image"),
            why: m("why"),
            unsubscribe: m("unsubscribe"),
            notice: m("notice"),
            urgent: m("urgent"),
            view_in_browser: m("view-in-browser"),
            archive: m("archive"),
            archive_languages: m("archive-languages"),
            archive_all: m("archive-all"),
            archive_older: m("archive-older"),
            archive_newest: m("archive-newest"),
            archive_feed: m("archive-feed"),
            archive_empty: m("archive-empty"),
            online: m("format-online"),
            in_person: m("format-in-person"),
            hybrid: m("format-hybrid"),
        }
    }

    /// The labels for a text in `language` (a BCP 47 tag): its label locale's
    /// (`zh-CN` → `zh-Hans`, `zh-TW` → `zh-Hant`; see
    /// [`crate::domain::language::label_locale`]), English for a language without labels.
    pub fn for_language(language: &str) -> &'static Labels {
        static ALL: OnceLock<Vec<Labels>> = OnceLock::new();
        let all = ALL.get_or_init(|| label_locales().iter().map(|l| Labels::load(l)).collect());
        let locale = label_locale(language);
        all.iter()
            .find(|l| l.locale == locale)
            .or_else(|| all.iter().find(|l| l.locale == FALLBACK_LOCALE))
            .expect("the English labels exist")
    }

    /// A session format's name.
    pub fn format(&self, f: SessionFormat) -> &str {
        match f {
            SessionFormat::Online => &self.online,
            SessionFormat::InPerson => &self.in_person,
            SessionFormat::Hybrid => &self.hybrid,
        }
    }

    /// A digest's subject: the publisher's name and how many records it carries.
    pub fn digest_subject(&self, publisher: &str, count: usize) -> String {
        let mut args = FluentArgs::new();
        args.set("publisher", publisher.to_string());
        args.set("count", count);
        message(self.locale, "digest-subject", Some(&args))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fluent_bundle::FluentArgs;
    use fluent_syntax::ast::Entry;
    use std::collections::BTreeSet;

    /// The message ids [`Labels`] reads (besides `digest-subject`, which takes arguments).
    const MESSAGE_IDS: &[&str] = &[
        "organizers",
        "sponsors",
        "supporters",
        "co-organizers",
        "attendees",
        "topics",
        "highlights",
        "contact",
        "address",
        "tel",
        "fax",
        "email",
        "web",
        "wechat",
        "image",
        "why",
        "unsubscribe",
        "notice",
        "urgent",
        "view-in-browser",
        "archive",
        "archive-languages",
        "archive-all",
        "archive-older",
        "archive-newest",
        "archive-feed",
        "archive-empty",
        "format-online",
        "format-in-person",
        "format-hybrid",
        "digest-subject",
    ];

    fn ids(source: &str) -> Vec<String> {
        resource(source)
            .entries()
            .filter_map(|e| match e {
                Entry::Message(m) => Some(m.id.name.to_string()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn every_file_parses_and_has_no_duplicate() {
        for (locale, source) in LOCALE_FILES {
            if let Err((_, errors)) = FluentResource::try_new(source.to_string()) {
                panic!("templates/locales/{locale}/bulletin.ftl: {errors:?}");
            }
            let all = ids(source);
            let unique: BTreeSet<&String> = all.iter().collect();
            assert_eq!(
                unique.len(),
                all.len(),
                "{locale}: a message id appears twice"
            );
        }
    }

    #[test]
    fn every_locale_has_every_english_message_and_no_other() {
        let en: BTreeSet<String> = ids(LOCALE_FILES
            .iter()
            .find(|(l, _)| *l == FALLBACK_LOCALE)
            .expect("an English folder")
            .1)
        .into_iter()
        .collect();
        let wanted: BTreeSet<String> = MESSAGE_IDS.iter().map(|s| s.to_string()).collect();
        assert_eq!(en, wanted, "en/bulletin.ftl against the ids the code reads");
        let mut problems = Vec::new();
        for (locale, source) in LOCALE_FILES {
            let has: BTreeSet<String> = ids(source).into_iter().collect();
            for id in en.difference(&has) {
                problems.push(format!("{locale}: missing `{id}`"));
            }
            for id in has.difference(&en) {
                problems.push(format!("{locale}: `{id}` is not an English message"));
            }
        }
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    #[test]
    fn labels_match_the_text_language_and_fall_back_to_english() {
        assert_eq!(Labels::for_language("en").organizers, "Organisers");
        assert_eq!(Labels::for_language("zh-CN").organizers, "主办单位");
        assert_eq!(Labels::for_language("zh-Hant-TW").organizers, "主辦單位");
        assert_eq!(Labels::for_language("zh-TW").attendees, "與會人員");
        assert_eq!(Labels::for_language("th-TH").attendees, "ผู้เข้าร่วม");
        assert_eq!(Labels::for_language("vi").topics, "Chủ đề");
        assert_eq!(Labels::for_language("km").topics, "ប្រធានបទ");
        assert_eq!(Labels::for_language("lo").topics, "ຫົວຂໍ້");
        assert_eq!(Labels::for_language("my").topics, "ခေါင်းစဉ်များ");
        assert_eq!(Labels::for_language("fr").locale, "en");
        assert_eq!(
            Labels::for_language("th").format(SessionFormat::Online),
            "ออนไลน์"
        );
        // A message a locale lacks comes from English; one English lacks is its id.
        let two = [
            (
                "en",
                bundle("en", "attendees = Attendees\ntopics = Topics\n"),
            ),
            ("th", bundle("th", "topics = หัวข้อ\n")),
        ];
        assert_eq!(message_in(&two, "th", "topics", None), "หัวข้อ");
        assert_eq!(message_in(&two, "th", "attendees", None), "Attendees");
        assert_eq!(message_in(&two, "th", "nothing", None), "nothing");
        assert_eq!(message("th", "no-such-message", None), "no-such-message");
        assert_eq!(message("xx", "attendees", None), "Attendees");
    }

    #[test]
    fn digest_subjects_carry_name_and_count_without_isolation_marks() {
        assert_eq!(
            Labels::for_language("en").digest_subject("Centre", 3),
            "Centre: 3 session reports"
        );
        assert_eq!(
            Labels::for_language("zh").digest_subject("中心", 2),
            "中心: 2 场会议简报"
        );
        let th = Labels::for_language("th").digest_subject("ศูนย์", 4);
        assert_eq!(th, "ศูนย์: รายงานการประชุม 4 รายการ");
        let mut args = FluentArgs::new();
        args.set("publisher", "P");
        args.set("count", 1);
        assert_eq!(
            message("en", "digest-subject", Some(&args)),
            "P: 1 session report"
        );
    }
}
