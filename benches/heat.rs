//! The 2-D DCT as matrix products (the crate's [`dct2d`]/[`idct2d`]) against an FFT form on the
//! host, at the map sizes and widths vHeat meets, plus one heat-conduction operator per
//! vHeat-T stage. All on the flex (CPU) device, batch 1.
//!
//! ```text
//! cargo bench --features wgpu --bench heat              # everything, a few minutes on 2 cores
//! cargo bench --features wgpu --bench heat -- dct2d/    # only the forward DCT-II group
//! cargo bench --features wgpu --bench heat -- /96x96    # one size in every group
//! ```
//!
//! Groups, each with a `matmul` and an `fft` entry per `NxNxC`:
//! - `dct2d/…`, `idct2d/…`: the forward transform of a `[1, N, N, C]` channels-last map;
//! - `dct2d_fwd_bwd/…`, `idct2d_fwd_bwd/…`: forward plus the gradient for an upstream gradient
//!   `g`. The matmul form runs on the autodiff flex device (`loss = Σ y⊙g`, `.backward()`,
//!   `x.grad`); the FFT form has no autograd, so it computes the same two results by hand
//!   (the orthonormal DCT-II's adjoint is the DCT-III: `∂/∂x Σ dct2d(x)⊙g = idct2d(g)`).
//! - `heat_conduction/…`: one HCO (ordinary form, FVE given) at vHeat-T's four stage sizes.
//!
//! The FFT form is Makhoul's algorithm: reorder the N samples (evens forward, odds backward),
//! one N-point complex FFT (rustfft), multiply by `e^{-iπk/2N}` and keep the real part; two real
//! sequences (neighbouring channels) share one complex FFT. The inverse runs the same steps
//! backwards. It is timed honestly: tensor → host copy, the two 1-D passes (on as many threads
//! as the host has once a map holds 512K values, as the flex matmuls use all cores;
//! `VHEAT_FFT_THREADS=1` forces one), host → tensor copy. The
//! matmul form ends with `into_data()` so its lazy work, if any, is finished and read back.
//! The set-up asserts the two forms agree within 1e-4 (max |Δ|) before timing anything.
//!
//! After each DCT group a table prints both medians and which form wins per size.

#[path = "support/recorder.rs"]
mod recorder;

use std::sync::Arc;
use std::time::Duration;

use burn::prelude::*;
use burn::tensor::Distribution;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode};
use recorder::Recorder;
use rustfft::num_complex::Complex32;
use rustfft::{Fft, FftPlanner};
use vheat::hco::{FrequencyEmbeddingConfig, HeatConductionConfig};
use vheat::heat::{dct2d, idct2d};

/// (map side, channels): the width that meets each map size in vHeat (7–56: vHeat-T's stages
/// at 224²; 96–192: stage 1 at 384², 512², 768²).
const SIZES: [(usize, usize); 7] = [
    (7, 768),
    (14, 384),
    (28, 192),
    (56, 96),
    (96, 96),
    (128, 96),
    (192, 96),
];

/// (map side, channels) of vHeat-T's four stages at 224×224.
const STAGES: [(usize, usize); 4] = [(56, 96), (28, 192), (14, 384), (7, 768)];

/// Criterion samples per benchmark (flat sampling: one equal batch of iterations per sample).
const SAMPLES: usize = 10;

/// Largest |a − b| the FFT form may differ from the matmul form by.
const TOLERANCE: f32 = 1e-4;

/// Plans and constants of the orthonormal DCT-II / DCT-III of length `n` by Makhoul's method.
struct DctPlan {
    n: usize,
    fft: Arc<dyn Fft<f32>>,
    ifft: Arc<dyn Fft<f32>>,
    /// `v[k] = x[perm[k]]`: even samples in order, then odd samples reversed.
    perm: Vec<usize>,
    /// Forward: `X[k] = Re(fwd[k] · V[k])`, `fwd[k] = s_k · e^{-iπk/2N}` (orthonormal `s_k`).
    fwd: Vec<Complex32>,
    /// Inverse: `V[k] = inv[k] · (X[k] − i·X[N−k])` (`X[N] = 0`), `1/N` of the IFFT folded in.
    inv: Vec<Complex32>,
    scratch_len: usize,
}

impl DctPlan {
    fn new(n: usize, planner: &mut FftPlanner<f32>) -> Self {
        let fft = planner.plan_fft_forward(n);
        let ifft = planner.plan_fft_inverse(n);
        let perm = (0..n).step_by(2).chain((1..n).step_by(2).rev()).collect();
        let s = |k: usize| {
            if k == 0 {
                (1.0 / n as f64).sqrt()
            } else {
                (2.0 / n as f64).sqrt()
            }
        };
        let angle = |k: usize| std::f64::consts::PI * k as f64 / (2 * n) as f64;
        let fwd = (0..n)
            .map(|k| {
                let (sin, cos) = angle(k).sin_cos();
                Complex32::new((s(k) * cos) as f32, (-s(k) * sin) as f32)
            })
            .collect();
        let inv = (0..n)
            .map(|k| {
                let (sin, cos) = angle(k).sin_cos();
                let f = 1.0 / (s(k) * n as f64);
                Complex32::new((f * cos) as f32, (f * sin) as f32)
            })
            .collect();
        let scratch_len = fft
            .get_inplace_scratch_len()
            .max(ifft.get_inplace_scratch_len());
        Self {
            n,
            fft,
            ifft,
            perm,
            fwd,
            inv,
            scratch_len,
        }
    }

    /// DCT-II (or DCT-III when `inverse`) along the first axis of `src` viewed as
    /// `[n, rows, c]`, written transposed into `dst` viewed as `[rows, n, c]`, for the rows of
    /// `dst` starting at `row0` (`dst` holds `dst.len() / (n·c)` of them).
    ///
    /// Channels `2p` and `2p+1` share complex sequence `p`; the loops run over `k` outside and
    /// channels inside so that every read and write of the map is a contiguous run of `c`.
    fn pass_rows(
        &self,
        inverse: bool,
        src: &[f32],
        rows: usize,
        c: usize,
        row0: usize,
        dst: &mut [f32],
    ) {
        let n = self.n;
        let zero = Complex32::new(0.0, 0.0);
        let mut buf = vec![zero; c.div_ceil(2) * n];
        let mut scratch = vec![zero; self.scratch_len];
        let line = |k: usize, r: usize| &src[(k * rows + r) * c..(k * rows + r + 1) * c];
        for (i, out) in dst.chunks_mut(n * c).enumerate() {
            let r = row0 + i;
            if inverse {
                // V[k] = inv[k]·(X[k] − i·X[N−k]) per channel; z = Va + i·Vb.
                for k in 0..n {
                    let (x, w) = (line(k, r), self.inv[k]);
                    let mirror = (k > 0).then(|| line(n - k, r));
                    for (p, pair) in x.chunks(2).enumerate() {
                        let y = |j: usize| mirror.map_or(0.0, |m| m[2 * p + j]);
                        let va = w * Complex32::new(pair[0], -y(0));
                        let vb = match pair.get(1) {
                            Some(&xb) => w * Complex32::new(xb, -y(1)),
                            None => zero,
                        };
                        buf[p * n + k] = Complex32::new(va.re - vb.im, va.im + vb.re);
                    }
                }
                self.ifft.process_with_scratch(&mut buf, &mut scratch);
                for k in 0..n {
                    let j = self.perm[k];
                    for (p, pair) in out[j * c..(j + 1) * c].chunks_mut(2).enumerate() {
                        let z = buf[p * n + k];
                        pair[0] = z.re;
                        if let Some(b) = pair.get_mut(1) {
                            *b = z.im;
                        }
                    }
                }
            } else {
                // Makhoul's reorder, two real channels per complex sequence.
                for k in 0..n {
                    for (p, pair) in line(self.perm[k], r).chunks(2).enumerate() {
                        buf[p * n + k] =
                            Complex32::new(pair[0], pair.get(1).copied().unwrap_or(0.0));
                    }
                }
                self.fft.process_with_scratch(&mut buf, &mut scratch);
                for k in 0..n {
                    let (nk, tw) = ((n - k) % n, self.fwd[k]);
                    for (p, pair) in out[k * c..(k + 1) * c].chunks_mut(2).enumerate() {
                        // Spectra of the two real inputs: A = (Z[k] + Z̄[N−k])/2,
                        // B = (Z[k] − Z̄[N−k])/2i; the coefficient is Re(tw·A) (Re(tw·B)).
                        let zk = buf[p * n + k];
                        let zn = buf[p * n + nk].conj();
                        let sa = (zk + zn) * 0.5;
                        let d = (zk - zn) * 0.5;
                        pair[0] = tw.re * sa.re - tw.im * sa.im;
                        if let Some(b) = pair.get_mut(1) {
                            // B = (d.im, −d.re)
                            *b = tw.re * d.im + tw.im * d.re;
                        }
                    }
                }
            }
        }
    }

    /// One full pass (all `rows`), on the host's threads for maps of 512K values and more
    /// (smaller ones lose more to spawning than they gain); `VHEAT_FFT_THREADS=k` overrides.
    fn pass(&self, inverse: bool, src: &[f32], rows: usize, c: usize, dst: &mut [f32]) {
        let n = self.n;
        let threads = std::thread::available_parallelism()
            .map(|t| t.get())
            .unwrap_or(1)
            .min(rows)
            .min((n * rows * c).div_ceil(1 << 19))
            .max(1);
        let threads = std::env::var("VHEAT_FFT_THREADS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(threads);
        if threads == 1 {
            self.pass_rows(inverse, src, rows, c, 0, dst);
            return;
        }
        let per = rows.div_ceil(threads);
        std::thread::scope(|s| {
            for (t, chunk) in dst.chunks_mut(per * n * c).enumerate() {
                s.spawn(move || self.pass_rows(inverse, src, rows, c, t * per, chunk));
            }
        });
    }
}

/// The FFT form of `dct2d` / `idct2d` for square maps of one side.
struct FftDct2d {
    plan: DctPlan,
}

impl FftDct2d {
    fn new(n: usize) -> Self {
        Self {
            plan: DctPlan::new(n, &mut FftPlanner::new()),
        }
    }

    /// 2-D transform of a host `[B, N, N, C]` buffer: along H into `[W, kH, C]`, then along W
    /// into `[kH, kW, C]`, per batch item.
    fn host(&self, inverse: bool, x: &[f32], dims: [usize; 4]) -> Vec<f32> {
        let [b, h, w, c] = dims;
        assert!(
            h == self.plan.n && w == self.plan.n,
            "square maps of the planned side only"
        );
        let plane = h * w * c;
        let mut tmp = vec![0.0f32; plane];
        let mut out = vec![0.0f32; b * plane];
        for (xi, oi) in x.chunks(plane).zip(out.chunks_mut(plane)) {
            self.plan.pass(inverse, xi, w, c, &mut tmp);
            self.plan.pass(inverse, &tmp, h, c, oi);
        }
        out
    }

    /// Tensor → host → transform → tensor, on `x`'s device.
    fn apply(&self, inverse: bool, x: Tensor<4>) -> Tensor<4> {
        let device = x.device();
        let dims = x.dims();
        let data = x.into_data();
        let host = data.as_slice::<f32>().expect("f32 map");
        let y = self.host(inverse, host, dims);
        Tensor::from_data(TensorData::new(y, dims), &device)
    }

    fn dct2d(&self, x: Tensor<4>) -> Tensor<4> {
        self.apply(false, x)
    }

    fn idct2d(&self, x: Tensor<4>) -> Tensor<4> {
        self.apply(true, x)
    }
}

fn max_abs_diff(a: Tensor<4>, b: Tensor<4>) -> f32 {
    (a - b).abs().max().into_scalar::<f32>()
}

/// The matmul form's forward and gradient on the autodiff device: `(y, ∂Σ(y⊙g)/∂x)`.
/// `x` and `g` live on the autodiff device.
fn matmul_fwd_bwd(inverse: bool, x: &Tensor<4>, g: &Tensor<4>) -> (TensorData, TensorData) {
    let x = x.clone().require_grad();
    let y = if inverse {
        idct2d(x.clone())
    } else {
        dct2d(x.clone())
    };
    let grads = (y.clone() * g.clone()).sum().backward();
    let gx = x.grad(&grads).expect("x requires grad");
    (y.into_data(), gx.into_data())
}

/// The FFT form's forward and gradient: the adjoint of the DCT-II is the DCT-III.
fn fft_fwd_bwd(
    inverse: bool,
    f: &FftDct2d,
    x: &Tensor<4>,
    g: &Tensor<4>,
) -> (Tensor<4>, Tensor<4>) {
    if inverse {
        (f.idct2d(x.clone()), f.dct2d(g.clone()))
    } else {
        (f.dct2d(x.clone()), f.idct2d(g.clone()))
    }
}

fn data_diff(a: TensorData, b: &Tensor<4>) -> f32 {
    let t = Tensor::<4>::from_data(a, &b.device());
    max_abs_diff(t, b.clone())
}

fn print_winners(title: &str, rec: &Recorder) {
    println!("\n{title}: median ms per call (flex, batch 1)");
    println!(
        "{:>12} {:>10} {:>10} {:>8}  winner",
        "N×N×C", "matmul", "fft", "ratio"
    );
    for (n, ch) in SIZES {
        let id = format!("{n}x{n}x{ch}");
        let m = rec.median(&format!("{title}/matmul/{id}"), SAMPLES);
        let f = rec.median(&format!("{title}/fft/{id}"), SAMPLES);
        if let (Some(m), Some(f)) = (m, f) {
            let winner = if m <= f { "matmul" } else { "fft" };
            println!(
                "{id:>12} {:>10.3} {:>10.3} {:>7.2}×  {winner}",
                m * 1e3,
                f * 1e3,
                m.max(f) / m.min(f)
            );
        }
    }
    println!();
}

fn configure(group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    group
        .sample_size(SAMPLES)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
}

fn forward(c: &mut Criterion, inverse: bool) {
    let device = Device::flex();
    let title = if inverse { "idct2d" } else { "dct2d" };
    let rec = Recorder::default();
    let mut group = c.benchmark_group(title);
    configure(&mut group);
    for (n, ch) in SIZES {
        let fft = FftDct2d::new(n);
        let x = Tensor::<4>::random([1, n, n, ch], Distribution::Default, &device);
        let reference = if inverse {
            idct2d(x.clone())
        } else {
            dct2d(x.clone())
        };
        let ours = fft.apply(inverse, x.clone());
        let diff = max_abs_diff(reference, ours);
        assert!(
            diff < TOLERANCE,
            "{title} {n}x{n}x{ch}: FFT form differs by {diff}"
        );
        let id = format!("{n}x{n}x{ch}");
        let key = format!("{title}/matmul/{id}");
        group.bench_with_input(BenchmarkId::new("matmul", &id), &x, |b, x| {
            b.iter_custom(|iters| {
                rec.time(&key, iters, || {
                    let y = if inverse {
                        idct2d(x.clone())
                    } else {
                        dct2d(x.clone())
                    };
                    y.into_data()
                })
            })
        });
        let key = format!("{title}/fft/{id}");
        group.bench_with_input(BenchmarkId::new("fft", &id), &x, |b, x| {
            b.iter_custom(|iters| rec.time(&key, iters, || fft.apply(inverse, x.clone())))
        });
    }
    group.finish();
    print_winners(title, &rec);
}

fn forward_backward(c: &mut Criterion, inverse: bool) {
    let device = Device::flex();
    let title = if inverse {
        "idct2d_fwd_bwd"
    } else {
        "dct2d_fwd_bwd"
    };
    let rec = Recorder::default();
    let mut group = c.benchmark_group(title);
    configure(&mut group);
    for (n, ch) in SIZES {
        let fft = FftDct2d::new(n);
        let x = Tensor::<4>::random([1, n, n, ch], Distribution::Default, &device);
        let g = Tensor::<4>::random([1, n, n, ch], Distribution::Default, &device);
        let (x_ad, g_ad) = (x.clone().autodiff(), g.clone().autodiff());
        let (y_ref, gx_ref) = matmul_fwd_bwd(inverse, &x_ad, &g_ad);
        let (y, gx) = fft_fwd_bwd(inverse, &fft, &x, &g);
        let (dy, dg) = (data_diff(y_ref, &y), data_diff(gx_ref, &gx));
        assert!(
            dy < TOLERANCE && dg < TOLERANCE,
            "{title} {n}x{n}x{ch}: FFT form differs by {dy} (output), {dg} (gradient)"
        );
        let id = format!("{n}x{n}x{ch}");
        let key = format!("{title}/matmul/{id}");
        group.bench_function(BenchmarkId::new("matmul", &id), |b| {
            b.iter_custom(|iters| rec.time(&key, iters, || matmul_fwd_bwd(inverse, &x_ad, &g_ad)))
        });
        let key = format!("{title}/fft/{id}");
        group.bench_function(BenchmarkId::new("fft", &id), |b| {
            b.iter_custom(|iters| rec.time(&key, iters, || fft_fwd_bwd(inverse, &fft, &x, &g)))
        });
    }
    group.finish();
    print_winners(title, &rec);
}

fn dct_forward(c: &mut Criterion) {
    forward(c, false);
}

fn idct_forward(c: &mut Criterion) {
    forward(c, true);
}

fn dct_forward_backward(c: &mut Criterion) {
    forward_backward(c, false);
}

fn idct_forward_backward(c: &mut Criterion) {
    forward_backward(c, true);
}

fn operator(c: &mut Criterion) {
    let device = Device::flex();
    let mut group = c.benchmark_group("heat_conduction");
    configure(&mut group);
    for (n, ch) in STAGES {
        let op = HeatConductionConfig::new(ch).init(&device);
        let fve = FrequencyEmbeddingConfig::new(n, n, ch)
            .init(&device)
            .resized(n, n);
        let x = Tensor::<4>::random([1, n, n, ch], Distribution::Default, &device);
        group.bench_with_input(
            BenchmarkId::from_parameter(format!("{n}x{n}x{ch}")),
            &x,
            |b, x| {
                b.iter(|| {
                    op.forward_channels_last(x.clone(), Some(fve.clone()))
                        .into_data()
                })
            },
        );
    }
    group.finish();
}

criterion_group!(
    benches,
    dct_forward,
    idct_forward,
    dct_forward_backward,
    idct_forward_backward,
    operator
);
criterion_main!(benches);
