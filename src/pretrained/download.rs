//! Downloading checkpoints once into a local cache, resuming broken transfers, and checking
//! every later read against the size and SHA-256 recorded at download time.
//!
//! Layout of the cache directory, per file `NAME`:
//! - `NAME`: the complete, verified checkpoint;
//! - `NAME.meta.json`: `{"url", "size", "sha256"}` recorded when `NAME` was downloaded;
//! - `NAME.part`: a transfer in progress or broken off (resumed with an HTTP `Range` request
//!   when the server supports it, else restarted).
//!
//! A file only gets its final name once it is complete, its size is the announced one, and the
//! model loader accepted it; nothing half-written is ever under `NAME`. No transfer grows past
//! the model's size limit or the disk's free space (see [`super::download_limit`]); a refused
//! one leaves no `NAME.part`.

use std::fs::{self, File, OpenOptions};
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use burn::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::bounds::TransferBounds;
use super::mirror::{
    cache_dir_from, mirror_from, offline_from, parse_mirror, CACHE_ENV, MIRROR_ENV, OFFLINE_ENV,
};
use super::{load_file, Task, Weights, RELEASE_BASE_URL};
use crate::error::{Error, Result};
use crate::vheat::{VHeat, VHeatConfig};

/// What is recorded beside a downloaded file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Meta {
    url: String,
    size: u64,
    sha256: String,
}

/// A cache directory for downloaded checkpoints, and where to download them from.
///
/// ```no_run
/// use burn::prelude::*;
/// use vheat::pretrained::{Cache, Weights};
///
/// let cache = Cache::from_env()?; // VHEAT_CACHE, VHEAT_OFFLINE, VHEAT_MIRROR
/// let path = cache.fetch(Weights::TinyIn1k)?; // downloads once, then reuses
/// let model = cache.load(Weights::TinyIn1k, &Device::default())?;
/// # Ok::<(), vheat::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
    base_url: String,
    offline: bool,
    progress: bool,
    timeout: Duration,
    max_download: Option<u64>,
}

impl Cache {
    /// A cache in `dir` (created on first download), downloading from GitHub
    /// ([`RELEASE_BASE_URL`]), online, with a progress bar when stderr is a terminal.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            base_url: RELEASE_BASE_URL.to_string(),
            offline: false,
            progress: true,
            timeout: Duration::from_secs(30),
            max_download: None,
        }
    }

    /// The cache the environment asks for: directory [`CACHE_ENV`], else the user cache
    /// folder + `vheat` ([`Error::NoCacheDir`] when there is neither); offline when
    /// [`OFFLINE_ENV`] says so ([`offline_from`]); downloading from the mirror [`MIRROR_ENV`]
    /// names, else from GitHub ([`mirror_from`]; a malformed mirror is
    /// [`Error::InvalidMirror`]).
    pub fn from_env() -> Result<Self> {
        Self::from_env_with_mirror(None)
    }

    /// Like [`from_env`](Self::from_env), except that `mirror`, when given (e.g. a
    /// `--mirror` option), is the base URL to download from and [`MIRROR_ENV`] is not read.
    ///
    /// # Errors
    /// [`Error::NoCacheDir`]; [`Error::InvalidMirror`] for a malformed `mirror` (or
    /// [`MIRROR_ENV`] value, when `mirror` is `None`).
    pub fn from_env_with_mirror(mirror: Option<&str>) -> Result<Self> {
        let base_url = match mirror {
            Some(url) => parse_mirror(url, "--mirror")?,
            None => match std::env::var_os(MIRROR_ENV) {
                None => mirror_from(None)?,
                Some(v) => match v.to_str() {
                    Some(v) => mirror_from(Some(v))?,
                    None => {
                        return Err(Error::InvalidMirror {
                            origin: MIRROR_ENV.to_string(),
                            value: v.to_string_lossy().into_owned(),
                            reason: "it is not valid UTF-8".into(),
                        })
                    }
                },
            },
        };
        let dir = cache_dir_from(std::env::var_os(CACHE_ENV), dirs::cache_dir())
            .ok_or(Error::NoCacheDir)?;
        let offline = offline_from(std::env::var(OFFLINE_ENV).ok().as_deref());
        Ok(Self::new(dir).with_offline(offline).with_base_url(base_url))
    }

    /// Downloads from `base_url` instead of GitHub: a [`Weights`] then comes from
    /// `{base_url}/{release}/{file_name}` (a mirror, or a local server in tests).
    pub fn with_base_url(mut self, base_url: impl Into<String>) -> Self {
        self.base_url = base_url.into();
        self
    }

    /// Downloads from the mirror `url` instead of GitHub, checked first ([`parse_mirror`]);
    /// [`with_base_url`](Self::with_base_url) takes any string unchecked.
    ///
    /// # Errors
    /// [`Error::InvalidMirror`] for a malformed `url` (the cache is then not built).
    pub fn with_mirror(self, url: &str) -> Result<Self> {
        let base_url = parse_mirror(url, "Cache::with_mirror")?;
        Ok(self.with_base_url(base_url))
    }

    /// Offline: never touch the network; a file not in the cache is [`Error::NotCached`].
    pub fn with_offline(mut self, offline: bool) -> Self {
        self.offline = offline;
        self
    }

    /// Whether to draw a progress bar (only ever drawn when stderr is a terminal).
    pub fn with_progress(mut self, progress: bool) -> Self {
        self.progress = progress;
        self
    }

    /// Timeout for connecting and for the response headers (30 s by default): a server that
    /// does not answer is a [`Error::Download`] after this long. The body has no overall
    /// limit (a checkpoint may take minutes on a slow link).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Refuses a download above `bytes` instead of the model's own limit
    /// ([`download_limit`](super::download_limit)).
    pub fn with_max_download(mut self, bytes: u64) -> Self {
        self.max_download = Some(bytes);
        self
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where [`Weights`] are downloaded from.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Whether this cache may not use the network.
    pub fn is_offline(&self) -> bool {
        self.offline
    }

    /// The path `file_name` has in the cache (whether or not it is there).
    pub fn path_of(&self, file_name: &str) -> PathBuf {
        self.dir.join(file_name)
    }

    /// The URL `weights` are downloaded from with this cache's base URL.
    pub fn url_of(&self, weights: Weights) -> String {
        weights.url_at(&self.base_url)
    }

    /// The cached file of `weights`, downloading it first if it is not there. A fresh
    /// download is checked by loading it (on the CPU) before it is kept.
    pub fn fetch(&self, weights: Weights) -> Result<PathBuf> {
        let check = |p: &Path| {
            weights
                .load_file(p, &crate::device::host_device())
                .map(drop)
        };
        let limit = self.limit_for(&weights.config());
        self.fetch_checked(&self.url_of(weights), weights.file_name(), limit, &check)
    }

    /// Builds the model of `weights` on `device` from the cached file, downloading it first
    /// if it is not there.
    pub fn load(&self, weights: Weights, device: &Device) -> Result<VHeat> {
        let load = |p: &Path| weights.load_file(p, device);
        let limit = self.limit_for(&weights.config());
        self.fetch_and_load(&self.url_of(weights), weights.file_name(), limit, &load)
    }

    /// Like [`fetch`](Self::fetch) for any URL: the file is cached as `file_name` and a fresh
    /// download must load strictly into a classifier of `config` ([`VHeat::load_pytorch`]).
    pub fn fetch_url(&self, url: &str, file_name: &str, config: &VHeatConfig) -> Result<PathBuf> {
        let check = |p: &Path| {
            load_file(
                Task::Classification,
                p,
                config,
                &crate::device::host_device(),
            )
            .map(drop)
        };
        self.fetch_checked(url, file_name, self.limit_for(config), &check)
    }

    /// Like [`load`](Self::load) for any URL: the file is cached as `file_name` and loaded
    /// strictly into a classifier of `config` on `device`.
    pub fn load_url(
        &self,
        url: &str,
        file_name: &str,
        config: &VHeatConfig,
        device: &Device,
    ) -> Result<VHeat> {
        let load = |p: &Path| load_file(Task::Classification, p, config, device);
        self.fetch_and_load(url, file_name, self.limit_for(config), &load)
    }

    /// Fetches and loads once: a fresh download is checked by the very load that is returned.
    fn fetch_and_load(
        &self,
        url: &str,
        file_name: &str,
        limit: u64,
        load: &dyn Fn(&Path) -> Result<VHeat>,
    ) -> Result<VHeat> {
        let mut loaded = None;
        let check = |p: &Path| {
            loaded = Some(load(p)?);
            Ok(())
        };
        // `fetch_checked` calls `check` only on a fresh download.
        let path = self.fetch_checked(url, file_name, limit, &check_once(check))?;
        match loaded.take() {
            Some(model) => Ok(model),
            None => load(&path),
        }
    }

    /// The cached, verified `file_name`, downloaded from `url` (and accepted by `check`) if it
    /// is not there.
    fn fetch_checked(
        &self,
        url: &str,
        file_name: &str,
        limit: u64,
        check: &dyn Fn(&Path) -> Result<()>,
    ) -> Result<PathBuf> {
        let path = self.path_of(file_name);
        let meta_path = meta_path(&path);
        if path.is_file() {
            self.verify(&path, &meta_path, url)?;
            return Ok(path);
        }
        if self.offline {
            return Err(Error::NotCached {
                path,
                url: url.to_string(),
            });
        }
        fs::create_dir_all(&self.dir).map_err(|e| io_error(&self.dir, e))?;
        let part = part_path(&path);
        let meta = self.download(url, &part, limit)?;
        if let Err(e) = check(&part) {
            let _ = fs::remove_file(&part);
            return Err(Error::NotACheckpoint {
                path: part,
                url: url.to_string(),
                reason: e.to_string(),
            });
        }
        // The record first, then the file: a crash in between leaves no unrecorded file.
        write_meta(&meta_path, &meta)?;
        fs::rename(&part, &path).map_err(|e| io_error(&path, e))?;
        Ok(path)
    }

    /// Checks a cached file against its record; a file without one (copied in by hand) gets
    /// one now.
    fn verify(&self, path: &Path, meta_path: &Path, url: &str) -> Result<()> {
        let (size, sha256) = hash_file(path)?;
        match read_meta(meta_path)? {
            Some(meta) if meta.size == size && meta.sha256 == sha256 => Ok(()),
            Some(meta) => Err(Error::ChecksumMismatch {
                path: path.to_path_buf(),
                expected: format!("{} bytes, sha256 {}", meta.size, meta.sha256),
                found: format!("{size} bytes, sha256 {sha256}"),
            }),
            None => write_meta(
                meta_path,
                &Meta {
                    url: url.to_string(),
                    size,
                    sha256,
                },
            ),
        }
    }

    /// Downloads `url` into `part`, resuming what is already there when the server allows it.
    fn download(&self, url: &str, part: &Path, limit: u64) -> Result<Meta> {
        let have = fs::metadata(part).map(|m| m.len()).unwrap_or(0);
        match self.transfer(url, part, have, limit) {
            // A stale or complete `.part` the server will not extend: start over once.
            Err(Error::HttpStatus { status: 416, .. }) if have > 0 => {
                fs::remove_file(part).map_err(|e| io_error(part, e))?;
                self.transfer(url, part, 0, limit)
            }
            other => other,
        }
    }

    /// The size limit of a download for a model of `config`.
    fn limit_for(&self, config: &VHeatConfig) -> u64 {
        self.max_download
            .unwrap_or_else(|| super::bounds::download_limit(config))
    }

    fn agent(&self) -> ureq::Agent {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(self.timeout))
            .timeout_recv_response(Some(self.timeout))
            .build()
            .new_agent()
    }

    /// One HTTP request: from byte `have` if `have > 0`.
    fn transfer(&self, url: &str, part: &Path, have: u64, limit: u64) -> Result<Meta> {
        let download_error = |reason: String| Error::Download {
            url: url.to_string(),
            reason,
        };
        let mut request = self.agent().get(url);
        if have > 0 {
            request = request.header("Range", format!("bytes={have}-"));
        }
        let response = request.call().map_err(|e| download_error(e.to_string()))?;
        let status = response.status().as_u16();
        let resumed = match status {
            206 if have > 0 && content_range_start(&response) == Some(have) => true,
            200 | 206 => false,
            _ => {
                return Err(Error::HttpStatus {
                    url: url.to_string(),
                    status,
                })
            }
        };
        if status == 206 && !resumed {
            // A partial answer that does not continue our file: cannot be used.
            return Err(download_error(format!(
                "the server answered a range other than bytes {have}- (Content-Range {:?})",
                response.headers().get("content-range")
            )));
        }
        let offset = if resumed { have } else { 0 };
        let announced = response.body().content_length().map(|n| n + offset);
        let mut bounds = TransferBounds::new(url, part, limit);
        bounds.before(announced, offset)?;

        let mut hasher = Sha256::new();
        let mut file = if resumed {
            // Hash what is already there, then append.
            let mut old = File::open(part).map_err(|e| io_error(part, e))?;
            copy_into_hasher(&mut old, &mut hasher).map_err(|e| io_error(part, e))?;
            OpenOptions::new()
                .append(true)
                .open(part)
                .map_err(|e| io_error(part, e))?
        } else {
            File::create(part).map_err(|e| io_error(part, e))?
        };

        let bar = self.progress_bar(announced, offset, url);
        let mut reader = response.into_body().into_reader();
        let mut buf = vec![0u8; 1 << 16];
        let mut size = offset;
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    bar.abandon();
                    let _ = file.flush();
                    return Err(download_error(format!(
                        "the transfer broke after {size} bytes ({e}); {} keeps them for a resume",
                        part.display()
                    )));
                }
            };
            file.write_all(&buf[..n]).map_err(|e| io_error(part, e))?;
            hasher.update(&buf[..n]);
            size += n as u64;
            if let Err(e) = bounds.during(size) {
                bar.abandon();
                drop(file);
                fs::remove_file(part).ok();
                return Err(e);
            }
            bar.set_position(size);
        }
        file.sync_all().map_err(|e| io_error(part, e))?;
        bar.finish_and_clear();
        if let Some(expected) = announced {
            if expected != size {
                let _ = fs::remove_file(part);
                return Err(Error::SizeMismatch {
                    url: url.to_string(),
                    expected,
                    found: size,
                });
            }
        }
        Ok(Meta {
            url: url.to_string(),
            size,
            sha256: hex(&hasher.finalize()),
        })
    }

    fn progress_bar(&self, len: Option<u64>, pos: u64, url: &str) -> indicatif::ProgressBar {
        if !(self.progress && std::io::stderr().is_terminal()) {
            return indicatif::ProgressBar::hidden();
        }
        let bar =
            indicatif::ProgressBar::with_draw_target(len, indicatif::ProgressDrawTarget::stderr());
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        ) {
            bar.set_style(style);
        }
        bar.set_message(url.rsplit('/').next().unwrap_or(url).to_string());
        bar.set_position(pos);
        bar
    }
}

/// Adapts a `FnMut` check to the `Fn` that [`Cache::fetch_checked`] takes (it calls it at most
/// once, from one thread).
fn check_once<'a>(
    check: impl FnMut(&Path) -> Result<()> + 'a,
) -> impl Fn(&Path) -> Result<()> + 'a {
    let cell = std::cell::RefCell::new(check);
    move |p| (cell.borrow_mut())(p)
}

impl VHeat {
    /// The published model `weights` on `device`, downloaded once into the cache the
    /// environment names ([`Cache::from_env`]: `VHEAT_CACHE`, `VHEAT_OFFLINE`, and
    /// `VHEAT_MIRROR` to download from a mirror instead of GitHub).
    ///
    /// ```no_run
    /// use burn::prelude::*;
    /// use vheat::{pretrained::Weights, VHeat};
    ///
    /// let model = VHeat::pretrained(Weights::TinyIn1k, &Device::default())?;
    /// # Ok::<(), vheat::Error>(())
    /// ```
    pub fn pretrained(weights: Weights, device: &Device) -> Result<VHeat> {
        Cache::from_env()?.load(weights, device)
    }
}

fn part_path(path: &Path) -> PathBuf {
    with_suffix(path, ".part")
}

fn meta_path(path: &Path) -> PathBuf {
    with_suffix(path, ".meta.json")
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn io_error(path: &Path, e: std::io::Error) -> Error {
    Error::CacheIo {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

fn content_range_start(response: &ureq::http::Response<ureq::Body>) -> Option<u64> {
    // "bytes START-END/TOTAL"
    let value = response.headers().get("content-range")?.to_str().ok()?;
    let range = value.trim().strip_prefix("bytes")?.trim();
    range.split('-').next()?.trim().parse().ok()
}

fn copy_into_hasher(reader: &mut impl Read, hasher: &mut Sha256) -> std::io::Result<u64> {
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0;
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => {
                hasher.update(&buf[..n]);
                total += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

fn hash_file(path: &Path) -> Result<(u64, String)> {
    let mut file = File::open(path).map_err(|e| io_error(path, e))?;
    let mut hasher = Sha256::new();
    let size = copy_into_hasher(&mut file, &mut hasher).map_err(|e| io_error(path, e))?;
    Ok((size, hex(&hasher.finalize())))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn read_meta(path: &Path) -> Result<Option<Meta>> {
    match fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| Error::CacheIo {
                path: path.to_path_buf(),
                reason: format!("unreadable download record: {e}"),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error(path, e)),
    }
}

/// Writes the record through a temporary file, so that it is whole or absent.
fn write_meta(path: &Path, meta: &Meta) -> Result<()> {
    let tmp = with_suffix(path, ".tmp");
    let text = serde_json::to_string_pretty(meta).expect("Meta serialises");
    fs::write(&tmp, text).map_err(|e| io_error(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| io_error(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offline_values() {
        for v in ["1", "true", "TRUE", " yes ", "On"] {
            assert!(offline_from(Some(v)), "{v}");
        }
        for v in ["", "0", "false", "no", "off", "2"] {
            assert!(!offline_from(Some(v)), "{v}");
        }
        assert!(!offline_from(None));
    }

    #[test]
    fn mirror_values() {
        assert_eq!(mirror_from(None).unwrap(), RELEASE_BASE_URL);
        assert_eq!(mirror_from(Some("")).unwrap(), RELEASE_BASE_URL);
        assert_eq!(
            mirror_from(Some("https://example.org/vheat/")).unwrap(),
            "https://example.org/vheat"
        );
        assert_eq!(
            mirror_from(Some("http://[::1]:8080")).unwrap(),
            "http://[::1]:8080"
        );
        for bad in [
            "example.org/vheat",
            "ftp://example.org/vheat",
            "file:///srv/weights",
            "http://",
            "http:///x",
            "http://a b/",
            "http://host/w?x=1",
            "http://host/w#f",
            "http://user:pw@host/w",
            " ",
        ] {
            match mirror_from(Some(bad)) {
                Err(Error::InvalidMirror { origin, value, .. }) => {
                    assert_eq!(origin, MIRROR_ENV);
                    assert_eq!(value, bad);
                }
                other => panic!("{bad:?}: expected InvalidMirror, got {other:?}"),
            }
        }
    }

    #[test]
    fn cache_dir_prefers_the_env_var() {
        let home = Some(PathBuf::from("/home/u/.cache"));
        assert_eq!(
            cache_dir_from(Some("/data/w".into()), home.clone()),
            Some(PathBuf::from("/data/w"))
        );
        assert_eq!(
            cache_dir_from(Some("".into()), home.clone()),
            Some(PathBuf::from("/home/u/.cache/vheat"))
        );
        assert_eq!(
            cache_dir_from(None, home),
            Some(PathBuf::from("/home/u/.cache/vheat"))
        );
        assert_eq!(cache_dir_from(None, None), None);
    }

    #[test]
    fn sha256_of_abc() {
        // FIPS 180-2, appendix B.1.
        let mut h = Sha256::new();
        h.update(b"abc");
        assert_eq!(
            hex(&h.finalize()),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
