//! The tensor type: a shape, a shared storage, and (when recorded) the node that made it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use kernels::{DType, Device, Element, Error, Result, Storage};

use crate::grad_mode::is_grad_enabled;
use crate::graph::{BackwardOp, Node};

/// An n-dimensional array on a device, with an optional gradient.
///
/// Cloning a `Tensor` is cheap: clones share the same data, gradient and graph node.
#[derive(Clone)]
pub struct Tensor(pub(crate) Arc<Inner>);

pub(crate) struct Inner {
    pub(crate) id: u64,
    pub(crate) shape: Vec<usize>,
    /// Shared with views made by `reshape`, so they cost no copy.
    pub(crate) storage: Arc<RwLock<Storage>>,
    /// Changed in place only on leaves ([`Tensor::set_requires_grad`]), so every clone of
    /// a parameter (the optimizer's among them) sees a freeze.
    pub(crate) requires_grad: AtomicBool,
    /// Leaves own their gradient; nodes made by ops never store one.
    pub(crate) is_leaf: bool,
    pub(crate) grad: Mutex<Option<Storage>>,
    /// Taken (and its saved tensors freed) by the first `backward()` through it.
    pub(crate) node: Mutex<Option<Node>>,
}

fn next_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Locks ignore poisoning: a panic elsewhere must not turn every later access into a panic.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn numel_of(shape: &[usize]) -> usize {
    shape.iter().product()
}

impl Tensor {
    fn leaf(storage: Storage, shape: Vec<usize>, requires_grad: bool) -> Tensor {
        Tensor(Arc::new(Inner {
            id: next_id(),
            shape,
            storage: Arc::new(RwLock::new(storage)),
            requires_grad: AtomicBool::new(requires_grad),
            is_leaf: true,
            grad: Mutex::new(None),
            node: Mutex::new(None),
        }))
    }

    /// A tensor holding `values` (row-major) with the given shape, on `device`.
    ///
    /// ```
    /// use autograd::{Device, Tensor};
    /// let t = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3], Device::Cpu)?;
    /// assert_eq!(t.shape(), &[2, 3]);
    /// # Ok::<(), autograd::Error>(())
    /// ```
    pub fn from_vec<T: Element>(values: Vec<T>, shape: &[usize], device: Device) -> Result<Tensor> {
        Tensor::from_storage(Storage::from_host(values, device)?, shape)
    }

    /// Wraps an existing storage; its length must match the shape.
    pub fn from_storage(storage: Storage, shape: &[usize]) -> Result<Tensor> {
        if storage.len() != numel_of(shape) {
            return Err(Error::shape(
                "tensor",
                format!(
                    "{} values cannot have shape {shape:?} ({} elements)",
                    storage.len(),
                    numel_of(shape)
                ),
            ));
        }
        Ok(Tensor::leaf(storage, shape.to_vec(), false))
    }

    /// A tensor filled with `value`.
    pub fn full(shape: &[usize], value: f64, dtype: DType, device: Device) -> Result<Tensor> {
        let storage = Storage::full(numel_of(shape), value, dtype, device)?;
        Ok(Tensor::leaf(storage, shape.to_vec(), false))
    }

    /// A tensor of zeros.
    pub fn zeros(shape: &[usize], dtype: DType, device: Device) -> Result<Tensor> {
        Tensor::full(shape, 0.0, dtype, device)
    }

    /// Marks the values as a leaf whose gradient `backward` accumulates, like PyTorch's
    /// `x.requires_grad_()`. Returns a new leaf holding the same values, without history
    /// (flags are fixed at creation, so this cannot change `self` in place).
    ///
    /// ```
    /// use autograd::{Device, Tensor};
    /// let x = Tensor::from_vec(vec![3.0f64], &[1], Device::Cpu)?.requires_grad_();
    /// assert!(x.requires_grad() && x.is_leaf());
    /// x.mul(&x)?.sum()?.backward()?;
    /// assert_eq!(x.grad().unwrap().to_vec_f64()?, vec![6.0]);
    /// # Ok::<(), autograd::Error>(())
    /// ```
    pub fn requires_grad_(&self) -> Tensor {
        Tensor::leaf(self.storage().clone(), self.shape().to_vec(), true)
    }

    /// A new leaf with the same values and no history.
    pub fn detach(&self) -> Tensor {
        Tensor::leaf(self.storage().clone(), self.shape().to_vec(), false)
    }

    /// Builds the output of an op: records `op` with its `inputs` when any input needs a
    /// gradient and grad mode is on; otherwise a plain leaf.
    pub(crate) fn from_op(
        storage: Storage,
        shape: Vec<usize>,
        inputs: &[&Tensor],
        op: impl BackwardOp + 'static,
    ) -> Tensor {
        let record = is_grad_enabled() && inputs.iter().any(|t| t.requires_grad());
        if !record {
            return Tensor::leaf(storage, shape, false);
        }
        Tensor::recorded(Arc::new(RwLock::new(storage)), shape, inputs, op)
    }

    /// Like `from_op`, but the output shares an existing storage (views).
    pub(crate) fn view_from_op(
        storage: Arc<RwLock<Storage>>,
        shape: Vec<usize>,
        input: &Tensor,
        op: impl BackwardOp + 'static,
    ) -> Tensor {
        if is_grad_enabled() && input.requires_grad() {
            Tensor::recorded(storage, shape, &[input], op)
        } else {
            Tensor(Arc::new(Inner {
                id: next_id(),
                shape,
                storage,
                requires_grad: AtomicBool::new(false),
                is_leaf: true,
                grad: Mutex::new(None),
                node: Mutex::new(None),
            }))
        }
    }

    fn recorded(
        storage: Arc<RwLock<Storage>>,
        shape: Vec<usize>,
        inputs: &[&Tensor],
        op: impl BackwardOp + 'static,
    ) -> Tensor {
        let name = op.name();
        let output = Tensor(Arc::new(Inner {
            id: next_id(),
            shape,
            storage,
            requires_grad: AtomicBool::new(true),
            is_leaf: false,
            grad: Mutex::new(None),
            node: Mutex::new(Some(Node {
                op: Box::new(op),
                inputs: inputs.iter().map(|&t| t.clone()).collect(),
            })),
        }));
        crate::profile::forward_op(&output, name, inputs);
        output
    }

    pub fn shape(&self) -> &[usize] {
        &self.0.shape
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        numel_of(&self.0.shape)
    }

    pub fn dtype(&self) -> DType {
        self.storage().dtype()
    }

    pub fn device(&self) -> Device {
        self.storage().device()
    }

    /// Whether gradients flow to or through this tensor.
    pub fn requires_grad(&self) -> bool {
        self.0.requires_grad.load(Ordering::Relaxed)
    }

    /// Freezes (`false`) or unfreezes a leaf in place, like PyTorch's
    /// `p.requires_grad = flag`: a frozen leaf gets no gradient from later `backward`
    /// calls, so optimizers leave it alone. Every clone shares the flag.
    ///
    /// ```
    /// use autograd::{Device, Tensor};
    /// let w = Tensor::from_vec(vec![2.0f64], &[1], Device::Cpu)?.requires_grad_();
    /// let frozen = w.clone();
    /// frozen.set_requires_grad(false)?;
    /// assert!(!w.requires_grad());
    /// # Ok::<(), autograd::Error>(())
    /// ```
    ///
    /// Tensors made by ops are not leaves; changing their flag is an error, as in PyTorch.
    pub fn set_requires_grad(&self, requires: bool) -> Result<()> {
        if !self.is_leaf() {
            return Err(Error::invalid(
                "set_requires_grad",
                format!(
                    "only leaves (data, parameters) can be frozen or unfrozen; this tensor of \
                     shape {:?} was made by an op (detach() it first)",
                    self.shape()
                ),
            ));
        }
        self.0.requires_grad.store(requires, Ordering::Relaxed);
        Ok(())
    }

    /// Leaves are tensors made directly (data, parameters), not by an op on a recorded tensor.
    pub fn is_leaf(&self) -> bool {
        self.0.is_leaf
    }

    /// Read access to the underlying buffer (for the ops; users read values with
    /// `to_vec_f32`/`to_vec_f64`).
    pub(crate) fn storage(&self) -> RwLockReadGuard<'_, Storage> {
        self.0
            .storage
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Write access to the underlying buffer: for in-place updates (optimizers, running stats).
    pub(crate) fn storage_mut(&self) -> RwLockWriteGuard<'_, Storage> {
        self.0
            .storage
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Replaces the values, keeping shape and identity (loading a checkpoint into a parameter).
    pub fn assign(&self, values: &Tensor) -> Result<()> {
        if values.shape() != self.shape() {
            return Err(Error::shape(
                "assign",
                format!(
                    "cannot assign a tensor of shape {:?} to one of shape {:?}",
                    values.shape(),
                    self.shape()
                ),
            ));
        }
        let converted = values
            .storage()
            .to_dtype(self.dtype())?
            .to_device(self.device())?;
        *self.storage_mut() = converted;
        Ok(())
    }

    /// Moves the values a fraction `weight` of the way towards `end`, in place:
    /// `self += weight * (end - self)`, PyTorch's `self.lerp_(end, weight)`. Not recorded
    /// for backward (an optimizer-side update, like the lookahead average of airbench94).
    ///
    /// ```
    /// use autograd::{Device, Tensor};
    /// let average = Tensor::from_vec(vec![0.0f32, 10.0], &[2], Device::Cpu)?;
    /// average.lerp_(&Tensor::from_vec(vec![4.0f32, 2.0], &[2], Device::Cpu)?, 0.25)?;
    /// assert_eq!(average.to_vec_f32()?, vec![1.0, 8.0]);
    /// # Ok::<(), autograd::Error>(())
    /// ```
    pub fn lerp_(&self, end: &Tensor, weight: f64) -> Result<()> {
        if end.shape() != self.shape() {
            return Err(Error::shape(
                "lerp",
                format!(
                    "end has shape {:?} but the tensor has shape {:?}",
                    end.shape(),
                    self.shape()
                ),
            ));
        }
        if Arc::ptr_eq(&self.0.storage, &end.0.storage) {
            // Moving towards itself changes nothing (and the two locks would deadlock).
            return Ok(());
        }
        let end = end.storage();
        kernels::elementwise::lerp_assign(&mut self.storage_mut(), &end, weight)
    }

    /// The values as f32 on the host.
    pub fn to_vec_f32(&self) -> Result<Vec<f32>> {
        self.storage().to_vec_f32()
    }

    /// The values as f64 on the host.
    pub fn to_vec_f64(&self) -> Result<Vec<f64>> {
        self.storage().to_vec_f64()
    }

    /// The single value of a one-element tensor.
    pub fn item(&self) -> Result<f64> {
        if self.numel() != 1 {
            return Err(Error::shape(
                "item",
                format!(
                    "only one-element tensors have an item, this one has shape {:?}",
                    self.shape()
                ),
            ));
        }
        Ok(self.to_vec_f64()?[0])
    }

    /// A copy on another device.
    pub fn to_device(&self, device: Device) -> Result<Tensor> {
        let storage = self.storage().to_device(device)?;
        Ok(Tensor::leaf(storage, self.shape().to_vec(), false))
    }

    /// The gradient accumulated by `backward`, for leaves that require it.
    pub fn grad(&self) -> Option<Tensor> {
        lock(&self.0.grad)
            .as_ref()
            .map(|g| Tensor::leaf(g.clone(), self.shape().to_vec(), false))
    }

    /// Forgets the accumulated gradient (like PyTorch's `zero_grad(set_to_none=True)`).
    pub fn zero_grad(&self) {
        *lock(&self.0.grad) = None;
    }

    pub(crate) fn id(&self) -> u64 {
        self.0.id
    }
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tensor")
            .field("shape", &self.shape())
            .field("dtype", &self.dtype())
            .field("device", &self.device())
            .field("requires_grad", &self.requires_grad())
            .finish()
    }
}
