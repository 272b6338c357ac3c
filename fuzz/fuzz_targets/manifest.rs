#![no_main]
//! Manifests and indexes from a hostile registry

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
     parsing never panics.:repro::capture::image::registry::fuzz_manifest(data);
});
