//! The two container formats of `torch.save` around the pickle ([`super::pickle`]): the zip
//! archive (`archive/data.pkl` and one record `archive/data/{key}` per storage) and the legacy
//! stream (`_use_new_zipfile_serialization=False`: magic number, protocol and system-info
//! pickles, the object's pickle, the list of storage keys, then each storage as an element
//! count and its bytes). Reads the state dict a caller names; each tensor's strided view is
//! copied out of its storage when its data is drawn, and a zip record is inflated only then,
//! after its size was checked against the pickle's and the file's (a decompression bomb is
//! refused unread).

use std::collections::{HashMap, HashSet};
use std::io::{Cursor, Read};
use std::ops::Range;
use std::sync::{Arc, Mutex};

use burn::store::bridge;
use burn::store::burn_pack::{Error as PackError, Tensor as PackTensor};
use burn::tensor::{DType, Shape, TensorData};

use super::pickle::{storage_pid, unpickle, PickleResult, StorageKind, TensorRef, Value};

/// The legacy format's first pickle: `0x1950a86a20f9469cfc6c`.
const LEGACY_MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];

/// The largest tensor copied out of a file: a stride-0 view of a few bytes can claim any size.
const MAX_TENSOR_BYTES: usize = 1 << 30;

/// How many times its own size a file may inflate to, all zip records together: `torch.save`
/// stores records uncompressed, so a real checkpoint inflates to about its own size; a
/// compressed one may claim more, up to this multiple (a decompression bomb stops there).
const MAX_INFLATION: u64 = 64;

/// The file's bytes, shared by the tensors that read their data from them on demand.
#[derive(Clone)]
struct FileBytes(Arc<Vec<u8>>);

impl AsRef<[u8]> for FileBytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// The zip archive over the shared bytes.
type Archive = zip::ZipArchive<Cursor<FileBytes>>;

/// Where a storage's bytes are, known without reading them.
#[derive(Debug, Clone)]
enum Source {
    /// A record of the zip archive, and the uncompressed size its header claims.
    Zip {
        /// The record's name.
        name: String,
        /// Its uncompressed size in bytes, as the header says.
        size: u64,
    },
    /// A range of a legacy file's bytes.
    Legacy(Range<usize>),
}

impl Source {
    /// The storage's size in bytes, as far as it is known before reading it.
    fn len(&self) -> u64 {
        match self {
            Self::Zip { size, .. } => *size,
            Self::Legacy(range) => range.len() as u64,
        }
    }
}

/// The storages of a file: where each one's bytes are, inflated only when a tensor that the
/// model takes asks for them.
struct Storages {
    /// The whole file.
    file: FileBytes,
    /// Its zip directory (`None` for a legacy file).
    archive: Option<Archive>,
    /// Where each storage's bytes are, or why they cannot be read (reported with the tensors
    /// that use the storage; a broken storage nothing loads from is no error).
    sources: HashMap<String, PickleResult<Source>>,
    /// Zip records already inflated, for the other tensors that view the same storage.
    inflated: Mutex<HashMap<String, Arc<Vec<u8>>>>,
    /// The bytes zip records may still inflate to (see [`MAX_INFLATION`]).
    budget: Mutex<u64>,
}

/// A `.pth` file, read: its top-level object, and where the bytes of its storages are.
pub(crate) struct PthFile {
    /// The object `torch.save` was given.
    pub root: Value,
    /// The storages, shared with the tensors' data providers.
    storages: Arc<Storages>,
}

impl PthFile {
    /// Reads a file's bytes in either format. Storage records are located, not read.
    pub(crate) fn parse(bytes: Vec<u8>) -> PickleResult<Self> {
        let file = FileBytes(Arc::new(bytes));
        if file.as_ref().starts_with(b"PK") {
            Self::zip(file)
        } else {
            Self::legacy(file)
        }
    }

    fn zip(file: FileBytes) -> PickleResult<Self> {
        let file_len = file.as_ref().len() as u64;
        let limit = file_len.saturating_mul(MAX_INFLATION).max(1 << 20);
        let mut archive = zip::ZipArchive::new(Cursor::new(file.clone()))
            .map_err(|e| format!("not a zip: {e}"))?;
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
        if names.iter().any(|n| *n == format!("{prefix}byteorder")) {
            let order = read_record(&mut archive, &format!("{prefix}byteorder"), limit)?;
            if order != b"little" {
                return Err("big-endian checkpoints are not supported".into());
            }
        }
        let pickle = read_record(&mut archive, &pkl, limit)?;
        let (root, _) = unpickle(&pickle, &storage_pid)?;
        let mut sources = HashMap::new();
        let data_prefix = format!("{prefix}data/");
        for name in &names {
            if let Some(key) = name.strip_prefix(&data_prefix) {
                let source = archive
                    .by_name(name)
                    .map(|entry| Source::Zip {
                        name: name.clone(),
                        size: entry.size(),
                    })
                    .map_err(|e| format!("zip record {name}: {e}"));
                sources.insert(key.to_string(), source);
            }
        }
        let storages = Storages {
            file,
            archive: Some(archive),
            sources,
            inflated: Mutex::new(HashMap::new()),
            budget: Mutex::new(limit),
        };
        Ok(Self {
            root,
            storages: Arc::new(storages),
        })
    }

    fn legacy(file: FileBytes) -> PickleResult<Self> {
        let bytes = file.as_ref();
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
        let mut sources = HashMap::new();
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
            let end = pos
                .checked_add(len)
                .filter(|&end| end <= bytes.len())
                .ok_or_else(|| format!("legacy file truncated inside storage {key}"))?;
            sources.insert(key, Ok(Source::Legacy(pos..end)));
            pos = end;
        }
        let storages = Storages {
            file,
            archive: None,
            sources,
            inflated: Mutex::new(HashMap::new()),
            budget: Mutex::new(0),
        };
        Ok(Self {
            root,
            storages: Arc::new(storages),
        })
    }

    /// The tensors of the dict `value` (a dict or a dict subclass's instance): string keys with
    /// tensor values, in file order; other entries are skipped.
    ///
    /// Everything that can be checked without reading a storage is checked here (the size, the
    /// view against the storage's size, the zip record's size against the pickle's); the bytes
    /// are read and copied out only when the returned tensor's data is drawn, i.e. only for
    /// tensors the model takes, after their shapes were compared with the model's.
    pub(crate) fn tensors(&self, value: &Value) -> PickleResult<Vec<PackTensor>> {
        let Some(items) = value.dict_items() else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for (k, v) in items {
            if let (Some(k), Value::Tensor(t)) = (k.as_str(), &v) {
                let view =
                    View::check(&self.storages, t).map_err(|e| format!("tensor {k:?}: {e}"))?;
                let storages = Arc::clone(&self.storages);
                let key = k.to_string();
                out.push(bridge::deferred(
                    key.clone(),
                    view.dtype,
                    Shape::from(view.shape.clone()),
                    None,
                    move || {
                        view.copy(&storages)
                            .map_err(|e| PackError::ValidationError(format!("tensor {key:?}: {e}")))
                    },
                ));
            }
        }
        Ok(out)
    }
}

/// Reads a whole zip record (the pickle, the byte order): it may inflate to at most `limit`
/// bytes.
fn read_record(archive: &mut Archive, name: &str, limit: u64) -> PickleResult<Vec<u8>> {
    let entry = archive
        .by_name(name)
        .map_err(|e| format!("zip record {name}: {e}"))?;
    let size = entry.size();
    if size > limit {
        return Err(format!("zip record {name} claims {size} bytes"));
    }
    inflate(entry, name, size)
}

/// The `size` bytes of a zip record, read to the end, where the zip reader checks its CRC; a
/// record that inflates to more or fewer bytes than its header says is an error.
fn inflate(entry: impl Read, name: &str, size: u64) -> PickleResult<Vec<u8>> {
    let len =
        usize::try_from(size).map_err(|_| format!("zip record {name} claims {size} bytes"))?;
    let mut out = Vec::new();
    out.try_reserve_exact(len)
        .map_err(|_| format!("zip record {name}: cannot allocate {len} bytes"))?;
    entry
        .take(size.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| format!("zip record {name}: {e}"))?;
    if out.len() as u64 != size {
        return Err(format!(
            "zip record {name} holds {} bytes, but its header says {size}",
            out.len()
        ));
    }
    Ok(out)
}

/// A tensor's strided view of its storage, checked against the storage's size.
#[derive(Debug, Clone)]
struct View {
    /// The tensor as the pickle describes it.
    tensor: TensorRef,
    /// Its element type.
    dtype: DType,
    /// Its shape.
    shape: Vec<usize>,
    /// Its size in bytes, contiguous.
    len: usize,
    /// The first element of the storage the view counts from (a legacy view's offset).
    base: usize,
}

impl View {
    /// Checks `t` against where its storage is, without reading the storage.
    fn check(storages: &Storages, t: &TensorRef) -> PickleResult<Self> {
        let kind = t.storage.kind;
        let size = kind.size();
        let source = storages
            .sources
            .get(&t.storage.key)
            .ok_or_else(|| format!("its storage {:?} is not in the file", t.storage.key))?
            .as_ref()
            .map_err(|e| format!("its storage {:?}: {e}", t.storage.key))?;
        let stored = source.len();
        if let (Source::Zip { name, .. }, Some(numel)) = (source, t.storage.numel) {
            // The pickle says how many elements the storage has; a record whose header claims
            // more is refused before a byte of it is inflated.
            let declared = (numel as u64).saturating_mul(size as u64);
            if stored > declared {
                return Err(format!(
                    "zip record {name} claims {stored} bytes, but the pickle declares its \
                     storage {:?} as {numel} elements ({declared} bytes)",
                    t.storage.key
                ));
            }
        }
        let stored = usize::try_from(stored / size as u64).unwrap_or(usize::MAX);
        let (base, available) = match t.storage.view {
            Some((offset, len)) => (offset, len),
            None => (0, stored),
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
            if last >= available || base.saturating_add(available) > stored {
                return Err(format!(
                    "its view reaches element {last} of a storage of {available}"
                ));
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
        Ok(Self {
            tensor: t.clone(),
            dtype,
            shape: t.shape.clone(),
            len,
            base,
        })
    }

    /// The contiguous data of the view: its storage read (a zip record inflated once, within
    /// the file's inflation budget), then the view's elements copied out.
    fn copy(&self, storages: &Storages) -> PickleResult<TensorData> {
        let t = &self.tensor;
        let size = t.storage.kind.size();
        let held;
        let bytes: &[u8] = match storages.sources.get(&t.storage.key) {
            Some(Ok(Source::Legacy(range))) => &storages.file.as_ref()[range.clone()],
            Some(Ok(Source::Zip { name, size })) => {
                held = storages.inflate(&t.storage.key, name, *size)?;
                &held
            }
            // `View::check` found the storage; nothing removes it since.
            _ => {
                return Err(format!(
                    "its storage {:?} is not in the file",
                    t.storage.key
                ))
            }
        };
        let mut out = Vec::new();
        out.try_reserve_exact(self.len)
            .map_err(|_| format!("cannot allocate {} bytes", self.len))?;
        let numel = self.len / size;
        if numel > 0 && (self.base + t.offset) * size > bytes.len() {
            return Err("its view lies outside its storage".into());
        }
        let mut index = vec![0usize; t.shape.len()];
        for _ in 0..numel {
            let e: usize = t.offset
                + index
                    .iter()
                    .zip(&t.strides)
                    .map(|(i, s)| i * s)
                    .sum::<usize>();
            let at = (self.base + e) * size;
            let element = bytes
                .get(at..at + size)
                .ok_or("its view lies outside its storage")?;
            out.extend_from_slice(element);
            for d in (0..index.len()).rev() {
                index[d] += 1;
                if index[d] < t.shape[d] {
                    break;
                }
                index[d] = 0;
            }
        }
        Ok(TensorData::from_bytes_vec(
            out,
            self.shape.clone(),
            self.dtype,
        ))
    }
}

impl Storages {
    /// The bytes of zip record `name` (storage `key`), inflated on first use: `size` bytes
    /// taken from the file's inflation budget, so that records that each look reasonable cannot
    /// together claim more than [`MAX_INFLATION`] times the file.
    fn inflate(&self, key: &str, name: &str, size: u64) -> PickleResult<Arc<Vec<u8>>> {
        let mut inflated = self
            .inflated
            .lock()
            .map_err(|_| "a reader of another tensor failed")?;
        if let Some(bytes) = inflated.get(key) {
            return Ok(Arc::clone(bytes));
        }
        {
            let mut budget = self
                .budget
                .lock()
                .map_err(|_| "a reader of another tensor failed")?;
            if size > *budget {
                return Err(format!(
                    "zip record {name} claims {size} bytes, more than the {} bytes the file may \
                     still inflate to ({MAX_INFLATION} times its size)",
                    *budget
                ));
            }
            *budget -= size;
        }
        let mut archive = self
            .archive
            .clone()
            .ok_or("a zip record in a file that is not a zip")?;
        let entry = archive
            .by_name(name)
            .map_err(|e| format!("its storage {key:?}: zip record {name}: {e}"))?;
        let bytes =
            Arc::new(inflate(entry, name, size).map_err(|e| format!("its storage {key:?}: {e}"))?);
        inflated.insert(key.to_string(), Arc::clone(&bytes));
        Ok(bytes)
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
/// top-level object itself (a bare state dict). Tensors come out in file order, in their stored
/// dtype; each one's data is copied out of its storage (contiguous) only when it is drawn, so a
/// tensor the model refuses by its shape is never inflated.
///
/// Runs on its own thread with a stack sized for [`MAX_NESTED`](super::pickle::MAX_NESTED), and a panic there (a bug) is
/// an error, so no file can take the caller down.
pub(crate) fn read_state_dict(
    bytes: Vec<u8>,
    keys: Vec<Option<String>>,
) -> PickleResult<Vec<PackTensor>> {
    let reader = std::thread::Builder::new()
        .name("vheat-pth-reader".into())
        .stack_size(READER_STACK)
        .spawn(move || {
            std::panic::catch_unwind(move || find_state_dict(bytes, &keys)).unwrap_or_else(|p| {
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

fn find_state_dict(bytes: Vec<u8>, keys: &[Option<String>]) -> PickleResult<Vec<PackTensor>> {
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
