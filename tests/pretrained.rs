//! Published weights by name and their download cache, against a small HTTP/1.1 server on
//! 127.0.0.1 that serves the micro fixture checkpoint (no test reaches GitHub).
#![cfg(feature = "pretrained")]

#[macro_use]
mod common;

#[path = "common/local_server.rs"]
mod local_server;
use local_server::LocalServer;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use sha2::{Digest, Sha256};
use vheat::pretrained::{Cache, Task, Weights};
use vheat::{Error, VHeat, VHeatConfig};

const FILE: &str = "micro_tiny.pth";

/// What the test server does with each request.
#[derive(Clone)]
enum Behaviour {
    /// Serve `body`; answer a `Range` request with 206 when `ranges` is true, else with 200.
    Serve { body: Vec<u8>, ranges: bool },
    /// Announce all of `body` but send only its first `at` bytes, then close the connection.
    Drop { body: Vec<u8>, at: usize },
    /// Answer every request with this status and no body.
    Status(u16),
    /// Announce no length and send zeros until the client hangs up (or 64 MiB).
    Endless,
    /// Announce this many bytes and send a few.
    Claims(u64),
}

/// One request as the server saw it.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    range: Option<String>,
}

/// A one-behaviour HTTP/1.1 server on an ephemeral port of 127.0.0.1. It stops by itself
/// after 60 s, or when dropped; every connection is answered and closed.
struct Server(LocalServer<Seen>);

impl Server {
    fn start(behaviour: Behaviour) -> Self {
        Server(LocalServer::start(Duration::from_secs(60), move |stream| {
            answer(stream, &behaviour)
        }))
    }

    fn url(&self) -> String {
        format!("{}/files/{FILE}", self.0.base)
    }

    fn requests(&self) -> Vec<Seen> {
        self.0.requests()
    }
}

impl std::ops::Deref for Server {
    type Target = LocalServer<Seen>;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

/// Reads one request's head and answers it according to `behaviour`.
fn answer(stream: TcpStream, behaviour: &Behaviour) -> Option<Seen> {
    stream.set_nonblocking(false).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let path = line.split_whitespace().nth(1)?.to_string();
    let mut range = None;
    for _ in 0..100 {
        let mut header = String::new();
        if reader.read_line(&mut header).ok()? == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.trim().eq_ignore_ascii_case("range") {
                range = Some(value.trim().to_string());
            }
        }
    }
    let mut out = stream;
    let head = |status: &str, len: usize, extra: &str| {
        format!("HTTP/1.1 {status}\r\nContent-Length: {len}\r\n{extra}Connection: close\r\n\r\n")
    };
    match behaviour {
        Behaviour::Serve { body, ranges } => {
            let start = match (&range, ranges) {
                (Some(r), true) => r
                    .strip_prefix("bytes=")
                    .and_then(|r| r.strip_suffix('-'))
                    .and_then(|s| s.parse::<usize>().ok()),
                _ => None,
            };
            match start {
                Some(s) if s < body.len() => {
                    let extra = format!(
                        "Content-Range: bytes {s}-{}/{}\r\n",
                        body.len() - 1,
                        body.len()
                    );
                    let _ = out
                        .write_all(head("206 Partial Content", body.len() - s, &extra).as_bytes());
                    let _ = out.write_all(&body[s..]);
                }
                Some(_) => {
                    let extra = format!("Content-Range: bytes */{}\r\n", body.len());
                    let _ = out.write_all(head("416 Range Not Satisfiable", 0, &extra).as_bytes());
                }
                None => {
                    let _ = out.write_all(head("200 OK", body.len(), "").as_bytes());
                    let _ = out.write_all(body);
                }
            }
        }
        Behaviour::Drop { body, at } => {
            let _ = out.write_all(head("200 OK", body.len(), "").as_bytes());
            let _ = out.write_all(&body[..*at]);
        }
        Behaviour::Status(code) => {
            let _ = out.write_all(head(&format!("{code} Test"), 0, "").as_bytes());
        }
        Behaviour::Endless => {
            let _ = out.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
            let chunk = vec![0u8; 1 << 16];
            for _ in 0..1024 {
                if out.write_all(&chunk).is_err() {
                    break;
                }
            }
        }
        Behaviour::Claims(len) => {
            let head =
                format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n");
            let _ = out.write_all(head.as_bytes());
            let _ = out.write_all(&[0u8; 4096]);
        }
    }
    let _ = out.flush();
    Some(Seen { path, range })
}

fn fixture_bytes() -> Vec<u8> {
    std::fs::read(fixture(FILE)).unwrap()
}

fn config() -> VHeatConfig {
    fixture_config("micro_tiny.json")
}

fn cache(dir: &Path, server: &Server) -> Cache {
    Cache::new(dir)
        .with_base_url(server.base.clone())
        .with_progress(false)
}

fn logits(model: &VHeat) -> Vec<f32> {
    let fx = Tensors::open("micro_tiny.io.safetensors");
    values(model.forward(fx.get::<4>("x64.input", &cpu())))
}

/// Files in the cache directory, sorted (empty when it does not exist).
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

fn final_path(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

#[test]
fn first_fetch_downloads_and_caches_second_makes_no_request() {
    let server = Server::start(Behaviour::Serve {
        body: fixture_bytes(),
        ranges: true,
    });
    let dir = unique_temp_dir("pretrained-first");
    let cache = cache(&dir, &server);
    let model = cache
        .load_url(&server.url(), FILE, &config(), &cpu())
        .unwrap();
    let direct = VHeat::load_pytorch(fixture(FILE), &config(), &cpu()).unwrap();
    // Same bytes, same loader, same device: bit-identical logits.
    assert_eq!(logits(&model), logits(&direct));
    assert_eq!(server.requests().len(), 1);
    assert_eq!(server.requests()[0].path, format!("/files/{FILE}"));
    assert_eq!(std::fs::read(final_path(&dir)).unwrap(), fixture_bytes());
    assert_eq!(
        listing(&dir),
        vec![FILE.to_string(), format!("{FILE}.meta.json")]
    );

    // The record holds the file's size and SHA-256 (computed here with sha2 directly).
    let meta: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join(format!("{FILE}.meta.json"))).unwrap(),
    )
    .unwrap();
    let sha: String = Sha256::digest(fixture_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(meta["sha256"], sha);
    assert_eq!(meta["size"], fixture_bytes().len() as u64);
    assert_eq!(meta["url"], server.url());

    // Again, by path and by model: served from the cache.
    let path = cache.fetch_url(&server.url(), FILE, &config()).unwrap();
    assert_eq!(path, final_path(&dir));
    let again = cache
        .load_url(&server.url(), FILE, &config(), &cpu())
        .unwrap();
    assert_eq!(logits(&again), logits(&direct));
    assert_eq!(server.requests().len(), 1, "the cache was not used");

    // Offline with the file cached: fine, still no request.
    let offline = cache.clone().with_offline(true);
    assert_eq!(
        offline.fetch_url(&server.url(), FILE, &config()).unwrap(),
        path
    );
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn offline_without_the_file_is_an_error_and_makes_no_request() {
    let server = Server::start(Behaviour::Serve {
        body: fixture_bytes(),
        ranges: true,
    });
    let dir = unique_temp_dir("pretrained-offline");
    let cache = cache(&dir, &server).with_offline(true);
    assert!(cache.is_offline());
    let err = cache.fetch_url(&server.url(), FILE, &config()).unwrap_err();
    match &err {
        Error::NotCached { path, url } => {
            assert_eq!(path, &final_path(&dir));
            assert_eq!(url, &server.url());
        }
        other => panic!("expected NotCached, got {other}"),
    }
    assert!(err.to_string().contains("offline"), "{err}");
    assert!(server.requests().is_empty());
    assert!(listing(&dir).is_empty());
}

/// A transfer broken half-way leaves only `NAME.part`; the next fetch finishes it.
fn broken_then(ranges: bool) -> (Vec<Seen>, PathBuf) {
    let body = fixture_bytes();
    let half = body.len() / 2;
    let dir = unique_temp_dir("pretrained-broken");
    {
        let bad = Server::start(Behaviour::Drop {
            body: body.clone(),
            at: half,
        });
        let err = cache(&dir, &bad)
            .fetch_url(&bad.url(), FILE, &config())
            .unwrap_err();
        assert!(matches!(err, Error::Download { .. }), "{err}");
        assert!(err.to_string().contains(&bad.url()), "{err}");
        assert!(!final_path(&dir).exists(), "a half file got the final name");
        assert_eq!(listing(&dir), vec![format!("{FILE}.part")]);
    }
    let good = Server::start(Behaviour::Serve {
        body: body.clone(),
        ranges,
    });
    let path = cache(&dir, &good)
        .fetch_url(&good.url(), FILE, &config())
        .unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), body);
    assert_eq!(
        listing(&dir),
        vec![FILE.to_string(), format!("{FILE}.meta.json")]
    );
    let model = VHeat::load_pytorch(&path, &config(), &cpu()).unwrap();
    let direct = VHeat::load_pytorch(fixture(FILE), &config(), &cpu()).unwrap();
    assert_eq!(logits(&model), logits(&direct));
    (good.requests(), dir)
}

#[test]
fn broken_transfer_resumes_with_a_range_request() {
    let (requests, _) = broken_then(true);
    assert_eq!(requests.len(), 1);
    let half = fixture_bytes().len() / 2;
    assert_eq!(
        requests[0].range.as_deref(),
        Some(&*format!("bytes={half}-"))
    );
}

#[test]
fn broken_transfer_restarts_when_the_server_ignores_ranges() {
    // The server answers the Range request with 200 and the whole file: the client restarts.
    let (requests, _) = broken_then(false);
    assert_eq!(requests.len(), 1);
}

#[test]
fn wrong_bytes_are_not_a_checkpoint_and_are_not_kept() {
    let body: Vec<u8> = b"<html>not a checkpoint</html>".repeat(100);
    let server = Server::start(Behaviour::Serve { body, ranges: true });
    let dir = unique_temp_dir("pretrained-wrong");
    let err = cache(&dir, &server)
        .fetch_url(&server.url(), FILE, &config())
        .unwrap_err();
    match &err {
        Error::NotACheckpoint { path, url, .. } => {
            assert!(path.starts_with(&dir), "{}", path.display());
            assert_eq!(url, &server.url());
        }
        other => panic!("expected NotACheckpoint, got {other}"),
    }
    assert!(listing(&dir).is_empty(), "{:?}", listing(&dir));
}

#[test]
fn a_checkpoint_for_another_config_is_not_kept() {
    // The registry's tiny entry, with the release host replaced by the test server: the micro
    // checkpoint is a valid `.pth` but not vHeat-T, so the check refuses it.
    let server = Server::start(Behaviour::Serve {
        body: fixture_bytes(),
        ranges: true,
    });
    let dir = unique_temp_dir("pretrained-registry");
    let cache = cache(&dir, &server);
    assert_eq!(
        cache.url_of(Weights::TinyIn1k),
        format!("{}/vheatcls/vHeat_tiny.pth", server.base)
    );
    let err = cache.fetch(Weights::TinyIn1k).unwrap_err();
    assert!(matches!(err, Error::NotACheckpoint { .. }), "{err}");
    assert!(err.to_string().contains("does not match"), "{err}");
    assert_eq!(server.requests()[0].path, "/vheatcls/vHeat_tiny.pth");
    assert!(listing(&dir).is_empty(), "{:?}", listing(&dir));
}

#[test]
fn http_404_is_an_error_naming_the_url() {
    let server = Server::start(Behaviour::Status(404));
    let dir = unique_temp_dir("pretrained-404");
    let err = cache(&dir, &server)
        .fetch_url(&server.url(), FILE, &config())
        .unwrap_err();
    match &err {
        Error::HttpStatus { url, status } => {
            assert_eq!(*status, 404);
            assert_eq!(url, &server.url());
        }
        other => panic!("expected HttpStatus, got {other}"),
    }
    assert!(err.to_string().contains(&server.url()), "{err}");
    assert!(!final_path(&dir).exists());
}

#[test]
fn connection_refused_is_an_error_naming_the_url() {
    // A port that was just free: bind, read the port, close.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/files/{FILE}");
    let dir = unique_temp_dir("pretrained-refused");
    let err = Cache::new(&dir)
        .with_progress(false)
        .fetch_url(&url, FILE, &config())
        .unwrap_err();
    match &err {
        Error::Download { url: u, .. } => assert_eq!(u, &url),
        other => panic!("expected Download, got {other}"),
    }
    assert!(!final_path(&dir).exists());
}

#[test]
fn an_altered_cached_file_is_a_checksum_mismatch() {
    let server = Server::start(Behaviour::Serve {
        body: fixture_bytes(),
        ranges: true,
    });
    let dir = unique_temp_dir("pretrained-altered");
    let cache = cache(&dir, &server);
    let path = cache.fetch_url(&server.url(), FILE, &config()).unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let err = cache.fetch_url(&server.url(), FILE, &config()).unwrap_err();
    match &err {
        Error::ChecksumMismatch { path: p, .. } => assert_eq!(p, &path),
        other => panic!("expected ChecksumMismatch, got {other}"),
    }
    let err = cache
        .load_url(&server.url(), FILE, &config(), &cpu())
        .unwrap_err();
    assert!(matches!(err, Error::ChecksumMismatch { .. }), "{err}");
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn registry_names_parse() {
    for (name, expected) in [
        ("tiny", Weights::TinyIn1k),
        ("vheat_tiny", Weights::TinyIn1k),
        ("vHeat-Small", Weights::SmallIn1k),
        ("b", Weights::BaseIn1k),
        ("base_det", Weights::BaseCocoMaskRcnn1x),
        ("vheat_tiny_det_ms3x", Weights::TinyCocoMaskRcnn3x),
        ("tiny-seg", Weights::TinyAde20kUperNet),
    ] {
        assert_eq!(name.parse::<Weights>().unwrap(), expected, "{name}");
    }
    let err = "huge".parse::<Weights>().unwrap_err();
    match &err {
        Error::UnknownWeights { name, known } => {
            assert_eq!(name, "huge");
            assert!(known.contains("vheat_tiny") && known.contains("vheat_base_seg"));
        }
        other => panic!("expected UnknownWeights, got {other}"),
    }
    assert!(err.to_string().contains("vheat_small_det"), "{err}");
}

#[test]
fn registry_entries_match_the_reference_readme() {
    // Numbers and file names copied from the README of MzeroMiko/vHeat.
    assert_eq!(Weights::all().len(), 10);
    let top1: Vec<f64> = [Weights::TinyIn1k, Weights::SmallIn1k, Weights::BaseIn1k]
        .map(|w| w.reported()[0].value)
        .to_vec();
    assert_eq!(top1, vec![82.2, 83.6, 83.9]);
    assert_eq!(
        Weights::SmallIn1k.url(),
        "https://github.com/MzeroMiko/vHeat/releases/download/vheatcls/vHeat_small.pth"
    );
    assert_eq!(Weights::TinyAde20kUperNet.file_name(), "vHeat_tiny_seg.pth");
    assert_eq!(Weights::BaseCocoMaskRcnn1x.task(), Task::Detection);
    assert_eq!(Weights::BaseIn1k.config().dims, vec![128, 256, 512, 1024]);
    assert_eq!(Weights::TinyCocoMaskRcnn1x.config().img_size, 512);
    assert_eq!(Weights::TinyCocoMaskRcnn1x.config().num_classes, 0);
    let p = Weights::TinyIn1k.preprocess().unwrap();
    // timm's convention: 224 / 0.875 = 256 for the shorter side.
    assert_eq!(p.eval_transform().resize, 256);
    assert!(Weights::BaseAde20kUperNet.preprocess().is_none());
}

#[test]
fn an_unwritable_cache_is_an_error_naming_the_path() {
    // The cache "directory" is a regular file: it cannot be created, so nothing is downloaded.
    let server = Server::start(Behaviour::Serve {
        body: fixture_bytes(),
        ranges: true,
    });
    let dir = unique_temp_dir("pretrained-unwritable");
    std::fs::create_dir_all(&dir).unwrap();
    let not_a_dir = dir.join("file");
    std::fs::write(&not_a_dir, b"x").unwrap();
    let err = cache(&not_a_dir, &server)
        .fetch_url(&server.url(), FILE, &config())
        .unwrap_err();
    match &err {
        Error::CacheIo { path, .. } => assert_eq!(path, &not_a_dir),
        other => panic!("expected CacheIo, got {other}"),
    }
    assert!(server.requests().is_empty());
}

/// Issue 28, case 9: a response without a length, or one that claims far more than a
/// checkpoint can have, is refused by the size limit, and no partial file is kept.
#[test]
fn an_unbounded_or_oversized_response_is_refused_and_leaves_no_part_file() {
    for (behaviour, tag) in [
        (Behaviour::Endless, "endless"),
        (Behaviour::Claims(1_000_000_000_000), "claims"),
    ] {
        let server = Server::start(behaviour);
        let dir = unique_temp_dir(&format!("pretrained-{tag}"));
        // A 1 MiB limit keeps the test small; the default is the model's own
        // (`download_limit`, checked below).
        let err = cache(&dir, &server)
            .with_max_download(1 << 20)
            .fetch_url(&server.url(), FILE, &config())
            .unwrap_err();
        assert!(matches!(err, Error::DownloadRefused { .. }), "{tag}: {err}");
        assert!(listing(&dir).is_empty(), "{tag}: {:?}", listing(&dir));
    }
    // The default limit: a generous multiple of the weights, far below 10^12 bytes.
    let limit = vheat::pretrained::download_limit(&VHeatConfig::base());
    assert!(limit > 1 << 30 && limit < 4 << 30, "{limit}");
    let free = vheat::pretrained::free_space(&std::env::temp_dir());
    assert!(free.is_some_and(|f| f > 0), "{free:?}");
}
