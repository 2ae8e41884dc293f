//! `cargo +nightly fuzz run parse`: the ctl language, in arbitrary writes (see
//! `ctl::fuzzing::fuzz_ctl` for the properties checked).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ctl::fuzzing::fuzz_ctl(data);
});
