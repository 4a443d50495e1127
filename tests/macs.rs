//! Multiply-accumulate counts against the reference's, counted by fvcore
//! (`tests/fixtures/macs_reference.json`: T/S/B at 224², T at 384/512/768, both forms).

use vheat::{Error, Form, VHeatConfig};

fn reference() -> serde_json::Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/macs_reference.json"
    ))
    .expect("macs fixture");
    serde_json::from_str(&text).expect("macs fixture is JSON")
}

#[test]
fn every_reference_count_matches_by_operator() {
    let refs = reference();
    let counts = refs["counts"].as_object().expect("counts");
    assert!(counts.len() >= 12, "fixture has {} entries", counts.len());
    for (key, entry) in counts {
        // Keys look like "vheat_tiny@224/train".
        let (name, rest) = key.split_once('@').expect("key has @");
        let (size, form) = rest.split_once('/').expect("key has /");
        let size: usize = size.parse().expect("size");
        let config = VHeatConfig::by_name(name.trim_start_matches("vheat_")).expect("config");
        let form = match form {
            "train" => Form::Ordinary,
            "infer" => Form::Inference,
            other => panic!("unknown form {other}"),
        };
        let ours = config.macs(size, size, form).expect("count");
        let ops = &entry["by_operator"];
        let get = |k: &str| ops[k].as_u64().unwrap_or_else(|| panic!("{key}: {k}"));
        // Convolutions, linears, norms and pooling are integer counts of the same operators:
        // they must agree exactly.
        assert_eq!(ours.conv, get("conv"), "{key} conv");
        assert_eq!(ours.linear, get("linear"), "{key} linear");
        assert_eq!(ours.layer_norm, get("layer_norm"), "{key} layer_norm");
        assert_eq!(
            ours.adaptive_avg_pool2d,
            get("adaptive_avg_pool2d"),
            "{key} pool"
        );
        // fvcore reads the einsum count from numpy's einsum_path report, which prints four
        // significant digits per block; ours is exact, so the two differ by that rounding
        // (< 0.05 % of the einsum, < 1e-6 of the total).
        let e = get("einsum") as f64;
        assert!(
            (ours.einsum as f64 - e).abs() <= 5e-4 * e,
            "{key} einsum {} vs {e}",
            ours.einsum
        );
        let total = entry["total"].as_u64().expect("total") as f64;
        assert!(
            (ours.total() as f64 - total).abs() <= 1e-6 * total,
            "{key} total {} vs {total}",
            ours.total()
        );
    }
}

#[test]
fn inference_form_saves_exactly_to_k() {
    // The only difference between the forms is `to_k`: H·W·C² per block.
    let c = VHeatConfig::tiny();
    let (h, w) = (160, 96);
    let ord = c.macs(h, w, Form::Ordinary).unwrap();
    let inf = c.macs(h, w, Form::Inference).unwrap();
    let mut to_k = 0u64;
    let [mut sh, mut sw] = [h.div_ceil(2).div_ceil(2), w.div_ceil(2).div_ceil(2)];
    for (&d, &ch) in c.depths.iter().zip(&c.dims) {
        to_k += (d * sh * sw * ch * ch) as u64;
        sh = sh.div_ceil(2);
        sw = sw.div_ceil(2);
    }
    assert_eq!(ord.linear - inf.linear, to_k);
    assert_eq!(ord.conv, inf.conv);
}

#[test]
fn non_square_inputs_and_heads_are_counted() {
    let c = VHeatConfig::tiny();
    let square = c.macs(224, 224, Form::Inference).unwrap();
    let wide = c.macs(224, 448, Form::Inference).unwrap();
    // Twice the pixels: the per-pixel operators double, the DCT along W more than doubles.
    assert!(wide.total() > 2 * square.total() - 2 * 768 * 1000);
    let headless = c.clone().with_num_classes(0);
    let no_head = headless.macs(224, 224, Form::Inference).unwrap();
    assert_eq!(square.linear - no_head.linear, 768 * 1000);
    assert_eq!(square.flops(8), 16.0 * square.total() as f64);
}

#[test]
fn too_small_inputs_and_bad_configs_are_typed_errors() {
    let c = VHeatConfig::tiny();
    assert!(matches!(
        c.macs(16, 224, Form::Ordinary),
        Err(Error::InputTooSmall { stride: 32, .. })
    ));
    let bad = VHeatConfig::new(vec![1, 1], vec![8]);
    assert!(matches!(
        bad.macs(64, 64, Form::Ordinary),
        Err(Error::InvalidConfig(_))
    ));
}
