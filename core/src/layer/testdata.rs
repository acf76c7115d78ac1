//! Generated input for the encoder's tests: varied, repeatable, and shaped
//! like what layers hold.

/// A small xorshift generator: the tests need varied, repeatable input.
pub(crate) struct Rng(pub u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Input with the structure real layers have: literal runs, short and
/// long copies of earlier bytes at varied distances, runs of one byte.
pub(crate) fn structured(n: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng(seed | 1);
    let mut out: Vec<u8> = Vec::with_capacity(n);
    while out.len() < n {
        match rng.below(8) {
            0 | 1 if out.len() > 64 => {
                let dist = 1 + rng.below(out.len().min(32 * 1024 + 4096));
                let longest = if rng.below(6) == 0 { 2000 } else { 40 };
                let len = 3 + rng.below(longest);
                let start = out.len() - dist;
                for k in 0..len {
                    out.push(out[start + k]);
                }
            }
            2 => {
                let b = rng.next() as u8;
                out.extend(std::iter::repeat_n(b, rng.below(600)));
            }
            _ => {
                for _ in 0..=rng.below(24) {
                    out.push((rng.next() % 90) as u8 + 32);
                }
            }
        }
    }
    out.truncate(n);
    out
}

/// One ustar member with a raw name (no checks, so `..` can be written),
/// a link target, and its data, padded to a block.
pub(crate) fn tar_member(name: &[u8], kind: u8, link: &[u8], data: &[u8]) -> Vec<u8> {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name);
    h[157..157 + link.len()].copy_from_slice(link);
    h[156] = kind;
    h[100..108].copy_from_slice(b"0000644\0");
    h[108..116].copy_from_slice(b"0000000\0");
    h[116..124].copy_from_slice(b"0000000\0");
    h[124..136].copy_from_slice(format!("{:011o}\0", data.len()).as_bytes());
    h[136..148].copy_from_slice(b"00000001750\0");
    h[257..263].copy_from_slice(b"ustar\0");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    let mut out = h.to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out
}

/// Writes `input` to `w` in pieces whose sizes `sizes` chooses (clamped to
/// 1 and to what is left).
pub(crate) fn feed(w: &mut impl std::io::Write, input: &[u8], mut sizes: impl FnMut() -> usize) {
    let mut rest = input;
    while !rest.is_empty() {
        let n = sizes().clamp(1, rest.len());
        w.write_all(&rest[..n]).expect("writing to memory works");
        rest = &rest[n..];
    }
}
