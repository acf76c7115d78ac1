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

use flate2::{Compress, Compression, FlushCompress};

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

/// Deflates one block.
fn deflate(c: &mut Compress, job: &Job) -> io::Result<Vec<u8>> {
    c.reset();
    if !job.dict.is_empty() {
        c.set_dictionary(&job.dict).map_err(io::Error::other)?;
    }
    let flush = if job.last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    let mut out = Vec::with_capacity(job.data.len() / 2 + 1024);
    let mut input = &job.data[..];
    loop {
        if out.capacity() - out.len() < 64 * 1024 {
            out.reserve(256 * 1024);
        }
        let before_in = c.total_in();
        let status = c
            .compress_vec(input, &mut out, flush)
            .map_err(io::Error::other)?;
        let consumed = usize::try_from(c.total_in() - before_in).unwrap_or(input.len());
        input = &input[consumed..];
        let done = match status {
            flate2::Status::StreamEnd => true,
            // A sync flush is complete when all input is taken and there was
            // room left for more output.
            flate2::Status::Ok | flate2::Status::BufError => {
                !job.last && input.is_empty() && out.capacity() > out.len()
            }
        };
        if done {
            break;
        }
    }
    Ok(out)
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
    inline: Option<Compress>,
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
            inline: None,
            wrote_header: false,
        };
        if workers == 0 {
            me.inline = Some(Compress::new(Compression::new(level), false));
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
                let mut c = Compress::new(Compression::new(level), false);
                loop {
                    let job = {
                        let rx = job_rx.lock().expect("no worker panics holding the queue");
                        rx.recv()
                    };
                    let Ok(job) = job else { break };
                    let r = deflate(&mut c, &job);
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
        if let Some(c) = &mut self.inline {
            let out = deflate(c, &job)?;
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

    fn data(n: usize) -> Vec<u8> {
        (0..n)
            .map(|i| ((i * 7919) % 251) as u8 ^ ((i >> 13) as u8))
            .collect()
    }

    fn gzip(input: &[u8], workers: usize) -> Vec<u8> {
        let mut w = ParallelGzip::new(Vec::new(), 3, workers);
        for piece in input.chunks(70_001) {
            w.write_all(piece).unwrap();
        }
        w.finish().unwrap()
    }

    #[test]
    fn one_member_any_worker_count_same_bytes() {
        for n in [0, 1, 1000, BLOCK, BLOCK + 1, 3 * BLOCK + 12_345] {
            let input = data(n);
            let a = gzip(&input, 0);
            let b = gzip(&input, 1);
            let c = gzip(&input, 3);
            assert_eq!(a, b, "n={n}");
            assert_eq!(a, c, "n={n}");
            // A single-member decoder reads it all.
            let mut back = Vec::new();
            flate2::read::GzDecoder::new(&a[..])
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, input, "n={n}");
            // And there is nothing after the member.
            let mut multi = Vec::new();
            flate2::read::MultiGzDecoder::new(&a[..])
                .read_to_end(&mut multi)
                .unwrap();
            assert_eq!(multi.len(), input.len());
        }
    }
}
