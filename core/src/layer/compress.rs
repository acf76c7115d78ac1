//! Layer compression: gzip (one member, no name or time in the header), zstd,
//! or none.

use std::fmt;
use std::io::{self, Write};

use crate::error::{Error, Result};
use crate::media;

/// How layers are compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip { level: u32 },
    Zstd { level: i32 },
}

impl Default for Compression {
    fn default() -> Self {
        Compression::Gzip {
            level: DEFAULT_GZIP_LEVEL,
        }
    }
}

/// gzip level used unless one is asked for.
pub const DEFAULT_GZIP_LEVEL: u32 = 2;
/// zstd level used unless one is asked for.
pub const DEFAULT_ZSTD_LEVEL: i32 = 3;

impl Compression {
    /// Parses `gzip`, `zstd` or `none` with an optional level.
    pub fn parse(name: &str, level: Option<i32>) -> Result<Self> {
        match name {
            "gzip" => {
                let level = level.unwrap_or(DEFAULT_GZIP_LEVEL as i32);
                if !(1..=9).contains(&level) {
                    return Err(Error::usage(format!(
                        "gzip compression level {level} is out of range (1 to 9)"
                    )));
                }
                Ok(Compression::Gzip {
                    level: level as u32,
                })
            }
            "zstd" => {
                let level = level.unwrap_or(DEFAULT_ZSTD_LEVEL);
                if !(1..=22).contains(&level) {
                    return Err(Error::usage(format!(
                        "zstd compression level {level} is out of range (1 to 22)"
                    )));
                }
                Ok(Compression::Zstd { level })
            }
            "none" => {
                if level.is_some() {
                    return Err(Error::usage(
                        "--compression-level does not apply to --compression none",
                    ));
                }
                Ok(Compression::None)
            }
            other => Err(Error::usage(format!(
                "unknown compression '{other}' (valid: gzip, zstd, none)"
            ))),
        }
    }

    /// The OCI media type of a layer compressed this way.
    #[must_use]
    pub fn media_type(self) -> &'static str {
        match self {
            Compression::None => media::OCI_LAYER_TAR,
            Compression::Gzip { .. } => media::OCI_LAYER_GZIP,
            Compression::Zstd { .. } => media::OCI_LAYER_ZSTD,
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Compression::None => f.write_str("none"),
            Compression::Gzip { level } => write!(f, "gzip level {level}"),
            Compression::Zstd { level } => write!(f, "zstd level {level}"),
        }
    }
}

/// A writer that compresses into `W`.
pub enum Compressor<W: Write> {
    Plain(W),
    Gzip(super::pgzip::ParallelGzip<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write> Compressor<W> {
    /// Starts a compressed stream. `threads` is how many worker threads the
    /// compressor may use for this one stream.
    pub fn new(compression: Compression, out: W, threads: usize) -> io::Result<Self> {
        Ok(match compression {
            Compression::None => Compressor::Plain(out),
            // Blocks deflated in parallel, joined in one member; the header
            // has no name and no time. One thread compresses inline, with the
            // same blocks, so the bytes never depend on the thread count.
            Compression::Gzip { level } => Compressor::Gzip(super::pgzip::ParallelGzip::new(
                out,
                level,
                if threads > 1 { threads } else { 0 },
            )),
            Compression::Zstd { level } => {
                let mut enc = zstd::stream::write::Encoder::new(out, level)?;
                // Always zstd's multithreaded mode: its output is the same for
                // any worker count (the single-threaded mode's is not).
                enc.multithread(threads.max(1) as u32)?;
                // Jobs of 4 MiB keep memory low with several workers.
                enc.set_parameter(zstd::zstd_safe::CParameter::JobSize(4 << 20))?;
                enc.include_checksum(true)?;
                Compressor::Zstd(enc)
            }
        })
    }

    /// Ends the stream and returns the inner writer.
    pub fn finish(self) -> io::Result<W> {
        match self {
            Compressor::Plain(w) => Ok(w),
            Compressor::Gzip(enc) => enc.finish(),
            Compressor::Zstd(enc) => enc.finish(),
        }
    }
}

impl<W: Write> Write for Compressor<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Compressor::Plain(w) => w.write(buf),
            Compressor::Gzip(w) => w.write(buf),
            Compressor::Zstd(w) => w.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Compressor::Plain(w) => w.write_all(buf),
            Compressor::Gzip(w) => w.write_all(buf),
            Compressor::Zstd(w) => w.write_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Compressor::Plain(w) => w.flush(),
            Compressor::Gzip(w) => w.flush(),
            Compressor::Zstd(w) => w.flush(),
        }
    }
}

/// Decompresses a layer stream of the given media type.
pub fn decompressor<'a, R: io::BufRead + 'a>(
    media_type: &str,
    input: R,
) -> Result<Box<dyn io::Read + 'a>> {
    if media_type.ends_with("gzip") {
        Ok(Box::new(flate2::bufread::GzDecoder::new(input)))
    } else if media_type.ends_with("zstd") {
        Ok(Box::new(
            zstd::stream::read::Decoder::with_buffer(input)
                .map_err(|e| Error::invalid(format!("zstd stream: {e}")))?,
        ))
    } else if media_type.ends_with("tar") {
        Ok(Box::new(input))
    } else {
        Err(Error::invalid(format!(
            "unsupported layer media type '{media_type}'"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn round_trip(c: Compression) {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let mut w = Compressor::new(c, Vec::new(), 2).expect("the test fixture is valid");
        w.write_all(&data).expect("writing to memory works");
        let out = w.finish().expect("finishing the in-memory stream works");
        let mut back = Vec::new();
        decompressor(c.media_type(), &out[..])
            .expect("the test fixture is valid")
            .read_to_end(&mut back)
            .expect("the test fixture is valid");
        assert_eq!(back, data);
    }

    #[test]
    fn every_compression_round_trips() {
        round_trip(Compression::None);
        round_trip(Compression::Gzip { level: 6 });
        round_trip(Compression::Zstd { level: 3 });
    }

    /// `input` compressed on `threads` threads, written in pieces whose
    /// sizes `sizes` chooses.
    fn compress(
        c: Compression,
        input: &[u8],
        threads: usize,
        mut sizes: impl FnMut() -> usize,
    ) -> Vec<u8> {
        let mut w = Compressor::new(c, Vec::new(), threads).expect("the test fixture is valid");
        let mut rest = input;
        while !rest.is_empty() {
            let n = sizes().clamp(1, rest.len());
            w.write_all(&rest[..n]).expect("writing to memory works");
            rest = &rest[n..];
        }
        w.finish().expect("finishing the in-memory stream works")
    }

    #[test]
    fn the_encoders_are_the_pinned_ones() {
        // The bytes of a layer depend on the encoder: the libdeflate in
        // core/libdeflate and the vendored zstd that Cargo.lock pins, the
        // same however treeport is built (a workspace-wide build once
        // linked the system's libzstd instead, and wrote other layers).
        // Changing either may change these digests, and only that may.
        let input = crate::layer::testdata::structured((3 << 20) + 12_345, 7);
        let digest = |c| crate::digest::Digest::of(&compress(c, &input, 2, || 65_536)).to_string();
        let got = [
            digest(Compression::Gzip { level: 2 }),
            digest(Compression::Gzip { level: 9 }),
            digest(Compression::Zstd { level: 3 }),
        ];
        assert_eq!(
            got,
            [
                "sha256:a6957ed05dbd91bae282745770d6c5140d97f25bb410c527bad2ce06130eb2a5",
                "sha256:d14d5b298ae4337f331883d6f8e899be91e8ddae55d8065944d9d1cc3ed912ea",
                "sha256:8d9a2b730ba210bca6d3ea9e286fbdec383e66a7e4b7e8cb834e75c4e64bb607",
            ]
        );
    }

    #[test]
    fn zstd_bytes_depend_on_the_input_alone() {
        // Several of zstd's 4 MiB jobs, and a tail.
        let input = crate::layer::testdata::structured((19 << 20) + 12_345, 5);
        let c = Compression::Zstd { level: 3 };
        let expected = compress(c, &input, 1, || usize::MAX);
        let mut rng = crate::layer::testdata::Rng(11);
        for threads in [1, 2, 8] {
            let results = [
                ("whole", compress(c, &input, threads, || usize::MAX)),
                ("odd", compress(c, &input, threads, || 4093)),
                (
                    "random",
                    compress(c, &input, threads, || 1 + rng.below(3 << 20)),
                ),
            ];
            for (pattern, got) in results {
                assert!(
                    got == expected,
                    "{threads} threads, {pattern} writes: {} bytes, expected {}",
                    got.len(),
                    expected.len()
                );
            }
        }
    }

    #[test]
    fn gzip_header_has_no_name_and_no_time() {
        let mut w = Compressor::new(Compression::Gzip { level: 6 }, Vec::new(), 1)
            .expect("the test fixture is valid");
        w.write_all(b"x").expect("writing to memory works");
        let out = w.finish().expect("finishing the in-memory stream works");
        assert_eq!(&out[..4], &[0x1f, 0x8b, 8, 0], "no FNAME flag");
        assert_eq!(&out[4..8], &[0, 0, 0, 0], "mtime is zero");
    }

    #[test]
    fn levels_are_checked() {
        assert!(Compression::parse("gzip", Some(10)).is_err());
        assert!(Compression::parse("zstd", Some(0)).is_err());
        assert!(Compression::parse("lz4", None).is_err());
        assert_eq!(
            Compression::parse("zstd", None).expect("the test literal parses"),
            Compression::Zstd { level: 3 }
        );
    }
}
