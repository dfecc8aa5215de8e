//! Fuzz target: the session-record parser. Whatever the bytes, it must not panic, and a
//! refusal must say where (the file name it was given, a line and column from 1) and what.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(errors) = bulletin::domain::record::parse_record(source, "fuzz.toml", "en") {
        assert!(!errors.0.is_empty(), "a refusal with no error in it");
        for e in &errors.0 {
            assert_eq!(e.file, "fuzz.toml");
            assert!(!e.message.trim().is_empty(), "an error without a message");
            assert!(e.line.is_none_or(|l| l >= 1), "line 0: {e:?}");
            assert!(e.column.is_none_or(|c| c >= 1), "column 0: {e:?}");
        }
    }
});
