//! A small deterministic generator (SplitMix64), so seeded results never depend on a crate's
//! version or platform.

#[derive(Clone, Debug)]
pub struct Rng(u64);

const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn unit(draw: u64) -> f64 {
    (draw >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

impl Rng {
    pub fn new(seed: u64) -> Self {
        // Mix the seed once so that nearby seeds give unrelated streams.
        let mut r = Rng(seed ^ 0x5851_F42D_4C95_7F2D);
        r.next_u64();
        r
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GAMMA);
        mix(self.0)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        unit(self.next_u64())
    }

    /// The next `n` values of `next_f64` as a function of their index, with the generator moved
    /// past them: SplitMix64's state is a counter, so each draw can be computed on its own (in
    /// parallel) and the stream is the same as drawing them one by one.
    pub fn take_f64(&mut self, n: usize) -> impl Fn(usize) -> f64 + Sync {
        let base = self.0;
        self.0 = base.wrapping_add((n as u64).wrapping_mul(GAMMA));
        move |k| unit(mix(base.wrapping_add((k as u64).wrapping_add(1).wrapping_mul(GAMMA))))
    }

    /// Standard normal (Box–Muller; one draw per call, the pair's second value is dropped).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.next_f64();
        let u2 = self.next_f64();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Fisher–Yates shuffle.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, self.below(i as u64 + 1) as usize);
        }
    }

    /// Uniform in 0..n (n > 0), without modulo bias worth caring about at these sizes.
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream() {
        let a: Vec<u64> = (0..5).map({ let mut r = Rng::new(7); move |_| r.next_u64() }).collect();
        let b: Vec<u64> = (0..5).map({ let mut r = Rng::new(7); move |_| r.next_u64() }).collect();
        assert_eq!(a, b);
        let mut r = Rng::new(8);
        assert_ne!(a[0], r.next_u64());
        // drawn by index, the same values and the same generator afterwards
        let (mut one, mut other) = (Rng::new(9), Rng::new(9));
        let serial: Vec<f64> = (0..100).map(|_| one.next_f64()).collect();
        let at = other.take_f64(100);
        assert_eq!((0..100).map(at).collect::<Vec<_>>(), serial);
        assert_eq!(one.next_u64(), other.next_u64());
    }

    #[test]
    fn below_stays_in_range() {
        let mut r = Rng::new(1);
        for _ in 0..1000 {
            assert!(r.below(3) < 3);
            let x = r.next_f64();
            assert!((0.0..1.0).contains(&x));
        }
        let xs: Vec<f64> = (0..20000).map(|_| r.normal()).collect();
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / xs.len() as f64;
        assert!(mean.abs() < 0.03 && (var - 1.0).abs() < 0.05, "{mean} {var}");
        let mut v: Vec<u32> = (0..10).collect();
        r.shuffle(&mut v);
        let mut s = v.clone();
        s.sort();
        assert_eq!(s, (0..10).collect::<Vec<u32>>());
    }
}
