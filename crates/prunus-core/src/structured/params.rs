//! Named parameter tensors and the per-unit sums of an elementwise expression over them, the
//! arithmetic structured methods share (the gradients they sum come from
//! [`mean_gradients`](super::mean_gradients)).

use std::collections::HashMap;

use candle_core::{DType, Tensor};

use super::units::Unit;
use crate::error::{Error, Result};

/// Named parameter tensors of a model (its weights, or gradients), in the model's order.
#[derive(Debug, Clone, Default)]
pub struct Params {
    items: Vec<(String, Tensor)>,
    index: HashMap<String, usize>,
}

impl Params {
    /// From (name, tensor) pairs; a repeated name keeps its first tensor.
    pub fn new(items: Vec<(String, Tensor)>) -> Self {
        let mut index = HashMap::with_capacity(items.len());
        for (i, (n, _)) in items.iter().enumerate() {
            index.entry(n.clone()).or_insert(i);
        }
        Params { items, index }
    }

    /// The tensor named `name`.
    pub fn get(&self, name: &str) -> Result<&Tensor> {
        self.index
            .get(name)
            .map(|&i| &self.items[i].1)
            .ok_or_else(|| Error::Invalid(format!("no parameter named `{name}`")))
    }

    /// (name, tensor) pairs in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Tensor)> {
        self.items.iter().map(|(n, t)| (n.as_str(), t))
    }

    /// Number of (name, tensor) pairs.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether there are no tensors.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// `self * scale`, every tensor in f32.
    pub(super) fn scaled(&self, scale: f64) -> Result<Params> {
        let items = self.items.iter().map(|(n, t)| Ok((n.clone(), (t.to_dtype(DType::F32)? * scale)?))).collect::<Result<_>>()?;
        Ok(Params::new(items))
    }

    /// `self += other * scale`, tensor by tensor; `other` must have the same names and shapes.
    pub(super) fn add_scaled(&mut self, other: &Params, scale: f64) -> Result<()> {
        if other.len() != self.len() {
            return Err(Error::Invalid(format!("adding {} parameters to {}", other.len(), self.len())));
        }
        for (name, t) in &mut self.items {
            let o = other.get(name)?;
            if o.dims() != t.dims() {
                return Err(Error::Shape { tensor: name.clone(), expected: t.dims().to_vec(), got: o.dims().to_vec() });
            }
            *t = (&*t + (o.to_dtype(DType::F32)? * scale)?)?;
        }
        Ok(())
    }
}

/// For each unit, the sum over its parameters of an elementwise expression: `f(name)` gives
/// the expression's value for the whole parameter `name` (same shape), and each unit adds up
/// its [`Part`](super::Part)s. Each parameter's expression is computed once, reduced in f64 along the
/// dimension its parts slice, and shared by all units.
pub fn unit_sums(units: &[Unit], mut f: impl FnMut(&str) -> Result<Tensor>) -> Result<Vec<f64>> {
    // The (tensor, dim) slicings in first-use order, grouped by tensor.
    let mut names: Vec<&str> = Vec::new();
    let mut dims: HashMap<&str, Vec<usize>> = HashMap::new();
    for p in units.iter().flat_map(|u| &u.parts) {
        let d = dims.entry(p.tensor.as_str()).or_insert_with(|| {
            names.push(p.tensor.as_str());
            Vec::new()
        });
        if !d.contains(&p.dim) {
            d.push(p.dim);
        }
    }
    let mut reduced: HashMap<(&str, usize), Vec<f64>> = HashMap::new();
    for name in names {
        let t = f(name)?;
        for &d in &dims[name] {
            reduced.insert((name, d), sum_except(&t, d, name)?);
        }
    }
    units
        .iter()
        .map(|u| {
            u.parts.iter().try_fold(0.0, |acc, p| {
                let v = &reduced[&(p.tensor.as_str(), p.dim)];
                let slice = v.get(p.start..p.start + p.len).ok_or_else(|| {
                    Error::Invalid(format!("{}: {}[{}..{}] along dim {} is out of range ({})", u.describe(), p.tensor, p.start, p.start + p.len, p.dim, v.len()))
                })?;
                Ok(acc + slice.iter().sum::<f64>())
            })
        })
        .collect()
}

/// Sums `t` in f64 over every dimension except `dim`: one value per index along `dim`.
fn sum_except(t: &Tensor, dim: usize, name: &str) -> Result<Vec<f64>> {
    let dims = t.dims();
    if dim >= dims.len() {
        return Err(Error::Invalid(format!("tensor `{name}` of shape {dims:?} has no dimension {dim}")));
    }
    let t = t.to_dtype(DType::F64)?;
    if dims.len() == 1 {
        return Ok(t.to_vec1::<f64>()?);
    }
    let n = dims[dim];
    let rest = t.elem_count() / n.max(1);
    Ok(t.transpose(0, dim)?.contiguous()?.reshape((n, rest))?.sum(1)?.to_vec1::<f64>()?)
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;
    use crate::structured::{Part, UnitKind};

    #[test]
    fn unit_sums_add_up_slices_along_their_dimension() {
        // A (3, 4) tensor with value 10 r + c; units: row 1, columns 2..4, the whole tensor as rows.
        let t = Tensor::from_vec((0..12).map(|i| (10 * (i / 4) + i % 4) as f32).collect::<Vec<_>>(), (3, 4), &Device::Cpu).unwrap();
        let v = Tensor::new(&[1f32, 2., 3.], &Device::Cpu).unwrap();
        let part = |tensor: &str, dim, start, len| Part { tensor: tensor.into(), dim, start, len };
        let unit = |parts| Unit { kind: UnitKind::Channel, layer: 0, index: 0, params: 0, parts };
        let units = [unit(vec![part("t", 0, 1, 1)]), unit(vec![part("t", 1, 2, 2), part("v", 0, 0, 2)]), unit(vec![part("t", 0, 0, 3)])];
        let mut calls = 0;
        let sums = unit_sums(&units, |name| {
            calls += 1;
            Ok(if name == "t" { t.clone() } else { v.clone() })
        })
        .unwrap();
        assert_eq!(calls, 2, "one evaluation per tensor");
        let total: f64 = (0..12).map(|i| (10 * (i / 4) + i % 4) as f64).sum();
        assert_eq!(sums, [10. + 11. + 12. + 13., (2. + 3.) + (12. + 13.) + (22. + 23.) + 1. + 2., total]);
        let bad = [unit(vec![part("t", 1, 3, 2)])];
        assert!(unit_sums(&bad, |_| Ok(t.clone())).is_err());
    }
}
