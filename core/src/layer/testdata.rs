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
