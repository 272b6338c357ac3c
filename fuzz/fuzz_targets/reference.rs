#![no_main]
//! Image references: parsing never panics; normalized and familiar forms are fixed points.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    repro::capture::image::fuzz_reference(data);
});
