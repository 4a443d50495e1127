//! Depthwise 3×3 convolution (stride 1, zero padding 1) on a channels-last map.

use burn::prelude::*;
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use rayon::prelude::*;

use super::on_host;

/// `y[b, i, j, c] = bias[c] + Σ_{di,dj ∈ {-1,0,1}} w[c, 0, 1+di, 1+dj] · x[b, i+di, j+dj, c]`,
/// with `x` zero outside the map: a depthwise 3×3 convolution, stride 1, padding 1, of a
/// channels-last map `[B, H, W, C]`, with `weight` in PyTorch's layout `[C, 1, 3, 3]`.
///
/// On the host fast path it runs on the map as it is, one output row per task, vectorised over
/// channels; elsewhere it permutes to NCHW, calls Burn's `conv2d` and permutes back.
///
/// # Panics
/// If `weight` is not `[C, 1, 3, 3]` or `bias` not `[C]` for the map's `C`.
pub fn depthwise_conv3x3_nhwc(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
) -> Tensor<4> {
    let [b, h, w, c] = x.dims();
    assert_eq!(weight.dims(), [c, 1, 3, 3], "depthwise 3×3 weight");
    if let Some(bias) = &bias {
        assert_eq!(bias.dims(), [c], "depthwise bias");
    }
    if !(on_host(&x) && on_host(&weight) && bias.as_ref().is_none_or(on_host)) {
        let options = ConvOptions::new([1, 1], [1, 1], [1, 1], c);
        return conv2d(x.permute([0, 3, 1, 2]), weight, bias, options).permute([0, 2, 3, 1]);
    }
    let device = x.device();
    // Taps as [9][C] so that each tap is a contiguous row over channels.
    let taps = weight.reshape([c, 9]).transpose().into_data();
    let taps: Vec<f32> = taps
        .try_into_vec::<f32>()
        .expect("on_host guarantees float32");
    let bias: Vec<f32> = match bias {
        Some(bias) => bias
            .into_data()
            .try_into_vec()
            .expect("on_host guarantees float32"),
        None => vec![0.0; c],
    };
    let input = x.into_data();
    let input: &[f32] = input.as_slice().expect("on_host guarantees float32");
    let mut out = vec![0.0f32; b * h * w * c];
    let row_len = w * c;
    out.par_chunks_mut(row_len.max(1))
        .enumerate()
        .for_each(|(row, out_row)| {
            let (n, i) = (row / h, row % h);
            let job = Row {
                plane: &input[n * h * row_len..(n + 1) * h * row_len],
                taps: &taps,
                bias: &bias,
                i,
                h,
                w,
                c,
            };
            conv_row(&job, out_row);
        });
    Tensor::from_data(
        TensorData::new(out, [b, h, w, c]),
        (&device, burn::tensor::DType::F32),
    )
}

/// One output row to compute: row `i` of one image `plane` (`[H, W, C]`), with the taps as
/// `[9][C]` and the bias `[C]`.
struct Row<'a> {
    plane: &'a [f32],
    taps: &'a [f32],
    bias: &'a [f32],
    i: usize,
    h: usize,
    w: usize,
    c: usize,
}

fn conv_row(job: &Row, out_row: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU supports the features the function was compiled for.
        unsafe { conv_row_avx2(job, out_row) };
        return;
    }
    conv_row_generic(job, out_row)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn conv_row_avx2(job: &Row, out_row: &mut [f32]) {
    conv_row_generic(job, out_row)
}

#[inline(always)]
fn conv_row_generic(job: &Row, out_row: &mut [f32]) {
    let &Row {
        plane,
        taps,
        bias,
        i,
        h,
        w,
        c,
    } = job;
    for j in 0..w {
        let out = &mut out_row[j * c..(j + 1) * c];
        out.copy_from_slice(bias);
        for di in 0..3 {
            let Some(src_i) = (i + di).checked_sub(1).filter(|&r| r < h) else {
                continue;
            };
            for dj in 0..3 {
                let Some(src_j) = (j + dj).checked_sub(1).filter(|&s| s < w) else {
                    continue;
                };
                let tap = &taps[(di * 3 + dj) * c..(di * 3 + dj + 1) * c];
                let start = (src_i * w + src_j) * c;
                let src = &plane[start..start + c];
                for ((o, &t), &s) in out.iter_mut().zip(tap).zip(src) {
                    *o += t * s;
                }
            }
        }
    }
}
