//! Test-side tools for building bad checkpoints: the PyTorch zip container (read and write,
//! stored entries only, as `torch.save` writes them), storage-type conversion of a `.pth`, and
//! float16/bfloat16 encoding.
//!
//! Shared by `tests/reliability.rs` and `examples/fuzz_loaders.rs` through `#[path]`, so that
//! both build their inputs the same way. Everything here is written from the formats'
//! specifications (PKWARE APPNOTE for zip, IEEE 754 binary16, bfloat16), not from the crate
//! under test.
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
