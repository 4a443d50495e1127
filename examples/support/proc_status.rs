//! Memory figures of the running process, shared by the examples that report memory
//! (included with `#[path]`).

/// A figure from `/proc/self/status` in MiB (Linux only; `None` elsewhere): `"VmHWM:"` is the
/// peak resident set, `"VmRSS:"` the resident set now.
pub fn status_mib(key: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}
