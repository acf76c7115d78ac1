//! Builds the deflate compressor gzip layers use: libdeflate 1.26's
//! compression half, with the patch in `libdeflate/treeport.patch` (see
//! `libdeflate/README.md`).

fn main() {
    let dir = std::path::Path::new("libdeflate");
    println!("cargo:rerun-if-changed=libdeflate");
    cc::Build::new()
        .files(
            [
                "lib/deflate_compress.c",
                "lib/utils.c",
                "lib/x86/cpu_features.c",
                "lib/arm/cpu_features.c",
            ]
            .map(|f| dir.join(f)),
        )
        .include(dir)
        // The same optimisation in every profile: debug builds (the test
        // suite's) compress at release speed. The bytes do not depend on it.
        .opt_level(2)
        .debug(false)
        .warnings(false)
        .compile("treeport_deflate");
}
