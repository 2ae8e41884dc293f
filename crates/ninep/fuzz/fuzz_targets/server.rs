//! `cargo +nightly fuzz run server`: the server core fed arbitrary message streams,
//! serving the ramfs (`ninep::ramfs`).
#![no_main]

use ninep::ramfs::RamFs;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let fs = RamFs::with_clock(|| 0);
    fs.add_file("one", vec![0]);
    fs.add_file("8k", vec![7; 8192]);
    ninep::fuzzing::fuzz_server(fs, data);
});
