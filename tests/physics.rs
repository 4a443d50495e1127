//! Property tests of the heat physics (proptest, offline, on the flex CPU backend).
//!
//! For random sizes, fields and conductivities:
//! - the DCT-II basis is orthonormal and the transforms round-trip on any axis, preserving
//!   energy (Parseval);
//! - one diffusion step `u_t = IDCT2D(DCT2D(u) ⊙ decay)`, with the decay computed by the
//!   heat-conduction operator itself (`HeatConduction::decay`, `k = ReLU(to_k(FVE))`), conserves
//!   each channel's mean (the total heat), never increases the energy when `k ≥ 0`, is the
//!   identity when `k = 0`, and smooths more the longer it runs (`k·t` larger): the energy in
//!   every non-DC frequency and the spatial roughness both decrease monotonically.
//!
//! Every check is computed on the host in f64 from the tensors' values: the means, the L2
//! norms, and the roughness `Σ (u[x+1] − u[x])²` over neighbours (the discrete Neumann
//! Dirichlet energy), which does not use the DCT at all.

mod common;

use burn::module::Param;
use burn::nn::Linear;
use burn::prelude::*;
use common::*;
use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use vheat::hco::{HeatConduction, HeatConductionConfig};
use vheat::heat::{dct2d, dct_along, dct_basis, dct_basis_host, idct2d, idct_along, idct_basis};

/// Few cases each: every case builds tensors on the CPU backend; the whole file runs in seconds.
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Host values in [-scale, scale) from a seed (xorshift64*), so a failing case is reproducible
/// from the printed seed.
fn field(seed: u64, n: usize, scale: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s >> 12;
            s ^= s << 25;
            s ^= s >> 27;
            let bits = s.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40;
            ((bits as f32 / (1u64 << 24) as f32) * 2.0 - 1.0) * scale
        })
        .collect()
}

fn tensor<const D: usize>(data: Vec<f32>, shape: [usize; D], d: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(data, shape), d)
}

fn energy(v: &[f32]) -> f64 {
    v.iter().map(|&x| (x as f64) * (x as f64)).sum()
}

/// A heat-conduction operator whose `to_k` is the identity with zero bias, so that
/// `k = ReLU(to_k(FVE)) = FVE` for a non-negative FVE: the test chooses `k` exactly and the
/// operator computes the decay from it.
fn operator_with_identity_to_k(c: usize, d: &Device) -> HeatConduction {
    let mut op = HeatConductionConfig::new(c).init(d);
    let mut eye = vec![0f32; c * c];
    for i in 0..c {
        eye[i * c + i] = 1.0;
    }
    op.to_k = Some(Linear {
        weight: Param::from_tensor(tensor(eye, [c, c], d)),
        bias: Some(Param::from_tensor(Tensor::zeros([c], d))),
    });
    op
}

/// One diffusion step of a channels-last map `[1, H, W, C]` with conductivity `k` (`[H, W, C]`,
/// `k ≥ 0`), the decay coming from the operator.
fn diffuse(op: &HeatConduction, u: Tensor<4>, k: Tensor<3>) -> Tensor<4> {
    let decay: Tensor<4> = op.decay(Some(k)).expect("trainable form").unsqueeze();
    idct2d(dct2d(u) * decay)
}

/// Per-channel means of a channels-last `[1, H, W, C]` field given as host values.
fn channel_means(v: &[f32], h: usize, w: usize, c: usize) -> Vec<f64> {
    let mut m = vec![0f64; c];
    for (i, x) in v.iter().enumerate() {
        m[i % c] += *x as f64;
    }
    m.iter().map(|s| s / (h * w) as f64).collect()
}

/// `Σ (u[y][x+1] − u[y][x])² + Σ (u[y+1][x] − u[y][x])²` over every channel of a `[1, H, W, C]`
/// field: the roughness a Neumann heat flow dissipates.
fn roughness(v: &[f32], h: usize, w: usize, c: usize) -> f64 {
    let at = |y: usize, x: usize, ch: usize| v[(y * w + x) * c + ch] as f64;
    let mut e = 0.0;
    for y in 0..h {
        for x in 0..w {
            for ch in 0..c {
                if x + 1 < w {
                    e += (at(y, x + 1, ch) - at(y, x, ch)).powi(2);
                }
                if y + 1 < h {
                    e += (at(y + 1, x, ch) - at(y, x, ch)).powi(2);
                }
            }
        }
    }
    e
}

/// Energy of every DCT coefficient except the DC one, per channel, of a `[1, H, W, C]` spectrum.
fn ac_energy(spectrum: &[f32], c: usize) -> Vec<f64> {
    let mut e = vec![0f64; c];
    for (i, x) in spectrum.iter().enumerate().skip(c) {
        e[i % c] += (*x as f64) * (*x as f64);
    }
    e
}

proptest! {
    #![proptest_config(config(24))]

    /// `D·Dᵀ = I` for the f64 host basis and the f32 device basis, and the inverse basis is the
    /// transpose.
    #[test]
    fn dct_basis_is_orthonormal(n in 1usize..=64) {
        let host = dct_basis_host(n);
        for i in 0..n {
            for j in 0..n {
                let dot: f64 = (0..n).map(|x| host[i * n + x] * host[j * n + x]).sum();
                let want = if i == j { 1.0 } else { 0.0 };
                prop_assert!((dot - want).abs() < 1e-12, "n={n} host row {i}·row {j} = {dot}");
            }
        }
        let d = cpu();
        let basis = dct_basis(n, &d);
        let product = values(basis.clone().matmul(idct_basis(n, &d)));
        for i in 0..n {
            for j in 0..n {
                let want = if i == j { 1.0 } else { 0.0 };
                let got = product[i * n + j];
                prop_assert!((got - want).abs() < 1e-5, "n={n}: (D·D⁻¹)[{i},{j}] = {got}");
            }
        }
        prop_assert_eq!(values(idct_basis(n, &d)), values(basis.transpose()));
    }

    /// The 1-D transform on any axis of a rank-3 tensor round-trips and preserves energy.
    #[test]
    fn dct_round_trips_on_any_axis(
        dims in (1usize..6, 1usize..10, 1usize..10),
        axis in 0usize..3,
        seed in any::<u64>(),
    ) {
        let d = cpu();
        let shape = [dims.0, dims.1, dims.2];
        let x = field(seed, shape.iter().product(), 3.0);
        let t = tensor(x.clone(), shape, &d);
        let spectrum = dct_along(t, axis);
        let back = values(idct_along(spectrum.clone(), axis));
        for (i, (a, b)) in back.iter().zip(&x).enumerate() {
            prop_assert!((a - b).abs() < 1e-5, "{shape:?} axis {axis}: [{i}] {a} vs {b}");
        }
        let (e0, e1) = (energy(&x), energy(&values(spectrum)));
        prop_assert!((e0 - e1).abs() <= 1e-5 * e0 + 1e-9, "Parseval: {e0} vs {e1}");
    }

    /// The 2-D transform over `[B, H, W, C]` round-trips and preserves energy.
    #[test]
    fn dct2d_round_trips_and_preserves_energy(
        b in 1usize..3, h in 1usize..13, w in 1usize..13, c in 1usize..5,
        seed in any::<u64>(),
    ) {
        let d = cpu();
        let x = field(seed, b * h * w * c, 2.0);
        let spectrum = dct2d(tensor(x.clone(), [b, h, w, c], &d));
        let back = values(idct2d(spectrum.clone()));
        for (i, (p, q)) in back.iter().zip(&x).enumerate() {
            prop_assert!((p - q).abs() < 1e-5, "[{b},{h},{w},{c}]: [{i}] {p} vs {q}");
        }
        let (e0, e1) = (energy(&x), energy(&values(spectrum)));
        prop_assert!((e0 - e1).abs() <= 1e-5 * e0 + 1e-9, "Parseval: {e0} vs {e1}");
    }

    /// Heat is conserved: the mean of every channel is unchanged by a diffusion step, for any
    /// non-negative conductivity field.
    #[test]
    fn diffusion_conserves_the_channel_means(
        h in 1usize..12, w in 1usize..12, c in 1usize..4,
        seed in any::<u64>(), kmax in 0.0f32..20.0,
    ) {
        let d = cpu();
        let op = operator_with_identity_to_k(c, &d);
        let u = field(seed, h * w * c, 5.0);
        let k: Vec<f32> = field(seed ^ 0xabcd, h * w * c, kmax).iter().map(|x| x.abs()).collect();
        let out = values(diffuse(&op, tensor(u.clone(), [1, h, w, c], &d), tensor(k, [h, w, c], &d)));
        let (before, after) = (channel_means(&u, h, w, c), channel_means(&out, h, w, c));
        for ch in 0..c {
            prop_assert!(
                (before[ch] - after[ch]).abs() < 1e-5 * (1.0 + before[ch].abs() * 10.0),
                "{h}x{w} channel {ch}: mean {} became {}", before[ch], after[ch]
            );
        }
    }

    /// With `k ≥ 0` every mode decays by a factor in (0, 1], so the energy (L2 norm, equal in
    /// the spatial and DCT domains) never grows.
    #[test]
    fn diffusion_never_increases_energy(
        h in 1usize..12, w in 1usize..12, c in 1usize..4,
        seed in any::<u64>(), kmax in 0.0f32..20.0,
    ) {
        let d = cpu();
        let op = operator_with_identity_to_k(c, &d);
        let u = field(seed, h * w * c, 5.0);
        let k: Vec<f32> = field(seed ^ 0x1234, h * w * c, kmax).iter().map(|x| x.abs()).collect();
        let out = values(diffuse(&op, tensor(u.clone(), [1, h, w, c], &d), tensor(k, [h, w, c], &d)));
        let (e0, e1) = (energy(&u), energy(&out));
        prop_assert!(e1 <= e0 * (1.0 + 1e-5) + 1e-9, "{h}x{w}x{c}: energy {e0} grew to {e1}");
    }

    /// `k = 0` is no diffusion: the decay is exactly 1 and the step returns the field (up to the
    /// transforms' rounding).
    #[test]
    fn zero_conductivity_is_the_identity(
        h in 1usize..12, w in 1usize..12, c in 1usize..4, seed in any::<u64>(),
    ) {
        let d = cpu();
        let op = operator_with_identity_to_k(c, &d);
        let zero = Tensor::<3>::zeros([h, w, c], &d);
        let decay = values(op.decay(Some(zero.clone())).unwrap());
        prop_assert!(decay.iter().all(|&x| x == 1.0), "decay with k = 0 is not 1");
        let u = field(seed, h * w * c, 5.0);
        let out = values(diffuse(&op, tensor(u.clone(), [1, h, w, c], &d), zero));
        for (i, (a, b)) in out.iter().zip(&u).enumerate() {
            prop_assert!((a - b).abs() < 2e-5, "{h}x{w}x{c}: [{i}] {a} vs {b}");
        }
    }

    /// Running longer (`k·t` larger) smooths more: for `t₁ < t₂`, the energy of every channel's
    /// non-DC frequencies and the spatial roughness of the field are no larger at `t₂`.
    #[test]
    fn more_conduction_smooths_more(
        h in 2usize..12, w in 1usize..12, c in 1usize..4,
        seed in any::<u64>(), t1 in 0.0f32..3.0, dt in 0.0f32..3.0,
    ) {
        let d = cpu();
        let op = operator_with_identity_to_k(c, &d);
        let u = field(seed, h * w * c, 5.0);
        let k: Vec<f32> = field(seed ^ 0x5555, h * w * c, 4.0).iter().map(|x| x.abs()).collect();
        let run = |t: f32| {
            let kt: Vec<f32> = k.iter().map(|x| x * t).collect();
            diffuse(&op, tensor(u.clone(), [1, h, w, c], &d), tensor(kt, [h, w, c], &d))
        };
        let (a, b) = (run(t1), run(t1 + dt));
        let (ac_a, ac_b) = (ac_energy(&values(dct2d(a.clone())), c), ac_energy(&values(dct2d(b.clone())), c));
        for ch in 0..c {
            prop_assert!(
                ac_b[ch] <= ac_a[ch] * (1.0 + 1e-4) + 1e-8,
                "channel {ch}: high-frequency energy {} at t={t1} grew to {} at t={}",
                ac_a[ch], ac_b[ch], t1 + dt
            );
        }
        let (ra, rb) = (roughness(&values(a), h, w, c), roughness(&values(b), h, w, c));
        prop_assert!(rb <= ra * (1.0 + 1e-4) + 1e-8, "roughness {ra} at t={t1} grew to {rb}");
    }
}

/// The properties above are not vacuous: a step with `k > 0` does change a non-constant
/// field, strictly lowering its roughness, while a constant field is left as it is.
#[test]
fn diffusion_acts_on_non_constant_fields_only() {
    let d = cpu();
    let (h, w, c) = (6, 5, 2);
    let op = operator_with_identity_to_k(c, &d);
    let k = Tensor::<3>::ones([h, w, c], &d);
    let u = field(7, h * w * c, 1.0);
    let out = values(diffuse(&op, tensor(u.clone(), [1, h, w, c], &d), k.clone()));
    assert!(roughness(&out, h, w, c) < 0.9 * roughness(&u, h, w, c));
    let flat = vec![0.75f32; h * w * c];
    let out = values(diffuse(&op, tensor(flat.clone(), [1, h, w, c], &d), k));
    for (a, b) in out.iter().zip(&flat) {
        assert!((a - b).abs() < 1e-5, "a constant field changed: {a} vs {b}");
    }
}
