//! The training augmentation (`vheat::data::augment`): the deterministic RandAugment operations
//! against timm/Pillow output, the random parts' distributions, the policies, validation, and
//! the folder dataset's handling of unreadable images met mid-training.
#![cfg(feature = "train")]
#[macro_use]
mod common;

use common::{changed, temp_dir};
use std::path::PathBuf;

use burn::data::dataset::Dataset;
use image::{Rgb, RgbImage};
use vheat::data::{
    Augment, AugmentConfig, AugmentPolicy, ImageFolder, RandAugment, RandOp, RandomErasing,
    Resample, SplitMix64, IMAGENET_FILL, RAND_INCREASING_OPS,
};
use vheat::Error;

/// The fixtures' source image (same formula as `scripts/augment_fixtures.py`).
fn source() -> RgbImage {
    RgbImage::from_fn(24, 20, |x, y| {
        Rgb([
            ((x * 10 + y * 4) % 256) as u8,
            ((x * y * 3 + 40) % 256) as u8,
            ((200 + 256 - x * 5 + y * 6) % 256) as u8,
        ])
    })
}

fn op_by_name(name: &str) -> RandOp {
    *RAND_INCREASING_OPS
        .iter()
        .find(|o| o.name() == name)
        .unwrap_or_else(|| panic!("unknown op {name}"))
}

#[test]
fn fixture_source_matches_formula() {
    let blob = std::fs::read(common::fixture("augment/ops.bin")).unwrap();
    assert_eq!(&blob[..24 * 20 * 3], source().as_raw().as_slice());
}

#[test]
fn ops_match_timm_and_pillow() {
    let index = common::fixture_json("augment/ops.json");
    let blob = std::fs::read(common::fixture("augment/ops.bin")).unwrap();
    let img = source();
    let n = img.as_raw().len();
    let mut report = Vec::new();
    for case in index["cases"].as_array().unwrap() {
        let name = case["op"].as_str().unwrap();
        let arg = case["arg"].as_f64().unwrap();
        let resample = match case["resample"].as_str().unwrap() {
            "bilinear" => Resample::Bilinear,
            _ => Resample::Bicubic,
        };
        let off = case["offset"].as_u64().unwrap() as usize;
        let want = &blob[off..off + n];
        let src = match case["pre"].as_array() {
            Some(pre) => op_by_name(pre[0].as_str().unwrap()).apply(
                &img,
                pre[1].as_f64().unwrap(),
                resample,
                IMAGENET_FILL,
            ),
            None => img.clone(),
        };
        let got = op_by_name(name).apply(&src, arg, resample, IMAGENET_FILL);
        assert_eq!(got.dimensions(), img.dimensions(), "{name} keeps the size");
        let diffs: Vec<i32> = got
            .as_raw()
            .iter()
            .zip(want)
            .map(|(a, b)| (*a as i32 - *b as i32).abs())
            .collect();
        let max = diffs.iter().copied().max().unwrap();
        let count = diffs.iter().filter(|&&d| d > 0).count();
        report.push(format!(
            "{name}({arg}, {resample:?}): max {max}, {count} differ"
        ));
        // Exact: the same integer/float arithmetic as Pillow's C code (the geometric ops
        // compute the same f64 source coordinates and truncate the same cubic sum).
        assert_eq!(
            max,
            0,
            "{name}({arg}) differs from timm/Pillow:\n{}",
            report.join("\n")
        );
    }
    println!("{}", report.join("\n"));
}

#[test]
fn every_op_keeps_size_at_every_magnitude() {
    let img = source();
    let mut rng = SplitMix64::new(3);
    for op in RAND_INCREASING_OPS {
        for m in [0.0, 4.5, 9.0, 10.0] {
            let arg = op.level_arg(m, &mut rng);
            let out = op.apply(&img, arg, Resample::Bicubic, IMAGENET_FILL);
            assert_eq!(out.dimensions(), (24, 20), "{op} at magnitude {m}");
        }
    }
}

#[test]
fn level_args_follow_timm() {
    let mut rng = SplitMix64::new(1);
    // Magnitude 9 of 10 (values of timm's LEVEL_TO_ARG, computed by hand).
    assert_eq!(RandOp::PosterizeIncreasing.level_arg(9.0, &mut rng), 1.0); // 4 - int(3.6)
    assert_eq!(RandOp::SolarizeIncreasing.level_arg(9.0, &mut rng), 26.0); // 256 - int(230.4)
    assert_eq!(RandOp::SolarizeAdd.level_arg(9.0, &mut rng), 99.0); // int(99.0)
    for _ in 0..50 {
        let r = RandOp::Rotate.level_arg(9.0, &mut rng);
        assert!((r.abs() - 27.0).abs() < 1e-12, "rotate ±27°, got {r}");
        let c = RandOp::ColorIncreasing.level_arg(9.0, &mut rng);
        assert!(
            (c - 1.81).abs() < 1e-12 || (c - 0.19).abs() < 1e-12,
            "1 ± 0.81, got {c}"
        );
        let t = RandOp::TranslateXRel.level_arg(10.0, &mut rng);
        assert!((t.abs() - 0.45).abs() < 1e-12);
    }
    // Magnitude 10 on an enhance op: 1 - 0.9 = 0.1 (timm's floor of 0.1).
    let mut lows = 0;
    for _ in 0..100 {
        let c = RandOp::ContrastIncreasing.level_arg(10.0, &mut rng);
        assert!(c >= 0.1 - 1e-12);
        lows += (c < 1.0) as usize;
    }
    // The sign is a fair coin: 100 draws land in 30..70 with probability > 0.9999.
    assert!((30..=70).contains(&lows), "{lows} of 100 negative");
}

#[test]
fn rand_augment_magnitude_noise_stays_in_range() {
    let ra = RandAugment::parse("rand-m9-mstd0.5-inc1").unwrap();
    assert_eq!((ra.magnitude, ra.magnitude_std, ra.num_ops), (9.0, 0.5, 2));
    assert_eq!(ra.ops, RAND_INCREASING_OPS.to_vec());
    let mut rng = SplitMix64::new(11);
    let draws: Vec<f64> = (0..20_000).map(|_| ra.sample_magnitude(&mut rng)).collect();
    assert!(draws.iter().all(|m| (0.0..=10.0).contains(m)));
    let mean = draws.iter().sum::<f64>() / draws.len() as f64;
    // N(9, 0.5) clipped at 10: mean ≈ 9 − 0.5·φ(2)… ≈ 8.9958; 20 000 draws give a standard
    // error of 0.0035, so 0.02 is > 5 σ.
    assert!((mean - 8.996).abs() < 0.02, "mean magnitude {mean}");
    let clipped = draws.iter().filter(|&&m| m == 10.0).count() as f64 / 2e4;
    // P(N(9, 0.5) > 10) = P(Z > 2) = 0.0228; binomial s.e. 0.001.
    assert!(
        (clipped - 0.0228).abs() < 0.006,
        "clipped fraction {clipped}"
    );
    // Wider noise still never leaves [0, 10].
    let wide = RandAugment::parse("rand-m5-mstd100-inc1").unwrap();
    assert!((0..5000).all(|_| (0.0..=10.0).contains(&wide.sample_magnitude(&mut rng))));
}

#[test]
fn rand_augment_spec_errors() {
    for bad in [
        "rand-m11-inc1",
        "rand-m9-x3-inc1",
        "rand-mq-inc1",
        "augmix-m9",
        "rand-m9",
        "rand-m9-inc0",
        "rand-m9-p1.5-inc1",
        "rand-m9-n0-inc1",
        "rand-m9-mstd-1-inc1",
        "rand-m9-mmax12-inc1",
    ] {
        match RandAugment::parse(bad) {
            Err(Error::InvalidConfig(m)) => assert!(m.contains(bad), "{m}"),
            other => panic!("{bad}: {other:?}"),
        }
    }
    assert!(RandAugment::parse("rand-m7-n3-mstd1-mmax10-p0.8-inc1").is_ok());
}

#[test]
fn policies_parse_and_display() {
    for name in AugmentPolicy::NAMES {
        let p: AugmentPolicy = name.parse().unwrap();
        assert_eq!(p.to_string(), name);
        let line = p.config().to_string();
        assert!(!line.contains('\n') && line.contains(name), "{line}");
    }
    assert!(matches!(
        "heavy".parse::<AugmentPolicy>(),
        Err(Error::InvalidConfig(_))
    ));
    let r = AugmentPolicy::Reference.config();
    assert_eq!(r.rand_augment.as_deref(), Some("rand-m9-mstd0.5-inc1"));
    assert_eq!((r.hflip, r.reprob, r.scale), (0.5, 0.25, (0.08, 1.0)));
    let l = AugmentPolicy::Light.config();
    assert_eq!(
        (l.hflip, l.reprob, l.rand_augment.clone()),
        (0.0, 0.0, None)
    );
    // Serde round trip.
    let json = serde_json::to_string(&r).unwrap();
    assert_eq!(serde_json::from_str::<AugmentConfig>(&json).unwrap(), r);
}

#[test]
fn validation_rejects_each_bad_value() {
    let base = AugmentPolicy::Reference.config();
    let cases: Vec<(&str, AugmentConfig)> = vec![
        ("reprob", changed(base.clone(), |c| c.reprob = 1.5)),
        ("reprob", changed(base.clone(), |c| c.reprob = -0.1)),
        ("flip", changed(base.clone(), |c| c.hflip = 2.0)),
        ("flip", changed(base.clone(), |c| c.hflip = f64::NAN)),
        ("scale", changed(base.clone(), |c| c.scale = (0.0, 1.0))),
        ("scale", changed(base.clone(), |c| c.scale = (0.5, 1.2))),
        ("scale", changed(base.clone(), |c| c.scale = (0.8, 0.2))),
        ("ratio", changed(base.clone(), |c| c.ratio = (0.0, 1.0))),
        ("ratio", changed(base.clone(), |c| c.ratio = (-1.0, 1.0))),
        (
            "RandAugment",
            changed(base.clone(), |c| {
                c.rand_augment = Some("rand-m12-inc1".into())
            }),
        ),
        (
            "RandAugment",
            changed(base.clone(), |c| {
                c.rand_augment = Some("rand-m9-zz1-inc1".into())
            }),
        ),
        ("count", changed(base.clone(), |c| c.recount = 2)),
    ];
    for (what, cfg) in cases {
        match cfg.validate() {
            Err(e @ Error::InvalidTrainingOption { .. }) => {
                assert!(e.to_string().contains(what), "{what}: {e}")
            }
            other => panic!("{what}: {other:?} for {cfg:?}"),
        }
        assert!(Augment::new(cfg, 32).is_err());
    }
    assert!(base.validate().is_ok());
    assert!(Augment::new(base, 0).is_err());
}

#[test]
fn none_is_deterministic_and_light_changes_pixels() {
    let img = source();
    let none = Augment::new(AugmentPolicy::None.config(), 32).unwrap();
    let a = none.apply(&img, &mut SplitMix64::new(1));
    let b = none.apply(&img, &mut SplitMix64::new(2));
    assert_eq!(a, b, "none ignores the random stream");
    assert_eq!(a.len(), 3 * 32 * 32);
    let light = Augment::new(AugmentPolicy::Light.config(), 32).unwrap();
    let base = none.augment_rgb8(&img, &mut SplitMix64::new(0));
    let mut changed = 0;
    for s in 0..20 {
        let out = light.augment_rgb8(&img, &mut SplitMix64::new(s));
        assert_eq!(out.dimensions(), (32, 32));
        changed += (out != base) as usize;
    }
    // Every draw has a non-zero rotation/shift/scale almost surely.
    assert_eq!(changed, 20);
}

#[test]
fn flip_rate_is_hflip() {
    // An image whose left and right halves differ, nothing else random.
    let img = RgbImage::from_fn(16, 16, |x, _| Rgb([if x < 8 { 0 } else { 255 }, 0, 0]));
    let cfg = changed(AugmentPolicy::None.config(), |c| c.hflip = 0.5);
    let aug = Augment::new(cfg, 16).unwrap();
    let mut rng = SplitMix64::new(5);
    let n = 4000;
    let flips = (0..n)
        .filter(|_| aug.augment_rgb8(&img, &mut rng).get_pixel(0, 0).0[0] == 255)
        .count();
    let rate = flips as f64 / n as f64;
    // Binomial(4000, 0.5): s.e. 0.0079, 0.04 is 5 σ.
    assert!((rate - 0.5).abs() < 0.04, "flip rate {rate}");
}

#[test]
fn random_erasing_rate_and_area() {
    let e = RandomErasing::new(0.25);
    let (h, w) = (32usize, 32usize);
    let mut rng = SplitMix64::new(9);
    let n = 4000;
    let mut hits = 0;
    for _ in 0..n {
        let mut chw = vec![7.0f32; 3 * h * w];
        if let Some((top, left, bh, bw)) = e.apply(&mut chw, h, w, &mut rng) {
            hits += 1;
            let frac = (bh * bw) as f64 / (h * w) as f64;
            // Target area 0.02..1/3 of the image, then rounded sides: at 32×32 the rounding
            // moves the area by at most ~(√(area)+¼)·2 pixels, so allow 0.01..0.4.
            assert!((0.01..0.4).contains(&frac), "area fraction {frac}");
            assert!(top + bh <= h && left + bw <= w);
            let erased = chw.iter().filter(|&&v| v != 7.0).count();
            // N(0, 1) values are never exactly 7.
            assert_eq!(erased, 3 * bh * bw);
        } else {
            assert!(chw.iter().all(|&v| v == 7.0));
        }
    }
    let rate = hits as f64 / n as f64;
    // A box fails all 10 attempts only rarely (aspect extremes at big areas), so the rate is
    // a little below 0.25; Binomial s.e. 0.007.
    assert!(rate > 0.21 && rate < 0.27, "erase rate {rate}");
    // Noise values look standard normal.
    let mut rng = SplitMix64::new(4);
    let mut vals = Vec::new();
    for _ in 0..200 {
        let mut chw = vec![0.0f32; 3 * h * w];
        if RandomErasing::new(1.0)
            .apply(&mut chw, h, w, &mut rng)
            .is_some()
        {
            vals.extend(chw.iter().copied().filter(|&v| v != 0.0));
        }
    }
    let m = vals.iter().map(|&v| v as f64).sum::<f64>() / vals.len() as f64;
    let var = vals.iter().map(|&v| (v as f64 - m).powi(2)).sum::<f64>() / vals.len() as f64;
    // > 10⁵ samples: mean and variance within 0.02 of 0 and 1 (≫ 5 σ).
    assert!(
        m.abs() < 0.02 && (var - 1.0).abs() < 0.02,
        "mean {m} var {var}"
    );
}

#[test]
fn reference_pipeline_runs_and_varies() {
    let img = RgbImage::from_fn(40, 30, |x, y| Rgb([(x * 6) as u8, (y * 8) as u8, 77]));
    let aug = Augment::new(AugmentPolicy::Reference.config(), 24).unwrap();
    let a = aug.apply(&img, &mut SplitMix64::new(1));
    let b = aug.apply(&img, &mut SplitMix64::new(1));
    let c = aug.apply(&img, &mut SplitMix64::new(2));
    assert_eq!(a.len(), 3 * 24 * 24);
    assert_eq!(a, b, "same stream, same output");
    assert_ne!(a, c, "another stream, another output");
    assert!(a.iter().all(|v| v.is_finite()));
}

/// A folder of two classes, two PNGs each; `a/1.png` is then truncated to half its bytes
/// (its header still decodes, so `ImageFolder::open` accepts it).
fn folder_with_truncated_png(name: &str) -> (PathBuf, ImageFolder) {
    let root = temp_dir(name);
    for class in ["a", "b"] {
        std::fs::create_dir_all(root.join(class)).unwrap();
        for i in 0..2 {
            source()
                .save(root.join(class).join(format!("{i}.png")))
                .unwrap();
        }
    }
    let bad = root.join("a").join("1.png");
    let bytes = std::fs::read(&bad).unwrap();
    std::fs::write(&bad, &bytes[..bytes.len() / 2]).unwrap();
    let folder = ImageFolder::open(&root).unwrap();
    (bad, folder)
}

#[test]
fn truncated_image_is_an_error_by_default() {
    let (bad, folder) = folder_with_truncated_png("error");
    let ds = folder
        .augmented_dataset(&AugmentPolicy::Light.config(), 16, 0)
        .unwrap();
    assert!(ds.get(0).is_ok());
    match ds.load(1) {
        Err(Error::ImageRead { path, .. }) => assert_eq!(path, bad),
        other => panic!("{other:?}"),
    }
    let err = ds.get(1).unwrap_err().to_string();
    assert!(err.contains("1.png"), "{err}");
    assert_eq!(ds.skipped(), 0);
}

#[test]
fn truncated_image_is_skipped_when_asked() {
    let (_bad, folder) = folder_with_truncated_png("skip");
    let ds = folder
        .augmented_dataset(&AugmentPolicy::Reference.config(), 16, 0)
        .unwrap()
        .skip_unreadable(true);
    let clone = ds.clone();
    let item = ds.get(1).expect("the next readable image");
    // Samples are a/0, a/1 (truncated), b/0, b/1: index 1 is replaced by b/0.png.
    assert_eq!(item.label, 1);
    assert_eq!(item.shape, [3, 16, 16]);
    let _ = clone.get(1).unwrap();
    // Counted on every meeting, shared by clones.
    assert_eq!(ds.skipped(), 2);
    assert_eq!(clone.skipped(), 2);
    // Other indices are untouched.
    assert!(ds.get(0).is_ok() && ds.get(3).is_ok());
    assert_eq!(ds.skipped(), 2);
}

#[test]
fn invalid_policy_builds_no_dataset() {
    let (_bad, folder) = folder_with_truncated_png("invalid");
    let cfg = changed(AugmentPolicy::Reference.config(), |c| c.reprob = 3.0);
    assert!(matches!(
        folder.augmented_dataset(&cfg, 16, 0),
        Err(Error::InvalidTrainingOption { .. })
    ));
}
