//! How reference checkpoint keys map onto this crate's module paths: one commented rule each.
//!
//! The rules are regular expressions applied in order to every key of a reference checkpoint;
//! each rule sees the result of the ones before it. Burn's PyTorch adapter then renames
//! LayerNorm `weight`/`bias` to `gamma`/`beta` and transposes Linear weights.

/// The rename rules for a model whose stages have `depths` blocks, in application order.
///
/// `backbone_prefix` strips `backbone.` (dense-prediction checkpoints) first.
pub fn key_rules(depths: &[usize], backbone_prefix: bool) -> Vec<(String, String)> {
    let mut rules: Vec<(String, String)> = Vec::new();
    if backbone_prefix {
        // mmdet/mmseg checkpoints keep the backbone under `backbone.`:
        // `backbone.layers.0.0.op.linear.weight` → `layers.0.0.op.linear.weight`.
        rules.push((r"^backbone\.".into(), String::new()));
    }
    // The stem's norms sit at index 1 of a (permute, LayerNorm, permute) sequence:
    // `patch_embed.norm1.1.weight` → `patch_embed.norm1.weight`.
    rules.push((
        r"^patch_embed\.norm(\d+)\.1\.".into(),
        "patch_embed.norm$1.".into(),
    ));
    // The FVEs are a top-level ParameterList; here each stage owns its own:
    // `freq_embed.2` → `layers.2.freq_embed.weight`.
    rules.push((
        r"^freq_embed\.(\d+)$".into(),
        "layers.$1.freq_embed.weight".into(),
    ));
    for (i, &depth) in depths.iter().enumerate() {
        // The downsample is the last entry of the stage's sequence, after its `depth` blocks:
        // `layers.{i}.{depth}.0.weight` (conv) → `layers.{i}.downsample.conv.weight`.
        rules.push((
            format!(r"^layers\.{i}\.{depth}\.0\."),
            format!("layers.{i}.downsample.conv."),
        ));
        // … and its norm: `layers.{i}.{depth}.1.weight` → `layers.{i}.downsample.norm.weight`.
        rules.push((
            format!(r"^layers\.{i}\.{depth}\.1\."),
            format!("layers.{i}.downsample.norm."),
        ));
    }
    // The remaining numbered entries of a stage are its blocks:
    // `layers.1.0.op.dwconv.weight` → `layers.1.blocks.0.op.dwconv.weight`.
    rules.push((
        r"^layers\.(\d+)\.(\d+)\.".into(),
        "layers.$1.blocks.$2.".into(),
    ));
    // `to_k` is `Sequential(Linear, ReLU)`; the ReLU is applied in code:
    // `….op.to_k.0.weight` → `….op.to_k.weight`.
    rules.push((r"\.op\.to_k\.0\.".into(), ".op.to_k.".into()));
    // The head is `Sequential(LayerNorm2d, AdaptiveAvgPool2d, Flatten, Linear)`:
    // `classifier.0.weight` → `classifier.norm.weight`.
    rules.push((r"^classifier\.0\.".into(), "classifier.norm.".into()));
    // … and `classifier.3.weight` → `classifier.fc.weight`.
    rules.push((r"^classifier\.3\.".into(), "classifier.fc.".into()));
    // The dense-prediction backbone's per-level output norms are attributes `outnorm{i}`; here
    // they are one optional entry per stage: `outnorm2.weight` → `out_norms.2.weight`.
    rules.push((r"^outnorm(\d+)\.".into(), "out_norms.$1.".into()));
    rules
}

/// Applies [`key_rules`] to one key, as the stores do (for messages and tests).
pub fn map_key(key: &str, depths: &[usize], backbone_prefix: bool) -> String {
    let mut k = key.to_string();
    for (from, to) in key_rules(depths, backbone_prefix) {
        let re = regex::Regex::new(&from).expect("the crate's own key rules are valid regexes");
        k = re.replace_all(&k, to.as_str()).into_owned();
    }
    k
}
