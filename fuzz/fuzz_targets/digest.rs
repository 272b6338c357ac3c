#![no_main]
//! Digests: parsing never panics; an accepted digest prints exactly as written.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    repro::capture::image::fuzz_digest(data);
});
