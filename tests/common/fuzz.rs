//! An offline, deterministic mutation fuzzer for checkpoint and configuration loading.
//!
//! Shared (through `#[path]`) by `examples/fuzz_loaders.rs`, which runs it for as many inputs as
//! asked, and `tests/reliability.rs`, which runs a short bounded smoke run of it plus every file
//! of the committed corpus `tests/fuzz_corpus/`.
//!
//! Inputs are the fixtures, mutated with awareness of their structure:
//! - `.pth`: the pickle inside the zip is mutated and the zip rebuilt (so the pickle reader is
//!   reached instead of the zip checksum), storage files are cut, grown or dropped, or the raw
//!   file is mutated or truncated anywhere (zip headers, central directory);
//! - safetensors: the JSON header is mutated token by token (dtypes, shapes, offsets, keys) or
//!   byte by byte, the length prefix is changed, or the file is truncated;
//! - burnpack (written by the crate from the fixture model): header bytes and raw bytes are
//!   mutated, or the file is truncated;
//! - configuration JSON: tokens are replaced by extreme values, keys are dropped or duplicated,
//!   bytes are mutated, or random JSON documents are generated.
//!
//! Each input goes through the public loader under `catch_unwind`; a panic that reaches this
//! harness is a bug. Every run is reproducible from its seed.
#![allow(dead_code)]

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use burn::prelude::*;
use vheat::weights::{load_pytorch_into, load_safetensors_into, LoadOptions};
use vheat::{Error, VHeat, VHeatConfig};

use super::pth;

/// A xorshift64* generator.
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed` (any value, including 0).
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// What an input is fed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    /// `load_pytorch_into`.
    Pth,
    /// `load_safetensors_into`.
    Safetensors,
    /// `VHeat::load_burnpack`.
    Burnpack,
    /// `VHeatConfig::from_json` / `load`, then `try_init` for small configurations.
    Config,
}

impl Target {
    /// Every target, in a fixed order.
    pub const ALL: [Target; 4] = [
        Target::Pth,
        Target::Safetensors,
        Target::Burnpack,
        Target::Config,
    ];

    /// The file extension used for inputs of this target.
    pub fn extension(self) -> &'static str {
        match self {
            Target::Pth => "pth",
            Target::Safetensors => "safetensors",
            Target::Burnpack => "bpk",
            Target::Config => "json",
        }
    }

    /// The target of a corpus file, from its extension.
    pub fn from_path(path: &Path) -> Option<Target> {
        let ext = path.extension()?.to_str()?;
        Target::ALL.into_iter().find(|t| t.extension() == ext)
    }
}

/// A zip file's entries: (name, bytes).
pub type ZipEntries = Vec<(String, Vec<u8>)>;

/// The unmutated inputs.
pub struct Seeds {
    pub pth: Vec<u8>,
    pub pth_entries: Vec<(String, Vec<u8>)>,
    /// The files `torch.save` wrote (`tests/fixtures/pth_corpus/`, see `scripts/pth_corpus.py`),
    /// each with its zip entries (`None` for the legacy non-zip format).
    pub pth_corpus: Vec<(Vec<u8>, Option<ZipEntries>)>,
    pub safetensors: Vec<u8>,
    pub burnpack: Vec<u8>,
    pub configs: Vec<String>,
}

/// What loading one input did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Loaded (and, for configurations, built).
    Ok,
    /// A typed error, by variant name.
    Err(&'static str),
    /// A panic reached the caller: a bug.
    Panic(String),
}

/// The variant name of an error, for the statistics.
pub fn kind(e: &Error) -> &'static str {
    match e {
        Error::InvalidConfig(_) => "InvalidConfig",
        Error::ConfigFile { .. } => "ConfigFile",
        Error::CheckpointRead { .. } => "CheckpointRead",
        Error::CheckpointMismatch { .. } => "CheckpointMismatch",
        Error::NonFiniteWeights { .. } => "NonFiniteWeights",
        Error::InvalidInput { .. } => "InvalidInput",
        Error::InputTooSmall { .. } => "InputTooSmall",
        _ => "other",
    }
}

/// The fixed state of a fuzz run: the fixture model, its configuration, a scratch directory.
pub struct Harness {
    pub device: Device,
    pub config: VHeatConfig,
    pub model: VHeat,
    pub scratch: PathBuf,
    pub seeds: Seeds,
}

/// Reads a fixture file.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

fn fixture_config_text(name: &str) -> String {
    let v: serde_json::Value = serde_json::from_slice(&fixture(name)).unwrap();
    v["config"].to_string()
}

impl Harness {
    /// Loads the `micro_base` fixture model on `device` and prepares the seeds; inputs are
    /// written under `scratch`.
    pub fn new(device: Device, scratch: PathBuf) -> Self {
        std::fs::create_dir_all(&scratch).unwrap();
        let config = VHeatConfig::from_json(&fixture_config_text("micro_base.json")).unwrap();
        let pth_path =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/micro_base.pth");
        let model = VHeat::load_pytorch(&pth_path, &config, &device).unwrap();
        let bpk = scratch.join("seed.bpk");
        model.save_burnpack(&bpk).unwrap();
        let pth = fixture("micro_base.pth");
        let seeds = Seeds {
            pth_entries: pth::read_zip(&pth).unwrap(),
            pth_corpus: torch_corpus(),
            pth,
            safetensors: fixture("micro_base.weights.safetensors"),
            burnpack: std::fs::read(&bpk).unwrap(),
            configs: vec![
                fixture_config_text("micro_base.json"),
                fixture_config_text("micro_tiny.json"),
                r#"{"depths": [2, 2, 6, 2], "dims": 96, "post_norm": false}"#.to_string(),
            ],
        };
        Harness {
            device,
            config,
            model,
            scratch,
            seeds,
        }
    }

    /// A mutated input for `target`.
    pub fn input(&self, rng: &mut Rng, target: Target) -> Vec<u8> {
        match target {
            Target::Pth => pth_input(rng, &self.seeds),
            Target::Safetensors => safetensors_input(rng, &self.seeds.safetensors),
            Target::Burnpack => burnpack_input(rng, &self.seeds.burnpack),
            Target::Config => config_input(rng, &self.seeds.configs),
        }
    }

    /// The path an input of `target` is written to before loading. After a crash that killed
    /// the process (an abort), the input that caused it is still there.
    pub fn input_path(&self, target: Target) -> PathBuf {
        self.scratch.join(format!("input.{}", target.extension()))
    }

    /// Writes `bytes` and loads them as `target`, choosing options with `rng`; a panic is
    /// caught and returned as [`Outcome::Panic`].
    pub fn run(&self, rng: &mut Rng, target: Target, bytes: &[u8]) -> Outcome {
        let path = self.input_path(target);
        std::fs::write(&path, bytes).unwrap();
        self.run_path(rng, target, &path)
    }

    /// Loads the file at `path` as `target`; see [`run`](Self::run).
    pub fn run_path(&self, rng: &mut Rng, target: Target, path: &Path) -> Outcome {
        let strict = rng.chance(0.7);
        let key_choice = rng.below(4);
        let run_forward = rng.chance(0.1);
        let result = catch_unwind(AssertUnwindSafe(|| -> Result<(), Error> {
            let options = if strict {
                LoadOptions::strict()
            } else {
                LoadOptions::lenient()
            };
            match target {
                Target::Pth => {
                    let options = match key_choice {
                        0 => options.with_key("model"),
                        1 => options.bare(),
                        _ => options,
                    };
                    let mut model = self.model.clone();
                    load_pytorch_into(&mut model, path, &options)?;
                    if run_forward {
                        self.forward(&model)?;
                    }
                }
                Target::Safetensors => {
                    let mut model = self.model.clone();
                    load_safetensors_into(&mut model, path, &options)?;
                    if run_forward {
                        self.forward(&model)?;
                    }
                }
                Target::Burnpack => {
                    let model = VHeat::load_burnpack(path, &self.config, &self.device)?;
                    if run_forward {
                        self.forward(&model)?;
                    }
                }
                Target::Config => {
                    let config = VHeatConfig::load(path)?;
                    // Build only what is small enough to build quickly; validation has already
                    // refused the impossible ones.
                    let small = config.depths.len() <= 4
                        && config
                            .depths
                            .iter()
                            .fold(0usize, |a, &b| a.saturating_add(b))
                            <= 8
                        && config.dims.iter().all(|&d| d <= 64)
                        && config.img_size <= 128
                        && config.num_classes <= 1000
                        && config.in_chans <= 8
                        && config.mlp_ratio <= 8.0;
                    if small {
                        let model = config.try_init(&self.device)?;
                        let side = model.min_input_size();
                        let x = Tensor::<4>::zeros([1, config.in_chans, side, side], &self.device);
                        let y = model.try_forward(x)?;
                        assert!(y.dims()[0] == 1);
                    }
                }
            }
            Ok(())
        }));
        match result {
            Ok(Ok(())) => Outcome::Ok,
            Ok(Err(e)) => Outcome::Err(kind(&e)),
            Err(payload) => Outcome::Panic(
                payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "non-string panic".into()),
            ),
        }
    }

    /// Runs a loaded model once. Its logits may overflow (a mutated tensor can hold finite but
    /// huge values such as 1e38, which the loader rightly accepts); running must not panic.
    fn forward(&self, model: &VHeat) -> Result<(), Error> {
        let x = Tensor::<4>::ones([1, 3, 32, 32], &self.device);
        let y = model.try_forward(x)?;
        let v = y.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
        assert_eq!(v.len(), 5, "micro_base has 5 classes");
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Byte-level mutations
// ---------------------------------------------------------------------------------------------

const INTERESTING_U32: [u32; 10] = [
    0,
    1,
    2,
    0x7f,
    0x80,
    0xff,
    0xffff,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
];

/// Applies one to four random edits to `data` inside `lo..hi` (clamped to the data).
pub fn mutate_bytes(rng: &mut Rng, data: &mut Vec<u8>, lo: usize, hi: usize) {
    for _ in 0..1 + rng.below(4) {
        let hi = hi.min(data.len());
        if lo >= hi {
            data.push(rng.next() as u8);
            continue;
        }
        let at = lo + rng.below(hi - lo);
        match rng.below(9) {
            0 => data[at] ^= 1 << rng.below(8),
            1 => data[at] = rng.next() as u8,
            2 => data[at] = *rng.pick(&[0u8, 0xff, 0x7f, 0x80, b'0', b'9', b'"', b'\n']),
            3 => {
                let v = rng.pick(&INTERESTING_U32).to_le_bytes();
                let n = v.len().min(data.len() - at);
                data[at..at + n].copy_from_slice(&v[..n]);
            }
            4 => {
                let end = (at + 1 + rng.below(64)).min(data.len());
                data.drain(at..end);
            }
            5 => {
                let end = (at + 1 + rng.below(64)).min(data.len());
                let span: Vec<u8> = data[at..end].to_vec();
                let to = lo + rng.below(hi - lo);
                data.splice(to..to, span);
            }
            6 => {
                let n = 1 + rng.below(16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                data.splice(at..at, bytes);
            }
            7 => data.truncate(at),
            _ => {
                // Copy a span from elsewhere in the file over this position (splice within).
                let from = rng.below(data.len());
                let n = (1 + rng.below(32))
                    .min(data.len() - from)
                    .min(data.len() - at);
                let span: Vec<u8> = data[from..from + n].to_vec();
                data[at..at + n].copy_from_slice(&span);
            }
        }
    }
}

/// The `.pth` files of `tests/fixtures/pth_corpus/`, sorted by name, with their zip entries.
fn torch_corpus() -> Vec<(Vec<u8>, Option<ZipEntries>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pth_corpus");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pth"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            let entries = pth::read_zip(&bytes);
            (bytes, entries)
        })
        .collect()
}

fn pth_input(rng: &mut Rng, seeds: &Seeds) -> Vec<u8> {
    // The seed: the fixture half of the time, else one of the files torch.save wrote.
    let (seed, entries) = if seeds.pth_corpus.is_empty() || rng.chance(0.5) {
        (&seeds.pth, Some(&seeds.pth_entries))
    } else {
        let (bytes, entries) = &seeds.pth_corpus[rng.below(seeds.pth_corpus.len())];
        (bytes, entries.as_ref())
    };
    let Some(entries) = entries else {
        // A legacy file: the stream itself.
        let mut data = seed.clone();
        let len = data.len();
        if rng.chance(0.3) {
            return data[..rng.below(len)].to_vec();
        }
        mutate_bytes(rng, &mut data, 0, len);
        return data;
    };
    match rng.below(10) {
        // The pickle (the structure), zip rebuilt with correct checksums.
        0..=4 => {
            let mut entries = entries.clone();
            let pickle = pth::pickle_mut(&mut entries);
            let len = pickle.len();
            mutate_bytes(rng, pickle, 0, len);
            if rng.chance(0.2) {
                let i = rng.below(entries.len());
                match rng.below(3) {
                    0 => {
                        entries.remove(i);
                    }
                    1 => {
                        let l = entries[i].1.len();
                        entries[i].1.truncate(rng.below(l + 1));
                    }
                    _ => entries[i]
                        .1
                        .extend((0..rng.below(64)).map(|_| rng.next() as u8)),
                }
            }
            pth::write_zip(&entries)
        }
        // Storage data, zip rebuilt: wrong lengths, NaN/inf bit patterns.
        5 => {
            let mut entries = entries.clone();
            let i = rng.below(entries.len());
            let l = entries[i].1.len();
            mutate_bytes(rng, &mut entries[i].1, 0, l);
            pth::write_zip(&entries)
        }
        // The zip structure at the end of the file (central directory, end record).
        6 | 7 => {
            let mut data = seed.clone();
            let len = data.len();
            mutate_bytes(rng, &mut data, len.saturating_sub(12_000), len);
            data
        }
        8 => {
            let mut data = seed.clone();
            let len = data.len();
            mutate_bytes(rng, &mut data, 0, len);
            data
        }
        _ => seed[..rng.below(seed.len())].to_vec(),
    }
}

const DTYPES: [&str; 14] = [
    "F32", "F16", "BF16", "F64", "I64", "I32", "I8", "U8", "BOOL", "F8_E4M3", "F8_E5M2", "U64",
    "F4", "XX",
];

fn numbers() -> [&'static str; 12] {
    [
        "0",
        "1",
        "-1",
        "3",
        "64",
        "4294967295",
        "4294967296",
        "18446744073709551615",
        "18446744073709551616",
        "1e308",
        "0.5",
        "9223372036854775807",
    ]
}

/// Replaces one token of a JSON-ish text: a number, a string or a dtype.
fn mutate_json_token(rng: &mut Rng, text: &str) -> String {
    let bytes = text.as_bytes();
    // Token starts: digits after a non-digit, or quotes.
    let starts: Vec<usize> = (0..bytes.len())
        .filter(|&i| {
            (bytes[i].is_ascii_digit() && (i == 0 || !bytes[i - 1].is_ascii_digit()))
                || bytes[i] == b'"'
        })
        .collect();
    if starts.is_empty() {
        return text.to_string();
    }
    let at = *rng.pick(&starts);
    let end = if bytes[at] == b'"' {
        bytes[at + 1..]
            .iter()
            .position(|&b| b == b'"')
            .map_or(bytes.len(), |p| at + p + 2)
    } else {
        bytes[at..]
            .iter()
            .position(|b| !b.is_ascii_digit())
            .map_or(bytes.len(), |p| at + p)
    };
    let replacement = match rng.below(5) {
        0 => format!("\"{}\"", rng.pick(&DTYPES)),
        1 => "null".to_string(),
        2 => "[]".to_string(),
        3 => format!("[{}, {}]", rng.pick(&numbers()), rng.pick(&numbers())),
        _ => rng.pick(&numbers()).to_string(),
    };
    format!(
        "{}{}{}",
        &text[..at],
        replacement,
        &text[end.min(text.len())..]
    )
}

fn safetensors_input(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let header_len = u64::from_le_bytes(seed[..8].try_into().unwrap()) as usize;
    let header = std::str::from_utf8(&seed[8..8 + header_len]).unwrap();
    let body = &seed[8 + header_len..];
    let rebuild = |header: &[u8], body: &[u8]| {
        let mut out = (header.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(header);
        out.extend_from_slice(body);
        out
    };
    match rng.below(10) {
        0..=4 => {
            let mut h = header.to_string();
            for _ in 0..1 + rng.below(3) {
                h = mutate_json_token(rng, &h);
            }
            rebuild(h.as_bytes(), body)
        }
        5 | 6 => {
            let mut h = header.as_bytes().to_vec();
            let len = h.len();
            mutate_bytes(rng, &mut h, 0, len);
            rebuild(&h, body)
        }
        7 => {
            let mut data = seed.to_vec();
            let v = match rng.below(3) {
                0 => rng.next(),
                1 => rng.below(header_len * 2) as u64,
                _ => u64::MAX - rng.below(16) as u64,
            };
            data[..8].copy_from_slice(&v.to_le_bytes());
            data
        }
        8 => {
            let mut data = seed.to_vec();
            let len = data.len();
            mutate_bytes(rng, &mut data, 0, len);
            data
        }
        _ => seed[..rng.below(seed.len())].to_vec(),
    }
}

fn burnpack_input(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut data = seed.to_vec();
    let len = data.len();
    match rng.below(10) {
        // The header and metadata at the start of the file.
        0..=5 => mutate_bytes(rng, &mut data, 0, 4096.min(len)),
        6..=8 => mutate_bytes(rng, &mut data, 0, len),
        _ => data.truncate(rng.below(len)),
    }
    data
}

/// A random JSON value of bounded depth.
fn random_json(rng: &mut Rng, depth: usize) -> String {
    match if depth == 0 {
        rng.below(4)
    } else {
        rng.below(6)
    } {
        0 => rng.pick(&numbers()).to_string(),
        1 => rng.pick(&["true", "false", "null"]).to_string(),
        2 => format!(
            "\"{}\"",
            rng.pick(&["tiny", "", "depths", "dims", "\\u0000", "é"])
        ),
        3 => format!("{}", rng.next() as i64 as f64 / 1e9),
        4 => {
            let n = rng.below(5);
            let items: Vec<String> = (0..n).map(|_| random_json(rng, depth - 1)).collect();
            format!("[{}]", items.join(","))
        }
        _ => {
            const KEYS: [&str; 10] = [
                "depths",
                "dims",
                "num_classes",
                "img_size",
                "in_chans",
                "post_norm",
                "layer_scale",
                "drop_path_rate",
                "mlp_ratio",
                "other",
            ];
            let n = rng.below(8);
            let items: Vec<String> = (0..n)
                .map(|_| format!("\"{}\":{}", rng.pick(&KEYS), random_json(rng, depth - 1)))
                .collect();
            format!("{{{}}}", items.join(","))
        }
    }
}

fn config_input(rng: &mut Rng, seeds: &[String]) -> Vec<u8> {
    let seed = rng.pick(seeds).clone();
    match rng.below(10) {
        0..=4 => {
            let mut t = seed;
            for _ in 0..1 + rng.below(3) {
                t = mutate_json_token(rng, &t);
            }
            t.into_bytes()
        }
        5 => {
            // Drop or duplicate a `"key": value` pair.
            let pairs: Vec<&str> = seed
                .trim_matches(|c| c == '{' || c == '}')
                .split(",\"")
                .collect();
            let mut kept: Vec<String> = pairs
                .iter()
                .map(|p| p.trim_start_matches('"').to_string())
                .collect();
            let i = rng.below(kept.len());
            if rng.chance(0.5) {
                kept.remove(i);
            } else {
                let dup = kept[i].clone();
                kept.push(dup);
            }
            format!(
                "{{{}}}",
                kept.iter()
                    .map(|p| format!("\"{p}"))
                    .collect::<Vec<_>>()
                    .join(",")
            )
            .into_bytes()
        }
        6 | 7 => {
            let mut data = seed.into_bytes();
            let len = data.len();
            mutate_bytes(rng, &mut data, 0, len);
            data
        }
        _ => random_json(rng, 3).into_bytes(),
    }
}

/// Runs `count` inputs, cycling through the targets, from `seed`; returns every panic as
/// `(target, input index, message)`.
pub fn smoke(harness: &Harness, seed: u64, count: usize) -> Vec<(Target, usize, String)> {
    let mut rng = Rng::new(seed);
    let mut panics = Vec::new();
    for i in 0..count {
        let target = Target::ALL[i % Target::ALL.len()];
        let input = harness.input(&mut rng, target);
        if let Outcome::Panic(msg) = harness.run(&mut rng, target, &input) {
            panics.push((target, i, msg));
        }
    }
    panics
}
