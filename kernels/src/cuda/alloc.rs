//! A caching allocator: device buffers go back to a free list keyed by element type and
//! length when dropped, and the next request of that size takes one from there.
//!
//! A training step allocates the same sizes every time (one buffer per activation, per
//! gradient, per scratch product), so after the first step nearly every allocation is a
//! hash lookup instead of a driver call. All work runs on the backend's one stream, so a
//! buffer handed out again is only written by kernels queued after the ones that last read
//! it: reuse needs no synchronisation.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use cudarc::driver::{
    CudaSlice, CudaStream, CudaView, CudaViewMut, DevicePtr, DeviceRepr, DriverError,
};

/// Memory held by the allocator, in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Bytes in buffers that are alive (handed out and not yet dropped).
    pub live_bytes: usize,
    /// Bytes in buffers waiting on the free lists for reuse.
    pub cached_bytes: usize,
}

/// `(element type, length) -> free slices`, each a `CudaSlice<T>` behind `dyn Any`.
type FreeLists = HashMap<(TypeId, usize), Vec<Box<dyn Any + Send>>>;

/// The free lists, shared by the backend and every buffer it handed out.
pub(crate) struct Pool {
    stream: Arc<CudaStream>,
    free: Mutex<FreeLists>,
    live_bytes: AtomicUsize,
    cached_bytes: AtomicUsize,
}

impl Pool {
    pub(crate) fn new(stream: Arc<CudaStream>) -> Pool {
        Pool {
            stream,
            free: Mutex::new(HashMap::new()),
            live_bytes: AtomicUsize::new(0),
            cached_bytes: AtomicUsize::new(0),
        }
    }

    fn free_lists(&self) -> std::sync::MutexGuard<'_, FreeLists> {
        // A panic while holding the lock cannot leave a free list half-updated.
        self.free.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A buffer of `len` elements whose contents are whatever its last user left there.
    pub(crate) fn alloc<T: DeviceRepr + Send + 'static>(
        self: &Arc<Self>,
        len: usize,
    ) -> Result<CudaBuffer<T>, DriverError> {
        // A zero-length device allocation is refused by some drivers: keep one element.
        let capacity = len.max(1);
        let bytes = capacity * std::mem::size_of::<T>();
        let reused = self
            .free_lists()
            .get_mut(&(TypeId::of::<T>(), capacity))
            .and_then(|list| list.pop());
        let slice = match reused {
            Some(slice) => {
                self.cached_bytes.fetch_sub(bytes, Ordering::Relaxed);
                *slice
                    .downcast::<CudaSlice<T>>()
                    .expect("free lists are keyed by TypeId")
            }
            None => self.fresh(capacity)?,
        };
        self.live_bytes.fetch_add(bytes, Ordering::Relaxed);
        Ok(CudaBuffer {
            slice: Some(slice),
            len,
            pool: self.clone(),
        })
    }

    /// A new driver allocation; when the device is out of memory, the cached buffers are
    /// freed and the allocation tried once more.
    fn fresh<T: DeviceRepr>(&self, capacity: usize) -> Result<CudaSlice<T>, DriverError> {
        // SAFETY: the contents are uninitialised; callers of `alloc` are told so, and
        // every kernel writes its outputs before anything reads them.
        match unsafe { self.stream.alloc::<T>(capacity) } {
            Err(err) if err.0 == cudarc::driver::sys::CUresult::CUDA_ERROR_OUT_OF_MEMORY => {
                self.release_cached();
                self.stream.synchronize()?;
                // SAFETY: as above.
                unsafe { self.stream.alloc::<T>(capacity) }
            }
            other => other,
        }
    }

    fn give_back<T: DeviceRepr + Send + 'static>(&self, slice: CudaSlice<T>) {
        let bytes = slice.len() * std::mem::size_of::<T>();
        self.live_bytes.fetch_sub(bytes, Ordering::Relaxed);
        self.cached_bytes.fetch_add(bytes, Ordering::Relaxed);
        self.free_lists()
            .entry((TypeId::of::<T>(), slice.len()))
            .or_default()
            .push(Box::new(slice));
    }

    /// Frees every cached buffer (live buffers are untouched).
    pub(crate) fn release_cached(&self) {
        let lists = std::mem::take(&mut *self.free_lists());
        drop(lists);
        self.cached_bytes.store(0, Ordering::Relaxed);
    }

    pub(crate) fn stats(&self) -> PoolStats {
        PoolStats {
            live_bytes: self.live_bytes.load(Ordering::Relaxed),
            cached_bytes: self.cached_bytes.load(Ordering::Relaxed),
        }
    }
}

/// `len` elements of `T` in device memory, returned to the allocator's free list on drop.
///
/// Pass it to kernels and cuBLAS through [`CudaBuffer::view`] / [`CudaBuffer::view_mut`],
/// which cover exactly `len` elements.
pub struct CudaBuffer<T: DeviceRepr + Send + 'static = f32> {
    /// Always `Some` until dropped.
    slice: Option<CudaSlice<T>>,
    len: usize,
    pool: Arc<Pool>,
}

impl<T: DeviceRepr + Send + 'static> CudaBuffer<T> {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn slice(&self) -> &CudaSlice<T> {
        self.slice.as_ref().expect("a live buffer holds its slice")
    }

    /// The buffer as a read-only kernel or cuBLAS operand.
    pub fn view(&self) -> CudaView<'_, T> {
        self.slice().slice(0..self.len)
    }

    /// The device address of the first element, for a raw kernel argument
    /// ([`super::Arg::Ptr`]). Work on the backend's one stream is ordered, so the address
    /// stays valid for every kernel queued before the buffer is dropped (and, since a
    /// dropped buffer goes back to the free list, for those queued after it too).
    pub fn device_ptr(&self) -> u64 {
        let (ptr, _record) = self.slice().device_ptr(&self.pool.stream);
        ptr
    }

    /// The buffer as a writable kernel or cuBLAS operand.
    pub fn view_mut(&mut self) -> CudaViewMut<'_, T> {
        let len = self.len;
        self.slice
            .as_mut()
            .expect("a live buffer holds its slice")
            .slice_mut(0..len)
    }
}

impl<T: DeviceRepr + Send + 'static> std::fmt::Debug for CudaBuffer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "CudaBuffer<{}>(len {} on cuda:{})",
            std::any::type_name::<T>(),
            self.len,
            self.slice().ordinal()
        )
    }
}

impl<T: DeviceRepr + Send + 'static> Drop for CudaBuffer<T> {
    fn drop(&mut self) {
        if let Some(slice) = self.slice.take() {
            self.pool.give_back(slice);
        }
    }
}
