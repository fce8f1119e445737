//! Reader for PyTorch's *legacy* (pre-zip) checkpoint format, enough for a state dict of
//! float tensors such as the EfficientNet-Lite0 weights.
//!
//! Layout of such a file: a pickle holding the magic number, one with the protocol version,
//! one with system info, the state-dict pickle (tensors refer to storages by persistent id),
//! a pickle listing the storage keys, then each storage as an int64 element count followed
//! by its raw little-endian elements, in that list's order. Tensors may be views with any
//! offset and strides (several of these weights are transposed TensorFlow arrays), so every
//! tensor is gathered element by element into a fresh contiguous buffer.
//!
//! This is not a general unpickler: it knows the opcodes `torch.save` emits for a state
//! dict and refuses anything else with a typed error.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// What can go wrong reading a checkpoint. Every variant names what it found.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("cannot read weights file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("not a legacy PyTorch checkpoint: {0}")]
    NotACheckpoint(String),
    #[error("malformed pickle at byte {offset}: {reason}")]
    Pickle { offset: usize, reason: String },
    #[error("storage {key} is missing or truncated")]
    Storage { key: String },
    #[error("tensor {name}: view (offset {offset}, shape {shape:?}, strides {strides:?}) reaches past its storage of {len} elements")]
    ViewOutOfBounds {
        name: String,
        offset: usize,
        shape: Vec<usize>,
        strides: Vec<usize>,
        len: usize,
    },
    #[error("tensor {0} is not in the checkpoint")]
    MissingTensor(String),
    #[error("tensor {name} has shape {got:?}, expected {want:?}")]
    Shape {
        name: String,
        got: Vec<usize>,
        want: Vec<usize>,
    },
}

/// A dense, row-major f32 tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl Tensor {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// All float tensors of a state dict, by name. Integer tensors (BatchNorm's
/// `num_batches_tracked`) are read but not kept: no network needs them.
#[derive(Debug, Default)]
pub struct Checkpoint {
    tensors: BTreeMap<String, Tensor>,
}

const LEGACY_MAGIC: u128 = 0x1950a86a20f9469cfc6c;

impl Checkpoint {
    pub fn load(path: &Path) -> Result<Self, WeightsError> {
        let bytes = std::fs::read(path).map_err(|source| WeightsError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&bytes)
    }

    pub fn parse(bytes: &[u8]) -> Result<Self, WeightsError> {
        let mut pos = 0;
        let magic = Unpickler::run(bytes, &mut pos)?;
        match magic {
            Value::Int(m) if m as u128 == LEGACY_MAGIC => {}
            Value::BigInt(m) if m == LEGACY_MAGIC => {}
            _ => {
                return Err(WeightsError::NotACheckpoint(
                    "magic number missing (a zip-format checkpoint is not supported)".into(),
                ))
            }
        }
        let _protocol = Unpickler::run(bytes, &mut pos)?;
        let _sys_info = Unpickler::run(bytes, &mut pos)?;
        let state = Unpickler::run(bytes, &mut pos)?;
        let keys = match Unpickler::run(bytes, &mut pos)? {
            Value::List(items) => items
                .into_iter()
                .map(|v| match v {
                    Value::Str(s) => Ok(s),
                    other => Err(WeightsError::NotACheckpoint(format!(
                        "storage key list holds {other:?}"
                    ))),
                })
                .collect::<Result<Vec<_>, _>>()?,
            other => {
                return Err(WeightsError::NotACheckpoint(format!(
                    "expected the storage key list, found {other:?}"
                )))
            }
        };

        // Storage payloads follow in key order: int64 count, then raw elements.
        let mut storages: HashMap<String, &[u8]> = HashMap::new();
        let element_size = storage_element_sizes(&state);
        for key in keys {
            let count_bytes = bytes
                .get(pos..pos + 8)
                .ok_or_else(|| WeightsError::Storage { key: key.clone() })?;
            let count = u64::from_le_bytes(count_bytes.try_into().unwrap_or([0; 8])) as usize;
            pos += 8;
            let size = *element_size.get(&key).unwrap_or(&4);
            let len = count
                .checked_mul(size)
                .ok_or_else(|| WeightsError::Storage { key: key.clone() })?;
            let data = bytes
                .get(pos..pos + len)
                .ok_or_else(|| WeightsError::Storage { key: key.clone() })?;
            pos += len;
            storages.insert(key, data);
        }

        let entries = match state {
            Value::Dict(entries) => entries,
            other => {
                return Err(WeightsError::NotACheckpoint(format!(
                    "state dict is not a dict: {other:?}"
                )))
            }
        };
        let mut tensors = BTreeMap::new();
        for (name, value) in entries {
            let (Value::Str(name), Value::Tensor(view)) = (name, value) else {
                continue;
            };
            if view.storage.dtype != DType::F32 {
                continue;
            }
            let raw = storages
                .get(&view.storage.key)
                .ok_or_else(|| WeightsError::Storage {
                    key: view.storage.key.clone(),
                })?;
            tensors.insert(name.clone(), gather(&name, &view, raw)?);
        }
        Ok(Self { tensors })
    }

    pub fn get(&self, name: &str) -> Result<&Tensor, WeightsError> {
        self.tensors
            .get(name)
            .ok_or_else(|| WeightsError::MissingTensor(name.to_string()))
    }

    /// The tensor, checked to have exactly `shape`.
    pub fn get_shaped(&self, name: &str, shape: &[usize]) -> Result<&Tensor, WeightsError> {
        let t = self.get(name)?;
        if t.shape != shape {
            return Err(WeightsError::Shape {
                name: name.to_string(),
                got: t.shape.clone(),
                want: shape.to_vec(),
            });
        }
        Ok(t)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }
}

/// Copies a strided view of little-endian f32 storage into a contiguous tensor.
fn gather(name: &str, view: &TensorView, raw: &[u8]) -> Result<Tensor, WeightsError> {
    let len = raw.len() / 4;
    let numel: usize = view.shape.iter().product();
    let out_of_bounds = || WeightsError::ViewOutOfBounds {
        name: name.to_string(),
        offset: view.offset,
        shape: view.shape.clone(),
        strides: view.strides.clone(),
        len,
    };
    if view.shape.len() != view.strides.len() {
        return Err(out_of_bounds());
    }
    if numel > 0 {
        let last: usize = view
            .shape
            .iter()
            .zip(&view.strides)
            .map(|(&n, &s)| (n - 1) * s)
            .sum::<usize>()
            + view.offset;
        if last >= len {
            return Err(out_of_bounds());
        }
    }
    let read =
        |i: usize| f32::from_le_bytes([raw[4 * i], raw[4 * i + 1], raw[4 * i + 2], raw[4 * i + 3]]);
    let mut data = Vec::with_capacity(numel);
    let mut index = vec![0usize; view.shape.len()];
    for _ in 0..numel {
        let at = view.offset
            + index
                .iter()
                .zip(&view.strides)
                .map(|(i, s)| i * s)
                .sum::<usize>();
        data.push(read(at));
        // Odometer increment over the shape, last axis fastest.
        for axis in (0..index.len()).rev() {
            index[axis] += 1;
            if index[axis] < view.shape[axis] {
                break;
            }
            index[axis] = 0;
        }
    }
    Ok(Tensor {
        shape: view.shape.clone(),
        data,
    })
}

fn storage_element_sizes(state: &Value) -> HashMap<String, usize> {
    let mut sizes = HashMap::new();
    if let Value::Dict(entries) = state {
        for (_, v) in entries {
            if let Value::Tensor(view) = v {
                sizes.insert(view.storage.key.clone(), view.storage.dtype.size());
            }
        }
    }
    sizes
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DType {
    F32,
    I64,
    Other(usize),
}

impl DType {
    fn from_storage_class(name: &str) -> Option<Self> {
        Some(match name {
            "FloatStorage" => DType::F32,
            "LongStorage" => DType::I64,
            "DoubleStorage" => DType::Other(8),
            "IntStorage" => DType::Other(4),
            "HalfStorage" | "BFloat16Storage" | "ShortStorage" => DType::Other(2),
            "ByteStorage" | "CharStorage" | "BoolStorage" => DType::Other(1),
            _ => return None,
        })
    }

    fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::I64 => 8,
            DType::Other(n) => n,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
struct StorageRef {
    key: String,
    dtype: DType,
}

#[derive(Debug, Clone, PartialEq)]
struct TensorView {
    storage: StorageRef,
    offset: usize,
    shape: Vec<usize>,
    strides: Vec<usize>,
}

/// The subset of Python values a state-dict pickle produces.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    None,
    Bool(bool),
    Int(i64),
    BigInt(u128),
    Float(f64),
    Str(String),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    Global(String, String),
    Storage(StorageRef),
    Tensor(TensorView),
    Mark,
}

struct Unpickler<'a> {
    bytes: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    memo: HashMap<u32, Value>,
}

impl<'a> Unpickler<'a> {
    /// Runs one pickle starting at `*pos`; leaves `*pos` just past its STOP.
    fn run(bytes: &'a [u8], pos: &mut usize) -> Result<Value, WeightsError> {
        let mut u = Unpickler {
            bytes,
            pos: *pos,
            stack: Vec::new(),
            memo: HashMap::new(),
        };
        let v = u.execute()?;
        *pos = u.pos;
        Ok(v)
    }

    fn err(&self, reason: impl Into<String>) -> WeightsError {
        WeightsError::Pickle {
            offset: self.pos,
            reason: reason.into(),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], WeightsError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| self.err("unexpected end of file"))?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, WeightsError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, WeightsError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, WeightsError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn line(&mut self) -> Result<String, WeightsError> {
        let rest = &self.bytes[self.pos..];
        let n = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| self.err("unterminated line"))?;
        let s = String::from_utf8_lossy(&rest[..n]).into_owned();
        self.pos += n + 1;
        Ok(s)
    }

    fn pop(&mut self) -> Result<Value, WeightsError> {
        self.stack.pop().ok_or_else(|| self.err("stack underflow"))
    }

    fn pop_mark(&mut self) -> Result<Vec<Value>, WeightsError> {
        let at = self
            .stack
            .iter()
            .rposition(|v| matches!(v, Value::Mark))
            .ok_or_else(|| self.err("no MARK on the stack"))?;
        let items = self.stack.split_off(at + 1);
        self.stack.pop();
        Ok(items)
    }

    fn top_mut(&mut self) -> Result<&mut Value, WeightsError> {
        let offset = self.pos;
        self.stack.last_mut().ok_or(WeightsError::Pickle {
            offset,
            reason: "stack underflow".into(),
        })
    }

    fn execute(&mut self) -> Result<Value, WeightsError> {
        loop {
            let op = self.u8()?;
            match op {
                0x80 => {
                    self.u8()?; // PROTO n
                }
                b'.' => return self.pop(), // STOP
                b'(' => self.stack.push(Value::Mark),
                b')' => self.stack.push(Value::Tuple(Vec::new())),
                b'}' => self.stack.push(Value::Dict(Vec::new())),
                b']' => self.stack.push(Value::List(Vec::new())),
                b'N' => self.stack.push(Value::None),
                0x88 => self.stack.push(Value::Bool(true)),
                0x89 => self.stack.push(Value::Bool(false)),
                b'K' => {
                    let v = self.u8()?;
                    self.stack.push(Value::Int(v as i64))
                }
                b'M' => {
                    let v = self.u16()?;
                    self.stack.push(Value::Int(v as i64))
                }
                b'J' => {
                    let v = self.u32()? as i32;
                    self.stack.push(Value::Int(v as i64))
                }
                0x8a => {
                    // LONG1: n-byte little-endian two's complement.
                    let n = self.u8()? as usize;
                    let b = self.take(n)?;
                    if n > 16 {
                        return Err(self.err("integer too large"));
                    }
                    let mut v: u128 = 0;
                    for (i, &byte) in b.iter().enumerate() {
                        v |= (byte as u128) << (8 * i);
                    }
                    if n <= 8 {
                        let shift = 64 - 8 * n as u32;
                        let signed = if n == 0 {
                            0
                        } else {
                            ((v as u64) << shift) as i64 >> shift
                        };
                        self.stack.push(Value::Int(signed));
                    } else {
                        self.stack.push(Value::BigInt(v));
                    }
                }
                b'G' => {
                    let b = self.take(8)?;
                    let mut a = [0u8; 8];
                    a.copy_from_slice(b);
                    self.stack.push(Value::Float(f64::from_be_bytes(a)))
                }
                b'X' => {
                    let n = self.u32()? as usize;
                    let b = self.take(n)?;
                    let s = std::str::from_utf8(b).map_err(|_| self.err("string is not UTF-8"))?;
                    self.stack.push(Value::Str(s.to_string()))
                }
                0x8c => {
                    // SHORT_BINUNICODE
                    let n = self.u8()? as usize;
                    let b = self.take(n)?;
                    let s = std::str::from_utf8(b).map_err(|_| self.err("string is not UTF-8"))?;
                    self.stack.push(Value::Str(s.to_string()))
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.stack.push(Value::Global(module, name))
                }
                b'q' => {
                    let i = self.u8()? as u32;
                    let v = self.top_mut()?.clone();
                    self.memo.insert(i, v);
                }
                b'r' => {
                    let i = self.u32()?;
                    let v = self.top_mut()?.clone();
                    self.memo.insert(i, v);
                }
                b'h' | b'j' => {
                    let i = if op == b'h' {
                        self.u8()? as u32
                    } else {
                        self.u32()?
                    };
                    let v = self
                        .memo
                        .get(&i)
                        .cloned()
                        .ok_or_else(|| self.err(format!("memo {i} is empty")))?;
                    self.stack.push(v)
                }
                b't' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::Tuple(items))
                }
                0x85 => {
                    let a = self.pop()?;
                    self.stack.push(Value::Tuple(vec![a]))
                }
                0x86 => {
                    let b = self.pop()?;
                    let a = self.pop()?;
                    self.stack.push(Value::Tuple(vec![a, b]))
                }
                0x87 => {
                    let c = self.pop()?;
                    let b = self.pop()?;
                    let a = self.pop()?;
                    self.stack.push(Value::Tuple(vec![a, b, c]))
                }
                b'a' => {
                    let v = self.pop()?;
                    match self.top_mut()? {
                        Value::List(items) => items.push(v),
                        _ => return Err(self.err("APPEND to a non-list")),
                    }
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    match self.top_mut()? {
                        Value::List(list) => list.extend(items),
                        _ => return Err(self.err("APPENDS to a non-list")),
                    }
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    match self.top_mut()? {
                        Value::Dict(entries) => entries.push((k, v)),
                        _ => return Err(self.err("SETITEM on a non-dict")),
                    }
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    if items.len() % 2 != 0 {
                        return Err(self.err("SETITEMS with an odd item count"));
                    }
                    let mut it = items.into_iter();
                    let mut pairs = Vec::new();
                    while let (Some(k), Some(v)) = (it.next(), it.next()) {
                        pairs.push((k, v));
                    }
                    match self.top_mut()? {
                        Value::Dict(entries) => entries.extend(pairs),
                        _ => return Err(self.err("SETITEMS on a non-dict")),
                    }
                }
                b'b' => {
                    // BUILD: state for the object below. A state dict's only use is the
                    // `_metadata` attribute, which no reader here needs.
                    self.pop()?;
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let storage = self.persistent_load(pid)?;
                    self.stack.push(storage)
                }
                b'R' => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let v = self.reduce(callable, args)?;
                    self.stack.push(v)
                }
                other => {
                    return Err(self.err(format!("unsupported pickle opcode 0x{other:02x}")));
                }
            }
        }
    }

    /// `('storage', torch.XStorage, key, location, numel, view_metadata)` → a storage ref.
    fn persistent_load(&self, pid: Value) -> Result<Value, WeightsError> {
        let Value::Tuple(items) = pid else {
            return Err(self.err("persistent id is not a tuple"));
        };
        match items.as_slice() {
            [Value::Str(kind), Value::Global(_, class), Value::Str(key), ..]
                if kind == "storage" =>
            {
                let dtype = DType::from_storage_class(class)
                    .ok_or_else(|| self.err(format!("unknown storage class {class}")))?;
                Ok(Value::Storage(StorageRef {
                    key: key.clone(),
                    dtype,
                }))
            }
            _ => Err(self.err("unrecognised persistent id")),
        }
    }

    fn reduce(&self, callable: Value, args: Value) -> Result<Value, WeightsError> {
        let Value::Global(module, name) = callable else {
            return Err(self.err("REDUCE of a non-global"));
        };
        let Value::Tuple(args) = args else {
            return Err(self.err("REDUCE arguments are not a tuple"));
        };
        match (module.as_str(), name.as_str()) {
            ("collections", "OrderedDict") => Ok(Value::Dict(Vec::new())),
            ("torch._utils", "_rebuild_tensor_v2") | ("torch._utils", "_rebuild_tensor") => {
                let (storage, offset, shape, strides) = match args.as_slice() {
                    [Value::Storage(s), Value::Int(o), Value::Tuple(sh), Value::Tuple(st), ..] => {
                        (s.clone(), *o, sh, st)
                    }
                    _ => return Err(self.err("unexpected _rebuild_tensor arguments")),
                };
                let ints = |v: &[Value]| -> Result<Vec<usize>, WeightsError> {
                    v.iter()
                        .map(|x| match x {
                            Value::Int(i) if *i >= 0 => Ok(*i as usize),
                            _ => Err(self.err("tensor size/stride is not a non-negative int")),
                        })
                        .collect()
                };
                if offset < 0 {
                    return Err(self.err("negative storage offset"));
                }
                Ok(Value::Tensor(TensorView {
                    storage,
                    offset: offset as usize,
                    shape: ints(shape)?,
                    strides: ints(strides)?,
                }))
            }
            _ => Err(self.err(format!("unsupported callable {module}.{name}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(offset: usize, shape: &[usize], strides: &[usize]) -> TensorView {
        TensorView {
            storage: StorageRef {
                key: "0".into(),
                dtype: DType::F32,
            },
            offset,
            shape: shape.to_vec(),
            strides: strides.to_vec(),
        }
    }

    fn raw(values: &[f32]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    #[test]
    fn gather_honours_offset_and_transposed_strides() {
        // Storage 0..8; a 2x3 view starting at 2 with strides (1, 2) is the transpose
        // of the 3x2 row-major block [[2,3],[4,5],[6,7]].
        let storage = raw(&[0., 1., 2., 3., 4., 5., 6., 7.]);
        let t = gather("t", &view(2, &[2, 3], &[1, 2]), &storage).unwrap();
        assert_eq!(t.shape, vec![2, 3]);
        assert_eq!(t.data, vec![2., 4., 6., 3., 5., 7.]);
    }

    #[test]
    fn gather_rejects_views_past_the_storage() {
        let storage = raw(&[0., 1., 2.]);
        let err = gather("t", &view(1, &[3], &[1]), &storage).unwrap_err();
        assert!(matches!(err, WeightsError::ViewOutOfBounds { .. }), "{err}");
    }

    #[test]
    fn garbage_is_a_typed_error() {
        assert!(Checkpoint::parse(b"").is_err());
        assert!(Checkpoint::parse(b"PK\x03\x04zip").is_err());
        let err = Checkpoint::parse(&[0x80, 2, 0xff]).unwrap_err();
        assert!(matches!(err, WeightsError::Pickle { .. }), "{err}");
    }

    #[test]
    fn long1_decodes_signed_values() {
        let mut pos = 0;
        let v = Unpickler::run(&[0x80, 2, 0x8a, 2, 0xff, 0xff, b'.'], &mut pos).unwrap();
        assert_eq!(v, Value::Int(-1));
        assert_eq!(pos, 7);
    }
}
