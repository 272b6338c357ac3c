#![no_main]
//! DVC files (.dvc and dvc.lock YAML) never panic the parser or the output lookup.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    repro::capture::dataset::fuzz_dvc(data);
});
