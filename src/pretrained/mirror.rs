//! Where the cache lives and where checkpoints are fetched from: the environment variables
//! (`VHEAT_CACHE`, `VHEAT_OFFLINE`, `VHEAT_MIRROR`) and the mirror's validation.

use std::ffi::OsString;
use std::path::PathBuf;

use super::RELEASE_BASE_URL;
use crate::error::{Error, Result};

/// Environment variable naming the cache directory (default: the user cache folder + `vheat`).
pub const CACHE_ENV: &str = "VHEAT_CACHE";
/// Environment variable that, set to `1` (or `true`/`yes`/`on`), forbids network access.
pub const OFFLINE_ENV: &str = "VHEAT_OFFLINE";

/// Environment variable naming a mirror of the reference's release files to download from
/// instead of GitHub ([`RELEASE_BASE_URL`]): `{VHEAT_MIRROR}/{release}/{file_name}`, e.g.
/// `http://host:8000/weights` serving `/weights/vheatcls/vHeat_tiny.pth`. Unset or empty:
/// GitHub. A malformed value is [`Error::InvalidMirror`] (see [`parse_mirror`]).
pub const MIRROR_ENV: &str = "VHEAT_MIRROR";

/// A mirror's base URL, checked: `http://` or `https://`, a host (with an optional port and
/// path), no query or fragment, no whitespace. Returned without trailing `/`. `origin` says
/// where the value came from (`VHEAT_MIRROR`, `--mirror`), for the error.
///
/// ```
/// use vheat::pretrained::{parse_mirror, RELEASE_BASE_URL};
///
/// assert_eq!(parse_mirror("http://127.0.0.1:8000/w/", "--mirror")?, "http://127.0.0.1:8000/w");
/// assert_eq!(parse_mirror(RELEASE_BASE_URL, "--mirror")?, RELEASE_BASE_URL);
/// assert!(parse_mirror("ftp://host/w", "--mirror").is_err());
/// assert!(parse_mirror("host/w", "--mirror").is_err());
/// # Ok::<(), vheat::Error>(())
/// ```
///
/// # Errors
/// [`Error::InvalidMirror`] naming the value, its origin and what is wrong.
pub fn parse_mirror(value: &str, origin: &str) -> Result<String> {
    let invalid = |reason: &str| Error::InvalidMirror {
        origin: origin.to_string(),
        value: value.to_string(),
        reason: reason.to_string(),
    };
    if value.chars().any(char::is_whitespace) {
        return Err(invalid("it contains whitespace"));
    }
    if value.contains(['?', '#']) {
        return Err(invalid(
            "it has a query or fragment, which a base URL cannot have",
        ));
    }
    let uri: ureq::http::Uri = value
        .parse()
        .map_err(|e: ureq::http::uri::InvalidUri| invalid(&e.to_string()))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        Some(other) => return Err(invalid(&format!("scheme {other}: is not http or https"))),
        None => return Err(invalid("it has no scheme (http:// or https://)")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(invalid("it has no host"));
    }
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err(invalid("it has user information, which is not supported"));
    }
    Ok(value.trim_end_matches('/').to_string())
}

/// The base URL for a value of [`MIRROR_ENV`]: the checked mirror ([`parse_mirror`]) when set
/// and non-empty, else [`RELEASE_BASE_URL`].
///
/// # Errors
/// [`Error::InvalidMirror`] for a malformed value.
pub fn mirror_from(value: Option<&str>) -> Result<String> {
    match value {
        Some(v) if !v.is_empty() => parse_mirror(v, MIRROR_ENV),
        _ => Ok(RELEASE_BASE_URL.to_string()),
    }
}

/// Whether a value of [`OFFLINE_ENV`] means offline: `1`, `true`, `yes` or `on`, in any case.
pub fn offline_from(value: Option<&str>) -> bool {
    matches!(
        value.map(|v| v.trim().to_ascii_lowercase()).as_deref(),
        Some("1" | "true" | "yes" | "on")
    )
}

/// The cache directory for a value of [`CACHE_ENV`] (used when set and non-empty) and the
/// platform's user cache folder (`fallback`, e.g. `~/.cache`, to which `vheat` is appended).
pub fn cache_dir_from(env: Option<OsString>, fallback: Option<PathBuf>) -> Option<PathBuf> {
    match env {
        Some(dir) if !dir.is_empty() => Some(PathBuf::from(dir)),
        _ => fallback.map(|d| d.join("vheat")),
    }
}
