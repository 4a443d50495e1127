//! Bounds on a download, so that no server (a broken mirror, a response without a length or
//! with a false one) can fill the disk: a size limit per file (a generous multiple of what the
//! model's weights need, [`download_limit`]) and the free space of the cache's disk, both
//! checked before the transfer and while it runs. A refused transfer's partial file is removed.

use std::path::Path;

use crate::error::{Error, Result};
use crate::vheat::VHeatConfig;

/// The largest file [`download_limit`] allows for a model: this many times its float32
/// parameter bytes (a release checkpoint may hold a detector or segmentor around the backbone,
/// or an optimizer state), plus [`DOWNLOAD_SLACK`].
pub const DOWNLOAD_SIZE_FACTOR: f64 = 8.0;

/// Bytes a download limit allows on top of [`DOWNLOAD_SIZE_FACTOR`] × the parameters: the
/// container, the pickle and small models' heads.
pub const DOWNLOAD_SLACK: u64 = 256 << 20;

/// Free space left on the cache's disk after a download; a transfer that would eat into it is
/// refused.
pub const FREE_SPACE_MARGIN: u64 = 64 << 20;

/// How often, in bytes received, the free space is read again during a transfer.
const FREE_SPACE_EVERY: u64 = 16 << 20;

/// The size limit of a downloaded checkpoint of a model of `config`.
pub fn download_limit(config: &VHeatConfig) -> u64 {
    let parameters = config.memory_estimate(0, config.img_size, false).parameters;
    let limit = DOWNLOAD_SIZE_FACTOR * parameters + DOWNLOAD_SLACK as f64;
    if limit >= u64::MAX as f64 {
        u64::MAX
    } else {
        limit as u64
    }
}

/// The bytes an unprivileged user may still write on the disk that holds `dir` (`None` where
/// it cannot be read).
pub fn free_space(dir: &Path) -> Option<u64> {
    #[cfg(unix)]
    {
        let s = rustix::fs::statvfs(dir).ok()?;
        s.f_bavail.checked_mul(s.f_frsize)
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        None
    }
}

/// The checks of one transfer into `part`.
pub(crate) struct TransferBounds<'a> {
    pub(crate) url: &'a str,
    pub(crate) part: &'a Path,
    pub(crate) limit: u64,
    checked_at: u64,
}

impl<'a> TransferBounds<'a> {
    pub(crate) fn new(url: &'a str, part: &'a Path, limit: u64) -> Self {
        Self {
            url,
            part,
            limit,
            checked_at: 0,
        }
    }

    fn refuse(&self, reason: String) -> Error {
        std::fs::remove_file(self.part).ok();
        Error::DownloadRefused {
            url: self.url.to_string(),
            reason,
        }
    }

    /// Before the transfer: the announced total size (`None` when the server gave no length)
    /// against the limit, and what is still to come against the free space.
    pub(crate) fn before(&mut self, announced: Option<u64>, have: u64) -> Result<()> {
        let Some(total) = announced else {
            return Ok(());
        };
        if total > self.limit {
            return Err(self.refuse(format!(
                "the server announces {total} bytes, more than the {} this checkpoint may have",
                self.limit
            )));
        }
        self.space(total.saturating_sub(have))
    }

    /// During the transfer, after `size` bytes in all: the limit, and every
    /// [`FREE_SPACE_EVERY`] bytes the free space.
    pub(crate) fn during(&mut self, size: u64) -> Result<()> {
        if size > self.limit {
            return Err(self.refuse(format!(
                "the server sent more than the {} bytes this checkpoint may have",
                self.limit
            )));
        }
        if size - self.checked_at >= FREE_SPACE_EVERY {
            self.checked_at = size;
            self.space(0)?;
        }
        Ok(())
    }

    fn space(&mut self, needed: u64) -> Result<()> {
        let dir = self.part.parent().unwrap_or(Path::new("."));
        let Some(free) = free_space(dir) else {
            return Ok(());
        };
        if free < needed.saturating_add(FREE_SPACE_MARGIN) {
            return Err(self.refuse(format!(
                "{} has {free} bytes free; {needed} more are needed and {FREE_SPACE_MARGIN} are \
                 kept free",
                dir.display()
            )));
        }
        Ok(())
    }
}
