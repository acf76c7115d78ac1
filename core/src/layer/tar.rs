//! A streaming tar writer for layers: ustar headers, with PAX extended
//! headers for whatever ustar cannot hold (long names and link targets, ids of
//! 2^21 and above, sizes of 8 GiB and above, times outside ustar's range,
//! extended attributes as `SCHILY.xattr.*`).
//!
//! The writer never holds a file: content is copied through a fixed buffer and
//! checked against the size the header promised.

use std::io::{self, Read, Write};

use crate::tree::{Entry, EntryKind, TreePath};

const BLOCK: usize = 512;
/// Largest value of an 8-byte octal field (7 digits).
const MAX_OCTAL_8: u64 = 0o7_777_777;
/// Largest value of a 12-byte octal field (11 digits).
const MAX_OCTAL_12: u64 = 0o77_777_777_777;

/// Why writing an entry failed.
#[derive(Debug)]
pub enum TarError {
    /// Writing the layer stream failed.
    Write(io::Error),
    /// Reading the entry's content failed.
    Read(io::Error),
    /// The content was shorter or longer than the size recorded for it.
    SizeChanged { expected: u64, found: &'static str },
}

/// Writes tar entries to `W`.
pub struct TarWriter<W: Write> {
    out: W,
    buf: Vec<u8>,
}

impl<W: Write> TarWriter<W> {
    pub fn new(out: W) -> Self {
        TarWriter {
            out,
            buf: vec![0; 256 * 1024],
        }
    }

    /// Writes one entry. `hardlink_to` turns a regular file into a hardlink to
    /// an earlier member. `content` must yield exactly `entry.size` bytes for a
    /// regular file that is not a hardlink.
    pub fn append(
        &mut self,
        entry: &Entry,
        hardlink_to: Option<&TreePath>,
        content: Option<&mut dyn Read>,
    ) -> Result<(), TarError> {
        let size = if hardlink_to.is_none() && entry.kind == EntryKind::File {
            entry.size
        } else {
            0
        };
        let header = encode_header(entry, hardlink_to, size);
        self.out.write_all(&header).map_err(TarError::Write)?;
        if size > 0 {
            let reader = content.ok_or(TarError::SizeChanged {
                expected: size,
                found: "no content",
            })?;
            self.copy_content(reader, size)?;
        }
        Ok(())
    }

    fn copy_content(&mut self, reader: &mut dyn Read, size: u64) -> Result<(), TarError> {
        let mut left = size;
        while left > 0 {
            let want = left.min(self.buf.len() as u64) as usize;
            let n = match reader.read(&mut self.buf[..want]) {
                Ok(0) => {
                    return Err(TarError::SizeChanged {
                        expected: size,
                        found: "fewer bytes",
                    });
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(TarError::Read(e)),
            };
            self.out
                .write_all(&self.buf[..n])
                .map_err(TarError::Write)?;
            left -= n as u64;
        }
        // The file must end where its header said.
        let mut probe = [0u8; 1];
        loop {
            match reader.read(&mut probe) {
                Ok(0) => break,
                Ok(_) => {
                    return Err(TarError::SizeChanged {
                        expected: size,
                        found: "more bytes",
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(TarError::Read(e)),
            }
        }
        let pad = padding(size);
        if pad > 0 {
            self.out
                .write_all(&[0u8; BLOCK][..pad])
                .map_err(TarError::Write)?;
        }
        Ok(())
    }

    /// Writes the end-of-archive marker and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.write_all(&[0u8; 2 * BLOCK])?;
        Ok(self.out)
    }
}

fn padding(size: u64) -> usize {
    ((BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64) as usize
}

/// Encodes the header block(s) of an entry: an optional PAX header then the
/// ustar header.
#[must_use]
pub fn encode_header(entry: &Entry, hardlink_to: Option<&TreePath>, size: u64) -> Vec<u8> {
    let mut name = entry.path.as_bytes().to_vec();
    if entry.kind == EntryKind::Dir {
        name.push(b'/');
    }
    let (typeflag, linkname, dev): (u8, &[u8], Option<(u32, u32)>) =
        match (&entry.kind, hardlink_to) {
            (_, Some(target)) => (b'1', target.as_bytes(), None),
            (EntryKind::File, None) => (b'0', b"", None),
            (EntryKind::Dir, None) => (b'5', b"", None),
            (EntryKind::Symlink(target), None) => (b'2', target.as_slice(), None),
            (EntryKind::CharDevice { major, minor }, None) => (b'3', b"", Some((*major, *minor))),
            (EntryKind::BlockDevice { major, minor }, None) => (b'4', b"", Some((*major, *minor))),
            (EntryKind::Fifo, None) => (b'6', b"", None),
        };

    let mut pax = PaxRecords::default();
    if name.len() > 100 {
        pax.add(b"path", &name);
    }
    if linkname.len() > 100 {
        pax.add(b"linkpath", linkname);
    }
    if u64::from(entry.uid) > MAX_OCTAL_8 {
        pax.add(b"uid", entry.uid.to_string().as_bytes());
    }
    if u64::from(entry.gid) > MAX_OCTAL_8 {
        pax.add(b"gid", entry.gid.to_string().as_bytes());
    }
    if size > MAX_OCTAL_12 {
        pax.add(b"size", size.to_string().as_bytes());
    }
    let mtime_fits = entry.mtime >= 0 && entry.mtime as u64 <= MAX_OCTAL_12;
    if !mtime_fits {
        pax.add(b"mtime", entry.mtime.to_string().as_bytes());
    }
    for (key, value) in &entry.xattrs {
        let mut k = b"SCHILY.xattr.".to_vec();
        k.extend_from_slice(key);
        pax.add(&k, value);
    }

    let mut out = Vec::with_capacity(if pax.is_empty() { BLOCK } else { 3 * BLOCK });
    if !pax.is_empty() {
        let body = pax.0;
        let mut pax_name = b"PaxHeaders/".to_vec();
        let base = entry.path.file_name();
        pax_name.extend_from_slice(&base[..base.len().min(100 - pax_name.len())]);
        let mut h = Ustar::new();
        h.bytes(0, 100, &pax_name);
        h.octal(100, 8, 0o644);
        h.octal(108, 8, 0);
        h.octal(116, 8, 0);
        h.octal(124, 12, body.len() as u64);
        h.octal(136, 12, if mtime_fits { entry.mtime as u64 } else { 0 });
        h.0[156] = b'x';
        out.extend_from_slice(&h.finish());
        out.extend_from_slice(&body);
        out.resize(out.len() + padding(body.len() as u64), 0);
    }

    let mut h = Ustar::new();
    h.bytes(
        0,
        100,
        if name.len() > 100 {
            &name[..100]
        } else {
            &name
        },
    );
    h.octal(100, 8, u64::from(entry.mode & 0o7777));
    h.octal(108, 8, u64::from(entry.uid).min(MAX_OCTAL_8));
    h.octal(116, 8, u64::from(entry.gid).min(MAX_OCTAL_8));
    h.octal(124, 12, if size > MAX_OCTAL_12 { 0 } else { size });
    h.octal(136, 12, if mtime_fits { entry.mtime as u64 } else { 0 });
    h.0[156] = typeflag;
    h.bytes(
        157,
        100,
        if linkname.len() > 100 {
            &linkname[..100]
        } else {
            linkname
        },
    );
    let (major, minor) = dev.unwrap_or((0, 0));
    h.octal(329, 8, u64::from(major).min(MAX_OCTAL_8));
    h.octal(337, 8, u64::from(minor).min(MAX_OCTAL_8));
    out.extend_from_slice(&h.finish());
    out
}

/// One 512-byte ustar header under construction.
struct Ustar([u8; BLOCK]);

impl Ustar {
    fn new() -> Self {
        let mut b = [0u8; BLOCK];
        b[257..263].copy_from_slice(b"ustar\0");
        b[263..265].copy_from_slice(b"00");
        Ustar(b)
    }

    fn bytes(&mut self, at: usize, len: usize, value: &[u8]) {
        let n = value.len().min(len);
        self.0[at..at + n].copy_from_slice(&value[..n]);
    }

    /// Zero-padded octal, NUL-terminated, filling the field.
    fn octal(&mut self, at: usize, len: usize, value: u64) {
        let text = format!("{value:0width$o}", width = len - 1);
        self.0[at..at + len - 1].copy_from_slice(&text.as_bytes()[text.len() - (len - 1)..]);
        self.0[at + len - 1] = 0;
    }

    fn finish(mut self) -> [u8; BLOCK] {
        self.0[148..156].copy_from_slice(b"        ");
        let sum: u32 = self.0.iter().map(|&b| u32::from(b)).sum();
        let text = format!("{sum:06o}\0 ");
        self.0[148..156].copy_from_slice(text.as_bytes());
        self.0
    }
}

/// The body of a PAX extended header: `"<len> <key>=<value>\n"` records.
#[derive(Default)]
struct PaxRecords(Vec<u8>);

impl PaxRecords {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn add(&mut self, key: &[u8], value: &[u8]) {
        // The length counts its own digits: find the fixed point.
        let rest = 1 + key.len() + 1 + value.len() + 1;
        let mut len = rest + 1;
        while len != rest + len.to_string().len() {
            len = rest + len.to_string().len();
        }
        self.0.extend_from_slice(len.to_string().as_bytes());
        self.0.push(b' ');
        self.0.extend_from_slice(key);
        self.0.push(b'=');
        self.0.extend_from_slice(value);
        self.0.push(b'\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::{Content, Entry, EntryKind, TreePath};

    fn path(s: &[u8]) -> TreePath {
        TreePath::parse(s).expect("the test literal parses")
    }

    /// Writes entries and reads them back with the `tar` crate, which follows
    /// PAX the way GNU tar and Go's archive/tar do.
    fn round_trip(entries: &[(Entry, Option<TreePath>, Vec<u8>)]) -> Vec<u8> {
        let mut w = TarWriter::new(Vec::new());
        for (e, link, data) in entries {
            let mut r: &[u8] = data;
            w.append(e, link.as_ref(), Some(&mut r))
                .expect("the test fixture is valid");
        }
        w.finish().expect("finishing the in-memory stream works")
    }

    #[test]
    fn long_names_ids_and_xattrs_use_pax() {
        let long = [b'd'; 150];
        let mut name = b"dir/".to_vec();
        name.extend_from_slice(&long);
        let mut f = Entry::file(path(&name), 5, Content::None);
        f.uid = 3_000_000;
        f.gid = 4_000_000;
        f.mode = 0o4755;
        f.mtime = 1_700_000_000;
        f.xattrs = vec![
            // The `tar` crate splits PAX records on newlines, so no newline here;
            // GNU tar and Go read length-delimited values with newlines too.
            (b"user.a".to_vec(), b"x=y".to_vec()),
            (b"security.capability".to_vec(), vec![1, 0, 0, 2, 0xff]),
        ];
        let mut target = b"/target/".to_vec();
        target.extend_from_slice(&[b't'; 120]);
        let link = Entry::new(path(b"link"), EntryKind::Symlink(target.clone()));
        let mut hard = Entry::file(path(b"hard"), 5, Content::None);
        hard.link = Some(1);
        let bytes = round_trip(&[
            (f, None, b"hello".to_vec()),
            (link, None, Vec::new()),
            (hard, Some(path(&name)), Vec::new()),
        ]);
        assert_eq!(bytes.len() % 512, 0);

        let mut archive = tar::Archive::new(&bytes[..]);
        let mut it = archive.entries().expect("the test fixture is valid");
        let mut e = it
            .next()
            .expect("the test fixture is valid")
            .expect("the test fixture is valid");
        assert_eq!(&*e.path_bytes(), &name[..]);
        assert_eq!(
            e.header().uid().expect("the test fixture is valid"),
            3_000_000
        );
        let pax: Vec<(String, Vec<u8>)> = e
            .pax_extensions()
            .expect("the test fixture is valid")
            .expect("the test fixture is valid")
            .map(|x| {
                let x = x.expect("the test fixture is valid");
                (
                    x.key().expect("the test fixture is valid").to_string(),
                    x.value_bytes().to_vec(),
                )
            })
            .collect();
        assert!(pax.contains(&("uid".into(), b"3000000".to_vec())));
        assert!(pax.contains(&("gid".into(), b"4000000".to_vec())));
        assert!(pax.contains(&("SCHILY.xattr.user.a".into(), b"x=y".to_vec())));
        assert!(pax.contains(&(
            "SCHILY.xattr.security.capability".into(),
            vec![1, 0, 0, 2, 0xff]
        )));
        assert_eq!(
            e.header().mode().expect("the test fixture is valid"),
            0o4755
        );
        let mut s = String::new();
        e.read_to_string(&mut s).expect("the test fixture is valid");
        assert_eq!(s, "hello");
        let e = it
            .next()
            .expect("the test fixture is valid")
            .expect("the test fixture is valid");
        assert_eq!(
            &*e.link_name_bytes().expect("the test fixture is valid"),
            &target[..]
        );
        let e = it
            .next()
            .expect("the test fixture is valid")
            .expect("the test fixture is valid");
        assert_eq!(e.header().entry_type(), tar::EntryType::Link);
        assert_eq!(
            &*e.link_name_bytes().expect("the test fixture is valid"),
            &name[..]
        );
        assert!(it.next().is_none());
    }

    #[test]
    #[allow(clippy::many_single_char_names)]
    fn devices_fifos_and_dirs() {
        let mut c = Entry::new(
            path(b"dev/null"),
            EntryKind::CharDevice { major: 1, minor: 3 },
        );
        c.mode = 0o666;
        let b = Entry::new(
            path(b"dev/loop0"),
            EntryKind::BlockDevice { major: 7, minor: 0 },
        );
        let f = Entry::new(path(b"run/fifo"), EntryKind::Fifo);
        let d = Entry::new(path(b"etc"), EntryKind::Dir);
        let bytes = round_trip(&[
            (d, None, vec![]),
            (c, None, vec![]),
            (b, None, vec![]),
            (f, None, vec![]),
        ]);
        let mut archive = tar::Archive::new(&bytes[..]);
        let got: Vec<(String, tar::EntryType, Option<u32>, Option<u32>)> = archive
            .entries()
            .expect("the test fixture is valid")
            .map(|e| {
                let e = e.expect("the test fixture is valid");
                let h = e.header();
                (
                    String::from_utf8(e.path_bytes().to_vec()).expect("the test fixture is valid"),
                    h.entry_type(),
                    h.device_major().expect("the test fixture is valid"),
                    h.device_minor().expect("the test fixture is valid"),
                )
            })
            .collect();
        assert_eq!(
            got[0],
            ("etc/".into(), tar::EntryType::Directory, Some(0), Some(0))
        );
        assert_eq!(
            got[1],
            ("dev/null".into(), tar::EntryType::Char, Some(1), Some(3))
        );
        assert_eq!(
            got[2],
            ("dev/loop0".into(), tar::EntryType::Block, Some(7), Some(0))
        );
        assert_eq!(got[3].1, tar::EntryType::Fifo);
    }

    #[test]
    fn sizes_over_eight_gib_and_odd_times_use_pax() {
        let mut f = Entry::file(path(b"big"), 9 << 30, Content::None);
        f.mtime = -5;
        let header = encode_header(&f, None, f.size);
        let text = String::from_utf8_lossy(&header[512..1024]);
        assert!(text.contains("size=9663676416\n"), "{text}");
        assert!(text.contains("mtime=-5\n"), "{text}");
        // The ustar size field holds zero; the PAX record is authoritative.
        let mut archive = tar::Archive::new(&header[..]);
        let mut entries = archive.entries().expect("the test fixture is valid");
        let e = entries
            .next()
            .expect("the test fixture is valid")
            .expect("the test fixture is valid");
        assert_eq!(e.size(), 9 << 30);
    }

    #[test]
    fn pax_record_length_counts_itself() {
        for n in [0usize, 1, 85, 86, 87, 990, 995, 9990] {
            let mut r = PaxRecords::default();
            r.add(b"path", &vec![b'a'; n]);
            let text = String::from_utf8(r.0.clone()).expect("the test fixture is valid");
            let (len, _) = text.split_once(' ').expect("the test fixture is valid");
            assert_eq!(
                len.parse::<usize>().expect("the test literal parses"),
                r.0.len(),
                "n={n}"
            );
        }
    }

    #[test]
    fn content_that_changes_size_is_an_error() {
        let f = Entry::file(path(b"f"), 4, Content::None);
        let mut w = TarWriter::new(Vec::new());
        let mut short: &[u8] = b"abc";
        assert!(matches!(
            w.append(&f, None, Some(&mut short)),
            Err(TarError::SizeChanged {
                found: "fewer bytes",
                ..
            })
        ));
        let mut w = TarWriter::new(Vec::new());
        let mut long: &[u8] = b"abcde";
        assert!(matches!(
            w.append(&f, None, Some(&mut long)),
            Err(TarError::SizeChanged {
                found: "more bytes",
                ..
            })
        ));
    }

    #[test]
    fn headers_are_deterministic() {
        let mut f = Entry::file(path(b"a/b"), 3, Content::None);
        f.mtime = 1;
        assert_eq!(encode_header(&f, None, 3), encode_header(&f, None, 3));
    }
}
