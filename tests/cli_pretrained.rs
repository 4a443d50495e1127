//! `vheat classify --pretrained tiny IMAGE` end to end through the built binary, against an
//! HTTP/1.1 server on 127.0.0.1 that serves a vHeat-T checkpoint where the registry expects it
//! (`{mirror}/vheatcls/vHeat_tiny.pth`) and counts requests: the first run downloads it once
//! and prints a top 5, the second run makes zero requests and prints the same; offline with an
//! empty cache and a malformed mirror are errors, not panics. No test reaches GitHub: every
//! child process gets `VHEAT_MIRROR` (or `--mirror`) and its own `VHEAT_CACHE`.
//!
//! The checkpoint is a real vHeat-T-shaped PyTorch `.pth` (random weights) in the reference's
//! key layout: the keys, shapes and values of a randomly initialised model exported with
//! [`VHeat::save_pytorch_safetensors`], re-packed as `torch.save` would write them by
//! `common/pth.rs` (the crate writes no `.pth`).
#![cfg(all(feature = "cli", feature = "pretrained"))]

mod common;
#[path = "common/pth.rs"]
mod pth;

#[path = "common/local_server.rs"]
mod local_server;
#[path = "common/onnx_runtime.rs"]
mod onnx_runtime;
use local_server::LocalServer;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use burn::prelude::*;
use burn::tensor::activation::softmax;
use common::{cpu, unique_temp_dir};
use pth::{write_pth, StateTensor};
use sha2::{Digest, Sha256};
use vheat::pretrained::{Weights, MIRROR_ENV, RELEASE_BASE_URL};
use vheat::{VHeat, VHeatConfig};

/// Where the registry puts vHeat-T under a mirror, written out from the reference's README
/// (`releases/download/vheatcls/vHeat_tiny.pth`), not taken from the crate.
const TINY_PATH: &str = "/vheatcls/vHeat_tiny.pth";
const TINY_FILE: &str = "vHeat_tiny.pth";

/// A temporary directory, removed when dropped (also when a test fails).
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        Self(unique_temp_dir(tag))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An HTTP/1.1 server on an ephemeral port of 127.0.0.1 that answers `GET TINY_PATH` with
/// `body` (200, whole file, no ranges) and anything else with 404, and records every request
/// line's path. It stops when dropped (or after 10 minutes); each connection is answered and
/// closed.
struct Server(LocalServer<String>);

impl Server {
    fn start(body: Vec<u8>) -> Self {
        Server(LocalServer::start(
            Duration::from_secs(600),
            move |stream| answer(stream, &body),
        ))
    }

    fn requests(&self) -> Vec<String> {
        self.0.requests()
    }
}

impl std::ops::Deref for Server {
    type Target = LocalServer<String>;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

/// Reads one request's head and answers it; returns the requested path.
fn answer(stream: TcpStream, body: &[u8]) -> Option<String> {
    stream.set_nonblocking(false).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let path = line.split_whitespace().nth(1)?.to_string();
    for _ in 0..100 {
        let mut header = String::new();
        if reader.read_line(&mut header).ok()? == 0 || header.trim().is_empty() {
            break;
        }
    }
    let mut out = stream;
    let (status, body) = if path == TINY_PATH {
        ("200 OK", body)
    } else {
        ("404 Not Found", &b""[..])
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = out.write_all(head.as_bytes());
    let _ = out.write_all(body);
    let _ = out.flush();
    Some(path)
}

/// A URL on 127.0.0.1 where nothing listens (a port that was just free).
fn closed_port_url() -> String {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("http://127.0.0.1:{port}")
}

/// How much the classifier's weights are scaled in the served checkpoint: a random head's
/// logits are nearly equal (every probability prints as 0.10 %), a scaled one's are spread, so
/// that the top 5 and its probabilities are distinctive (here about 40, 18, 15, 7 and 4.5 %).
const HEAD_SCALE: f32 = 20.0;

/// A vHeat-T `.pth` in the reference's layout, with random weights (seeded): the crate's
/// export gives the reference's key names, shapes and values, which are re-packed as
/// `torch.save` writes them.
fn random_tiny_pth(dir: &Path) -> Vec<u8> {
    let config = VHeatConfig::tiny();
    assert_eq!(config.num_classes, 1000);
    let model = config.init_seeded(&cpu(), 7).unwrap();
    let st_path = dir.join("tiny.safetensors");
    model.save_pytorch_safetensors(&st_path).unwrap();
    drop(model);
    let bytes = std::fs::read(&st_path).unwrap();
    std::fs::remove_file(&st_path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut names: Vec<String> = st.names().into_iter().map(String::from).collect();
    names.sort();
    let mut heads = 0;
    let state: Vec<StateTensor> = names
        .into_iter()
        .map(|name| {
            let view = st.tensor(&name).unwrap();
            assert_eq!(view.dtype(), safetensors::Dtype::F32, "{name}");
            let mut values: Vec<f32> = view
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect();
            // The 1000-way linear head (weight [1000, 768] and bias [1000]).
            if view.shape()[0] == 1000 {
                heads += 1;
                values.iter_mut().for_each(|v| *v *= HEAD_SCALE);
            }
            StateTensor {
                name,
                shape: view.shape().to_vec(),
                values,
            }
        })
        .collect();
    assert_eq!(heads, 2, "expected one head weight and one head bias");
    // vHeat-T's trainable parameter count, as the PyTorch reference reports it
    // (tests/fixtures/param_counts.json).
    let params: usize = state.iter().map(|t| t.values.len()).sum();
    let published = common::fixture_json("param_counts.json")["vheat_tiny"]
        .as_u64()
        .unwrap();
    assert_eq!(params as u64, published);
    write_pth(state)
}

/// With `VHEAT_PTH_OUT=DIR` set, keeps a copy of a written `.pth` as `DIR/name` for
/// `scripts/check_pth_writer.py` (PyTorch's own reader); otherwise does nothing.
fn keep_for_torch_check(name: &str, bytes: &[u8]) {
    if let Some(dir) = std::env::var_os("VHEAT_PTH_OUT") {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(Path::new(&dir).join(name), bytes).unwrap();
    }
}

/// A 64×48 RGB PNG (a colour gradient with a square), written with the `image` crate.
fn write_image(path: &Path) {
    let img = image::RgbImage::from_fn(64, 48, |x, y| {
        let inside = (16..40).contains(&x) && (12..36).contains(&y);
        if inside {
            image::Rgb([250, 200, 20])
        } else {
            image::Rgb([(x * 4) as u8, (y * 5) as u8, 128])
        }
    });
    img.save(path).unwrap();
}

/// The `vheat` binary with a clean environment for the downloader: cache `cache`, online,
/// and `VHEAT_MIRROR` as given (a test never lets it fall back to GitHub).
fn vheat(cache: &Path, mirror_env: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vheat"));
    cmd.env("VHEAT_CACHE", cache)
        .env(MIRROR_ENV, mirror_env)
        .env_remove("VHEAT_OFFLINE");
    cmd
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The `(percent, class name)` lines printed under `image` (`"  12.34 %  tench"`).
fn printed_top(text: &str, image: &Path) -> Vec<(f64, String)> {
    let mut lines = text
        .lines()
        .skip_while(|l| *l != image.display().to_string());
    assert!(
        lines.next().is_some(),
        "{} not printed:\n{text}",
        image.display()
    );
    lines
        .take_while(|l| l.starts_with("  "))
        .map(|l| {
            let (p, name) = l
                .trim()
                .split_once(" %  ")
                .unwrap_or_else(|| panic!("not a label line: {l:?}"));
            (p.trim().parse().unwrap(), name.to_string())
        })
        .collect()
}

/// Files in `dir`, sorted (empty when it does not exist).
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|r| {
            r.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Class probabilities (in %) of `image` under the checkpoint at `pth`, computed in this
/// process with the library (direct load, no cache, no CLI) and the registry's preprocessing.
///
/// Checked once by hand against PyTorch: the reference `vHeat.py` with this very file (kept
/// with `VHEAT_PTH_OUT`) and Pillow's bicubic resize + centre crop gave the top 5 the CLI
/// printed, to all printed digits (39.74 % submarine, 18.31 % abaya, 14.73 % tub, 7.27 %
/// cinema, 4.50 % Blenheim spaniel with Burn 0.22.1's seeded initialisation).
fn direct_probabilities(pth: &Path, image: &Path) -> Vec<f64> {
    let weights = Weights::TinyIn1k;
    let model = VHeat::load_pytorch(pth, &weights.config(), &cpu()).unwrap();
    let transform = weights.preprocess().unwrap().eval_transform();
    let img = vheat::data::load_rgb(image).unwrap();
    let s = transform.size as usize;
    let x = Tensor::<4>::from_data(TensorData::new(transform.apply(&img), [1, 3, s, s]), &cpu());
    let probs: Vec<f32> = softmax(model.forward(x), 1)
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap();
    probs.into_iter().map(|p| 100.0 * p as f64).collect()
}

#[test]
fn classify_pretrained_tiny_downloads_once_then_uses_the_cache() {
    let tmp = TempDir::new("cli-pretrained");
    let body = random_tiny_pth(&tmp.0);
    keep_for_torch_check(TINY_FILE, &body);
    let image = tmp.0.join("cat.png");
    write_image(&image);
    let cache = tmp.0.join("cache");
    let server = Server::start(body.clone());

    // Expected probabilities: the same file loaded directly by the library.
    let direct_pth = tmp.0.join("direct.pth");
    std::fs::write(&direct_pth, &body).unwrap();
    let expected = direct_probabilities(&direct_pth, &image);
    std::fs::remove_file(&direct_pth).unwrap();

    // First run: `--mirror` names the server; it takes precedence over VHEAT_MIRROR, which
    // points where nothing listens (a request there would fail the run).
    let first = vheat(&cache, &closed_port_url())
        .args(["classify", "--pretrained", "tiny", "--mirror", &server.base])
        .arg(&image)
        .output()
        .unwrap();
    assert!(first.status.success(), "{}", stderr(&first));
    assert_eq!(server.requests(), vec![TINY_PATH.to_string()]);

    let top = printed_top(&stdout(&first), &image);
    assert_eq!(top.len(), 5, "{}", stdout(&first));
    let classes = vheat::data::imagenet_classes();
    let mut sorted = expected.clone();
    sorted.sort_by(|a, b| b.total_cmp(a));
    for (i, (p, name)) in top.iter().enumerate() {
        let k = classes
            .iter()
            .position(|c| *c == name.as_str())
            .unwrap_or_else(|| panic!("{name:?} is not an ImageNet class"));
        // Printed with two decimals (±0.005), plus 1e-3 for the summation order of another
        // process's forward pass.
        assert!(
            (p - expected[k]).abs() <= 0.006,
            "{name}: {p} vs {}",
            expected[k]
        );
        // In order, and among the 5 most probable (up to the same rounding).
        assert!(
            *p >= sorted[4] - 0.006,
            "{name} ({p} %) is not in the top 5"
        );
        if i > 0 {
            assert!(*p <= top[i - 1].0, "not in descending order: {top:?}");
        }
    }
    // The scaled head gives a distinctive top 5, not a uniform 0.10 %.
    assert!(top[0].0 > 1.0 && top[0].0 > top[4].0 + 1.0, "{top:?}");

    // The cache holds the file and its record (size and SHA-256, computed here with sha2).
    assert_eq!(
        listing(&cache),
        vec![TINY_FILE.to_string(), format!("{TINY_FILE}.meta.json")]
    );
    assert!(std::fs::read(cache.join(TINY_FILE)).unwrap() == body);
    let meta: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(cache.join(format!("{TINY_FILE}.meta.json"))).unwrap(),
    )
    .unwrap();
    let sha: String = Sha256::digest(&body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(meta["sha256"], sha);
    assert_eq!(meta["size"], body.len() as u64);
    assert_eq!(meta["url"], format!("{}{TINY_PATH}", server.base));

    // Second run: VHEAT_MIRROR names the same server, which would answer; the cache is used
    // and the server sees zero requests.
    let second = vheat(&cache, &server.base)
        .args(["classify", "--pretrained", "tiny"])
        .arg(&image)
        .output()
        .unwrap();
    assert!(second.status.success(), "{}", stderr(&second));
    assert_eq!(
        server.requests().len(),
        1,
        "the second run used the network"
    );
    assert_eq!(printed_top(&stdout(&second), &image), top);
    assert_eq!(
        listing(&cache),
        vec![TINY_FILE.to_string(), format!("{TINY_FILE}.meta.json")]
    );
}

/// `vheat classify --pretrained tiny` on a checkpoint that `torch.save` wrote in the
/// reference's training layout (`model`, `optimizer`, `lr_scheduler`, `max_accuracy`, `scaler`,
/// `epoch`, a yacs `CfgNode` as `config`, `model_ema`): vHeat-T's 28 M parameters as
/// `as_strided` views into one small random storage, so the file is 77 kB
/// (`tests/fixtures/pth_corpus/tiny_train.pth`, `scripts/pth_corpus.py`). The top 5 printed is
/// the one PyTorch computed with the reference's model code for the same image and
/// preprocessing (Pillow's bicubic resize, centre crop), recorded by the script; the file is
/// downloaded once and the second run makes zero requests.
#[test]
fn classify_pretrained_tiny_on_a_torch_save_training_checkpoint_prints_pytorchs_top5() {
    let tmp = TempDir::new("cli-pretrained-torch");
    let body = std::fs::read(common::fixture("pth_corpus/tiny_train.pth")).unwrap();
    let image = tmp.0.join("cat.png");
    write_image(&image);
    let cache = tmp.0.join("cache");
    let server = Server::start(body.clone());

    let first = vheat(&cache, &server.base)
        .args(["classify", "--pretrained", "tiny"])
        .arg(&image)
        .output()
        .unwrap();
    assert!(first.status.success(), "{}", stderr(&first));
    assert_eq!(server.requests(), vec![TINY_PATH.to_string()]);
    let top = printed_top(&stdout(&first), &image);

    let recorded = common::fixture_json("pth_corpus/expected.json")["tiny_top5"].clone();
    let recorded: Vec<(usize, f64)> = recorded
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e[0].as_u64().unwrap() as usize, e[1].as_f64().unwrap()))
        .collect();
    assert_eq!(top.len(), 5, "{}", stdout(&first));
    let classes = vheat::data::imagenet_classes();
    for ((p, name), (k, want)) in top.iter().zip(&recorded) {
        assert_eq!(
            name.as_str(),
            classes[*k],
            "PyTorch's top 5 is {recorded:?}; printed {top:?}"
        );
        // Printed with two decimals (±0.005), plus 1e-3 for the summation order of another
        // implementation of the same f32 computation.
        assert!(
            (p - want).abs() <= 0.006,
            "{name}: {p} % vs PyTorch's {want} %"
        );
    }

    let second = vheat(&cache, &server.base)
        .args(["classify", "--pretrained", "tiny"])
        .arg(&image)
        .output()
        .unwrap();
    assert!(second.status.success(), "{}", stderr(&second));
    assert_eq!(
        server.requests().len(),
        1,
        "the second run used the network"
    );
    assert_eq!(printed_top(&stdout(&second), &image), top);
}

#[test]
fn offline_with_an_empty_cache_is_an_error_naming_the_file() {
    let tmp = TempDir::new("cli-pretrained-offline");
    let image = tmp.0.join("cat.png");
    write_image(&image);
    let cache = tmp.0.join("cache");
    // Any bytes: the server must not be asked at all.
    let server = Server::start(b"not used".to_vec());
    let out = vheat(&cache, &server.base)
        .env("VHEAT_OFFLINE", "1")
        .args(["classify", "--pretrained", "tiny"])
        .arg(&image)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.starts_with("error: offline mode"), "{err}");
    assert!(
        err.contains(&cache.join(TINY_FILE).display().to_string()),
        "{err}"
    );
    assert!(
        err.contains(&format!("{}{TINY_PATH}", server.base)),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert!(server.requests().is_empty());
    assert!(listing(&cache).is_empty(), "{:?}", listing(&cache));
}

#[test]
fn a_malformed_mirror_is_an_error_before_any_download() {
    let tmp = TempDir::new("cli-pretrained-mirror");
    let image = tmp.0.join("cat.png");
    write_image(&image);
    let cache = tmp.0.join("cache");

    // From the environment.
    let out = vheat(&cache, "ftp://127.0.0.1/weights")
        .args(["classify", "--pretrained", "tiny"])
        .arg(&image)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.starts_with("error: invalid mirror URL \"ftp://127.0.0.1/weights\" (VHEAT_MIRROR)"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");

    // From the option (a valid VHEAT_MIRROR does not rescue it).
    let server = Server::start(b"not used".to_vec());
    let out = vheat(&cache, &server.base)
        .args([
            "classify",
            "--pretrained",
            "tiny",
            "--mirror",
            "127.0.0.1:1",
        ])
        .arg(&image)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.starts_with("error: invalid mirror URL \"127.0.0.1:1\" (--mirror)"),
        "{err}"
    );
    assert!(server.requests().is_empty());
    assert!(!cache.exists(), "bad input created the cache");

    // `--mirror` with `--from` (without `--pretrained`) is a parse error (status 2).
    let out = vheat(&cache, &server.base)
        .args(["classify", "--from", "x.bpk", "--mirror", &server.base])
        .arg(&image)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

/// `vheat export --pretrained tiny vheat_t.onnx --size 224` through the mirror: one download,
/// and tract runs the written file like the library runs the same checkpoint, within the parity
/// tolerance (1e-4 absolute + 1e-4 relative: float32, other summation orders through vHeat-T's
/// 12 blocks). With `VHEAT_ONNX_CHECK_DIR=DIR` the file, an input and the library's logits are
/// kept there for `scripts/check_onnx.py`, which runs them in ONNX Runtime.
#[test]
fn export_pretrained_tiny_through_the_mirror_runs_in_tract_like_the_crate() {
    let tmp = TempDir::new("cli-export-pretrained");
    let body = random_tiny_pth(&tmp.0);
    let cache = tmp.0.join("cache");
    let server = Server::start(body.clone());
    let onnx = tmp.0.join("vheat_t.onnx");
    let out = vheat(&cache, &closed_port_url())
        .args(["export", "--pretrained", "tiny", "--mirror", &server.base])
        .arg(&onnx)
        .args(["--size", "224"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(server.requests(), vec![TINY_PATH.to_string()]);
    assert!(
        stdout(&out).contains("input images [N, 3, 224, 224], output logits [N, 1000]"),
        "{}",
        stdout(&out)
    );

    let direct_pth = tmp.0.join("direct.pth");
    std::fs::write(&direct_pth, &body).unwrap();
    let model = VHeat::load_pytorch(&direct_pth, &Weights::TinyIn1k.config(), &cpu()).unwrap();
    let x = Tensor::<4>::random(
        [1, 3, 224, 224],
        burn::tensor::Distribution::Normal(0.0, 1.0),
        &cpu(),
    );
    let expected = model.forward(x.clone());
    let got = onnx_runtime::run_tract(&onnx, &x);
    assert_eq!(got.len(), 1);
    let shape = expected.dims().to_vec();
    let expected_values = common::values(expected.clone());
    common::assert_close_tol(
        "vHeat-T logits, tract vs the crate",
        &got[0].1,
        &got[0].0,
        &expected_values,
        &shape,
        common::ATOL,
        common::RTOL,
    );
    if let Some(dir) = std::env::var_os("VHEAT_ONNX_CHECK_DIR") {
        let dir = Path::new(&dir);
        std::fs::create_dir_all(dir).unwrap();
        std::fs::copy(&onnx, dir.join("pretrained_tiny_224.onnx")).unwrap();
        onnx_runtime::write_io(&dir.join("pretrained_tiny_224.io.safetensors"), x, expected);
    }
}

#[test]
fn help_documents_the_mirror_and_its_default() {
    let out = Command::new(env!("CARGO_BIN_EXE_vheat"))
        .args(["classify", "--help"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = stdout(&out);
    assert!(help.contains("--mirror <URL>"), "{help}");
    assert!(
        help.contains(&format!(
            "[default: ${MIRROR_ENV} if set, else {RELEASE_BASE_URL}]"
        )),
        "{help}"
    );
}

/// The writer of `common/pth.rs` on a small state dict with values fixed by a formula, read
/// back with Burn's PyTorch reader. With `VHEAT_PTH_OUT=DIR` the file is also kept there
/// (`small.pth`) for `scripts/check_pth_writer.py`, which loads it with `torch.load(...,
/// weights_only=True)` and checks the same formula (done once when the writer was written:
/// PyTorch 2.15 read it and `vHeat_tiny.pth` exactly).
#[test]
fn the_pth_writer_writes_what_a_pytorch_reader_reads() {
    // Value j of tensor i is i + j / 1000 (see scripts/check_pth_writer.py).
    let shapes: [(&str, &[usize]); 4] = [
        ("a.weight", &[2, 3]),
        ("b.bias", &[300]),
        ("c.scale", &[]),
        ("stage.0.conv.weight", &[4, 1, 3, 3]),
    ];
    let state = shapes
        .iter()
        .enumerate()
        .map(|(i, (name, shape))| StateTensor {
            name: name.to_string(),
            shape: shape.to_vec(),
            values: (0..shape.iter().product::<usize>())
                .map(|j| i as f32 + j as f32 / 1000.0)
                .collect(),
        })
        .collect();
    let bytes = write_pth(state);
    let tmp = TempDir::new("cli-pretrained-pth");
    let path = tmp.0.join("small.pth");
    std::fs::write(&path, &bytes).unwrap();
    keep_for_torch_check("small.pth", &bytes);
    let reader = burn::store::pytorch::PytorchReader::with_top_level_key(&path, "model").unwrap();
    let mut keys = reader.keys();
    keys.sort();
    assert_eq!(
        keys,
        shapes
            .iter()
            .map(|(n, _)| n.to_string())
            .collect::<Vec<_>>()
    );
    for (i, (name, shape)) in shapes.iter().enumerate() {
        let t = reader.get(name).unwrap();
        assert_eq!(t.shape(), *shape, "{name}");
        let values: Vec<f32> = t
            .read()
            .unwrap()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        let want: Vec<f32> = (0..values.len())
            .map(|j| i as f32 + j as f32 / 1000.0)
            .collect();
        assert_eq!(values, want, "{name}");
    }
}
