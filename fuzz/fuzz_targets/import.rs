#![no_main]
//! repro import lines

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
     parsing and validation never panic.:repro::store::fuzz_import_line(data);
});
