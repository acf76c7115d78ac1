//! A streaming tar reader that understands what real archives contain: ustar
//! and GNU headers, PAX extended and global headers (length-delimited records,
//! so values may hold newlines or any byte), GNU long names and link targets,
//! base-256 numbers, and sparse members (GNU old format and PAX 0.0, 0.1 and
//! 1.0).
//!
//! Every size it reads is bounded before it allocates, so a hostile header
//! cannot make it hold more than a few MiB.

use std::io::{self, Read};

const BLOCK: u64 = 512;
/// The most extended-header bytes (PAX records, GNU long names) one member
/// may have, all its headers together; and the most the global headers of
/// an archive may hold. Paths are at most a few KiB and extended attributes
/// at most 64 KiB each on Linux.
pub const MAX_META: u64 = 1 << 20;
/// The most PAX records one member (or the global headers) may have.
pub const MAX_RECORDS: usize = 10_000;
/// The most sparse segments one member may have.
pub const MAX_SPARSE_SEGMENTS: usize = 1 << 20;

/// PAX records: (key, value) in order.
type Records = Vec<(Vec<u8>, Vec<u8>)>;

/// A failure while reading an archive, with the byte offset of the header.
#[derive(Debug)]
pub struct UntarError {
    pub offset: u64,
    pub message: String,
}

impl std::fmt::Display for UntarError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (at byte {})", self.message, self.offset)
    }
}

impl std::error::Error for UntarError {}

/// What a member is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Hardlink,
    Symlink,
    CharDevice,
    BlockDevice,
    Dir,
    Fifo,
    /// A type treeport does not handle (the typeflag byte).
    Other(u8),
}

/// One piece of a sparse file: `len` bytes at `offset` in the file, stored at
/// `data` bytes into the member's data area.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub offset: u64,
    pub len: u64,
    pub data: u64,
}

/// One member's header, with every extension applied.
#[derive(Clone, Debug)]
pub struct Member {
    pub path: Vec<u8>,
    pub link: Vec<u8>,
    pub kind: Kind,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: i64,
    pub dev_major: u32,
    pub dev_minor: u32,
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// The file's logical size (a sparse file's full size).
    pub size: u64,
    /// Offset of the member's data in the archive stream.
    pub data_offset: u64,
    /// Bytes of data stored in the archive for this member.
    pub data_len: u64,
    /// For a sparse member, where its pieces are; `None` for a plain one.
    pub sparse: Option<Vec<Segment>>,
    /// Offset of the member's first header block.
    pub header_offset: u64,
}

impl Member {
    /// The tree's kind for a member that stands on its own; `None` for a
    /// hardlink (it names another member) and for a type treeport does not
    /// handle.
    #[must_use]
    pub fn entry_kind(&self) -> Option<crate::tree::EntryKind> {
        use crate::tree::EntryKind;
        Some(match self.kind {
            Kind::File => EntryKind::File,
            Kind::Dir => EntryKind::Dir,
            Kind::Symlink => EntryKind::Symlink(self.link.clone()),
            Kind::CharDevice => EntryKind::CharDevice {
                major: self.dev_major,
                minor: self.dev_minor,
            },
            Kind::BlockDevice => EntryKind::BlockDevice {
                major: self.dev_major,
                minor: self.dev_minor,
            },
            Kind::Fifo => EntryKind::Fifo,
            Kind::Hardlink | Kind::Other(_) => return None,
        })
    }
}

/// What PAX records set that a member's header fields do not hold.
#[derive(Default)]
struct Applied {
    path: Option<Vec<u8>>,
    link: Option<Vec<u8>>,
    sparse_map: Vec<u64>,
    sparse_major: Option<u64>,
    sparse_realsize: Option<u64>,
    sparse_name: Option<Vec<u8>>,
}

/// Reads members one by one from a stream.
pub struct Untar<R: Read> {
    inner: R,
    pos: u64,
    /// Bytes of the current member's data (and padding) not yet consumed.
    left: u64,
    /// Padding after the current member's data.
    pad: u64,
    /// Global PAX records in force (one value per key, the latest), and
    /// how many header bytes have set them.
    global: Vec<(Vec<u8>, Vec<u8>)>,
    global_bytes: u64,
    done: bool,
}

fn err(offset: u64, message: impl Into<String>) -> UntarError {
    UntarError {
        offset,
        message: message.into(),
    }
}

impl<R: Read> Untar<R> {
    pub fn new(inner: R) -> Self {
        Untar {
            inner,
            pos: 0,
            left: 0,
            pad: 0,
            global: Vec::new(),
            global_bytes: 0,
            done: false,
        }
    }

    /// Applies a global header: each key's latest value stays in force.
    /// Keys that describe one file (its name, size, sparse map) are not
    /// taken from a global header: carried into every member they would
    /// give each the same name and data.
    fn set_global(&mut self, records: Records, at: u64) -> Result<(), UntarError> {
        for (key, value) in records {
            if key.starts_with(b"GNU.sparse.")
                || matches!(key.as_slice(), b"path" | b"linkpath" | b"size")
            {
                continue;
            }
            self.global.retain(|(k, _)| *k != key);
            self.global.push((key, value));
        }
        if self.global.len() > MAX_RECORDS {
            return Err(err(
                at,
                format!("more than {MAX_RECORDS} global PAX records"),
            ));
        }
        Ok(())
    }

    /// The current position in the stream.
    pub fn position(&self) -> u64 {
        self.pos
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), UntarError> {
        let at = self.pos;
        self.inner.read_exact(buf).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                err(at, "archive is truncated")
            } else {
                err(at, e.to_string())
            }
        })?;
        self.pos += buf.len() as u64;
        Ok(())
    }

    fn skip(&mut self, mut n: u64) -> Result<(), UntarError> {
        let mut buf = [0u8; 8192];
        while n > 0 {
            let want = n.min(buf.len() as u64) as usize;
            self.read_exact(&mut buf[..want])?;
            n -= want as u64;
        }
        Ok(())
    }

    /// Reads a metadata body (PAX header, long name) of `size` bytes, when
    /// `used` bytes of this kind of metadata were read already.
    fn read_meta(&mut self, size: u64, used: &mut u64) -> Result<Vec<u8>, UntarError> {
        *used = used.saturating_add(size);
        if *used > MAX_META {
            return Err(err(
                self.pos,
                format!(
                    "extended headers of {} bytes or more, past the {MAX_META} treeport reads",
                    *used
                ),
            ));
        }
        let mut body = vec![0u8; size as usize];
        self.read_exact(&mut body)?;
        self.skip(padding(size))?;
        Ok(body)
    }

    /// The next member, or `None` at the end of the archive.
    pub fn next_member(&mut self) -> Result<Option<Member>, UntarError> {
        if self.done {
            return Ok(None);
        }
        // Finish the previous member: its data must be there; a stream that
        // ends in the padding after it has simply ended (umoci writes
        // layers so), as Go's archive/tar and GNU tar read them.
        let (left, pad) = (self.left, self.pad);
        self.left = 0;
        self.pad = 0;
        self.skip(left)?;
        let mut padding = [0u8; 512];
        let mut got = 0usize;
        while got < pad as usize {
            match self.inner.read(&mut padding[got..pad as usize]) {
                Ok(0) => {
                    self.done = true;
                    return Ok(None);
                }
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(err(self.pos, e.to_string())),
            }
        }
        self.pos += pad;

        let mut pax: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut long_name: Option<Vec<u8>> = None;
        let mut long_link: Option<Vec<u8>> = None;
        // Extended headers before this member, all together, are bounded.
        let mut meta_used = 0u64;
        let start = self.pos;
        loop {
            let at = self.pos;
            let mut h = [0u8; 512];
            match self.inner.read(&mut h[..1]) {
                Ok(0) if pax.is_empty() && long_name.is_none() => {
                    // A stream that ends without the zero blocks: accept, as tar does.
                    self.done = true;
                    return Ok(None);
                }
                Ok(0) => return Err(err(at, "archive is truncated")),
                Ok(_) => {
                    self.pos += 1;
                    self.read_exact(&mut h[1..])?;
                }
                Err(e) => return Err(err(at, e.to_string())),
            }
            if h.iter().all(|&b| b == 0) {
                self.done = true;
                return Ok(None);
            }
            check_sum(&h, at)?;
            let size = number(&h[124..136]).ok_or_else(|| err(at, "bad size field"))?;
            match h[156] {
                b'x' => {
                    pax.extend(parse_pax(&self.read_meta(size, &mut meta_used)?, at)?);
                    if pax.len() > MAX_RECORDS {
                        return Err(err(at, format!("more than {MAX_RECORDS} PAX records")));
                    }
                }
                b'g' => {
                    let mut used = self.global_bytes;
                    let records = parse_pax(&self.read_meta(size, &mut used)?, at)?;
                    self.global_bytes = used;
                    self.set_global(records, at)?;
                }
                b'L' => long_name = Some(trim_nul(self.read_meta(size, &mut meta_used)?)),
                b'K' => long_link = Some(trim_nul(self.read_meta(size, &mut meta_used)?)),
                _ => {
                    return self
                        .member(&h, at, start, size, &pax, long_name, long_link)
                        .map(Some);
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn member(
        &mut self,
        h: &[u8; 512],
        at: u64,
        start: u64,
        size: u64,
        pax: &[(Vec<u8>, Vec<u8>)],
        long_name: Option<Vec<u8>>,
        long_link: Option<Vec<u8>>,
    ) -> Result<Member, UntarError> {
        let ustar = &h[257..263] == b"ustar\0";
        let gnu = &h[257..265] == b"ustar  \0";
        let mut path = field(&h[0..100]).to_vec();
        if ustar && h[345] != 0 {
            let mut joined = field(&h[345..500]).to_vec();
            joined.push(b'/');
            joined.extend_from_slice(&path);
            path = joined;
        }
        if let Some(name) = long_name {
            path = name;
        }
        let mut link = long_link.unwrap_or_else(|| field(&h[157..257]).to_vec());
        let num = |range: std::ops::Range<usize>, what: &str| {
            number(&h[range]).ok_or_else(|| err(at, format!("bad {what} field")))
        };
        let mut m = Member {
            kind: Kind::File,
            mode: (num(100..108, "mode")? & 0o7777) as u32,
            uid: num(108..116, "uid")?,
            gid: num(116..124, "gid")?,
            mtime: signed_number(&h[136..148]).ok_or_else(|| err(at, "bad mtime field"))?,
            dev_major: 0,
            dev_minor: 0,
            xattrs: Vec::new(),
            size,
            data_offset: 0,
            data_len: size,
            sparse: None,
            header_offset: start,
            path: Vec::new(),
            link: Vec::new(),
        };
        m.kind = match h[156] {
            b'0' | 0 | b'7' => {
                if path.ends_with(b"/") && h[156] == 0 {
                    Kind::Dir
                } else {
                    Kind::File
                }
            }
            b'1' => Kind::Hardlink,
            b'2' => Kind::Symlink,
            b'3' => Kind::CharDevice,
            b'4' => Kind::BlockDevice,
            b'5' => Kind::Dir,
            b'6' => Kind::Fifo,
            b'S' if gnu => Kind::File,
            other => Kind::Other(other),
        };
        if matches!(m.kind, Kind::CharDevice | Kind::BlockDevice) {
            m.dev_major = u32::try_from(num(329..337, "devmajor")?)
                .map_err(|_| err(at, "device major out of range"))?;
            m.dev_minor = u32::try_from(num(337..345, "devminor")?)
                .map_err(|_| err(at, "device minor out of range"))?;
        }

        // PAX records: global first, then this member's, later ones winning.
        let applied = Self::apply_records(&mut m, self.global.iter().chain(pax.iter()), at);
        let Applied {
            path: pax_path,
            link: pax_link,
            sparse_map,
            sparse_major,
            sparse_realsize,
            sparse_name,
        } = applied?;
        if let Some(p) = pax_path {
            path = p;
        }
        if let Some(l) = pax_link {
            link = l;
        }
        if let Some(name) = sparse_name {
            path = name;
        }
        m.path = path;
        m.link = link;
        if m.kind != Kind::File && !matches!(m.kind, Kind::Other(_)) {
            // Header-only types carry no data, whatever their size field says
            // (as Go's archive/tar reads them).
            m.size = 0;
            m.data_len = 0;
        }

        m.data_offset = self.pos;
        if h[156] == b'S' && gnu {
            let (segments, realsize) = self.gnu_old_sparse(h, at)?;
            m.data_offset = self.pos;
            m.sparse = Some(segments);
            m.size = realsize;
        } else if sparse_major == Some(1) {
            // PAX 1.0: the map is at the start of the data area.
            let (segments, map_len) = self.pax1_sparse_map(at, m.data_len)?;
            m.data_offset = self.pos;
            m.data_len -= map_len;
            m.sparse = Some(segments);
            m.size = sparse_realsize.ok_or_else(|| err(at, "sparse member without realsize"))?;
        } else if !sparse_map.is_empty() {
            m.sparse = Some(pairs_to_segments(&sparse_map, at)?);
            m.size = sparse_realsize.ok_or_else(|| err(at, "sparse member without realsize"))?;
        }
        if let Some(segments) = &m.sparse {
            check_segments(segments, m.size, m.data_len, at)?;
        }
        self.left = m.data_len;
        // The data area starts on a block boundary and is padded to one.
        self.pad = padding(m.data_len);
        Ok(m)
    }

    /// Applies PAX records to a member, in order (later ones win); what
    /// the member's header fields cannot hold comes back.
    fn apply_records<'r>(
        m: &mut Member,
        records: impl Iterator<Item = &'r (Vec<u8>, Vec<u8>)>,
        at: u64,
    ) -> Result<Applied, UntarError> {
        let mut out = Applied::default();
        let mut xattrs: std::collections::BTreeMap<&[u8], &[u8]> =
            std::collections::BTreeMap::new();
        for (key, value) in records {
            let text = || std::str::from_utf8(value).unwrap_or("");
            let int = |what: &str| -> Result<u64, UntarError> {
                text()
                    .parse::<u64>()
                    .map_err(|_| err(at, format!("bad PAX {what} '{}'", text())))
            };
            match key.as_slice() {
                b"path" => out.path = Some(value.clone()),
                b"linkpath" => out.link = Some(value.clone()),
                b"size" => {
                    m.size = int("size")?;
                    m.data_len = m.size;
                }
                b"uid" => m.uid = int("uid")?,
                b"gid" => m.gid = int("gid")?,
                b"mtime" => {
                    let whole = text().split('.').next().unwrap_or("");
                    m.mtime = whole
                        .parse()
                        .map_err(|_| err(at, format!("bad PAX mtime '{}'", text())))?;
                }
                b"GNU.sparse.major" => out.sparse_major = Some(int("GNU.sparse.major")?),
                b"GNU.sparse.name" => out.sparse_name = Some(value.clone()),
                b"GNU.sparse.realsize" | b"GNU.sparse.size" => {
                    out.sparse_realsize = Some(int("GNU.sparse.realsize")?);
                }
                b"GNU.sparse.offset" | b"GNU.sparse.numbytes" => {
                    out.sparse_map.push(int("GNU.sparse.offset")?);
                    if out.sparse_map.len() > 2 * MAX_SPARSE_SEGMENTS {
                        return Err(err(at, "sparse map is too long"));
                    }
                }
                b"GNU.sparse.map" => {
                    for part in text().split(',').filter(|s| !s.is_empty()) {
                        out.sparse_map
                            .push(part.parse().map_err(|_| err(at, "bad GNU.sparse.map"))?);
                        if out.sparse_map.len() > 2 * MAX_SPARSE_SEGMENTS {
                            return Err(err(at, "sparse map is too long"));
                        }
                    }
                }
                _ => {
                    if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                        xattrs.insert(name, value);
                    }
                }
            }
        }
        m.xattrs = xattrs
            .into_iter()
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect();
        Ok(out)
    }

    fn gnu_old_sparse(
        &mut self,
        h: &[u8; 512],
        at: u64,
    ) -> Result<(Vec<Segment>, u64), UntarError> {
        let mut pairs = Vec::new();
        let read_entries =
            |block: &[u8], count: usize, pairs: &mut Vec<u64>| -> Result<(), UntarError> {
                for i in 0..count {
                    let e = &block[i * 24..i * 24 + 24];
                    if e[0] == 0 {
                        break;
                    }
                    pairs.push(number(&e[..12]).ok_or_else(|| err(at, "bad sparse offset"))?);
                    pairs.push(number(&e[12..]).ok_or_else(|| err(at, "bad sparse length"))?);
                }
                Ok(())
            };
        read_entries(&h[386..482], 4, &mut pairs)?;
        let realsize = number(&h[483..495]).ok_or_else(|| err(at, "bad sparse realsize"))?;
        let mut extended = h[482] != 0;
        while extended {
            let mut ext = [0u8; 512];
            self.read_exact(&mut ext)?;
            read_entries(&ext[..504], 21, &mut pairs)?;
            extended = ext[504] != 0;
            if pairs.len() > 2 * MAX_SPARSE_SEGMENTS {
                return Err(err(at, "sparse map is too long"));
            }
        }
        Ok((pairs_to_segments(&pairs, at)?, realsize))
    }

    fn pax1_sparse_map(
        &mut self,
        at: u64,
        data_len: u64,
    ) -> Result<(Vec<Segment>, u64), UntarError> {
        // Decimal numbers, one per line: count, then offset/length pairs,
        // padded to a block boundary.
        let mut numbers: Vec<u64> = Vec::new();
        let mut consumed = 0u64;
        let mut current = String::new();
        let mut expected: Option<usize> = None;
        let mut block = [0u8; 512];
        loop {
            if consumed + BLOCK > data_len {
                return Err(err(at, "sparse map runs past the member"));
            }
            self.read_exact(&mut block)?;
            consumed += BLOCK;
            for &b in &block {
                if b == b'\n' {
                    numbers.push(current.parse().map_err(|_| err(at, "bad sparse map"))?);
                    current.clear();
                    if expected.is_none() {
                        let count = numbers[0] as usize;
                        if count > MAX_SPARSE_SEGMENTS {
                            return Err(err(at, "sparse map is too long"));
                        }
                        expected = Some(1 + 2 * count);
                    }
                } else if b.is_ascii_digit() && current.len() < 20 {
                    current.push(b as char);
                } else if expected.is_some_and(|n| numbers.len() >= n) {
                    break;
                } else {
                    return Err(err(at, "bad sparse map"));
                }
                if expected.is_some_and(|n| numbers.len() >= n) {
                    break;
                }
            }
            if expected.is_some_and(|n| numbers.len() >= n) {
                break;
            }
        }
        Ok((pairs_to_segments(&numbers[1..], at)?, consumed))
    }

    /// Reads the current member's stored data (for a sparse member, its
    /// pieces back to back; see [`Member::sparse`]).
    pub fn data(&mut self) -> DataReader<'_, R> {
        DataReader { untar: self }
    }
}

/// Reads the current member's data.
pub struct DataReader<'a, R: Read> {
    untar: &'a mut Untar<R>,
}

impl<R: Read> Read for DataReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let u = &mut *self.untar;
        if u.left == 0 {
            return Ok(0);
        }
        let want = buf.len().min(usize::try_from(u.left).unwrap_or(usize::MAX));
        let n = u.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "archive ends inside a member",
            ));
        }
        u.left -= n as u64;
        u.pos += n as u64;
        Ok(n)
    }
}

fn pairs_to_segments(pairs: &[u64], at: u64) -> Result<Vec<Segment>, UntarError> {
    if !pairs.len().is_multiple_of(2) {
        return Err(err(at, "sparse map has an odd number of values"));
    }
    let mut data = 0u64;
    let mut out = Vec::with_capacity(pairs.len() / 2);
    for pair in pairs.chunks(2) {
        out.push(Segment {
            offset: pair[0],
            len: pair[1],
            data,
        });
        data = data
            .checked_add(pair[1])
            .ok_or_else(|| err(at, "sparse map overflows"))?;
    }
    Ok(out)
}

fn check_segments(
    segments: &[Segment],
    size: u64,
    data_len: u64,
    at: u64,
) -> Result<(), UntarError> {
    let mut end_of_last = 0u64;
    let mut stored = 0u64;
    for s in segments {
        let end = s
            .offset
            .checked_add(s.len)
            .ok_or_else(|| err(at, "sparse segment overflows"))?;
        if s.offset < end_of_last || end > size {
            return Err(err(
                at,
                "sparse segments overlap or lie past the file's end",
            ));
        }
        end_of_last = end;
        stored += s.len;
    }
    if stored > data_len {
        return Err(err(at, "sparse segments hold more than the member stores"));
    }
    Ok(())
}

fn padding(n: u64) -> u64 {
    (BLOCK - n % BLOCK) % BLOCK
}

fn trim_nul(mut v: Vec<u8>) -> Vec<u8> {
    while v.last() == Some(&0) {
        v.pop();
    }
    v
}

/// A NUL-terminated header field.
fn field(bytes: &[u8]) -> &[u8] {
    match bytes.iter().position(|&b| b == 0) {
        Some(at) => &bytes[..at],
        None => bytes,
    }
}

fn check_sum(h: &[u8; 512], at: u64) -> Result<(), UntarError> {
    let stored = number(&h[148..156]).ok_or_else(|| err(at, "bad header checksum field"))?;
    let mut unsigned: u64 = 0;
    let mut signed: i64 = 0;
    for (i, &b) in h.iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { b };
        unsigned += u64::from(b);
        signed += i64::from(b as i8);
    }
    if stored == unsigned || stored as i64 == signed {
        Ok(())
    } else {
        Err(err(
            at,
            "header checksum mismatch: not a tar archive, or a corrupt one",
        ))
    }
}

/// An unsigned header number: octal text, or GNU base-256.
fn number(bytes: &[u8]) -> Option<u64> {
    if bytes.first().is_some_and(|&b| b & 0x80 != 0) {
        if bytes[0] == 0xff {
            return None;
        }
        let mut v: u64 = u64::from(bytes[0] & 0x7f);
        for &b in &bytes[1..] {
            v = v.checked_mul(256)?.checked_add(u64::from(b))?;
        }
        return Some(v);
    }
    let text = field(bytes);
    let text: Vec<u8> = text.iter().copied().filter(|&b| b != b' ').collect();
    if text.is_empty() {
        return Some(0);
    }
    let s = std::str::from_utf8(&text).ok()?;
    u64::from_str_radix(s, 8).ok()
}

/// A signed header number (mtime): octal, or base-256 with negatives.
fn signed_number(bytes: &[u8]) -> Option<i64> {
    if bytes.first() == Some(&0xff) {
        let mut v: i64 = -1;
        for &b in &bytes[1..] {
            v = v.checked_mul(256)?.checked_add(i64::from(b))?;
        }
        // Two's complement: the leading 0xff bytes make this negative.
        return Some(v);
    }
    number(bytes).and_then(|v| i64::try_from(v).ok())
}

/// Parses the records of a PAX header, in order.
fn parse_pax(body: &[u8], at: u64) -> Result<Records, UntarError> {
    let mut out = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        if out.len() > MAX_RECORDS {
            return Err(err(at, format!("more than {MAX_RECORDS} PAX records")));
        }
        if rest.iter().all(|&b| b == 0) {
            break;
        }
        let space = rest
            .iter()
            .position(|&b| b == b' ')
            .ok_or_else(|| err(at, "malformed PAX record"))?;
        let len: usize = std::str::from_utf8(&rest[..space])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| err(at, "malformed PAX record length"))?;
        if len <= space + 1 || len > rest.len() || rest[len - 1] != b'\n' {
            return Err(err(at, "malformed PAX record"));
        }
        let record = &rest[space + 1..len - 1];
        let eq = record
            .iter()
            .position(|&b| b == b'=')
            .ok_or_else(|| err(at, "PAX record without '='"))?;
        out.push((record[..eq].to_vec(), record[eq + 1..].to_vec()));
        rest = &rest[len..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::tar::TarWriter;
    use crate::tree::{Content, Entry, EntryKind, TreePath};

    #[test]
    #[allow(clippy::many_single_char_names)]
    fn reads_back_what_the_writer_writes() {
        let mut w = TarWriter::new(Vec::new());
        let long = "x".repeat(180);
        let mut f = Entry::file(
            TreePath::parse(long.as_bytes()).expect("the test literal parses"),
            3,
            Content::None,
        );
        f.uid = 5_000_000;
        f.mtime = -100;
        f.xattrs = vec![(b"user.nl".to_vec(), b"a\nb=c".to_vec())];
        let mut data: &[u8] = b"abc";
        w.append(&f, None, Some(&mut data))
            .expect("the test fixture is valid");
        let d = Entry::new(
            TreePath::parse(b"dir").expect("the test literal parses"),
            EntryKind::Dir,
        );
        w.append(&d, None, None).expect("the test fixture is valid");
        let dev = Entry::new(
            TreePath::parse(b"null").expect("the test literal parses"),
            EntryKind::CharDevice { major: 1, minor: 3 },
        );
        w.append(&dev, None, None)
            .expect("the test fixture is valid");
        let bytes = w.finish().expect("finishing the in-memory stream works");

        let mut u = Untar::new(&bytes[..]);
        let m = u
            .next_member()
            .expect("the test fixture is valid")
            .expect("the test fixture is valid");
        assert_eq!(m.path, long.as_bytes());
        assert_eq!(m.uid, 5_000_000);
        assert_eq!(m.mtime, -100);
        assert_eq!(m.xattrs, vec![(b"user.nl".to_vec(), b"a\nb=c".to_vec())]);
        let mut content = Vec::new();
        u.data()
            .read_to_end(&mut content)
            .expect("reading from memory works");
        assert_eq!(content, b"abc");
        let m = u
            .next_member()
            .expect("the test fixture is valid")
            .expect("the test fixture is valid");
        assert_eq!((m.kind, m.path.as_slice()), (Kind::Dir, &b"dir/"[..]));
        let m = u
            .next_member()
            .expect("the test fixture is valid")
            .expect("the test fixture is valid");
        assert_eq!((m.kind, m.dev_major, m.dev_minor), (Kind::CharDevice, 1, 3));
        assert!(
            u.next_member()
                .expect("the test fixture is valid")
                .is_none()
        );
    }

    /// A header block of type `kind` with `body` after it (padded).
    fn block(kind: u8, name: &[u8], body: &[u8]) -> Vec<u8> {
        crate::layer::testdata::tar_member(name, kind, b"", body)
    }

    fn pax_record(key: &str, value: &str) -> Vec<u8> {
        let tail = format!(" {key}={value}\n");
        let mut len = tail.len() + 1;
        while format!("{len}{tail}").len() != len {
            len += 1;
        }
        format!("{len}{tail}").into_bytes()
    }

    #[test]
    fn extended_headers_are_bounded_in_all() {
        // Many PAX headers in a row, each small enough alone.
        let record = pax_record("comment", &"c".repeat(500_000));
        let mut archive = Vec::new();
        for _ in 0..8 {
            archive.extend(block(b'x', b"pax", &record));
        }
        archive.extend(block(b'0', b"file", b"x"));
        let e = Untar::new(&archive[..]).next_member().unwrap_err();
        assert!(e.message.contains("past the 1048576"), "{e}");

        // Many tiny records in one header.
        let many: Vec<u8> = (0..20_000)
            .flat_map(|i| pax_record("k", &i.to_string()))
            .collect();
        let mut archive = block(b'x', b"pax", &many);
        archive.extend(block(b'0', b"file", b"x"));
        let e = Untar::new(&archive[..]).next_member().unwrap_err();
        assert!(e.message.contains("PAX records"), "{e}");

        // Global headers: their total is bounded, and a sparse map or a
        // name in one is not given to every member.
        // A global header of 60,000 distinct short keys: refused at once,
        // not merged key by key.
        let keys: Vec<u8> = (0..60_000)
            .flat_map(|i| pax_record(&format!("k{i}"), "v"))
            .collect();
        let started = std::time::Instant::now();
        let e = Untar::new(&block(b'g', b"global", &keys)[..])
            .next_member()
            .unwrap_err();
        assert!(e.message.contains("PAX records"), "{e}");
        assert!(started.elapsed() < std::time::Duration::from_secs(2));

        let mut archive = Vec::new();
        for _ in 0..3 {
            archive.extend(block(b'g', b"global", &record));
        }
        let e = Untar::new(&archive[..]).next_member().unwrap_err();
        assert!(e.message.contains("past the 1048576"), "{e}");
        let mut global = pax_record("GNU.sparse.map", "0,1,5,1");
        global.extend(pax_record("GNU.sparse.realsize", "1099511627776"));
        global.extend(pax_record("path", "everyone"));
        global.extend(pax_record("uid", "7"));
        let mut archive = block(b'g', b"global", &global);
        archive.extend(block(b'0', b"a", b"12"));
        archive.extend(block(b'0', b"b", b"34"));
        archive.extend([0u8; 1024]);
        let mut untar = Untar::new(&archive[..]);
        for name in [b"a", b"b"] {
            let m = untar
                .next_member()
                .expect("the test fixture is valid")
                .expect("the test fixture is valid");
            assert_eq!(m.path, name);
            assert!(m.sparse.is_none());
            assert_eq!((m.size, m.uid), (2, 7));
        }
    }

    #[test]
    fn hostile_headers_are_errors_not_allocations() {
        // A PAX header claiming 1 TiB.
        let mut h = [0u8; 512];
        h[..4].copy_from_slice(b"pax\0");
        h[124..136].copy_from_slice(b"17777777777\0");
        h[156] = b'x';
        h[257..263].copy_from_slice(b"ustar\0");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        let e = Untar::new(&h[..]).next_member().unwrap_err();
        assert!(e.message.contains("past the 1048576"), "{e}");

        // Garbage is not a tar.
        let junk = [7u8; 1024];
        let e = Untar::new(&junk[..]).next_member().unwrap_err();
        assert!(e.message.contains("checksum"), "{e}");

        // Truncated inside a header.
        let e = Untar::new(&h[..100]).next_member().unwrap_err();
        assert!(e.message.contains("truncated"), "{e}");
    }

    #[test]
    fn base256_numbers() {
        let mut f = [0u8; 12];
        f[0] = 0x80;
        f[11] = 0x05;
        f[10] = 0x01;
        assert_eq!(number(&f), Some(0x105));
        let neg = [0xffu8; 12];
        assert_eq!(signed_number(&neg), Some(-1));
        assert_eq!(number(b"0000644\0"), Some(0o644));
        assert_eq!(number(b"   644 \0"), Some(0o644));
    }
}
