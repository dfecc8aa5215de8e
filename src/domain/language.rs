//! Languages: which of a record's language versions a reader gets ([`negotiate`]), and
//! which label locale (a folder of `templates/locales/`) a text language is labelled in
//! ([`label_locale`]). Tags are BCP 47, parsed and expanded with ICU4X's `icu_locale`
//! (likely subtags: `zh-TW` is written in Han Traditional, `zh` in Han Simplified). Pure.

use icu_locale::{LanguageIdentifier, LocaleExpander};

// `LOCALES`: the label locales, one per folder of `templates/locales/`, listed by
// build.rs (so adding a locale is adding a folder).
include!(concat!(env!("OUT_DIR"), "/locale_names.rs"));

/// The locale every other falls back to, for labels and for unknown text languages.
pub const FALLBACK_LOCALE: &str = "en";

/// The label locales (the folders of `templates/locales/`), in name order.
pub fn label_locales() -> &'static [&'static str] {
    LOCALES
}

/// Parses a BCP 47 tag leniently: any case, `_` for `-`, surrounding blanks; extensions
/// (`-u-…`, `-x-…`) are dropped. None for anything else.
pub fn parse_tag(tag: &str) -> Option<LanguageIdentifier> {
    let tag = tag.trim().replace('_', "-");
    if tag.is_empty() {
        return None;
    }
    let id = match icu_locale::Locale::try_from_str(&tag) {
        Ok(l) => l.id,
        Err(_) => LanguageIdentifier::try_from_str(&tag).ok()?,
    };
    (!id.language.is_unknown()).then_some(id)
}

/// `id` with its likely script and region filled in (`zh-TW` → `zh-Hant-TW`).
fn maximized(id: &LanguageIdentifier) -> LanguageIdentifier {
    let mut max = id.clone();
    // Compiled data: the constructor only points at static tables.
    LocaleExpander::new_common().maximize(&mut max);
    max
}

/// The version a reader gets, given the reader's tag (`None`: the reader has none), the
/// versions' tags and the primary version's: the version with the reader's exact tag;
/// else one in the same language and script (`zh-TW` and `zh-HK` read `zh-Hant`;
/// `zh-CN`, `zh-SG` and `zh` read `zh-Hans`), one in the same region too if there is
/// one; else one in the same language; else the primary. Comparisons ignore case and
/// take `_` for `-`; a tag that does not parse matches nothing. Returns one of
/// `versions`, or `primary`.
pub fn negotiate<'a>(reader: Option<&str>, versions: &[&'a str], primary: &'a str) -> &'a str {
    let Some(reader) = reader.and_then(parse_tag) else {
        return primary;
    };
    let parsed: Vec<(&'a str, LanguageIdentifier)> = versions
        .iter()
        .filter_map(|v| parse_tag(v).map(|id| (*v, id)))
        .collect();
    if let Some((v, _)) = parsed.iter().find(|(_, id)| *id == reader) {
        return v;
    }
    let want = maximized(&reader);
    let max: Vec<(&'a str, LanguageIdentifier)> =
        parsed.iter().map(|(v, id)| (*v, maximized(id))).collect();
    let same_script =
        |id: &LanguageIdentifier| id.language == want.language && id.script == want.script;
    if let Some((v, _)) = max
        .iter()
        .find(|(_, id)| same_script(id) && id.region == want.region)
        .or_else(|| max.iter().find(|(_, id)| same_script(id)))
    {
        return v;
    }
    if let Some((v, _)) = parsed.iter().find(|(_, id)| id.language == reader.language) {
        return v;
    }
    primary
}

/// Whether two tags name the same written language: the same tag, or the same language
/// and script once likely subtags are filled in (`zh-CN` and `zh-Hans`, `en` and
/// `en-GB`; not `zh-Hans` and `zh-Hant`). A tag that does not parse matches nothing.
pub fn same_written_language(a: &str, b: &str) -> bool {
    let (Some(a), Some(b)) = (parse_tag(a), parse_tag(b)) else {
        return false;
    };
    if a == b {
        return true;
    }
    let (a, b) = (maximized(&a), maximized(&b));
    a.language == b.language && a.script == b.script
}

/// The label locale for a text in `language`: labels always match the text's language
/// (`zh-CN` → `zh-Hans`, `zh-Hant-TW` and `zh-TW` → `zh-Hant`, `th-TH` → `th`), by the
/// rules of [`negotiate`] over [`label_locales`]; a language without labels gets
/// English.
pub fn label_locale(language: &str) -> &'static str {
    negotiate(Some(language), LOCALES, FALLBACK_LOCALE)
}

/// The label locale named `tag` exactly (any case, `_` for `-`), as configuration keys
/// name them (`[publisher.i18n.zh-Hans]`). None: no such locale.
pub fn known_locale(tag: &str) -> Option<&'static str> {
    let id = parse_tag(tag)?;
    LOCALES
        .iter()
        .find(|l| parse_tag(l).as_ref() == Some(&id))
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRIMARY: &str = "en";

    fn pick(reader: &str, versions: &[&'static str]) -> &'static str {
        negotiate(Some(reader), versions, PRIMARY)
    }

    #[test]
    fn the_exact_tag_wins() {
        let v = ["en", "zh-Hans", "zh-TW", "th"];
        assert_eq!(pick("zh-TW", &v), "zh-TW");
        assert_eq!(pick("th", &v), "th");
        // Exact beats a same-script version listed earlier.
        assert_eq!(pick("zh-Hans", &["zh-CN", "zh-Hans"]), "zh-Hans");
    }

    #[test]
    fn chinese_regions_go_to_their_script() {
        let v = ["en", "zh-Hans", "zh-Hant", "th"];
        for (reader, want) in [
            ("zh-TW", "zh-Hant"),
            ("zh-HK", "zh-Hant"),
            ("zh-MO", "zh-Hant"),
            ("zh-Hant-TW", "zh-Hant"),
            ("zh-CN", "zh-Hans"),
            ("zh-SG", "zh-Hans"),
            ("zh", "zh-Hans"),
            ("zh-Hans-CN", "zh-Hans"),
        ] {
            assert_eq!(pick(reader, &v), want, "{reader}");
        }
        // Versions tagged by region match readers by script too.
        let v = ["en", "zh-CN", "zh-TW"];
        assert_eq!(pick("zh-HK", &v), "zh-TW");
        assert_eq!(pick("zh-SG", &v), "zh-CN");
        assert_eq!(pick("zh", &v), "zh-CN");
        assert_eq!(pick("zh-Hant", &v), "zh-TW");
        // The same region is preferred among versions of one script.
        assert_eq!(pick("zh-HK", &["zh-Hant-TW", "zh-Hant-HK"]), "zh-Hant-HK");
    }

    #[test]
    fn then_the_language_alone_then_the_primary() {
        // No Traditional version: a Chinese reader still gets Chinese.
        assert_eq!(pick("zh-TW", &["en", "zh-Hans"]), "zh-Hans");
        assert_eq!(pick("th-TH", &["en", "th"]), "th");
        assert_eq!(pick("en-US", &["th", "en-GB"]), "en-GB");
        assert_eq!(pick("km", &["en", "zh-Hans", "th"]), PRIMARY);
        assert_eq!(negotiate(None, &["zh", "th"], "th"), "th");
        assert_eq!(pick("fr", &[]), PRIMARY);
    }

    #[test]
    fn written_languages() {
        assert!(same_written_language("zh-CN", "zh-Hans"));
        assert!(same_written_language("zh", "zh-SG"));
        assert!(same_written_language("en", "en-GB"));
        assert!(same_written_language("TH", "th-TH"));
        assert!(!same_written_language("zh-Hans", "zh-Hant"));
        assert!(!same_written_language("zh-TW", "zh"));
        assert!(!same_written_language("en", "th"));
        assert!(!same_written_language("!!", "!!"));
    }

    #[test]
    fn odd_input() {
        let v = ["en", "zh-Hans", "zh-Hant", "th"];
        // Case and underscores.
        assert_eq!(pick("ZH-tw", &v), "zh-Hant");
        assert_eq!(pick("zh_TW", &v), "zh-Hant");
        assert_eq!(pick(" th_th ", &v), "th");
        assert_eq!(pick("zh-hant", &v), "zh-Hant");
        assert_eq!(pick("zh", &["ZH_HANT", "ZH_hans"]), "ZH_hans");
        // Extensions are ignored.
        assert_eq!(pick("th-TH-u-ca-buddhist", &v), "th");
        // Garbage, empty and undetermined readers get the primary.
        for reader in [
            "",
            "  ",
            "!!",
            "not a tag",
            "12",
            "und",
            "zh--TW",
            "x-private",
        ] {
            assert_eq!(pick(reader, &v), PRIMARY, "{reader:?}");
        }
        // A version whose tag does not parse matches nobody.
        assert_eq!(pick("th", &["t h", "en"]), PRIMARY);
    }

    #[test]
    fn labels_follow_the_text_language() {
        for (text, want) in [
            ("en", "en"),
            ("en-US", "en"),
            ("zh-CN", "zh-Hans"),
            ("zh", "zh-Hans"),
            ("zh-SG", "zh-Hans"),
            ("zh-TW", "zh-Hant"),
            ("zh-HK", "zh-Hant"),
            ("zh-Hant-TW", "zh-Hant"),
            ("th-TH", "th"),
            ("vi", "vi"),
            ("km-KH", "km"),
            ("lo", "lo"),
            ("my-MM", "my"),
            ("fr", "en"),
            ("garbage!", "en"),
        ] {
            assert_eq!(label_locale(text), want, "{text}");
        }
        assert_eq!(known_locale("zh-hans"), Some("zh-Hans"));
        assert_eq!(known_locale("ZH_HANT"), Some("zh-Hant"));
        assert_eq!(known_locale("zh-CN"), None);
        assert_eq!(known_locale("fr"), None);
    }

    #[test]
    fn the_locales_are_the_folders() {
        assert!(LOCALES.contains(&FALLBACK_LOCALE));
        for l in ["en", "zh-Hans", "zh-Hant", "th", "vi", "km", "lo", "my"] {
            assert!(LOCALES.contains(&l), "{l} missing from {LOCALES:?}");
        }
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("templates/locales");
        let mut folders: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        folders.sort();
        assert_eq!(folders, LOCALES);
        for l in LOCALES {
            assert!(parse_tag(l).is_some(), "folder `{l}` is not a BCP 47 tag");
        }
    }
}
