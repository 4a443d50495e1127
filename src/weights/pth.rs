//! The two container formats of `torch.save` around the pickle ([`super::pickle`]): the zip
//! archive (`archive/data.pkl` and one record `archive/data/{key}` per storage) and the legacy
//! stream (`_use_new_zipfile_serialization=False`: magic number, protocol and system-info
//! pickles, the object's pickle, the list of storage keys, then each storage as an element
//! count and its bytes). Reads the state dict a caller names and copies each tensor's strided
//! view out of its storage.

use std::collections::{HashMap, HashSet};
use std::io::{Cursor, Read};

use burn::tensor::{DType, TensorData};

use super::pickle::{storage_pid, unpickle, PickleResult, StorageKind, TensorRef, Value};

/// The legacy format's first pickle: `0x1950a86a20f9469cfc6c`.
const LEGACY_MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];

/// The largest tensor copied out of a file: a stride-0 view of a few bytes can claim any size.
const MAX_TENSOR_BYTES: usize = 1 << 30;

/// A `.pth` file, read: its top-level object and the bytes of its storages.
pub(crate) struct PthFile {
    /// The object `torch.save` was given.
    pub root: Value,
    /// Each storage's bytes, or why they could not be read (reported with the tensors that use
    /// the storage; a broken storage nothing loads from is no error).
    storages: HashMap<String, PickleResult<Vec<u8>>>,
}

impl PthFile {
    /// Reads a file's bytes in either format.
    pub(crate) fn parse(bytes: &[u8]) -> PickleResult<Self> {
        if bytes.starts_with(b"PK") {
            Self::zip(bytes)
        } else {
            Self::legacy(bytes)
        }
    }

    fn zip(bytes: &[u8]) -> PickleResult<Self> {
        let mut archive =
            zip::ZipArchive::new(Cursor::new(bytes)).map_err(|e| format!("not a zip: {e}"))?;
        let names: Vec<String> = archive
            .file_names()
            .map(|n| n.map(|n| n.into_owned()))
            .collect::<Result<_, _>>()
            .map_err(|e| format!("zip directory: {e}"))?;
        // `{archive}/data.pkl`, the archive folder named after the file that was saved.
        let pkl = names
            .iter()
            .filter(|n| n.ends_with("data.pkl"))
            .min_by_key(|n| n.len())
            .ok_or("the zip holds no data.pkl (not a torch.save file)")?
            .clone();
        let prefix = pkl.trim_end_matches("data.pkl").to_string();
        let read = |archive: &mut zip::ZipArchive<Cursor<&[u8]>>, name: &str| {
            let mut entry = archive
                .by_name(name)
                .map_err(|e| format!("zip record {name}: {e}"))?;
            // `torch.save` stores records uncompressed; a compressed one may not claim more than
            // a fixed multiple of the file (a decompression bomb stops there).
            let limit = (bytes.len() as u64).saturating_mul(64).max(1 << 20);
            let size = entry.size();
            if size > limit {
                return Err(format!("zip record {name} claims {size} bytes"));
            }
            let mut out = Vec::new();
            // Read to the end, where the zip reader checks the record's CRC.
            entry
                .read_to_end(&mut out)
                .map_err(|e| format!("zip record {name}: {e}"))?;
            Ok::<_, String>(out)
        };
        if names.iter().any(|n| *n == format!("{prefix}byteorder")) {
            let order = read(&mut archive, &format!("{prefix}byteorder"))?;
            if order != b"little" {
                return Err("big-endian checkpoints are not supported".into());
            }
        }
        let pickle = read(&mut archive, &pkl)?;
        let (root, _) = unpickle(&pickle, &storage_pid)?;
        let mut storages = HashMap::new();
        let data_prefix = format!("{prefix}data/");
        for name in &names {
            if let Some(key) = name.strip_prefix(&data_prefix) {
                storages.insert(key.to_string(), read(&mut archive, name));
            }
        }
        Ok(Self { root, storages })
    }

    fn legacy(bytes: &[u8]) -> PickleResult<Self> {
        let not_torch = "neither a zip nor a legacy torch.save file";
        let mut pos = 0;
        let mut next = |what: &str| -> PickleResult<Value> {
            let (v, n) = unpickle(&bytes[pos..], &storage_pid)
                .map_err(|e| format!("{not_torch} (reading its {what}: {e})"))?;
            pos += n;
            Ok(v)
        };
        let magic = next("magic number")?;
        let _protocol = next("protocol version")?;
        let _sys_info = next("system info")?;
        let root = next("object")?;
        let keys = next("storage keys")?;
        // The magic number is a 10-byte LONG1; only its presence is checked (by the pickle
        // that reads it being an int) and here by its bytes.
        if !matches!(magic, Value::Int(_) | Value::BigInt)
            || !bytes
                .windows(LEGACY_MAGIC.len())
                .take(16)
                .any(|w| w == LEGACY_MAGIC)
        {
            return Err(not_torch.into());
        }
        let keys: Vec<String> = match &keys {
            Value::List(l) => l
                .borrow()
                .iter()
                .map(|k| k.as_str().map(String::from))
                .collect::<Option<_>>()
                .ok_or("legacy storage keys are not strings")?,
            _ => return Err("legacy storage keys are not a list".into()),
        };
        // Storages follow in key order: an 8-byte little-endian element count, then the bytes.
        // The element size comes from the tensors that use the storage.
        let mut sizes: HashMap<String, usize> = HashMap::new();
        collect_storage_sizes(&root, &mut sizes, &mut HashSet::new(), 0);
        let mut storages = HashMap::new();
        for key in keys {
            let count = bytes
                .get(pos..pos + 8)
                .ok_or("legacy file truncated before a storage")?;
            let count = u64::from_le_bytes(count.try_into().expect("8 bytes"));
            let size = sizes.get(&key).copied().unwrap_or(1) as u64;
            let len = count
                .checked_mul(size)
                .and_then(|l| usize::try_from(l).ok())
                .ok_or("legacy storage size overflows")?;
            pos += 8;
            let data = bytes
                .get(
                    pos..pos
                        .checked_add(len)
                        .ok_or("legacy storage size overflows")?,
                )
                .ok_or_else(|| format!("legacy file truncated inside storage {key}"))?;
            pos += len;
            storages.insert(key, Ok(data.to_vec()));
        }
        Ok(Self { root, storages })
    }

    /// The tensors of the dict `value` (a dict or a dict subclass's instance): string keys with
    /// tensor values, in file order; other entries are skipped.
    pub(crate) fn tensors(&self, value: &Value) -> PickleResult<Vec<(String, TensorData)>> {
        let Some(items) = value.dict_items() else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for (k, v) in items {
            if let (Some(k), Value::Tensor(t)) = (k.as_str(), &v) {
                let data = self
                    .materialize(t)
                    .map_err(|e| format!("tensor {k:?}: {e}"))?;
                out.push((k.to_string(), data));
            }
        }
        Ok(out)
    }

    /// The contiguous data of the strided view `t`.
    fn materialize(&self, t: &TensorRef) -> PickleResult<TensorData> {
        let kind = t.storage.kind;
        let size = kind.size();
        let bytes = self
            .storages
            .get(&t.storage.key)
            .ok_or_else(|| format!("its storage {:?} is not in the file", t.storage.key))?
            .as_ref()
            .map_err(|e| format!("its storage {:?}: {e}", t.storage.key))?;
        let (base, available) = match t.storage.view {
            Some((offset, len)) => (offset, len),
            None => (0, bytes.len() / size),
        };
        let numel = t
            .shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or("its size overflows")?;
        let len = numel
            .checked_mul(size)
            .filter(|&l| l <= MAX_TENSOR_BYTES)
            .ok_or("it is larger than 1 GiB (more than any vHeat parameter)")?;
        let mut out = Vec::new();
        out.try_reserve_exact(len)
            .map_err(|_| format!("cannot allocate {len} bytes"))?;
        if numel > 0 {
            // The last element a view reaches; every element must lie inside the storage.
            let last = t
                .shape
                .iter()
                .zip(&t.strides)
                .try_fold(t.offset, |a, (&d, &s)| {
                    a.checked_add((d - 1).checked_mul(s)?)
                })
                .ok_or("its view overflows")?;
            if last >= available || base + available > bytes.len() / size {
                return Err(format!(
                    "its view reaches element {last} of a storage of {available}"
                ));
            }
            let mut index = vec![0usize; t.shape.len()];
            for _ in 0..numel {
                let e: usize = t.offset
                    + index
                        .iter()
                        .zip(&t.strides)
                        .map(|(i, s)| i * s)
                        .sum::<usize>();
                let at = (base + e) * size;
                out.extend_from_slice(&bytes[at..at + size]);
                for d in (0..index.len()).rev() {
                    index[d] += 1;
                    if index[d] < t.shape[d] {
                        break;
                    }
                    index[d] = 0;
                }
            }
        }
        let dtype = match kind {
            StorageKind::F32 => DType::F32,
            StorageKind::F64 => DType::F64,
            StorageKind::F16 => DType::F16,
            StorageKind::BF16 => DType::BF16,
            StorageKind::I64 => DType::I64,
            StorageKind::I32 => DType::I32,
            StorageKind::I16 => DType::I16,
            StorageKind::I8 => DType::I8,
            // One byte per value; vHeat has no boolean tensors, Burn refuses it for a float one.
            StorageKind::U8 | StorageKind::Bool => DType::U8,
        };
        Ok(TensorData::from_bytes_vec(out, t.shape.clone(), dtype))
    }
}

/// The element size of every storage a tensor in `value` uses (legacy files store element
/// counts), searched through containers up to a fixed depth.
fn collect_storage_sizes(
    value: &Value,
    sizes: &mut HashMap<String, usize>,
    seen: &mut HashSet<usize>,
    depth: usize,
) {
    // Shared containers are visited once (a file can share one list a million times).
    if depth > 64 || value.container_id().is_some_and(|id| !seen.insert(id)) {
        return;
    }
    let mut visit = |v: &Value| collect_storage_sizes(v, sizes, seen, depth + 1);
    match value {
        Value::Tensor(t) => {
            sizes.insert(t.storage.key.clone(), t.storage.kind.size());
        }
        Value::Storage(s) => {
            sizes.insert(s.key.clone(), s.kind.size());
        }
        Value::List(l) => l.borrow().iter().for_each(&mut visit),
        Value::Tuple(t) => t.iter().for_each(&mut visit),
        Value::Dict(_) | Value::Object(_) => {
            for (k, v) in value.dict_items().unwrap_or_default() {
                visit(&k);
                visit(&v);
            }
        }
        _ => {}
    }
}

/// The stack the reader runs on: dropping nested values recurses once per level, and a file
/// may nest up to [`MAX_NESTED`](super::pickle::MAX_NESTED) containers.
const READER_STACK: usize = 256 << 20;

/// Reads the `.pth` file `bytes` and returns the tensors of the first location in `keys` that
/// holds any: `Some(key)` is that top-level key of a dict (or dict subclass), `None` the
/// top-level object itself (a bare state dict). Tensors come out in file order, converted to
/// contiguous data in their stored dtype.
///
/// Runs on its own thread with a stack sized for [`MAX_NESTED`](super::pickle::MAX_NESTED), and a panic there (a bug) is
/// an error, so no file can take the caller down.
pub(crate) fn read_state_dict(
    bytes: Vec<u8>,
    keys: Vec<Option<String>>,
) -> PickleResult<Vec<(String, TensorData)>> {
    let reader = std::thread::Builder::new()
        .name("vheat-pth-reader".into())
        .stack_size(READER_STACK)
        .spawn(move || {
            std::panic::catch_unwind(move || find_state_dict(&bytes, &keys)).unwrap_or_else(|p| {
                Err(format!(
                    "the reader failed: {}",
                    super::guard::panic_message(p.as_ref())
                ))
            })
        })
        .map_err(|e| format!("cannot start the reader thread: {e}"))?;
    reader
        .join()
        .unwrap_or_else(|_| Err("the reader thread failed".into()))
}

fn find_state_dict(
    bytes: &[u8],
    keys: &[Option<String>],
) -> PickleResult<Vec<(String, TensorData)>> {
    let file = PthFile::parse(bytes)?;
    let top = file.root.dict_items();
    for key in keys {
        let value = match key {
            None => Some(file.root.clone()),
            Some(k) => top
                .as_ref()
                .and_then(|items| items.iter().find(|(name, _)| name.as_str() == Some(k)))
                .map(|(_, v)| v.clone()),
        };
        if let Some(value) = value {
            let tensors = file.tensors(&value)?;
            if !tensors.is_empty() {
                return Ok(tensors);
            }
        }
    }
    let wanted: Vec<String> = keys
        .iter()
        .map(|k| match k {
            Some(k) => format!("under top-level key {k:?}"),
            None => "at the top level".into(),
        })
        .collect();
    let found = match &top {
        Some(items) => {
            let names: Vec<String> = items
                .iter()
                .map(|(k, _)| {
                    k.as_str()
                        .map_or_else(|| "(not a string)".into(), |s| format!("{s:?}"))
                })
                .take(20)
                .collect();
            format!("its top-level keys are [{}]", names.join(", "))
        }
        None => format!("its top-level object is {}", file.root.describe()),
    };
    Err(format!("no tensors {}; {found}", wanted.join(" nor ")))
}
