//! Reduced-precision inference (bf16, f16) of the micro fixtures against the float32 reference,
//! on every backend that supports the precision for general computation.

#[macro_use]
mod common;

use burn::prelude::*;
use burn::tensor::FloatDType;
use common::*;
use vheat::VHeat;

/// Logits and top-1 of one fixture input at one precision, compared with PyTorch's f32 logits.
///
/// Tolerance: bf16 keeps 8 significant bits (unit roundoff 2⁻⁹ ≈ 2e-3) and f16 11 bits
/// (2⁻¹² ≈ 2.4e-4). Every layer rounds its output, and the roughly 30 rounded layers of a micro
/// model (convolutions, Linears, LayerNorms, four DCT products per operator) add their errors,
/// so we allow 30 roundoffs relative to the largest logit: 30·2⁻⁹·max|logit| for bf16 and
/// 30·2⁻¹²·max|logit| for f16, plus the same top-1 class for every image.
fn check(model: &VHeat, dtype: FloatDType, fx: &Tensors, tag: &str, d: &Device) -> f32 {
    let half = model.with_float_dtype(dtype).expect("supported precision");
    assert_eq!(half.float_dtype(), dtype.into());
    let input = fx.get::<4>(&format!("{tag}.input"), d);
    let logits = half.forward(input).cast(FloatDType::F32);
    let (shape, expected) = fx.raw(&format!("{tag}.logits"));
    let got = values(logits);
    let scale = expected.iter().fold(0f32, |m, v| m.max(v.abs()));
    let unit = match dtype {
        FloatDType::BF16 => 2f32.powi(-9),
        FloatDType::F16 => 2f32.powi(-12),
        _ => unreachable!("only half precisions are tested"),
    };
    let atol = 30.0 * unit * scale;
    let err = assert_close_tol(
        &format!("{tag} {dtype:?} logits"),
        &got,
        shape,
        expected,
        shape,
        atol,
        0.0,
    );
    let classes = shape[1];
    for (i, (g, e)) in got
        .chunks(classes)
        .zip(expected.chunks(classes))
        .enumerate()
    {
        let argmax = |v: &[f32]| {
            v.iter()
                .enumerate()
                .fold(
                    (0, f32::MIN),
                    |b, (j, x)| if *x > b.1 { (j, *x) } else { b },
                )
                .0
        };
        assert_eq!(argmax(g), argmax(e), "{tag} {dtype:?}: top-1 of image {i}");
    }
    err
}

per_backend! {
fn half_precision_logits_match_reference(d) {
    let mut tested = 0;
    for dtype in [FloatDType::BF16, FloatDType::F16] {
        if !d.supports_dtype(dtype) {
            println!("{d:?} does not support {dtype:?}: skipped");
            continue;
        }
        for (name, tags) in [("micro_tiny", &["x64", "x96"][..]), ("micro_base", &["x32"][..])] {
            let config = fixture_config(&format!("{name}.json"));
            let model = VHeat::load_pytorch(fixture(&format!("{name}.pth")), &config, d).unwrap();
            let fx = Tensors::open(&format!("{name}.io.safetensors"));
            for tag in tags {
                check(&model, dtype, &fx, tag, d);
                tested += 1;
            }
        }
    }
    println!("{tested} half-precision checks on {d:?}");
}
}

/// An unsupported precision is a typed error, and the model is untouched.
#[test]
fn unsupported_precision_is_an_error() {
    let d = cpu();
    let config = fixture_config("micro_tiny.json");
    let model = VHeat::load_pytorch(fixture("micro_tiny.pth"), &config, &d).unwrap();
    for dtype in [FloatDType::BF16, FloatDType::F16, FloatDType::F64] {
        match model.with_float_dtype(dtype) {
            Ok(m) => assert_eq!(m.float_dtype(), dtype.into()),
            Err(e) => {
                assert!(!d.supports_dtype(dtype));
                assert!(e.to_string().contains("does not support"), "{e}");
            }
        }
    }
    assert_eq!(model.float_dtype(), burn::tensor::DType::F32);
}
