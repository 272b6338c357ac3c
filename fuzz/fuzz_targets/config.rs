#![no_main]
//! Config files (a committed .repro.toml is untrusted input): never a panic.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    repro::config::fuzz_config(data);
});
