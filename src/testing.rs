//! Helpers of the unit tests.

/// A seeded xorshift generator: the same seed gives the same cases, so a failure can be replayed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    /// A number below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }

    /// A number as text: a sign ("", "-" or "+"), fewer than `int` integer digits and, unless it is
    /// whole, a point and fewer than `frac` fraction digits (either side may be empty, as in ".5" and
    /// "5."). None when it would have no digit at all.
    pub fn number_text(&mut self, int: u64, frac: u64) -> Option<String> {
        let mut digits = |n: u64| -> String {
            let len = self.below(n);
            (0..len)
                .map(|_| char::from(b'0' + self.below(10) as u8))
                .collect()
        };
        let (i, f) = (digits(int), digits(frac));
        let sign = ["", "-", "+"][self.below(3) as usize];
        match (i.is_empty(), f.is_empty()) {
            (true, true) => None,
            (false, _) if self.below(3) == 0 => Some(format!("{sign}{i}")),
            _ => Some(format!("{sign}{i}.{f}")),
        }
    }
}
