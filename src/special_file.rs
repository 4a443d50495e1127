//! Paths that must not be opened for reading, refused by their type before any open: a FIFO
//! blocks the open until a writer comes (forever, for a user who typed the wrong path), a
//! device such as `/dev/zero` never ends, and a folder or a socket cannot be read as a file.
//! Every reader of a user-named file (configuration, image, checkpoint, its metadata) asks
//! [`not_a_regular_file`] first.

use std::path::Path;

/// Why `path` cannot be read as a file: `Some(reason)`, naming its type, when it exists and is
/// not a regular file (a symbolic link is judged by what it points to); `None` for a regular
/// file, or for a path whose metadata cannot be read (the open that follows reports why).
pub(crate) fn not_a_regular_file(path: &Path) -> Option<String> {
    let kind = std::fs::metadata(path).ok()?.file_type();
    if kind.is_file() {
        return None;
    }
    let what = if kind.is_dir() {
        "a folder"
    } else {
        special_kind(&kind)
    };
    Some(format!("not a regular file but {what}"))
}

/// The name of a file type that is neither a regular file nor a folder.
#[cfg(unix)]
fn special_kind(kind: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if kind.is_fifo() {
        "a FIFO (named pipe)"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "a special file"
    }
}

/// The name of a file type that is neither a regular file nor a folder.
#[cfg(not(unix))]
fn special_kind(_kind: &std::fs::FileType) -> &'static str {
    "a special file"
}
