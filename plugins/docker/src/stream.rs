//! Layers sent to the registry while they are encoded. When a layer starts,
//! an upload session opens; the compressor's output goes out in chunked
//! `PATCH` requests of [`SPAN`] bytes as it is produced, and the session
//! closes with the digest when the layer is complete. So the upload overlaps
//! compression instead of following it, and so does the registry's work of
//! storing each request's bytes (it syncs them to disk at the end of each
//! request): what is left when the layer ends is one span at most.
//!
//! Best effort by design: a stream that falls behind (more than [`QUEUE`]
//! pieces waiting), or whose request fails, is abandoned and the push that
//! follows the encoding sends that blob from disk as usual. The encoder never
//! waits for the network.

use std::collections::HashMap;
use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use treeport_core::digest::Digest;
use treeport_core::plugin::{BlobStream, BlobTap};

use crate::registry::Registry;

/// Bytes gathered before they are handed to the upload thread.
const PIECE: usize = 256 << 10;
/// Pieces that may wait for the upload thread (8 MiB); one more and the
/// stream drops out.
const QUEUE: usize = 32;
/// Bytes sent in one `PATCH` request (the last one may be shorter).
const SPAN: u64 = 8 << 20;

enum Msg {
    Bytes(Vec<u8>),
    End(Digest, u64),
}

/// An upload thread; it returns the blob it landed.
type Upload = JoinHandle<Option<(Digest, u64)>>;

/// The sink's tap: one upload thread per layer being encoded.
pub struct RegistryTap {
    registry: Arc<Registry>,
    uploads: Mutex<Vec<Upload>>,
    /// Set when a stream failed: no more are tried in this run.
    failed: Arc<AtomicBool>,
}

impl RegistryTap {
    pub fn new(registry: Arc<Registry>) -> Self {
        RegistryTap {
            registry,
            uploads: Mutex::new(Vec::new()),
            failed: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Waits for every stream to end (each ends when its layer does) and
    /// returns the blobs the registry accepted whole, with their sizes.
    pub fn landed(&self) -> HashMap<Digest, u64> {
        let handles = std::mem::take(&mut *self.uploads.lock().expect("uploads lock"));
        handles
            .into_iter()
            .filter_map(|h| h.join().ok().flatten())
            .collect()
    }
}

impl BlobTap for RegistryTap {
    fn open(&self) -> Option<Box<dyn BlobStream>> {
        if self.failed.load(Ordering::Relaxed) {
            return None;
        }
        // Room for the closing messages beyond the pieces that may wait.
        let (tx, rx) = sync_channel(QUEUE + 2);
        let waiting = Arc::new(AtomicUsize::new(0));
        let mut pieces = Pieces {
            rx,
            waiting: Arc::clone(&waiting),
            current: Vec::new(),
            at: 0,
            sent: 0,
            span_start: 0,
            end: None,
        };
        let registry = Arc::clone(&self.registry);
        let failed = Arc::clone(&self.failed);
        let handle = std::thread::Builder::new()
            .name("treeport-stream".into())
            .spawn(move || {
                let landed = registry
                    .stream_blob(&mut pieces)
                    .ok()
                    .filter(|&(_, size)| size == pieces.sent);
                if landed.is_none() {
                    // A registry that refused one stream will refuse the next.
                    failed.store(true, Ordering::Relaxed);
                }
                landed
            })
            .ok()?;
        self.uploads.lock().expect("uploads lock").push(handle);
        Some(Box::new(Stream {
            tx: Some(tx),
            waiting,
            piece: Vec::new(),
        }))
    }
}

/// The encoder's end of one stream.
struct Stream {
    /// `None` once the stream dropped out.
    tx: Option<SyncSender<Msg>>,
    waiting: Arc<AtomicUsize>,
    piece: Vec<u8>,
}

impl Stream {
    fn send_piece(&mut self) {
        let piece = std::mem::take(&mut self.piece);
        if self.waiting.load(Ordering::Acquire) >= QUEUE {
            // The upload fell behind: dropping the sender abandons it.
            self.tx = None;
            return;
        }
        if let Some(tx) = &self.tx {
            self.waiting.fetch_add(1, Ordering::AcqRel);
            if tx.try_send(Msg::Bytes(piece)).is_err() {
                self.tx = None;
            }
        }
    }
}

impl BlobStream for Stream {
    fn offer(&mut self, bytes: &[u8]) {
        if self.tx.is_none() {
            return;
        }
        self.piece.extend_from_slice(bytes);
        if self.piece.len() >= PIECE {
            self.send_piece();
        }
    }

    fn finish(mut self: Box<Self>, digest: &Digest, size: u64) {
        if !self.piece.is_empty() {
            self.send_piece();
        }
        if let Some(tx) = self.tx.take() {
            let _ = tx.try_send(Msg::End(*digest, size));
        }
    }
}

/// The upload's end of one stream: the request body.
pub struct Pieces {
    rx: Receiver<Msg>,
    waiting: Arc<AtomicUsize>,
    current: Vec<u8>,
    at: usize,
    sent: u64,
    /// Where the current request's body started.
    span_start: u64,
    end: Option<(Digest, u64)>,
}

impl Pieces {
    /// The blob's digest and size, once the body was read to its end.
    pub fn end(&self) -> Option<(Digest, u64)> {
        self.end
    }

    /// Waits until there are bytes to send or the layer ended; true when
    /// another request body follows (it starts here, [`SPAN`] long at most).
    pub fn next_span(&mut self) -> io::Result<bool> {
        self.fill()?;
        self.span_start = self.sent;
        Ok(self.at < self.current.len())
    }

    /// Makes bytes available unless the layer ended.
    fn fill(&mut self) -> io::Result<()> {
        while self.at == self.current.len() && self.end.is_none() {
            match self.rx.recv() {
                Ok(Msg::Bytes(b)) => {
                    self.waiting.fetch_sub(1, Ordering::AcqRel);
                    self.current = b;
                    self.at = 0;
                }
                Ok(Msg::End(digest, size)) => self.end = Some((digest, size)),
                // The encoder dropped the stream: fail the request so the
                // registry does not take a partial blob.
                Err(_) => return Err(io::Error::other("layer stream abandoned")),
            }
        }
        Ok(())
    }
}

impl Read for Pieces {
    /// The current request's body: it ends after [`SPAN`] bytes, at the
    /// end of a piece, or when the layer does.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.at == self.current.len() && self.sent - self.span_start >= SPAN {
            return Ok(0);
        }
        self.fill()?;
        if self.at == self.current.len() {
            return Ok(0);
        }
        let n = buf.len().min(self.current.len() - self.at);
        buf[..n].copy_from_slice(&self.current[self.at..self.at + n]);
        self.at += n;
        self.sent += n as u64;
        Ok(n)
    }
}
