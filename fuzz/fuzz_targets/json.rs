//! The JSON reader (splitter and record parser) on arbitrary bytes: it may refuse them, never panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| crm_etl::read::fuzz::json(data));
