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
use std::rc::Rc;

mod machine;

pub(crate) use machine::unpickle;

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
    /// The element count the persistent id declares (`None` when it is not a non-negative
    /// integer): a zip record holding more bytes than this is refused before it is inflated.
    pub numel: Option<usize>,
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
    let [tag, class, key, _location, numel, rest @ ..] = items.as_slice() else {
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
    Ok(Value::Storage(Rc::new(StorageRef {
        key,
        kind,
        view,
        numel: numel.as_usize(),
    })))
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
