#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    treeport_tests::fuzzing::pax(data);
});
