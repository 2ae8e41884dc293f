//! `cargo +nightly fuzz run decode`: the frame decoder and the text form.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ninep::fuzzing::fuzz_decode(data);
});
