#![no_main]
//! `repro import` lines: parsing and validation never panic.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    repro::store::fuzz_import_line(data);
});
