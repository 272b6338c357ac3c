#![no_main]
//! DVC files

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
     .dvc and dvc.lock YAML never panics the parser or lookup.:repro::capture::dataset::fuzz_dvc(data);
});
