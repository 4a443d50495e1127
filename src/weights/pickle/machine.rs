//! The pickle machine: the opcodes of protocols 0-5 run over a stack and a memo, building
//! [`Value`]s (see the parent module for what each global becomes).

use std::collections::HashMap;

use super::*;

/// A stack entry: a value or a MARK.
enum Slot {
    Mark,
    Value(Value),
}

/// Runs the pickle in `bytes` until `STOP`; returns the value and the number of bytes read.
///
/// `persistent` turns a persistent id into a value (a storage); it decides what the file's
/// persistent ids mean (zip and legacy files differ).
pub(crate) fn unpickle(
    bytes: &[u8],
    persistent: &dyn Fn(&Value) -> PickleResult<Value>,
) -> PickleResult<(Value, usize)> {
    let mut m = Machine {
        bytes,
        pos: 0,
        stack: Vec::new(),
        memo: HashMap::new(),
        nested: 0,
    };
    let value = m.run(persistent)?;
    Ok((value, m.pos))
}

struct Machine<'a> {
    bytes: &'a [u8],
    pos: usize,
    stack: Vec<Slot>,
    memo: HashMap<u64, Value>,
    nested: usize,
}

impl Machine<'_> {
    /// Counts the containers among `items`, which are being put into a container.
    fn nest(&mut self, items: &[Value]) -> PickleResult<()> {
        self.nested += items.iter().filter(|v| v.container_id().is_some()).count();
        if self.nested > MAX_NESTED {
            return Err("pickle nests more containers than any checkpoint".into());
        }
        Ok(())
    }

    fn take(&mut self, n: usize) -> PickleResult<&[u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| format!("pickle truncated at byte {} (wanted {n} more)", self.pos))?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> PickleResult<u8> {
        Ok(self.take(1)?[0])
    }

    fn le<const N: usize>(&mut self) -> PickleResult<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn line(&mut self) -> PickleResult<String> {
        let rest = &self.bytes[self.pos..];
        let n = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or("pickle truncated inside a text line")?;
        let s = String::from_utf8_lossy(&rest[..n]).into_owned();
        self.pos += n + 1;
        Ok(s)
    }

    fn len_u32(&mut self) -> PickleResult<usize> {
        Ok(u32::from_le_bytes(self.le()?) as usize)
    }

    fn len_u64(&mut self) -> PickleResult<usize> {
        usize::try_from(u64::from_le_bytes(self.le()?)).map_err(|_| "length overflows".into())
    }

    fn push(&mut self, v: Value) -> PickleResult<()> {
        if self.stack.len() >= MAX_ITEMS {
            return Err("pickle stack too deep".into());
        }
        self.stack.push(Slot::Value(v));
        Ok(())
    }

    fn pop(&mut self) -> PickleResult<Value> {
        match self.stack.pop() {
            Some(Slot::Value(v)) => Ok(v),
            Some(Slot::Mark) => Err("pickle pops a MARK as a value".into()),
            None => Err("pickle pops an empty stack".into()),
        }
    }

    fn top(&self) -> PickleResult<&Value> {
        match self.stack.last() {
            Some(Slot::Value(v)) => Ok(v),
            _ => Err("pickle needs a value on the stack".into()),
        }
    }

    /// Everything above the topmost MARK, which is removed.
    fn pop_mark(&mut self) -> PickleResult<Vec<Value>> {
        let at = self
            .stack
            .iter()
            .rposition(|s| matches!(s, Slot::Mark))
            .ok_or("pickle has no MARK to pop to")?;
        let items = self
            .stack
            .drain(at + 1..)
            .map(|s| match s {
                Slot::Value(v) => v,
                Slot::Mark => unreachable!("rposition found the topmost MARK"),
            })
            .collect();
        self.stack.pop();
        Ok(items)
    }

    fn memo_put(&mut self, key: u64) -> PickleResult<()> {
        let v = self.top()?.clone();
        if self.memo.len() >= MAX_ITEMS {
            return Err("pickle memo too large".into());
        }
        self.memo.insert(key, v);
        Ok(())
    }

    fn memo_get(&mut self, key: u64) -> PickleResult<()> {
        let v = self
            .memo
            .get(&key)
            .cloned()
            .ok_or_else(|| format!("pickle reads memo entry {key}, which was never stored"))?;
        self.push(v)
    }

    fn set_items(&mut self, pairs: Vec<Value>) -> PickleResult<()> {
        if !pairs.len().is_multiple_of(2) {
            return Err("SETITEMS with an odd number of values".into());
        }
        self.nest(&pairs)?;
        let mut it = pairs.into_iter();
        let mut kv = Vec::new();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            kv.push((k, v));
        }
        match self.top()? {
            Value::Dict(d) => d.borrow_mut().extend(kv),
            Value::Object(o) => o.borrow_mut().items.extend(kv),
            // Items set on anything else (a reduced value this reader does not model) are
            // irrelevant to a state dict: dropped.
            _ => {}
        }
        Ok(())
    }

    fn append(&mut self, items: Vec<Value>) -> PickleResult<()> {
        self.nest(&items)?;
        if let Value::List(l) = self.top()? {
            l.borrow_mut().extend(items);
        }
        // Appends to an object (a list subclass) or anything else carry nothing a state dict
        // needs: dropped.
        Ok(())
    }

    fn run(&mut self, persistent: &dyn Fn(&Value) -> PickleResult<Value>) -> PickleResult<Value> {
        loop {
            let op = self.u8()?;
            match op {
                0x80 => {
                    // PROTO
                    self.u8()?;
                }
                0x95 => {
                    // FRAME: a length hint only.
                    self.take(8)?;
                }
                b'.' => return self.pop(),
                b'(' => self.stack.push(Slot::Mark),
                b'0' => {
                    self.stack.pop().ok_or("POP on an empty stack")?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let v = self.top()?.clone();
                    self.push(v)?;
                }
                b'J' => {
                    let v = i32::from_le_bytes(self.le()?);
                    self.push(Value::Int(v.into()))?;
                }
                b'K' => {
                    let v = self.u8()?;
                    self.push(Value::Int(v.into()))?;
                }
                b'M' => {
                    let v = u16::from_le_bytes(self.le()?);
                    self.push(Value::Int(v.into()))?;
                }
                b'I' | b'L' => {
                    let line = self.line()?;
                    let text = line.trim_end_matches('L');
                    let v = match text {
                        "00" => Value::Bool(false),
                        "01" => Value::Bool(true),
                        t => t.parse().map(Value::Int).unwrap_or(Value::BigInt),
                    };
                    self.push(v)?;
                }
                0x8a | 0x8b => {
                    // LONG1 / LONG4: little-endian two's complement.
                    let n = if op == 0x8a {
                        self.u8()? as usize
                    } else {
                        self.len_u32()?
                    };
                    let b = self.take(n)?;
                    let v = if n <= 8 {
                        let fill = if b.last().is_some_and(|&x| x & 0x80 != 0) {
                            0xff
                        } else {
                            0
                        };
                        let mut a = [fill; 8];
                        a[..n].copy_from_slice(b);
                        Value::Int(i64::from_le_bytes(a))
                    } else {
                        Value::BigInt
                    };
                    self.push(v)?;
                }
                b'G' => {
                    let v = f64::from_be_bytes(self.le()?);
                    self.push(Value::Float(v))?;
                }
                b'F' => {
                    let line = self.line()?;
                    let v = line.trim().parse().unwrap_or(f64::NAN);
                    self.push(Value::Float(v))?;
                }
                b'N' => self.push(Value::None)?,
                0x88 => self.push(Value::Bool(true))?,
                0x89 => self.push(Value::Bool(false))?,
                b'X' | 0x8c | 0x8d => {
                    let n = match op {
                        b'X' => self.len_u32()?,
                        0x8c => self.u8()? as usize,
                        _ => self.len_u64()?,
                    };
                    let s = String::from_utf8_lossy(self.take(n)?).into_owned();
                    self.push(Value::Str(s.into()))?;
                }
                b'V' => {
                    let s = self.line()?;
                    self.push(Value::Str(s.into()))?;
                }
                b'S' => {
                    let s = self.line()?;
                    let s = s.trim().trim_matches(|c| c == '\'' || c == '"').to_string();
                    self.push(Value::Str(s.into()))?;
                }
                b'T' | b'U' => {
                    // BINSTRING / SHORT_BINSTRING (Python 2 str): kept as text.
                    let n = if op == b'T' {
                        self.len_u32()?
                    } else {
                        self.u8()? as usize
                    };
                    let s = String::from_utf8_lossy(self.take(n)?).into_owned();
                    self.push(Value::Str(s.into()))?;
                }
                b'B' | b'C' | 0x8e | 0x96 => {
                    let n = match op {
                        b'B' => self.len_u32()?,
                        b'C' => self.u8()? as usize,
                        _ => self.len_u64()?,
                    };
                    let b: Rc<[u8]> = self.take(n)?.into();
                    self.push(Value::Bytes(b))?;
                }
                b']' => self.push(Value::List(Rc::default()))?,
                b'l' => {
                    let items = self.pop_mark()?;
                    self.nest(&items)?;
                    self.push(Value::List(Rc::new(RefCell::new(items))))?;
                }
                b'a' => {
                    let v = self.pop()?;
                    self.append(vec![v])?;
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    self.append(items)?;
                }
                b')' => self.push(Value::Tuple(Rc::default()))?,
                b't' => {
                    let items = self.pop_mark()?;
                    self.nest(&items)?;
                    self.push(Value::Tuple(Rc::new(items)))?;
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    let at = self
                        .stack
                        .len()
                        .checked_sub(n)
                        .ok_or("TUPLE with too few values")?;
                    let mut items = Vec::with_capacity(n);
                    for s in self.stack.drain(at..) {
                        match s {
                            Slot::Value(v) => items.push(v),
                            Slot::Mark => return Err("TUPLE over a MARK".into()),
                        }
                    }
                    self.nest(&items)?;
                    self.push(Value::Tuple(Rc::new(items)))?;
                }
                b'}' => self.push(Value::Dict(Rc::default()))?,
                b'd' => {
                    let items = self.pop_mark()?;
                    self.push(Value::Dict(Rc::default()))?;
                    self.set_items(items)?;
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    self.set_items(vec![k, v])?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    self.set_items(items)?;
                }
                0x8f => self.push(Value::List(Rc::default()))?,
                0x90 => {
                    let items = self.pop_mark()?;
                    self.append(items)?;
                }
                0x91 => {
                    let items = self.pop_mark()?;
                    self.nest(&items)?;
                    self.push(Value::List(Rc::new(RefCell::new(items))))?;
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.push(Value::Global(Rc::new((module, name))))?;
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (Some(module), Some(name)) = (module.as_str(), name.as_str()) else {
                        return Err("STACK_GLOBAL needs two strings".into());
                    };
                    self.push(Value::Global(Rc::new((module.into(), name.into()))))?;
                }
                b'R' => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let v = reduce(&callable, &args)?;
                    self.push(v)?;
                }
                0x81 => {
                    let args = self.pop()?;
                    let class = self.pop()?;
                    let v = reduce(&class, &args)?;
                    self.push(v)?;
                }
                0x92 => {
                    let _kwargs = self.pop()?;
                    let args = self.pop()?;
                    let class = self.pop()?;
                    let v = reduce(&class, &args)?;
                    self.push(v)?;
                }
                b'o' => {
                    let mut items = self.pop_mark()?;
                    if items.is_empty() {
                        return Err("OBJ without a class".into());
                    }
                    let class = items.remove(0);
                    let v = reduce(&class, &Value::Tuple(Rc::new(items)))?;
                    self.push(v)?;
                }
                b'i' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    let items = self.pop_mark()?;
                    let class = Value::Global(Rc::new((module, name)));
                    let v = reduce(&class, &Value::Tuple(Rc::new(items)))?;
                    self.push(v)?;
                }
                b'b' => {
                    // BUILD: the state of an object (its `__dict__`, numpy's array data, an
                    // OrderedDict's `_metadata`): irrelevant to the tensors, dropped.
                    self.pop()?;
                    self.top()?;
                }
                b'p' => {
                    let n = self.line()?;
                    let key = n.trim().parse().map_err(|_| "PUT with a bad index")?;
                    self.memo_put(key)?;
                }
                b'q' => {
                    let key = self.u8()?.into();
                    self.memo_put(key)?;
                }
                b'r' => {
                    let key = self.len_u32()? as u64;
                    self.memo_put(key)?;
                }
                0x94 => {
                    let key = self.memo.len() as u64;
                    self.memo_put(key)?;
                }
                b'g' => {
                    let n = self.line()?;
                    let key = n.trim().parse().map_err(|_| "GET with a bad index")?;
                    self.memo_get(key)?;
                }
                b'h' => {
                    let key = self.u8()?.into();
                    self.memo_get(key)?;
                }
                b'j' => {
                    let key = self.len_u32()? as u64;
                    self.memo_get(key)?;
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let v = persistent(&pid)?;
                    self.push(v)?;
                }
                b'P' => {
                    let pid = Value::Str(self.line()?.into());
                    let v = persistent(&pid)?;
                    self.push(v)?;
                }
                other => {
                    return Err(format!(
                        "pickle opcode 0x{other:02x} at byte {} is not supported",
                        self.pos - 1
                    ))
                }
            }
        }
    }
}
