//! Fuzz target: the subscriber CSV reader. Whatever the bytes, reading the header and
//! every row must not panic, and a refused row must name its line and what is wrong.
#![no_main]

use bulletin::domain::subscriber::CsvSubscribers;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(rows) = CsvSubscribers::new(data) else {
        return;
    };
    for row in rows {
        if let Err(e) = row {
            assert!(e.line >= 1, "a row error without a line: {e:?}");
            assert!(
                !e.message.trim().is_empty(),
                "a row error without a message"
            );
        }
    }
});
