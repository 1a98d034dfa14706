//! Constant tensors of a model (initializers, `Constant` nodes, folded shape arithmetic)
//! and the few operations constant folding needs.

use crate::proto::TensorProto;

/// The values of a constant: floats, or integers (int64, int32, bool, ...).
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Data {
    /// Floating-point values (float, double).
    F(Vec<f32>),
    /// Integer values (int64, int32, int8, uint8, bool).
    I(Vec<i64>),
}

/// A constant tensor, row-major.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Const {
    pub shape: Vec<i64>,
    pub data: Data,
}

impl Const {
    pub fn ints(shape: Vec<i64>, v: Vec<i64>) -> Const {
        Const {
            shape,
            data: Data::I(v),
        }
    }

    pub fn floats(shape: Vec<i64>, v: Vec<f32>) -> Const {
        Const {
            shape,
            data: Data::F(v),
        }
    }

    pub fn len(&self) -> usize {
        match &self.data {
            Data::F(v) => v.len(),
            Data::I(v) => v.len(),
        }
    }

    /// The values as floats.
    pub fn to_f32(&self) -> Vec<f32> {
        match &self.data {
            Data::F(v) => v.clone(),
            Data::I(v) => v.iter().map(|&x| x as f32).collect(),
        }
    }

    /// The values as integers (floats truncated).
    pub fn to_i64(&self) -> Vec<i64> {
        match &self.data {
            Data::F(v) => v.iter().map(|&x| x as i64).collect(),
            Data::I(v) => v.clone(),
        }
    }

    pub fn is_float(&self) -> bool {
        matches!(self.data, Data::F(_))
    }

    /// The one value of a one-element tensor.
    pub fn scalar_f32(&self) -> Option<f32> {
        (self.len() == 1).then(|| self.to_f32()[0])
    }

    /// Same values, another shape.
    pub fn reshaped(&self, shape: Vec<i64>) -> Const {
        Const {
            shape,
            data: self.data.clone(),
        }
    }

    /// Picks elements by flat index.
    fn pick(&self, idx: &[usize]) -> Data {
        match &self.data {
            Data::F(v) => Data::F(idx.iter().map(|&i| v[i]).collect()),
            Data::I(v) => Data::I(idx.iter().map(|&i| v[i]).collect()),
        }
    }
}

/// Decodes a `TensorProto` (values in `raw_data` or in the typed fields).
pub(crate) fn from_proto(t: &TensorProto) -> Result<Const, String> {
    if t.data_location == 1 {
        return Err(format!(
            "tensor `{}` keeps its data in an external file, which the importer does not read",
            t.name
        ));
    }
    if t.dims.iter().any(|&d| d < 0) {
        return Err(format!(
            "tensor `{}` has a negative dimension {:?}",
            t.name, t.dims
        ));
    }
    let count = t
        .dims
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d as usize))
        .ok_or_else(|| format!("tensor `{}` is too large", t.name))?;
    let raw = &t.raw_data;
    let width = match t.data_type {
        1 | 6 => 4,
        7 | 11 => 8,
        2 | 3 | 9 => 1,
        other => {
            return Err(format!(
                "tensor `{}` has data type {other} ({}), the importer reads float, double, int64, int32, int8, uint8 and bool",
                t.name,
                type_name(other)
            ))
        }
    };
    let data = if !raw.is_empty() {
        if raw.len() != count * width {
            return Err(format!(
                "tensor `{}` of shape {:?} needs {} bytes of data, has {}",
                t.name,
                t.dims,
                count * width,
                raw.len()
            ));
        }
        match t.data_type {
            1 => Data::F(
                raw.chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            ),
            11 => Data::F(
                raw.chunks_exact(8)
                    .map(|c| {
                        let mut b = [0u8; 8];
                        b.copy_from_slice(c);
                        f64::from_le_bytes(b) as f32
                    })
                    .collect(),
            ),
            6 => Data::I(
                raw.chunks_exact(4)
                    .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64)
                    .collect(),
            ),
            7 => Data::I(
                raw.chunks_exact(8)
                    .map(|c| {
                        let mut b = [0u8; 8];
                        b.copy_from_slice(c);
                        i64::from_le_bytes(b)
                    })
                    .collect(),
            ),
            3 => Data::I(raw.iter().map(|&b| b as i8 as i64).collect()),
            _ => Data::I(raw.iter().map(|&b| b as i64).collect()),
        }
    } else {
        match t.data_type {
            1 => Data::F(t.float_data.clone()),
            11 => Data::F(t.double_data.iter().map(|&x| x as f32).collect()),
            7 => Data::I(t.int64_data.clone()),
            _ => Data::I(t.int32_data.iter().map(|&x| x as i64).collect()),
        }
    };
    let c = Const {
        shape: t.dims.clone(),
        data,
    };
    if c.len() != count {
        return Err(format!(
            "tensor `{}` of shape {:?} needs {count} values, has {}",
            t.name,
            t.dims,
            c.len()
        ));
    }
    Ok(c)
}

/// The name of an ONNX `DataType`.
pub(crate) fn type_name(t: i32) -> &'static str {
    match t {
        1 => "float",
        2 => "uint8",
        3 => "int8",
        4 => "uint16",
        5 => "int16",
        6 => "int32",
        7 => "int64",
        8 => "string",
        9 => "bool",
        10 => "float16",
        11 => "double",
        12 => "uint32",
        13 => "uint64",
        16 => "bfloat16",
        _ => "other",
    }
}

/// Row-major strides of `shape`.
fn strides(shape: &[i64]) -> Vec<usize> {
    let mut s = vec![1usize; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1] as usize;
    }
    s
}

/// The numpy broadcast of two shapes.
pub(crate) fn broadcast_shape(a: &[i64], b: &[i64]) -> Option<Vec<i64>> {
    let r = a.len().max(b.len());
    let get = |s: &[i64], i: usize| {
        let off = r - s.len();
        if i < off {
            1
        } else {
            s[i - off]
        }
    };
    (0..r)
        .map(|i| {
            let (x, y) = (get(a, i), get(b, i));
            if x == y || y == 1 {
                Some(x)
            } else if x == 1 {
                Some(y)
            } else {
                None
            }
        })
        .collect()
}

/// Flat indices into `from` for every element of the broadcast shape `to`.
fn broadcast_index(from: &[i64], to: &[i64]) -> Vec<usize> {
    let off = to.len() - from.len();
    let fs = strides(from);
    let total: i64 = to.iter().product();
    let ts = strides(to);
    (0..total as usize)
        .map(|flat| {
            let mut idx = 0;
            for (i, &d) in to.iter().enumerate() {
                let c = (flat / ts[i]) % d as usize;
                if i >= off && from[i - off] != 1 {
                    idx += c * fs[i - off];
                }
            }
            idx
        })
        .collect()
}

/// `a (op) b` with numpy broadcasting; integers stay integers (division truncates toward
/// zero, as ONNX's integer `Div`).
pub(crate) fn binary(op: &str, a: &Const, b: &Const) -> Option<Const> {
    let shape = broadcast_shape(&a.shape, &b.shape)?;
    let ia = broadcast_index(&a.shape, &shape);
    let ib = broadcast_index(&b.shape, &shape);
    if a.is_float() || b.is_float() {
        let (x, y) = (a.to_f32(), b.to_f32());
        let f = |p: f32, q: f32| match op {
            "Add" => p + q,
            "Sub" => p - q,
            "Mul" => p * q,
            _ => p / q,
        };
        Some(Const::floats(
            shape,
            ia.iter().zip(&ib).map(|(&i, &j)| f(x[i], y[j])).collect(),
        ))
    } else {
        let (x, y) = (a.to_i64(), b.to_i64());
        let mut out = Vec::with_capacity(ia.len());
        for (&i, &j) in ia.iter().zip(&ib) {
            out.push(match op {
                "Add" => x[i].wrapping_add(y[j]),
                "Sub" => x[i].wrapping_sub(y[j]),
                "Mul" => x[i].wrapping_mul(y[j]),
                _ => x[i].checked_div(y[j])?,
            });
        }
        Some(Const::ints(shape, out))
    }
}

/// Normalizes a possibly negative axis of a rank-`rank` tensor.
pub(crate) fn axis(a: i64, rank: usize) -> Option<usize> {
    let r = rank as i64;
    let a = if a < 0 { a + r } else { a };
    (0..r).contains(&a).then_some(a as usize)
}

/// `Gather(data, indices, axis)`.
pub(crate) fn gather(data: &Const, indices: &Const, ax: usize) -> Option<Const> {
    let dim = *data.shape.get(ax)?;
    let outer: i64 = data.shape[..ax].iter().product();
    let inner: i64 = data.shape[ax + 1..].iter().product();
    let idx: Vec<i64> = indices
        .to_i64()
        .into_iter()
        .map(|i| if i < 0 { i + dim } else { i })
        .collect();
    if idx.iter().any(|&i| i < 0 || i >= dim) {
        return None;
    }
    let mut flat = Vec::new();
    for o in 0..outer {
        for &i in &idx {
            for k in 0..inner {
                flat.push(((o * dim + i) * inner + k) as usize);
            }
        }
    }
    let mut shape = data.shape[..ax].to_vec();
    shape.extend(&indices.shape);
    shape.extend(&data.shape[ax + 1..]);
    Some(Const {
        shape,
        data: data.pick(&flat),
    })
}

/// `Concat` along `ax` of tensors of equal rank.
pub(crate) fn concat(parts: &[Const], ax: usize) -> Option<Const> {
    let first = parts.first()?;
    let rank = first.shape.len();
    if ax >= rank {
        return None;
    }
    for p in parts {
        if p.shape.len() != rank || (0..rank).any(|i| i != ax && p.shape[i] != first.shape[i]) {
            return None;
        }
    }
    let outer: i64 = first.shape[..ax].iter().product();
    let float = parts.iter().any(Const::is_float);
    let mut fv = Vec::new();
    let mut iv = Vec::new();
    for o in 0..outer {
        for p in parts {
            let chunk: i64 = p.shape[ax..].iter().product();
            let (s, e) = ((o * chunk) as usize, ((o + 1) * chunk) as usize);
            if float {
                fv.extend_from_slice(&p.to_f32()[s..e]);
            } else {
                iv.extend_from_slice(&p.to_i64()[s..e]);
            }
        }
    }
    let mut shape = first.shape.clone();
    shape[ax] = parts.iter().map(|p| p.shape[ax]).sum();
    Some(if float {
        Const::floats(shape, fv)
    } else {
        Const::ints(shape, iv)
    })
}

/// `Slice` of a 1-D tensor (the shape arithmetic of exporters).
pub(crate) fn slice_1d(data: &Const, start: i64, end: i64, step: i64) -> Option<Const> {
    if data.shape.len() != 1 || step == 0 {
        return None;
    }
    let n = data.shape[0];
    let clamp = |v: i64, lo: i64, hi: i64| v.max(lo).min(hi);
    let norm = |v: i64| if v < 0 { v + n } else { v };
    let mut idx = Vec::new();
    if step > 0 {
        let (mut i, e) = (clamp(norm(start), 0, n), clamp(norm(end), 0, n));
        while i < e {
            idx.push(i as usize);
            i += step;
        }
    } else {
        let (mut i, e) = (clamp(norm(start), -1, n - 1), clamp(norm(end), -1, n - 1));
        while i > e {
            idx.push(i as usize);
            i += step;
        }
    }
    Some(Const {
        shape: vec![idx.len() as i64],
        data: data.pick(&idx),
    })
}

/// Transposes a constant (`out` axis `i` is `perm[i]` of the input).
pub(crate) fn transpose(c: &Const, perm: &[usize]) -> Const {
    let shape: Vec<i64> = perm.iter().map(|&a| c.shape[a]).collect();
    let is = strides(&c.shape);
    let os = strides(&shape);
    let total: i64 = shape.iter().product();
    let idx: Vec<usize> = (0..total as usize)
        .map(|flat| {
            perm.iter()
                .enumerate()
                .map(|(i, &a)| ((flat / os[i]) % shape[i] as usize) * is[a])
                .sum()
        })
        .collect();
    Const {
        shape,
        data: c.pick(&idx),
    }
}

/// A convolution weight `(O, I, kh, kw)` as `(kh, kw, I, O)` (Tessel's conv weight; with
/// `I = 1` also the depthwise `(1, kh, kw, C)`).
pub(crate) fn oihw_to_hwio(w: &Const) -> Vec<f32> {
    let [o, i, kh, kw] = [w.shape[0], w.shape[1], w.shape[2], w.shape[3]].map(|d| d as usize);
    let mut out = vec![0.0f32; o * i * kh * kw];
    let converted;
    let src: &[f32] = match &w.data {
        Data::F(v) => v,
        Data::I(_) => {
            converted = w.to_f32();
            &converted
        }
    };
    for (oo, per_o) in src.chunks_exact(i * kh * kw).enumerate() {
        for (ii, per_i) in per_o.chunks_exact(kh * kw).enumerate() {
            for (k, &v) in per_i.iter().enumerate() {
                // k = y * kw + x; destination ((y * kw + x) * I + ii) * O + oo
                out[(k * i + ii) * o + oo] = v;
            }
        }
    }
    out
}
