//! Parallel gzip, as pigz does it: the stream is cut into fixed blocks, each
//! block is deflated on a worker on its own and ends with a sync flush (so
//! blocks join into one deflate stream), and the pieces are written in order
//! inside a single gzip member. Consumers that read one member only (bootc's
//! importer uses a single-member decoder) see one stream.
//!
//! Block boundaries depend only on the data, and each block's bytes only on
//! the block, so the output is the same for any number of workers and any
//! write sizes. Memory stays bounded: at most two blocks per worker are in
//! flight.
//!
//! The deflate is libdeflate's (built from `core/libdeflate`, a copy of
//! libdeflate 1.26's compressor): at the same level it is about 1.5 times as
//! fast as zlib and writes smaller blocks. libdeflate compresses whole
//! buffers and marks the last block of each final; the one function the
//! copy adds, `libdeflate_deflate_compress_sync`, marks no block final and
//! ends with zlib's sync flush marker instead, which is what lets blocks
//! join. Blocks start with no dictionary (libdeflate takes none); at 1 MiB
//! a block that costs under 1% in size.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

/// Uncompressed bytes per block.
pub const BLOCK: usize = 1 << 20;

/// The gzip header: no name, no time, unknown OS; the same for every input.
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

#[allow(unsafe_code)]
mod ffi {
    use std::ffi::{c_int, c_void};

    #[repr(C)]
    pub struct Compressor {
        _private: [u8; 0],
    }

    unsafe extern "C" {
        pub fn libdeflate_alloc_compressor(level: c_int) -> *mut Compressor;
        pub fn libdeflate_free_compressor(c: *mut Compressor);
        pub fn libdeflate_deflate_compress_bound(c: *mut Compressor, in_nbytes: usize) -> usize;
        pub fn libdeflate_deflate_compress(
            c: *mut Compressor,
            input: *const c_void,
            in_nbytes: usize,
            out: *mut c_void,
            out_nbytes_avail: usize,
        ) -> usize;
        pub fn libdeflate_deflate_compress_sync(
            c: *mut Compressor,
            input: *const c_void,
            in_nbytes: usize,
            out: *mut c_void,
            out_nbytes_avail: usize,
        ) -> usize;
    }
}

/// A libdeflate compressor at one level. Each call compresses its input
/// from a clean state (libdeflate keeps nothing between calls), so one
/// compressor serves every block a worker takes.
pub(crate) struct Deflater(std::ptr::NonNull<ffi::Compressor>);

// SAFETY: a compressor is plain memory used by one call at a time (`&mut
// self`); nothing in it is tied to the thread that made it.
#[allow(unsafe_code)]
unsafe impl Send for Deflater {}

#[allow(unsafe_code)]
impl Deflater {
    /// A compressor at `level` (1 to 9, as gzip numbers them).
    pub(crate) fn new(level: u32) -> Self {
        let level = i32::try_from(level.clamp(1, 9)).unwrap_or(9);
        // SAFETY: any level from 0 to 12 is valid; null means out of memory.
        let c = unsafe { ffi::libdeflate_alloc_compressor(level) };
        match std::ptr::NonNull::new(c) {
            Some(c) => Deflater(c),
            // What every other allocation does when memory runs out.
            None => std::alloc::handle_alloc_error(std::alloc::Layout::new::<[u8; 1 << 16]>()),
        }
    }

    /// `data` deflated into `out` (replacing what it held): as the end of a
    /// stream when `last`, else as a piece that a sync flush marker ends, so
    /// the next piece can follow it. `out` is a buffer to reuse: its memory
    /// serves again without being mapped afresh.
    pub(crate) fn deflate(&mut self, data: &[u8], last: bool, out: &mut Vec<u8>) -> io::Result<()> {
        let c = self.0.as_ptr();
        // SAFETY: `c` is a live compressor; the bound is a pure function.
        // The sync form needs 5 bytes more than the bound.
        let room = unsafe { ffi::libdeflate_deflate_compress_bound(c, data.len()) } + 5;
        // The output goes to the buffer's spare capacity, not zeroed first:
        // only the pages the output reaches are ever touched.
        out.clear();
        out.reserve(room);
        let (input, len) = (data.as_ptr().cast(), data.len());
        let dst = out.as_mut_ptr().cast();
        // SAFETY: `input` is `len` readable bytes, `dst` is `room` writable
        // bytes (capacity reserved above; libdeflate only stores to it), and
        // `c` is used by this call alone (`&mut self`).
        let n = unsafe {
            if last {
                ffi::libdeflate_deflate_compress(c, input, len, dst, room)
            } else {
                ffi::libdeflate_deflate_compress_sync(c, input, len, dst, room)
            }
        };
        if n == 0 {
            // The bound makes this unreachable; say so rather than write a
            // truncated stream.
            return Err(io::Error::other("deflate output outgrew its bound"));
        }
        // SAFETY: libdeflate wrote the first `n` bytes, and `n <= room`.
        debug_assert!(n <= room);
        unsafe { out.set_len(n.min(room)) };
        Ok(())
    }
}

#[allow(unsafe_code)]
impl Drop for Deflater {
    fn drop(&mut self) {
        // SAFETY: made by libdeflate_alloc_compressor, freed once.
        unsafe { ffi::libdeflate_free_compressor(self.0.as_ptr()) }
    }
}

/// Buffers of each kind kept for reuse once their block is done. Two
/// spare pairs take most page faults out of the run (a fresh 1 MiB buffer
/// is 256 of them, in system time); every kept one is memory held while
/// the layer is written.
const SPARES: usize = 2;

/// Keeps a buffer for reuse, when fewer than [`SPARES`] are kept.
fn keep(spares: &mut Vec<Vec<u8>>, buffer: Vec<u8>) {
    if spares.len() < SPARES {
        spares.push(buffer);
    }
}

/// A block to deflate, and the buffer its output goes to; both come back
/// with the result, to serve the next block.
struct Job {
    seq: u64,
    data: Vec<u8>,
    out: Vec<u8>,
    last: bool,
}

/// The worker threads and their queues; stopping them when dropped.
struct Pool {
    jobs: Option<SyncSender<Job>>,
    results: Receiver<(io::Result<()>, Job)>,
    workers: Vec<JoinHandle<()>>,
}

impl Drop for Pool {
    fn drop(&mut self) {
        // Closing the job queue ends the workers once they are idle.
        self.jobs = None;
        while self.results.try_recv().is_ok() {}
        for w in self.workers.drain(..) {
            // A worker blocked sending a result is freed as results drain.
            while !w.is_finished() {
                let _ = self
                    .results
                    .recv_timeout(std::time::Duration::from_millis(10));
            }
            let _ = w.join();
        }
    }
}

/// A gzip writer compressing blocks on worker threads.
pub struct ParallelGzip<W: Write> {
    out: W,
    block: Vec<u8>,
    crc: crc32fast::Hasher,
    len: u64,
    seq: u64,
    /// Next sequence number to write out.
    next_out: u64,
    /// Deflated blocks waiting for an earlier one.
    pending: BTreeMap<u64, Vec<u8>>,
    /// Input and output buffers of finished blocks, for the next ones.
    spare_blocks: Vec<Vec<u8>>,
    spare_outs: Vec<Vec<u8>>,
    /// Blocks sent to the workers and not yet back.
    in_flight: usize,
    /// The bound on blocks in flight and waiting, together.
    max_in_flight: usize,
    pool: Option<Pool>,
    /// Without workers, blocks are deflated on the calling thread.
    inline: Option<Deflater>,
    wrote_header: bool,
    /// Set by the first error: a block was lost, so the stream cannot go
    /// on (and must not end with a trailer after a gap).
    failed: bool,
}

impl<W: Write> ParallelGzip<W> {
    /// A compressor at `level` with `workers` threads (0: compress inline).
    pub fn new(out: W, level: u32, workers: usize) -> Self {
        let mut me = ParallelGzip {
            out,
            block: Vec::with_capacity(BLOCK),
            crc: crc32fast::Hasher::new(),
            len: 0,
            seq: 0,
            next_out: 0,
            pending: BTreeMap::new(),
            spare_blocks: Vec::new(),
            spare_outs: Vec::new(),
            in_flight: 0,
            // One block per worker and two more: the next block is ready
            // when a worker frees up, and one finished out of order can
            // wait. Each block is about 2 MiB with its output.
            max_in_flight: workers.max(1) + 2,
            pool: None,
            inline: (workers == 0).then(|| Deflater::new(level)),
            wrote_header: false,
            failed: false,
        };
        if me.inline.is_some() {
            return me;
        }
        let (job_tx, job_rx) = sync_channel::<Job>(me.max_in_flight);
        let (res_tx, res_rx) = sync_channel(me.max_in_flight);
        let job_rx = std::sync::Arc::new(std::sync::Mutex::new(job_rx));
        let mut handles = Vec::with_capacity(workers);
        for _ in 0..workers {
            let job_rx = std::sync::Arc::clone(&job_rx);
            let res_tx = res_tx.clone();
            handles.push(std::thread::spawn(move || {
                let mut deflater = Deflater::new(level);
                loop {
                    let job = {
                        let rx = job_rx.lock().expect("no worker panics holding the queue");
                        rx.recv()
                    };
                    let Ok(mut job) = job else { break };
                    let r = deflater.deflate(&job.data, job.last, &mut job.out);
                    if res_tx.send((r, job)).is_err() {
                        break;
                    }
                }
            }));
        }
        me.pool = Some(Pool {
            jobs: Some(job_tx),
            results: res_rx,
            workers: handles,
        });
        me
    }

    /// Refuses to go on after an error.
    fn check(&self) -> io::Result<()> {
        if self.failed {
            return Err(io::Error::other(
                "the gzip stream stopped at an earlier error",
            ));
        }
        Ok(())
    }

    fn header(&mut self) -> io::Result<()> {
        if !self.wrote_header {
            self.out.write_all(&HEADER)?;
            self.wrote_header = true;
        }
        Ok(())
    }

    /// Takes a finished block: its input buffer is free now, its output
    /// goes out when every block before it has; all of them that can.
    fn finished(&mut self, job: Job) -> io::Result<()> {
        keep(&mut self.spare_blocks, job.data);
        self.pending.insert(job.seq, job.out);
        while let Some(out) = self.pending.remove(&self.next_out) {
            self.out.write_all(&out)?;
            self.next_out += 1;
            keep(&mut self.spare_outs, out);
        }
        Ok(())
    }

    /// Waits for one result from the workers.
    fn receive(&mut self) -> io::Result<()> {
        if self.in_flight == 0 {
            // Nothing can arrive: waiting would be for ever.
            return Err(io::Error::other("no compressed block is on its way"));
        }
        let pool = self.pool.as_ref().expect("workers exist");
        let (r, job) = pool
            .results
            .recv()
            .map_err(|_| io::Error::other("a compression worker stopped"))?;
        self.in_flight -= 1;
        r?;
        self.finished(job)
    }

    /// Sends the current block off (or deflates it here).
    fn submit(&mut self, last: bool) -> io::Result<()> {
        self.header()?;
        let next_block = match self.spare_blocks.pop() {
            Some(mut data) => {
                data.clear();
                data
            }
            None if last => Vec::new(),
            None => Vec::with_capacity(BLOCK),
        };
        let mut job = Job {
            seq: self.seq,
            data: std::mem::replace(&mut self.block, next_block),
            out: self.spare_outs.pop().unwrap_or_default(),
            last,
        };
        self.seq += 1;
        if let Some(deflater) = &mut self.inline {
            deflater.deflate(&job.data, job.last, &mut job.out)?;
            return self.finished(job);
        }
        // Blocks done out of order wait for the one before them: they count
        // against the bound too, or a slow block would let them pile up.
        while self.in_flight + self.pending.len() >= self.max_in_flight {
            self.receive()?;
        }
        self.pool
            .as_ref()
            .and_then(|p| p.jobs.as_ref())
            .expect("workers exist")
            .send(job)
            .map_err(|_| io::Error::other("a compression worker stopped"))?;
        self.in_flight += 1;
        Ok(())
    }

    /// Ends the stream: the last block, every result, the trailer.
    pub fn finish(mut self) -> io::Result<W> {
        self.check()?;
        self.submit(true).inspect_err(|_| self.failed = true)?;
        while self.in_flight > 0 {
            self.receive()?;
        }
        let crc = self.crc.clone().finalize();
        self.out.write_all(&crc.to_le_bytes())?;
        self.out.write_all(&(self.len as u32).to_le_bytes())?;
        drop(self.pool.take());
        Ok(self.out)
    }
}

impl<W: Write> Write for ParallelGzip<W> {
    fn write(&mut self, mut buf: &[u8]) -> io::Result<usize> {
        self.check()?;
        let n = buf.len();
        self.crc.update(buf);
        self.len += n as u64;
        while !buf.is_empty() {
            let room = BLOCK - self.block.len();
            let take = room.min(buf.len());
            self.block.extend_from_slice(&buf[..take]);
            buf = &buf[take..];
            if self.block.len() == BLOCK {
                // The bytes are taken whole or the writer is done for.
                self.submit(false).inspect_err(|_| self.failed = true)?;
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    use crate::layer::testdata::{Rng, structured};

    /// Deflate's window, the distance a match may reach back.
    const WINDOW: usize = 32 * 1024;

    /// Machine code and data as real trees hold them: this test program's
    /// own bytes (tens of MiB).
    fn real(max: usize) -> Vec<u8> {
        let mut bytes =
            std::fs::read(std::env::current_exe().expect("the test reads what it wrote"))
                .expect("the test reads what it wrote");
        bytes.truncate(max);
        bytes
    }

    /// The format written out plainly, one block after the other on this
    /// thread: header, each block deflated by a new compressor and ended by
    /// a sync flush marker (the last one ending the stream), CRC-32 and
    /// length.
    fn reference(input: &[u8], level: u32) -> Vec<u8> {
        let mut out = HEADER.to_vec();
        let mut at = 0;
        loop {
            let end = (at + BLOCK).min(input.len());
            let last = end == input.len() && (end - at < BLOCK || input.is_empty());
            out.extend_from_slice(&fresh(level, &input[at..end], last));
            if last {
                break;
            }
            at = end;
        }
        out.extend_from_slice(&crc32fast::hash(input).to_le_bytes());
        out.extend_from_slice(&(input.len() as u32).to_le_bytes());
        out
    }

    /// One block through libdeflate's own calls on a compressor made for
    /// it alone, with twice the room it needs.
    #[allow(unsafe_code)]
    fn fresh(level: u32, data: &[u8], last: bool) -> Vec<u8> {
        let room = 2 * data.len() + 1024;
        let mut block = vec![0u8; room];
        // SAFETY: as in `Deflater`: a live compressor used by one call, the
        // input and output buffers their stated sizes.
        let n = unsafe {
            let c = ffi::libdeflate_alloc_compressor(level as i32);
            assert!(!c.is_null());
            let (i, o) = (data.as_ptr().cast(), block.as_mut_ptr().cast());
            let n = if last {
                ffi::libdeflate_deflate_compress(c, i, data.len(), o, room)
            } else {
                ffi::libdeflate_deflate_compress_sync(c, i, data.len(), o, room)
            };
            ffi::libdeflate_free_compressor(c);
            n
        };
        assert!(n > 0);
        block.truncate(n);
        block
    }

    /// `input` through the parallel writer in pieces whose sizes `sizes`
    /// chooses.
    fn gzip(input: &[u8], workers: usize, sizes: impl FnMut() -> usize) -> Vec<u8> {
        let mut w = ParallelGzip::new(Vec::new(), 3, workers);
        crate::layer::testdata::feed(&mut w, input, sizes);
        w.finish().expect("finishing the in-memory stream works")
    }

    fn check(input: &[u8], what: &str) {
        let expected = reference(input, 3);
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ input.len() as u64);
        for workers in [0, 1, 2, 8] {
            let results = [
                ("whole", gzip(input, workers, || usize::MAX)),
                ("odd", gzip(input, workers, || 65_537)),
                (
                    "random",
                    gzip(input, workers, || 1 + rng.below(3 * BLOCK / 2)),
                ),
            ];
            for (pattern, got) in results {
                assert!(
                    got == expected,
                    "{what} ({} bytes), {workers} workers, {pattern} writes: \
                     the output ({} bytes) differs from the reference ({} bytes)",
                    input.len(),
                    got.len(),
                    expected.len()
                );
            }
        }
        // One member, read whole by a single-member decoder, nothing after it.
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&expected[..])
            .read_to_end(&mut back)
            .expect("the test fixture is valid");
        assert!(back == input, "{what}: round trip");
        let mut multi = Vec::new();
        flate2::read::MultiGzDecoder::new(&expected[..])
            .read_to_end(&mut multi)
            .expect("the test fixture is valid");
        assert_eq!(multi.len(), input.len());
    }

    #[test]
    fn bytes_depend_on_the_input_alone() {
        let mut rng = Rng(42);
        let mut sizes = vec![
            0,
            1,
            WINDOW - 1,
            BLOCK - 1,
            BLOCK,
            BLOCK + 1,
            2 * BLOCK + WINDOW / 2,
            5 * BLOCK,
        ];
        sizes.extend((0..3).map(|_| rng.below(6 * BLOCK)));
        for (i, n) in sizes.into_iter().enumerate() {
            check(&structured(n, i as u64 + 1), "structured input");
        }
    }

    #[test]
    fn incompressible_blocks_at_every_level_match() {
        // Random bytes go out as uncompressed blocks, split at 64 KiB: none
        // of them may be marked final before the stream's end.
        let mut rng = Rng(99);
        let input: Vec<u8> = (0..3 * BLOCK + 777).map(|_| rng.next() as u8).collect();
        for level in [1, 6, 9] {
            let expected = reference(&input, level);
            for workers in [0, 2] {
                let mut w = ParallelGzip::new(Vec::new(), level, workers);
                crate::layer::testdata::feed(&mut w, &input, || 100_000);
                let got = w.finish().expect("finishing the in-memory stream works");
                assert!(got == expected, "level {level}, {workers} workers");
            }
            let mut back = Vec::new();
            flate2::read::GzDecoder::new(&expected[..])
                .read_to_end(&mut back)
                .expect("the test fixture is valid");
            assert!(back == input, "level {level}: round trip");
        }
    }

    #[test]
    fn sync_pieces_of_any_size_join_into_one_stream() {
        // Pieces at or below libdeflate's pass-through size (stored as they
        // are), empty ones, and compressed ones, one after the other: the
        // whole is one deflate stream that ends exactly where the last
        // piece does, so no piece but the last was marked final.
        let data = structured(300_000, 7);
        let cuts = [0, 0, 1, 5, 40, 40, 55, 60, 1000, 70_000, 200_000, 300_000];
        for level in 1..=9 {
            let mut d = Deflater::new(level);
            let mut stream = Vec::new();
            // One output buffer for all pieces, as the writer reuses them.
            let mut piece = Vec::new();
            for (i, w) in cuts.windows(2).enumerate() {
                let last = i + 2 == cuts.len();
                d.deflate(&data[w[0]..w[1]], last, &mut piece)
                    .expect("deflating in memory works");
                if !last {
                    assert!(
                        piece.ends_with(&[0, 0, 0xff, 0xff]),
                        "level {level}, piece {i}"
                    );
                }
                assert!(piece == fresh(level, &data[w[0]..w[1]], last));
                stream.extend_from_slice(&piece);
            }
            let mut inflate = flate2::Decompress::new(false);
            let mut back = Vec::with_capacity(data.len() + 1);
            let status = inflate
                .decompress_vec(&stream, &mut back, flate2::FlushDecompress::Finish)
                .expect("the stream is valid deflate");
            assert_eq!(status, flate2::Status::StreamEnd, "level {level}");
            assert_eq!(inflate.total_in() as usize, stream.len(), "level {level}");
            assert!(back == data, "level {level}: round trip");
        }
    }

    /// A destination that fails from its `ok`-th write on.
    struct FailsAt {
        ok: usize,
    }

    impl Write for FailsAt {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.ok == 0 {
                return Err(io::Error::other("disk full"));
            }
            self.ok -= 1;
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn after_an_error_every_call_fails_and_none_waits() {
        // A lost block leaves a gap: writing on would once wait for it for
        // ever, and finishing would put a trailer after it.
        let input = structured(12 * BLOCK, 3);
        for workers in [0, 1, 2] {
            for ok in [0, 1, 3] {
                let input = input.clone();
                let (tx, rx) = std::sync::mpsc::channel();
                std::thread::spawn(move || {
                    let mut w = ParallelGzip::new(FailsAt { ok }, 2, workers);
                    let results: Vec<bool> = input
                        .chunks(BLOCK / 2)
                        .map(|c| w.write(c).is_ok())
                        .collect();
                    let finished = w.finish().is_ok();
                    let _ = tx.send((results, finished));
                });
                let (results, finished) = rx
                    .recv_timeout(std::time::Duration::from_secs(60))
                    .unwrap_or_else(|_| panic!("{workers} workers, {ok} writes: stuck"));
                let first = results.iter().position(|r| !r);
                let first = first.unwrap_or_else(|| panic!("{workers} workers, {ok}: no error"));
                assert!(
                    results[first..].iter().all(|r| !r),
                    "{workers} workers, {ok}"
                );
                assert!(!finished, "{workers} workers, {ok} writes");
            }
        }
    }

    #[test]
    fn real_bytes_depend_on_the_input_alone() {
        // Machine code is what showed blocks depending on their
        // compressor's history: keep it in the test.
        check(&real(40 << 20), "this test program's bytes");
    }
}
