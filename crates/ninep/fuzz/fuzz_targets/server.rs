//! `cargo +nightly fuzz run server`: the server core fed arbitrary message streams,
//! serving the example ramfs.
#![no_main]

#[path = "../../examples/ramfs/fs.rs"]
#[allow(dead_code)]
mod ramfs;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let fs = ramfs::RamFs::with_clock(|| 0);
    fs.add_file("one", vec![0]);
    fs.add_file("8k", vec![7; 8192]);
    ninep::fuzzing::fuzz_server(fs, data);
});
