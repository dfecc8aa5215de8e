//! The one mechanism for every closed set of words the program stores, reads from
//! configuration or accepts on a command line: `text_enum!` declares an enum with its
//! text forms, `as_str`, `Display`, `FromStr` (failing with [`UnknownValue`]) and serde.

/// A word that is not one of an enum's text forms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} `{value}` (expected one of: {})", expected.join(", "))]
pub struct UnknownValue {
    /// What the word names ("delivery status", "channel").
    pub kind: &'static str,
    /// The word as given, escaped so control characters cannot reach a terminal or log.
    pub value: String,
    /// Every accepted text form.
    pub expected: &'static [&'static str],
}

/// Declares a string enum: `text_enum!(/// doc \n Name("what it is") { Variant => "text", … })`.
/// Serde reads and writes the same text forms, so a configuration file, an API body and
/// a database column all use one spelling.
macro_rules! text_enum {
    ($(#[$m:meta])* $name:ident ($what:literal) { $($(#[$vm:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        pub enum $name { $($(#[$vm])* #[serde(rename = $text)] $variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// Every text form, in declaration order.
            pub const TEXTS: &'static [&'static str] = &[$($text),+];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        // By hand, not derived: a derive inside `macro_rules!` does not see the variants'
        // `serde(rename)` (the text arrives as a macro fragment), and would document the
        // Rust names instead of the texts.
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::schema::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .description(Some($what))
                    .enum_values(Some(Self::TEXTS.iter().copied()))
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {}

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::domain::vocab::UnknownValue;
            fn from_str(s: &str) -> ::std::result::Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err($crate::domain::vocab::UnknownValue {
                        kind: $what,
                        value: other.escape_default().to_string(),
                        expected: Self::TEXTS,
                    }),
                }
            }
        }
    };
}
pub(crate) use text_enum;

#[cfg(test)]
mod tests {
    text_enum!(
        /// A test vocabulary.
        Colour("colour") { Red => "red", DarkBlue => "dark_blue" }
    );

    #[test]
    fn text_forms_round_trip_through_from_str_display_and_serde() {
        for c in Colour::ALL {
            assert_eq!(c.as_str().parse::<Colour>().unwrap(), *c);
            assert_eq!(c.to_string(), c.as_str());
            let json = serde_json::to_string(c).unwrap();
            assert_eq!(json, format!("\"{}\"", c.as_str()));
            assert_eq!(serde_json::from_str::<Colour>(&json).unwrap(), *c);
        }
    }

    #[test]
    fn the_schema_is_a_string_enum_of_the_texts() {
        let schema = serde_json::to_value(<Colour as utoipa::PartialSchema>::schema()).unwrap();
        assert_eq!(
            schema,
            serde_json::json!({"type": "string", "description": "colour", "enum": ["red", "dark_blue"]})
        );
        assert_eq!(<Colour as utoipa::ToSchema>::name(), "Colour");
    }

    #[test]
    fn an_unknown_word_names_the_vocabulary_and_every_accepted_word() {
        let e = "Blue\n".parse::<Colour>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown colour `Blue\\n` (expected one of: red, dark_blue)"
        );
    }
}
