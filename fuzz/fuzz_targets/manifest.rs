#![no_main]
//! Manifests and indexes from a hostile registry: parsing never panics.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    repro::capture::image::registry::fuzz_manifest(data);
});
