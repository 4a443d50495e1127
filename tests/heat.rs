//! Tests of `vheat::heat`: the DCT bases, the transforms along one axis and over a channels-last
//! map, the decay base, the fixture's reference matrices, and autodiff through the transforms.
//!
//! The oracle is an f64 DCT-II built from a complex FFT (`rustfft`), not from the cosine
//! formula the crate uses, so the two are independent implementations.

#[macro_use]
mod common;

use std::sync::Arc;

use burn::prelude::*;
use common::*;
use rustfft::num_complex::Complex;
use rustfft::{Fft, FftPlanner};
use vheat::heat::{
    dct2d, dct_along, dct_basis, dct_basis_host, decay_base, frequency_sq, idct2d, idct_along,
    idct_basis,
};

/// The sizes every DCT test covers: the trivial ones, odd and even, the vHeat feature-map sizes
/// (56/28/14/7 at 224²) and a power of two.
const SIZES: [usize; 9] = [1, 2, 3, 7, 8, 14, 28, 56, 64];

// ---------------------------------------------------------------------------------------------
// Deterministic host-side random numbers (no global seed shared between parallel tests).
// ---------------------------------------------------------------------------------------------

/// A small xorshift64* generator.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// Uniform in [-1, 1).
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let bits = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40; // 24 random bits
        (bits as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.next()).collect()
    }
}

fn tensor<const D: usize>(data: Vec<f32>, shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(data, shape), device)
}

fn random<const D: usize>(seed: u64, shape: [usize; D], device: &Device) -> Tensor<D> {
    let n = shape.iter().product();
    tensor(Rng::new(seed).vec(n), shape, device)
}

fn max_abs(v: &[f32]) -> f32 {
    v.iter().fold(0f32, |m, x| m.max(x.abs()))
}

// ---------------------------------------------------------------------------------------------
// The FFT oracle.
// ---------------------------------------------------------------------------------------------

/// Orthonormal DCT-II of one f64 signal through a length-4N complex FFT.
///
/// The signal is placed at the odd indices of a length-4N sequence and mirrored
/// (`y[2x+1] = y[4N-2x-1] = s[x]`, even indices zero). That sequence is real and even, so its
/// DFT is real: `Y[k] = 2·Σₓ s[x]·cos(π k (2x+1) / 2N)`, i.e. twice the unnormalised DCT-II.
/// The orthonormal scaling is `sqrt(2/N)`, with an extra `1/√2` on `k = 0`.
struct DctOracle {
    n: usize,
    fft: Arc<dyn Fft<f64>>,
}

impl DctOracle {
    fn new(n: usize) -> Self {
        let fft = FftPlanner::<f64>::new().plan_fft_forward(4 * n);
        DctOracle { n, fft }
    }

    fn dct(&self, signal: &[f64]) -> Vec<f64> {
        let n = self.n;
        assert_eq!(signal.len(), n);
        let mut buf = vec![Complex::new(0.0, 0.0); 4 * n];
        for (x, &s) in signal.iter().enumerate() {
            buf[2 * x + 1] = Complex::new(s, 0.0);
            buf[4 * n - 2 * x - 1] = Complex::new(s, 0.0);
        }
        self.fft.process(&mut buf);
        let scale = (2.0 / n as f64).sqrt();
        (0..n)
            .map(|k| {
                // The imaginary part is zero up to rounding (the sequence is even).
                debug_assert!(buf[k].im.abs() < 1e-9 * (1.0 + buf[k].re.abs()));
                let unnormalised = buf[k].re / 2.0;
                let row = if k == 0 { scale / 2f64.sqrt() } else { scale };
                row * unnormalised
            })
            .collect()
    }
}

/// Applies the oracle DCT-II along `axis` of a row-major tensor of shape `shape`.
fn oracle_along(data: &[f64], shape: &[usize], axis: usize) -> Vec<f64> {
    let n = shape[axis];
    let before: usize = shape[..axis].iter().product();
    let after: usize = shape[axis + 1..].iter().product();
    let oracle = DctOracle::new(n);
    let mut out = vec![0f64; data.len()];
    let mut line = vec![0f64; n];
    for b in 0..before {
        for a in 0..after {
            for (i, l) in line.iter_mut().enumerate() {
                *l = data[(b * n + i) * after + a];
            }
            for (i, v) in oracle.dct(&line).into_iter().enumerate() {
                out[(b * n + i) * after + a] = v;
            }
        }
    }
    out
}

fn to_f64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// The oracle is self-consistent: it matches a direct O(N²) evaluation of the (unnormalised)
/// DCT-II sum for one signal, so a bug in the 4N construction cannot hide behind a matching bug
/// in the crate. (The direct sum is only used here, to check the oracle itself.)
#[test]
fn oracle_matches_direct_sum() {
    let n = 7;
    let s: Vec<f64> = to_f64(&Rng::new(1).vec(n));
    let got = DctOracle::new(n).dct(&s);
    for (k, g) in got.iter().enumerate() {
        let sum: f64 = s
            .iter()
            .enumerate()
            .map(|(x, v)| {
                v * (std::f64::consts::PI * k as f64 * (2 * x + 1) as f64 / (2 * n) as f64).cos()
            })
            .sum();
        let c = if k == 0 {
            (1.0 / n as f64).sqrt()
        } else {
            (2.0 / n as f64).sqrt()
        };
        assert!((g - c * sum).abs() < 1e-12, "k={k}: {g} vs {}", c * sum);
    }
}

// ---------------------------------------------------------------------------------------------
// Bases.
// ---------------------------------------------------------------------------------------------

/// Column `x` of `dct_basis_host(n)` is the DCT-II of the unit vector `e_x`.
#[test]
fn host_basis_matches_fft_oracle() {
    for n in SIZES {
        let host = dct_basis_host(n);
        assert_eq!(host.len(), n * n, "n={n}");
        let oracle = DctOracle::new(n);
        let mut max_err = 0f64;
        for x in 0..n {
            let mut e = vec![0f64; n];
            e[x] = 1.0;
            let col = oracle.dct(&e);
            for (k, v) in col.iter().enumerate() {
                let err = (host[k * n + x] - v).abs();
                max_err = max_err.max(err);
                assert!(
                    err < 1e-12,
                    "n={n}: D[{k},{x}] = {} vs oracle {v}",
                    host[k * n + x]
                );
            }
        }
        println!("dct_basis_host({n}) vs oracle: max |diff| = {max_err:.3e}");
    }
}

per_backend! {
/// `D·Dᵀ = I` in f32, and `idct_basis` is exactly the transpose of `dct_basis`.
fn basis_is_orthonormal_and_idct_is_transpose(d) {
    for n in SIZES {
        let dct = dct_basis(n, d);
        assert_eq!(dct.dims(), [n, n]);
        let idct = idct_basis(n, d);
        assert_eq!(idct.dims(), [n, n]);

        let prod = dct.clone().matmul(dct.clone().transpose());
        let mut eye = vec![0f32; n * n];
        for i in 0..n {
            eye[i * n + i] = 1.0;
        }
        let err = assert_close_tol(
            &format!("D·Dᵀ (n={n})"),
            &values(prod),
            &[n, n],
            &eye,
            &[n, n],
            1e-5,
            0.0,
        );
        assert!(err < 1e-5);

        // Both are rounded from the same f64 matrix, so the transpose is exact.
        assert_eq!(
            values(idct.clone()),
            values(dct.clone().transpose()),
            "idct_basis({n}) is not dct_basis({n})ᵀ"
        );
        // And the inverse is really the inverse: Dᵀ·D = I too.
        assert_close_tol(
            &format!("Dᵀ·D (n={n})"),
            &values(idct.matmul(dct)),
            &[n, n],
            &eye,
            &[n, n],
            1e-5,
            0.0,
        );
    }
}
}

per_backend! {
/// Calling `dct_basis` twice returns the same values (the second from the cache), and the cache
/// keeps sizes and kinds apart.
fn basis_cache_returns_same_values(d) {
    let a = values(dct_basis(14, d));
    let b = values(dct_basis(14, d));
    assert_eq!(a, b);
    let expected: Vec<f32> = dct_basis_host(14).iter().map(|&v| v as f32).collect();
    assert_eq!(a, expected, "cached basis differs from the host basis");
    // Different size and the inverse kind are different entries.
    assert_eq!(dct_basis(13, d).dims(), [13, 13]);
    assert_ne!(values(idct_basis(14, d)), a, "the cache returned D for Dᵀ");
    assert_eq!(values(dct_basis(14, d)), a);
}
}

// ---------------------------------------------------------------------------------------------
// Transforms.
// ---------------------------------------------------------------------------------------------

per_backend! {
/// `dct_along` on random f32 data matches the f64 FFT oracle, on the middle axis (batched
/// matmul path) and on the last axis (plain matmul path).
///
/// Tolerance: each output is an f32 dot product of N terms of magnitude ≤ 1, so the rounding
/// error grows like N·ε_f32 ≈ 64·6e-8 ≈ 4e-6 in the worst case; we compare against
/// 1e-5 × the output scale (max |oracle|, at least 1).
fn dct_along_matches_fft_oracle(d) {
    for (i, n) in SIZES.into_iter().enumerate() {
        // Middle axis: [3, n, 5].
        let shape = [3, n, 5];
        let data = Rng::new(100 + i as u64).vec(shape.iter().product());
        let got = values(dct_along(tensor(data.clone(), shape, d), 1));
        let want = oracle_along(&to_f64(&data), &shape, 1);
        check_vs_oracle(&format!("dct_along axis 1, n={n}"), &got, &want);

        // Last axis: [4, n].
        let shape = [4, n];
        let data = Rng::new(200 + i as u64).vec(shape.iter().product());
        let got = values(dct_along(tensor(data.clone(), shape, d), 1));
        let want = oracle_along(&to_f64(&data), &shape, 1);
        check_vs_oracle(&format!("dct_along last axis, n={n}"), &got, &want);

        // First axis: [n, 6].
        let shape = [n, 6];
        let data = Rng::new(300 + i as u64).vec(shape.iter().product());
        let got = values(dct_along(tensor(data.clone(), shape, d), 0));
        let want = oracle_along(&to_f64(&data), &shape, 0);
        check_vs_oracle(&format!("dct_along axis 0, n={n}"), &got, &want);
    }
}
}

fn check_vs_oracle(what: &str, got: &[f32], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(1f64, |m, v| m.max(v.abs()));
    let mut max_err = 0f64;
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let err = (*g as f64 - w).abs();
        max_err = max_err.max(err);
        assert!(
            err <= 1e-5 * scale,
            "{what}: element {i}: got {g}, oracle {w} (|diff| = {err:.3e}, scale {scale:.3})"
        );
    }
    println!("{what}: max |diff| = {max_err:.3e} (scale {scale:.3})");
    max_err
}

per_backend! {
/// `idct_along(dct_along(x, a), a) = x` for every axis of a rank-3 and a rank-5 tensor, and the
/// forward transform alone is not the identity.
fn dct_along_round_trip_every_axis(d) {
    let x3 = random(7, [4, 7, 5], d);
    let v3 = values(x3.clone());
    for axis in 0..3 {
        let y = dct_along(x3.clone(), axis);
        assert!(
            max_diff(&values(y.clone()), &v3) > 1e-2,
            "rank 3 axis {axis}: dct is the identity"
        );
        let back = idct_along(y, axis);
        assert_close_tol(
            &format!("rank-3 round trip axis {axis}"),
            &values(back),
            &[4, 7, 5],
            &v3,
            &[4, 7, 5],
            1e-5,
            0.0,
        );
    }
    let shape5 = [2, 3, 4, 5, 6];
    let x5 = random(8, shape5, d);
    let v5 = values(x5.clone());
    for axis in 0..5 {
        let y = dct_along(x5.clone(), axis);
        assert!(
            max_diff(&values(y.clone()), &v5) > 1e-2,
            "rank 5 axis {axis}: dct is the identity"
        );
        let back = idct_along(y, axis);
        assert_close_tol(
            &format!("rank-5 round trip axis {axis}"),
            &values(back),
            &shape5,
            &v5,
            &shape5,
            1e-5,
            0.0,
        );
    }
}
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()))
}

per_backend! {
/// `dct2d` on a non-square channels-last map equals the oracle along H then W, and `idct2d`
/// inverts it.
fn dct2d_matches_oracle_and_round_trips(d) {
    let shape = [2, 9, 13, 5];
    let data = Rng::new(42).vec(shape.iter().product());
    let x = tensor(data.clone(), shape, d);

    let y = dct2d(x);
    assert_eq!(y.dims(), shape);
    let want = oracle_along(&oracle_along(&to_f64(&data), &shape, 1), &shape, 2);
    let err = check_vs_oracle(
        "dct2d [2,9,13,5] vs oracle H then W",
        &values(y.clone()),
        &want,
    );
    assert!(err < 1e-5);

    let back = idct2d(y);
    assert_close_tol(
        "idct2d(dct2d(x)) [2,9,13,5]",
        &values(back),
        &shape,
        &data,
        &shape,
        1e-5,
        0.0,
    );
}
}

// ---------------------------------------------------------------------------------------------
// Against the reference's matrices.
// ---------------------------------------------------------------------------------------------

per_backend! {
/// The reference's `cos_map_h`, `cos_map_w` and `decay_map` equal the crate's bases.
///
/// Tolerance: 1e-6 for the decay, but 2e-6 for the cosine maps. The reference computes the
/// cosine angle `π k (x + ½) / N` in f32; at `N = 13, k = x = 12` the angle is ≈36.2, where one
/// f32 ulp is ≈3.8e-6, so its entry there is off from the exact value by 1.3e-6 (measured:
/// `cos_map_w` max error vs the exact f64 matrix is 1.30e-6, `cos_map_h` 5.7e-7). The crate
/// builds the matrix in f64 and rounds once, so it is within f32 rounding (≤ 6e-8) of the exact
/// values; that is checked here too, so the looser fixture bound hides nothing.
fn bases_and_decay_match_reference_fixture(d) {
    let fx = Tensors::open("heat2d_op.safetensors");
    let check = |what: &str, t: Tensor<2>, key: &str, atol: f32| {
        let shape = t.dims().to_vec();
        let (es, ev) = fx.raw(key);
        assert_close_tol(what, &values(t), &shape, ev, es, atol, 0.0)
    };
    check(
        "dct_basis(9) vs cos_map_h",
        dct_basis(9, d),
        "cos_map_h",
        2e-6,
    );
    check(
        "dct_basis(13) vs cos_map_w",
        dct_basis(13, d),
        "cos_map_w",
        2e-6,
    );
    check(
        "decay_base(9,13) vs decay_map",
        decay_base(9, 13, d),
        "decay_map",
        1e-6,
    );
    for n in [9, 13] {
        let got = values(dct_basis(n, d));
        let exact = dct_basis_host(n);
        let err = got
            .iter()
            .zip(&exact)
            .fold(0f64, |m, (g, e)| m.max((*g as f64 - e).abs()));
        println!("dct_basis({n}) vs exact f64: max |diff| = {err:.3e}");
        assert!(err <= 6e-8, "dct_basis({n}) is {err} from the exact matrix");
    }
}
}

// ---------------------------------------------------------------------------------------------
// Decay base.
// ---------------------------------------------------------------------------------------------

per_backend! {
/// Every decay entry is in (0, 1], the DC entry is exactly 1, it decreases along rows and
/// columns, and it equals `exp(-frequency_sq)` with `frequency_sq` = (πn/h)² + (πm/w)².
fn decay_base_is_in_unit_interval_with_unit_dc(d) {
    for (h, w) in [(1, 1), (9, 13), (7, 7), (14, 28), (56, 56)] {
        let decay = values(decay_base(h, w, d));
        assert_eq!(decay.len(), h * w);
        assert_eq!(decay[0], 1.0, "decay[0,0] for {h}x{w}");
        for (i, v) in decay.iter().enumerate() {
            assert!(*v > 0.0 && *v <= 1.0, "{h}x{w}: decay[{i}] = {v}");
        }
        for n in 0..h {
            for m in 0..w {
                let v = decay[n * w + m];
                if m + 1 < w {
                    assert!(decay[n * w + m + 1] < v, "{h}x{w}: not decreasing along W");
                }
                if n + 1 < h {
                    assert!(
                        decay[(n + 1) * w + m] < v,
                        "{h}x{w}: not decreasing along H"
                    );
                }
            }
        }
        let fsq = values(frequency_sq(h, w, d));
        let pi = std::f64::consts::PI;
        for n in 0..h {
            for m in 0..w {
                let wn = pi * n as f64 / h as f64;
                let wm = pi * m as f64 / w as f64;
                let f = wn * wn + wm * wm;
                let got = fsq[n * w + m] as f64;
                assert!((got - f).abs() <= 1e-6 * (1.0 + f), "frequency_sq[{n},{m}]");
                let e = (-f).exp();
                let got = decay[n * w + m] as f64;
                assert!((got - e).abs() <= 1e-6, "decay[{n},{m}] = {got} vs {e}");
            }
        }
    }
}
}

// ---------------------------------------------------------------------------------------------
// Autodiff.
// ---------------------------------------------------------------------------------------------

per_backend! {
/// For `loss = Σ dct2d(x) ⊙ w`, `∂loss/∂x = D_Hᵀ · w · D_W = idct2d(w)` because the transform is
/// linear and orthogonal. Checks that gradients flow through the (cached, non-autodiff) bases.
fn gradient_through_dct2d_is_idct2d(d) {
    let plain = d.clone();
    let ad = d.clone().autodiff();
    let shape = [2, 9, 13, 5];
    let xdata = Rng::new(5).vec(shape.iter().product());
    let wdata = Rng::new(6).vec(shape.iter().product());

    let x = tensor(xdata, shape, &ad).require_grad();
    let w = tensor(wdata.clone(), shape, &ad);
    let loss = (dct2d(x.clone()) * w).sum();
    let grads = loss.backward();
    let gx = x.grad(&grads).expect("x has a gradient");
    assert_eq!(gx.dims(), shape);

    let expected = values(idct2d(tensor(wdata.clone(), shape, &plain)));
    // Not trivially equal to w (which would be the gradient of an identity transform).
    assert!(max_diff(&expected, &wdata) > 1e-2);
    assert!(max_abs(&expected) > 0.1);
    let err = assert_close_tol(
        "∂Σ(dct2d(x)⊙w)/∂x vs idct2d(w)",
        &values(gx),
        &shape,
        &expected,
        &shape,
        1e-5,
        0.0,
    );
    assert!(err < 1e-5);
}
}
