//! A pickle reader for the files `torch.save` writes: it builds values, never runs anything.
//!
//! Why the crate owns this reader instead of using a crate: burn-store's PyTorch reader refuses
//! any dict subclass (`SETITEMS` on the yacs `CfgNode` that Swin-family training scripts save
//! as `config` makes the whole file unreadable); `serde-pickle` has no persistent ids, which
//! is how `torch.save` refers to every tensor's storage; candle's reader clones memoised values
//! (a dict memoised before its items are set reads back empty) and pulls in candle. What must
//! be exact here is small: the pickle opcodes of protocols 0-5, and tensor rebuilds.
//!
//! Every `GLOBAL` is a name, never resolved or imported: `torch._utils._rebuild_tensor_v2`
//! and `_rebuild_parameter` become tensors, `collections.OrderedDict` a dict, and anything
//! else (a `CfgNode`, a numpy scalar or array, an `argparse.Namespace`, mmengine's
//! `HistoryBuffer`, a set) an opaque [`Object`] that keeps its arguments, items and state so
//! that `SETITEM(S)`, `APPEND(S)` and `BUILD` on it always succeed. Containers are shared
//! (`Rc<RefCell<…>>`) as in Python, so a dict memoised before its items are set is complete
//! when read back with `GET`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// A value built by the pickle machine.
#[derive(Clone)]
pub(crate) enum Value {
    /// Python's `None`.
    None,
    /// A bool.
    Bool(bool),
    /// An integer that fits 64 bits.
    Int(i64),
    /// An integer too large for 64 bits (only its existence matters here).
    BigInt,
    /// A float.
    Float(f64),
    /// A text string.
    Str(Rc<str>),
    /// A byte string.
    Bytes(Rc<[u8]>),
    /// A list (also sets and frozensets, whose order does not matter here).
    List(Rc<RefCell<Vec<Value>>>),
    /// A tuple.
    Tuple(Rc<Vec<Value>>),
    /// A dict or `OrderedDict`, in insertion order.
    Dict(Rc<RefCell<Vec<(Value, Value)>>>),
    /// A global name (`module.name`), never resolved.
    Global(Rc<(String, String)>),
    /// An instance of a class this reader does not know.
    Object(Rc<RefCell<Object>>),
    /// A tensor's storage, named by a persistent id.
    Storage(Rc<StorageRef>),
    /// A tensor: a strided view into a storage.
    Tensor(Rc<TensorRef>),
}

/// An instance of a class the reader does not know, kept as data.
#[derive(Default)]
pub(crate) struct Object {
    /// `module.name` of its class.
    pub class: String,
    /// Items set on it with `SETITEM(S)` (dict subclasses such as yacs' `CfgNode`).
    pub items: Vec<(Value, Value)>,
}

/// The element type of a storage, from its `torch.*Storage` class name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StorageKind {
    /// `FloatStorage`.
    F32,
    /// `DoubleStorage`.
    F64,
    /// `HalfStorage`.
    F16,
    /// `BFloat16Storage`.
    BF16,
    /// `LongStorage`.
    I64,
    /// `IntStorage`.
    I32,
    /// `ShortStorage`.
    I16,
    /// `CharStorage`.
    I8,
    /// `ByteStorage`.
    U8,
    /// `BoolStorage`.
    Bool,
}

impl StorageKind {
    fn from_class(name: &str) -> Option<Self> {
        Some(match name {
            "FloatStorage" => Self::F32,
            "DoubleStorage" => Self::F64,
            "HalfStorage" => Self::F16,
            "BFloat16Storage" => Self::BF16,
            "LongStorage" => Self::I64,
            "IntStorage" => Self::I32,
            "ShortStorage" => Self::I16,
            "CharStorage" => Self::I8,
            "ByteStorage" => Self::U8,
            "BoolStorage" => Self::Bool,
            _ => return None,
        })
    }

    /// Bytes per element.
    pub(crate) fn size(self) -> usize {
        match self {
            Self::F64 | Self::I64 => 8,
            Self::F32 | Self::I32 => 4,
            Self::F16 | Self::BF16 | Self::I16 => 2,
            Self::I8 | Self::U8 | Self::Bool => 1,
        }
    }
}

/// A storage as a persistent id names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StorageRef {
    /// The key of its bytes (`data/{key}` in a zip, the key in a legacy file).
    pub key: String,
    /// Its element type.
    pub kind: StorageKind,
    /// In a legacy file, a view into another storage: `(offset in elements, length)`.
    pub view: Option<(usize, usize)>,
}

/// A tensor as `_rebuild_tensor_v2` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TensorRef {
    /// Its storage.
    pub storage: StorageRef,
    /// The offset of its first element in the storage, in elements.
    pub offset: usize,
    /// Its shape.
    pub shape: Vec<usize>,
    /// Its strides, in elements.
    pub strides: Vec<usize>,
}

/// What went wrong reading a pickle.
pub(crate) type PickleResult<T> = std::result::Result<T, String>;

/// The largest stack or memo the reader builds, against files crafted to exhaust memory.
const MAX_ITEMS: usize = 1 << 24;

/// The most containers put into containers. Nesting is bounded by it, and so is the recursion
/// that drops nested values (the caller gives the reader a stack for this depth); a real
/// checkpoint has a few thousand.
pub(crate) const MAX_NESTED: usize = 1 << 18;

impl Value {
    /// The entries of a dict or of a dict subclass's instance.
    pub(crate) fn dict_items(&self) -> Option<Vec<(Value, Value)>> {
        match self {
            Value::Dict(d) => Some(d.borrow().clone()),
            Value::Object(o) => Some(o.borrow().items.clone()),
            _ => None,
        }
    }

    /// The text of a string.
    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The identity of a shared container (for visiting each once).
    pub(crate) fn container_id(&self) -> Option<usize> {
        match self {
            Value::List(l) => Some(Rc::as_ptr(l) as *const () as usize),
            Value::Tuple(t) => Some(Rc::as_ptr(t) as *const () as usize),
            Value::Dict(d) => Some(Rc::as_ptr(d) as *const () as usize),
            Value::Object(o) => Some(Rc::as_ptr(o) as *const () as usize),
            _ => None,
        }
    }

    fn as_usize(&self) -> Option<usize> {
        match self {
            Value::Int(i) => usize::try_from(*i).ok(),
            _ => None,
        }
    }

    fn items(&self) -> Option<Vec<Value>> {
        match self {
            Value::Tuple(t) => Some(t.as_ref().clone()),
            Value::List(l) => Some(l.borrow().clone()),
            _ => None,
        }
    }

    /// A short description for messages: the value of a scalar, the size of a container, the
    /// class of an object.
    pub(crate) fn describe(&self) -> String {
        match self {
            Value::None => "None".into(),
            Value::Bool(b) => b.to_string(),
            Value::Int(i) => i.to_string(),
            Value::BigInt => "a large int".into(),
            Value::Float(f) => f.to_string(),
            Value::Str(s) => format!("{s:?}"),
            Value::Bytes(b) => format!("{} bytes", b.len()),
            Value::List(l) => format!("a list of {}", l.borrow().len()),
            Value::Tuple(t) => format!("a tuple of {}", t.len()),
            Value::Dict(d) => format!("a dict of {}", d.borrow().len()),
            Value::Global(g) => format!("{}.{}", g.0, g.1),
            Value::Object(o) => format!("a {} object", o.borrow().class),
            Value::Storage(s) => format!("storage {:?}", s.key),
            Value::Tensor(t) => format!("a {:?} tensor of shape {:?}", t.storage.kind, t.shape),
        }
    }

    fn kind_name(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) | Value::BigInt => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::List(_) => "list",
            Value::Tuple(_) => "tuple",
            Value::Dict(_) => "dict",
            Value::Global(_) => "global",
            Value::Object(_) => "object",
            Value::Storage(_) => "storage",
            Value::Tensor(_) => "tensor",
        }
    }
}

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

/// The value of `callable(*args)`, without calling anything: tensors and ordered dicts are
/// recognised by name, everything else becomes an opaque [`Object`].
fn reduce(callable: &Value, args: &Value) -> PickleResult<Value> {
    let Value::Global(g) = callable else {
        // Calling a non-global (a value returned by another reduce): opaque.
        return Ok(object(format!("<{}>", callable.kind_name())));
    };
    let (module, name) = (g.0.as_str(), g.1.as_str());
    match (module, name) {
        ("torch._utils", "_rebuild_tensor_v2" | "_rebuild_tensor") => rebuild_tensor(args),
        ("torch._utils", "_rebuild_parameter" | "_rebuild_parameter_with_state") => args
            .items()
            .and_then(|a| a.into_iter().next())
            .ok_or_else(|| "_rebuild_parameter without a tensor".into()),
        ("collections", "OrderedDict") | ("builtins" | "__builtin__", "dict") => {
            let d = Value::Dict(Rc::default());
            // `OrderedDict([(k, v), …])` (protocol 0/1) carries its items as an argument.
            if let Some(pairs) = args.items().and_then(|a| a.into_iter().next()) {
                if let (Value::Dict(target), Some(pairs)) = (&d, pairs.items()) {
                    for p in pairs {
                        if let Some([k, v]) = p.items().as_deref() {
                            target.borrow_mut().push((k.clone(), v.clone()));
                        }
                    }
                }
            }
            Ok(d)
        }
        _ => Ok(object(format!("{module}.{name}"))),
    }
}

fn object(class: String) -> Value {
    Value::Object(Rc::new(RefCell::new(Object {
        class,
        items: Vec::new(),
    })))
}

/// `_rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, hooks, …)`.
fn rebuild_tensor(args: &Value) -> PickleResult<Value> {
    let a = args.items().ok_or("_rebuild_tensor_v2 without arguments")?;
    let [storage, offset, size, stride, ..] = a.as_slice() else {
        return Err("_rebuild_tensor_v2 with too few arguments".into());
    };
    let Value::Storage(storage) = storage else {
        return Err(format!(
            "_rebuild_tensor_v2 on a {} instead of a storage",
            storage.kind_name()
        ));
    };
    let ints = |v: &Value, what: &str| -> PickleResult<Vec<usize>> {
        v.items()
            .ok_or_else(|| format!("tensor {what} is not a tuple"))?
            .iter()
            .map(|x| {
                x.as_usize()
                    .ok_or_else(|| format!("tensor {what} holds a non-integer"))
            })
            .collect()
    };
    let shape = ints(size, "size")?;
    let strides = ints(stride, "stride")?;
    if shape.len() != strides.len() {
        return Err("tensor size and stride differ in length".into());
    }
    Ok(Value::Tensor(Rc::new(TensorRef {
        storage: storage.as_ref().clone(),
        offset: offset.as_usize().ok_or("tensor offset is not an integer")?,
        shape,
        strides,
    })))
}

/// The storage a persistent id `('storage', torch.FloatStorage, key, location, numel[, view])`
/// names; a legacy file's view metadata is `(view_key, offset, size)` or `None`.
pub(crate) fn storage_pid(pid: &Value) -> PickleResult<Value> {
    let items = pid.items().ok_or("persistent id is not a tuple")?;
    let [tag, class, key, _location, _numel, rest @ ..] = items.as_slice() else {
        return Err("persistent id with too few entries".into());
    };
    if tag.as_str() != Some("storage") {
        return Err("persistent id is not a storage".into());
    }
    let kind = match class {
        Value::Global(g) => StorageKind::from_class(&g.1)
            .ok_or_else(|| format!("unsupported storage type {}.{}", g.0, g.1))?,
        _ => return Err("storage type is not a class name".into()),
    };
    let key = key
        .as_str()
        .ok_or("storage key is not a string")?
        .to_string();
    let view = match rest.first() {
        None | Some(Value::None) => None,
        Some(v) => match v.items().as_deref() {
            Some([_, off, len]) => Some((
                off.as_usize().ok_or("storage view offset")?,
                len.as_usize().ok_or("storage view size")?,
            )),
            _ => return Err("storage view metadata is malformed".into()),
        },
    };
    Ok(Value::Storage(Rc::new(StorageRef { key, kind, view })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(bytes: &[u8]) -> PickleResult<Value> {
        unpickle(bytes, &storage_pid).map(|(v, _)| v)
    }

    #[test]
    fn setitems_on_a_dict_subclass_is_kept_as_items() {
        // {"config": CfgNode({"A": 1})} at protocol 2: NEWOBJ, then SETITEMS on the instance,
        // then BUILD with its __dict__.
        let p = b"\x80\x02}q\x00X\x06\x00\x00\x00configq\x01cyacs.config\nCfgNode\nq\x02)\x81q\x03(X\x01\x00\x00\x00AK\x01u}bs.";
        let v = run(p).unwrap();
        let items = v.dict_items().unwrap();
        assert_eq!(items[0].0.as_str(), Some("config"));
        let inner = items[0].1.dict_items().unwrap();
        assert_eq!(inner[0].0.as_str(), Some("A"));
        assert!(matches!(inner[0].1, Value::Int(1)));
    }

    #[test]
    fn a_memoised_dict_reads_back_with_its_later_items() {
        // d = {}; d["k"] = 1; [d, d]: the second is a GET of the memo entry stored before the
        // item was set.
        let p = b"\x80\x02](}q\x00X\x01\x00\x00\x00kK\x01sh\x00e.";
        let v = run(p).unwrap();
        let Value::List(l) = v else { panic!() };
        let second = l.borrow()[1].dict_items().unwrap();
        assert_eq!(second.len(), 1);
    }

    #[test]
    fn malformed_pickles_are_errors() {
        for p in [
            &b""[..],
            b"\x80\x02",
            b"s.",
            b"\x80\x02(.",
            b"\xff",
            b"h\x05.",
        ] {
            assert!(run(p).is_err(), "{p:?}");
        }
    }
}
