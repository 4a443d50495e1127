//! A small, fast, seedable random generator (SplitMix64), so that every sample of a dataset is
//! a pure function of `(seed, index)`, whatever thread draws it and in whatever order.

/// SplitMix64 (Steele, Lea & Flood, 2014): 64 bits of state, passes BigCrush, and any seed
/// (zero included) gives a good stream.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator started at `seed`.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// A generator for item `index` of the stream `seed`: the two are mixed so that
    /// neighbouring indices and neighbouring seeds give unrelated streams.
    pub fn for_item(seed: u64, index: u64) -> Self {
        let mut mix = Self::new(seed ^ 0x6A09_E667_F3BC_C908);
        let a = mix.next_u64();
        let mut mix = Self::new(a ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        Self::new(mix.next_u64())
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform `f64` in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A uniform `f64` in `[lo, hi)`.
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    /// A uniform integer in `[0, n)` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        // Multiply-shift: unbiased enough for data generation (bias < n / 2^64).
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }

    /// `true` with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// A standard normal sample (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.unit(); // (0, 1]
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    /// Shuffles `items` in place (Fisher–Yates).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }
}

impl SplitMix64 {
    /// A Gamma(`shape`, 1) sample (Marsaglia & Tsang 2000; for `shape < 1` the boost
    /// `Gamma(shape + 1)·U^(1/shape)`). `shape` must be `> 0`.
    pub fn gamma(&mut self, shape: f64) -> f64 {
        if shape < 1.0 {
            let u = 1.0 - self.unit(); // (0, 1]
            return self.gamma(shape + 1.0) * u.powf(1.0 / shape);
        }
        let d = shape - 1.0 / 3.0;
        let c = 1.0 / (9.0 * d).sqrt();
        loop {
            let x = self.normal();
            let v = 1.0 + c * x;
            if v <= 0.0 {
                continue;
            }
            let v = v * v * v;
            let u = 1.0 - self.unit(); // (0, 1]
            if u < 1.0 - 0.0331 * x.powi(4) || u.ln() < 0.5 * x * x + d * (1.0 - v + v.ln()) {
                return d * v;
            }
        }
    }

    /// A Beta(`a`, `b`) sample in `[0, 1]`, as `X / (X + Y)` with `X ~ Gamma(a)`,
    /// `Y ~ Gamma(b)` (what NumPy's `beta` computes for shapes above 1). `a, b > 0`.
    pub fn beta(&mut self, a: f64, b: f64) -> f64 {
        let x = self.gamma(a);
        let y = self.gamma(b);
        if x + y > 0.0 {
            x / (x + y)
        } else {
            // Both underflowed (tiny shapes): the Beta is then almost a coin flip at 0 or 1.
            f64::from(u8::from(self.chance(a / (a + b))))
        }
    }
}
