//! Parallel gzip, as pigz does it: the stream is cut into fixed blocks, each
//! block is deflated on a worker with the previous block's last 32 KiB as its
//! dictionary and ends with a sync flush (so blocks join into one deflate
//! stream), and the pieces are written in order inside a single gzip member.
//! Consumers that read one member only (bootc's importer uses a single-member
//! decoder) see one stream.
//!
//! Block boundaries depend only on the data, so the output is the same for
//! any number of workers. Memory stays bounded: at most two blocks per worker
//! are in flight.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use zlib_rs::{Deflate, DeflateFlush, Status};

/// Uncompressed bytes per block.
pub const BLOCK: usize = 1 << 20;
/// Deflate's window: the dictionary carried from block to block.
const WINDOW: usize = 32 * 1024;

/// The gzip header: no name, no time, unknown OS; the same for every input.
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

struct Job {
    seq: u64,
    data: Vec<u8>,
    dict: Vec<u8>,
    last: bool,
}

/// A job's block deflated by zlib-rs at `level` with the job's dictionary as
/// the window before it, ended by a sync flush (or finished, when last),
/// on a compressor of its own.
///
/// A fresh compressor for every block is what makes the bytes depend on the
/// block alone: zlib-rs's `deflateReset` clears the hash heads but not the
/// hash chains (`prev`), and its match finder can follow a stale chain entry
/// left by an earlier block, so a reused compressor's output depends on which
/// blocks it compressed before, which is a matter of scheduling. A new
/// compressor starts from zeroed tables, and costs a few tens of
/// microseconds against the milliseconds a block takes.
///
/// zlib-rs is called directly, not through flate2: flate2 uses whichever
/// backend any crate in the build asks for (C zlib when another dependency
/// enables it, as a workspace-wide build of this project does), and each
/// backend writes other bytes for the same input. The same treeport
/// source must give the same layers however it was built.
///
/// The output buffer is sized for zlib's bound up front, so the flush
/// completes in one call at levels 2 to 9.
fn deflate(level: u32, job: &Job) -> io::Result<Vec<u8>> {
    let (dict, data, last) = (&job.dict[..], &job.data[..], job.last);
    let err = |e: zlib_rs::DeflateError| io::Error::other(e.as_str());
    let mut c = Deflate::new(i32::try_from(level.min(9)).unwrap_or(9), false, 15);
    if !dict.is_empty() {
        c.set_dictionary(dict).map_err(err)?;
    }
    let flush = if last {
        DeflateFlush::Finish
    } else {
        DeflateFlush::SyncFlush
    };
    // zlib's deflateBound is n + n/4096 + n/16384 + a few dozen bytes.
    let mut out = vec![0u8; data.len() + data.len() / 1024 + 4096];
    let mut written = 0;
    let mut input = data;
    loop {
        let (before_in, before_out) = (c.total_in(), c.total_out());
        let status = c.compress(input, &mut out[written..], flush).map_err(err)?;
        let consumed = usize::try_from(c.total_in() - before_in).unwrap_or(input.len());
        input = &input[consumed..];
        written += usize::try_from(c.total_out() - before_out).unwrap_or(0);
        let done = match status {
            Status::StreamEnd => true,
            // A sync flush is complete when all input is taken and there was
            // room left for more output.
            Status::Ok | Status::BufError => !last && input.is_empty() && out.len() - written > 6,
        };
        if done {
            out.truncate(written);
            return Ok(out);
        }
        // Level 1 (zlib-rs's quick mode) can outgrow the bound above on
        // incompressible input: the buffer grows and the flush goes on. A
        // flush that had completed is not repeated (with no new input
        // zlib-rs answers a second sync flush with a buffer error, not
        // another marker), so the bytes do not depend on where it stopped.
        out.resize(out.len() + 256 * 1024, 0);
    }
}

/// The worker threads and their queues; stopping them when dropped.
struct Pool {
    jobs: Option<SyncSender<Job>>,
    results: Receiver<(u64, io::Result<Vec<u8>>)>,
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
    dict: Vec<u8>,
    crc: crc32fast::Hasher,
    len: u64,
    seq: u64,
    /// Next sequence number to write out.
    next_out: u64,
    pending: BTreeMap<u64, Vec<u8>>,
    in_flight: usize,
    max_in_flight: usize,
    pool: Option<Pool>,
    /// Without workers, blocks are deflated on the calling thread.
    inline: bool,
    level: u32,
    wrote_header: bool,
}

impl<W: Write> ParallelGzip<W> {
    /// A compressor at `level` with `workers` threads (0: compress inline).
    pub fn new(out: W, level: u32, workers: usize) -> Self {
        let mut me = ParallelGzip {
            out,
            block: Vec::with_capacity(BLOCK),
            dict: Vec::new(),
            crc: crc32fast::Hasher::new(),
            len: 0,
            seq: 0,
            next_out: 0,
            pending: BTreeMap::new(),
            in_flight: 0,
            max_in_flight: 2 * workers.max(1),
            pool: None,
            inline: workers == 0,
            level,
            wrote_header: false,
        };
        if me.inline {
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
                loop {
                    let job = {
                        let rx = job_rx.lock().expect("no worker panics holding the queue");
                        rx.recv()
                    };
                    let Ok(job) = job else { break };
                    let r = deflate(level, &job);
                    if res_tx.send((job.seq, r)).is_err() {
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

    fn header(&mut self) -> io::Result<()> {
        if !self.wrote_header {
            self.out.write_all(&HEADER)?;
            self.wrote_header = true;
        }
        Ok(())
    }

    /// Writes finished blocks that are next in order.
    fn drain_ready(&mut self) -> io::Result<()> {
        while let Some(data) = self.pending.remove(&self.next_out) {
            self.out.write_all(&data)?;
            self.next_out += 1;
        }
        Ok(())
    }

    /// Waits for one result from the workers.
    fn receive(&mut self) -> io::Result<()> {
        let pool = self.pool.as_ref().expect("workers exist");
        let (seq, r) = pool
            .results
            .recv()
            .map_err(|_| io::Error::other("a compression worker stopped"))?;
        self.in_flight -= 1;
        self.pending.insert(seq, r?);
        self.drain_ready()
    }

    /// Sends the current block off (or deflates it here).
    fn submit(&mut self, last: bool) -> io::Result<()> {
        self.header()?;
        let data = std::mem::replace(
            &mut self.block,
            Vec::with_capacity(if last { 0 } else { BLOCK }),
        );
        let dict = std::mem::take(&mut self.dict);
        // The next block's dictionary: the end of this one (and of the one
        // before, when this one is short).
        let mut next_dict = if data.len() >= WINDOW {
            data[data.len() - WINDOW..].to_vec()
        } else {
            let mut d = dict.clone();
            d.extend_from_slice(&data);
            d[d.len().saturating_sub(WINDOW)..].to_vec()
        };
        std::mem::swap(&mut self.dict, &mut next_dict);
        let job = Job {
            seq: self.seq,
            data,
            dict,
            last,
        };
        self.seq += 1;
        if self.inline {
            let out = deflate(self.level, &job)?;
            self.pending.insert(job.seq, out);
            return self.drain_ready();
        }
        while self.in_flight >= self.max_in_flight {
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
        self.submit(true)?;
        while self.in_flight > 0 {
            self.receive()?;
        }
        self.drain_ready()?;
        let crc = self.crc.clone().finalize();
        self.out.write_all(&crc.to_le_bytes())?;
        self.out.write_all(&(self.len as u32).to_le_bytes())?;
        drop(self.pool.take());
        Ok(self.out)
    }
}

impl<W: Write> Write for ParallelGzip<W> {
    fn write(&mut self, mut buf: &[u8]) -> io::Result<usize> {
        let n = buf.len();
        self.crc.update(buf);
        self.len += n as u64;
        while !buf.is_empty() {
            let room = BLOCK - self.block.len();
            let take = room.min(buf.len());
            self.block.extend_from_slice(&buf[..take]);
            buf = &buf[take..];
            if self.block.len() == BLOCK {
                self.submit(false)?;
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
    /// thread: header, each block deflated by a new compressor primed with
    /// the 32 KiB before it and ended by a sync flush (the last one
    /// finished), CRC-32 and length.
    fn reference(input: &[u8], level: u32) -> Vec<u8> {
        let mut out = HEADER.to_vec();
        let mut at = 0;
        loop {
            let end = (at + BLOCK).min(input.len());
            let last = end == input.len() && (end - at < BLOCK || input.is_empty());
            let dict = &input[at.saturating_sub(WINDOW)..at];
            let block = zlib_reference(level, dict, &input[at..end], last);
            out.extend_from_slice(&block);
            if last {
                break;
            }
            at = end;
        }
        out.extend_from_slice(&crc32fast::hash(input).to_le_bytes());
        out.extend_from_slice(&(input.len() as u32).to_le_bytes());
        out
    }

    /// One block through zlib-rs's own API, written out plainly here (not
    /// through [`deflate`]): a dictionary, then all input in one call.
    fn zlib_reference(level: u32, dict: &[u8], data: &[u8], last: bool) -> Vec<u8> {
        let mut c = Deflate::new(level as i32, false, 15);
        if !dict.is_empty() {
            c.set_dictionary(dict).expect("the test fixture is valid");
        }
        let mut block = vec![0u8; 2 * data.len() + 1024];
        let flush = if last {
            DeflateFlush::Finish
        } else {
            DeflateFlush::SyncFlush
        };
        c.compress(data, &mut block, flush).expect("flushing works");
        assert_eq!(c.total_in() as usize, data.len());
        block.truncate(c.total_out() as usize);
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
    fn incompressible_blocks_at_level_one_outgrow_the_bound_and_still_match() {
        // Level 1 makes random bytes larger than zlib's bound: each block
        // goes round the growing loop, and must give what one call with
        // room to spare gives.
        let mut rng = Rng(99);
        let input: Vec<u8> = (0..3 * BLOCK + 777).map(|_| rng.next() as u8).collect();
        let expected = reference(&input, 1);
        assert!(expected.len() > input.len() + input.len() / 1024 + 4096);
        for workers in [0, 2] {
            let mut w = ParallelGzip::new(Vec::new(), 1, workers);
            crate::layer::testdata::feed(&mut w, &input, || 100_000);
            let got = w.finish().expect("finishing the in-memory stream works");
            assert!(got == expected, "{workers} workers");
        }
    }

    #[test]
    fn real_bytes_depend_on_the_input_alone() {
        // Machine code is what showed blocks depending on their
        // compressor's history: keep it in the test.
        check(&real(40 << 20), "this test program's bytes");
    }
}
