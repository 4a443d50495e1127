//! Test-side tools for building checkpoints, good and bad: the PyTorch zip container (read and
//! write, stored entries only, as `torch.save` writes them), a minimal pickle writer for a
//! float32 state dict (`write_pth`), storage-type conversion of a `.pth`, and float16/bfloat16
//! encoding.
//!
//! Shared by `tests/reliability.rs`, `tests/cli_pretrained.rs` and `examples/fuzz_loaders.rs`
//! through `#[path]`, so that they build their inputs the same way. Everything here is written
//! from the formats' specifications (PKWARE APPNOTE for zip, Python's pickle protocol 2 and
//! `torch.serialization`'s layout, IEEE 754 binary16, bfloat16), not from the crate under test.
#![allow(dead_code)]

/// CRC-32 (IEEE, reflected, polynomial 0xEDB88320), as zip stores it.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= byte as u32;
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

fn u16_at(b: &[u8], at: usize) -> Option<usize> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?) as usize)
}

fn u32_at(b: &[u8], at: usize) -> Option<usize> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?) as usize)
}

/// The entries `(name, data)` of a zip archive whose entries are all stored (uncompressed),
/// in central-directory order; `None` if the archive is not such a zip.
pub fn read_zip(bytes: &[u8]) -> Option<Vec<(String, Vec<u8>)>> {
    // End of central directory: signature 0x06054b50, found scanning back from the end.
    let eocd = (0..=bytes.len().checked_sub(22)?)
        .rev()
        .find(|&i| bytes[i..i + 4] == [0x50, 0x4b, 0x05, 0x06])?;
    let count = u16_at(bytes, eocd + 10)?;
    let mut at = u32_at(bytes, eocd + 16)?;
    let mut entries = Vec::with_capacity(count);
    for _ in 0..count {
        if bytes.get(at..at + 4)? != [0x50, 0x4b, 0x01, 0x02] {
            return None;
        }
        let method = u16_at(bytes, at + 10)?;
        let size = u32_at(bytes, at + 20)?;
        let (name_len, extra_len, comment_len) = (
            u16_at(bytes, at + 28)?,
            u16_at(bytes, at + 30)?,
            u16_at(bytes, at + 32)?,
        );
        let local = u32_at(bytes, at + 42)?;
        let name = String::from_utf8(bytes.get(at + 46..at + 46 + name_len)?.to_vec()).ok()?;
        if method != 0 || bytes.get(local..local + 4)? != [0x50, 0x4b, 0x03, 0x04] {
            return None;
        }
        let data_at = local + 30 + u16_at(bytes, local + 26)? + u16_at(bytes, local + 28)?;
        entries.push((name, bytes.get(data_at..data_at + size)?.to_vec()));
        at += 46 + name_len + extra_len + comment_len;
    }
    Some(entries)
}

/// Where the data of entry `name` starts in the archive `bytes`.
pub fn entry_data_offset(bytes: &[u8], name: &str) -> Option<usize> {
    let eocd = (0..=bytes.len().checked_sub(22)?)
        .rev()
        .find(|&i| bytes[i..i + 4] == [0x50, 0x4b, 0x05, 0x06])?;
    let mut at = u32_at(bytes, eocd + 16)?;
    for _ in 0..u16_at(bytes, eocd + 10)? {
        let name_len = u16_at(bytes, at + 28)?;
        let local = u32_at(bytes, at + 42)?;
        if bytes.get(at + 46..at + 46 + name_len)? == name.as_bytes() {
            return Some(local + 30 + u16_at(bytes, local + 26)? + u16_at(bytes, local + 28)?);
        }
        at += 46 + name_len + u16_at(bytes, at + 30)? + u16_at(bytes, at + 32)?;
    }
    None
}

/// A zip archive of stored entries with correct CRCs (what `torch.save` writes, without its
/// 64-byte alignment padding, which readers do not need).
pub fn write_zip(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    let push16 = |v: &mut Vec<u8>, x: usize| v.extend_from_slice(&(x as u16).to_le_bytes());
    let push32 = |v: &mut Vec<u8>, x: usize| v.extend_from_slice(&(x as u32).to_le_bytes());
    for (name, data) in entries {
        let offset = out.len();
        let crc = crc32(data) as usize;
        // Local file header.
        out.extend_from_slice(&[0x50, 0x4b, 0x03, 0x04]);
        push16(&mut out, 20); // version needed
        push16(&mut out, 0); // flags
        push16(&mut out, 0); // method: stored
        push16(&mut out, 0); // time
        push16(&mut out, 0x21); // date (1980-01-01)
        push32(&mut out, crc);
        push32(&mut out, data.len());
        push32(&mut out, data.len());
        push16(&mut out, name.len());
        push16(&mut out, 0); // extra length
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(data);
        // Central directory entry.
        central.extend_from_slice(&[0x50, 0x4b, 0x01, 0x02]);
        push16(&mut central, 20); // made by
        push16(&mut central, 20); // needed
        push16(&mut central, 0);
        push16(&mut central, 0);
        push16(&mut central, 0);
        push16(&mut central, 0x21);
        push32(&mut central, crc);
        push32(&mut central, data.len());
        push32(&mut central, data.len());
        push16(&mut central, name.len());
        push16(&mut central, 0); // extra
        push16(&mut central, 0); // comment
        push16(&mut central, 0); // disk
        push16(&mut central, 0); // internal attributes
        push32(&mut central, 0); // external attributes
        push32(&mut central, offset);
        central.extend_from_slice(name.as_bytes());
    }
    let central_at = out.len();
    out.extend_from_slice(&central);
    out.extend_from_slice(&[0x50, 0x4b, 0x05, 0x06]);
    push16(&mut out, 0);
    push16(&mut out, 0);
    push16(&mut out, entries.len());
    push16(&mut out, entries.len());
    push32(&mut out, central.len());
    push32(&mut out, central_at);
    push16(&mut out, 0);
    out
}

/// The pickled object of a `.pth` (the entry ending in `data.pkl`), mutable.
pub fn pickle_mut(entries: &mut [(String, Vec<u8>)]) -> &mut Vec<u8> {
    &mut entries
        .iter_mut()
        .find(|(n, _)| n.ends_with("/data.pkl"))
        .expect("a .pth holds data.pkl")
        .1
}

/// Replaces every occurrence of `from` by `to` in `bytes`; returns how many were replaced.
pub fn replace_all(bytes: &mut Vec<u8>, from: &[u8], to: &[u8]) -> usize {
    let mut out = Vec::with_capacity(bytes.len());
    let (mut i, mut n) = (0, 0);
    while i < bytes.len() {
        if bytes[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
            n += 1;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    *bytes = out;
    n
}

/// A float32 `.pth` (all storages `torch.FloatStorage`, as the fixtures are) re-stored with
/// every storage of type `storage` (e.g. `"HalfStorage"`), each storage file's f32 values
/// re-encoded by `encode`.
///
/// The pickle names the storage class once (`GLOBAL torch FloatStorage`, then memo references),
/// and element counts and offsets are in elements, so only that name and the data files change.
pub fn convert_pth(pth: &[u8], storage: &str, encode: impl Fn(f32) -> Vec<u8>) -> Vec<u8> {
    let mut entries = read_zip(pth).expect("the fixture is a stored zip");
    let replaced = replace_all(
        pickle_mut(&mut entries),
        b"ctorch\nFloatStorage\n",
        format!("ctorch\n{storage}\n").as_bytes(),
    );
    assert_eq!(replaced, 1, "the pickle names FloatStorage once");
    for (name, data) in entries.iter_mut() {
        if name.contains("/data/") {
            *data = data
                .chunks_exact(4)
                .flat_map(|c| encode(f32::from_le_bytes(c.try_into().unwrap())))
                .collect();
        }
    }
    write_zip(&entries)
}

/// IEEE 754 binary16 bits of `x`, rounded to nearest, ties to even (overflow gives ±inf).
pub fn f16_bits(x: f32) -> u16 {
    let b = x.to_bits();
    let sign = ((b >> 16) & 0x8000) as u16;
    let exp = ((b >> 23) & 0xff) as i32;
    let man = b & 0x7f_ffff;
    if exp == 0xff {
        return sign | 0x7c00 | if man != 0 { 0x200 } else { 0 };
    }
    let e = exp - 127 + 15;
    if e >= 0x1f {
        return sign | 0x7c00;
    }
    if e <= 0 {
        // Subnormal: value = m24 · 2^(exp−150) = m10 · 2^−24, so m10 = m24 >> (14 − e).
        if e < -10 {
            return sign;
        }
        let m = man | 0x80_0000;
        let shift = (14 - e) as u32;
        let rounded = (m + (1 << (shift - 1)) - 1 + ((m >> shift) & 1)) >> shift;
        return sign | rounded as u16;
    }
    let mut h = ((e as u32) << 10) | (man >> 13);
    let rest = man & 0x1fff;
    if rest > 0x1000 || (rest == 0x1000 && h & 1 == 1) {
        h += 1; // a carry into the exponent is the correct rounding (up to inf)
    }
    sign | h as u16
}

/// The value of binary16 bits `h`.
pub fn f16_value(h: u16) -> f32 {
    let sign = if h & 0x8000 != 0 { -1.0f32 } else { 1.0 };
    let e = ((h >> 10) & 0x1f) as i32;
    let m = (h & 0x3ff) as f32;
    match e {
        0 => sign * m * 2f32.powi(-24),
        31 if m == 0.0 => sign * f32::INFINITY,
        31 => f32::NAN,
        _ => sign * (1.0 + m / 1024.0) * 2f32.powi(e - 15),
    }
}

/// bfloat16 bits of a finite `x` (the top half of its f32 bits), rounded to nearest, ties to
/// even.
pub fn bf16_bits(x: f32) -> u16 {
    let b = x.to_bits();
    ((b + 0x7fff + ((b >> 16) & 1)) >> 16) as u16
}

/// The value of bfloat16 bits `h`.
pub fn bf16_value(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

/// One float32 tensor of a state dict: its key, its shape and its values (row-major).
pub struct StateTensor {
    /// The state-dict key (`patch_embed.0.weight`, …).
    pub name: String,
    /// The shape (empty for a scalar).
    pub shape: Vec<usize>,
    /// The values, `shape.iter().product()` of them.
    pub values: Vec<f32>,
}

/// Pickle opcodes used below (Python's `pickletools`, protocol 2).
mod op {
    pub const PROTO: u8 = 0x80;
    pub const EMPTY_DICT: u8 = b'}';
    pub const EMPTY_TUPLE: u8 = b')';
    pub const MARK: u8 = b'(';
    pub const TUPLE: u8 = b't';
    pub const GLOBAL: u8 = b'c';
    pub const REDUCE: u8 = b'R';
    pub const BINPERSID: u8 = b'Q';
    pub const BINUNICODE: u8 = b'X';
    pub const BININT1: u8 = b'K';
    pub const BININT2: u8 = b'M';
    pub const BININT: u8 = b'J';
    pub const NEWFALSE: u8 = 0x89;
    pub const SETITEM: u8 = b's';
    pub const SETITEMS: u8 = b'u';
    pub const STOP: u8 = b'.';
}

fn pickle_str(out: &mut Vec<u8>, s: &str) {
    out.push(op::BINUNICODE);
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn pickle_int(out: &mut Vec<u8>, n: usize) {
    if n < 0x100 {
        out.extend_from_slice(&[op::BININT1, n as u8]);
    } else if n < 0x1_0000 {
        out.push(op::BININT2);
        out.extend_from_slice(&(n as u16).to_le_bytes());
    } else {
        let n = i32::try_from(n).expect("BININT holds a signed 32-bit integer");
        out.push(op::BININT);
        out.extend_from_slice(&n.to_le_bytes());
    }
}

fn pickle_global(out: &mut Vec<u8>, module: &str, name: &str) {
    out.push(op::GLOBAL);
    out.extend_from_slice(format!("{module}\n{name}\n").as_bytes());
}

fn pickle_int_tuple(out: &mut Vec<u8>, items: &[usize]) {
    if items.is_empty() {
        out.push(op::EMPTY_TUPLE);
        return;
    }
    out.push(op::MARK);
    for &i in items {
        pickle_int(out, i);
    }
    out.push(op::TUPLE);
}

/// `collections.OrderedDict()`: the class called with no arguments.
fn pickle_empty_ordered_dict(out: &mut Vec<u8>) {
    pickle_global(out, "collections", "OrderedDict");
    out.push(op::EMPTY_TUPLE);
    out.push(op::REDUCE);
}

/// The pickle `torch.save({"model": OrderedDict(state)})` writes (protocol 2), without the memo
/// (`BINPUT`) opcodes, which only let a pickle refer back to objects it already holds.
///
/// Each tensor is `torch._utils._rebuild_tensor_v2(storage, 0, size, stride, False,
/// OrderedDict())`, where `storage` is the persistent id `('storage', torch.FloatStorage, key,
/// 'cpu', numel)` (`BINPERSID`) and `key` is the tensor's index, which names its data file
/// `archive/data/<key>`.
pub fn state_dict_pickle(state: &[StateTensor]) -> Vec<u8> {
    let mut out = vec![op::PROTO, 2, op::EMPTY_DICT];
    pickle_str(&mut out, "model");
    pickle_empty_ordered_dict(&mut out);
    if !state.is_empty() {
        out.push(op::MARK);
        for (key, t) in state.iter().enumerate() {
            pickle_str(&mut out, &t.name);
            pickle_global(&mut out, "torch._utils", "_rebuild_tensor_v2");
            out.push(op::MARK);
            // The storage, loaded by the unpickler's persistent_load.
            out.push(op::MARK);
            pickle_str(&mut out, "storage");
            pickle_global(&mut out, "torch", "FloatStorage");
            pickle_str(&mut out, &key.to_string());
            pickle_str(&mut out, "cpu");
            // The storage's element count, from the shape (what `write_pth` stores; a test may
            // leave `values` empty to build a pickle that claims more than its file holds).
            pickle_int(&mut out, t.shape.iter().product());
            out.push(op::TUPLE);
            out.push(op::BINPERSID);
            pickle_int(&mut out, 0); // storage offset
            pickle_int_tuple(&mut out, &t.shape);
            // Contiguous (row-major) strides, in elements.
            let mut stride = vec![1; t.shape.len()];
            for d in (0..t.shape.len().saturating_sub(1)).rev() {
                stride[d] = stride[d + 1] * t.shape[d + 1];
            }
            pickle_int_tuple(&mut out, &stride);
            out.push(op::NEWFALSE); // requires_grad
            pickle_empty_ordered_dict(&mut out); // backward_hooks
            out.push(op::TUPLE);
            out.push(op::REDUCE);
        }
        out.push(op::SETITEMS);
    }
    out.push(op::SETITEM);
    out.push(op::STOP);
    out
}

/// A `.pth` holding `{"model": OrderedDict(state)}` in `torch.save`'s zip layout: entries
/// `archive/data.pkl` ([`state_dict_pickle`]), `archive/byteorder` (`little`),
/// `archive/data/<key>` (each tensor's float32 values, little-endian) and `archive/version`
/// (`3`). The tensors' values are moved into the archive.
///
/// Checked once against PyTorch 2.15 (`scripts/check_pth_writer.py`: `torch.load(path,
/// weights_only=True)` reads the file `tests/cli_pretrained.rs` writes with this function,
/// with the expected keys, shapes and values).
pub fn write_pth(state: Vec<StateTensor>) -> Vec<u8> {
    let pickle = state_dict_pickle(&state);
    let mut entries = vec![
        ("archive/data.pkl".to_string(), pickle),
        ("archive/byteorder".to_string(), b"little".to_vec()),
    ];
    for (key, t) in state.into_iter().enumerate() {
        assert_eq!(
            t.values.len(),
            t.shape.iter().product::<usize>(),
            "{}: values do not fill the shape",
            t.name
        );
        let bytes = t.values.iter().flat_map(|v| v.to_le_bytes()).collect();
        entries.push((format!("archive/data/{key}"), bytes));
    }
    entries.push(("archive/version".to_string(), b"3\n".to_vec()));
    write_zip(&entries)
}
