//! One opened device: its context, its single stream, a cuBLAS handle, the compiled
//! kernel modules and the caching allocator.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use cudarc::cublas::sys::{
    cublasComputeType_t, cublasGemmAlgo_t, cublasMath_t, cublasOperation_t, cudaDataType_t,
};
use cudarc::cublas::{CudaBlas, Gemm, GemmConfig, StridedBatchedConfig};
use cudarc::driver::sys::CUdevice_attribute;
use cudarc::driver::{
    CudaContext, CudaFunction, CudaModule, CudaStream, DevicePtr, DevicePtrMut, DeviceRepr,
    LaunchConfig, PushKernelArg, ValidAsZeroBits,
};

use super::alloc::{CudaBuffer, Pool, PoolStats};
use super::compile::arch_for;
use super::kernel_source;
use crate::{Error, Result};

/// Threads per block of the element-wise and per-channel kernels (a multiple of 32, as
/// the block reductions in the `.cu` files require).
pub const BLOCK_SIZE: u32 = 256;

/// Grid-stride kernels get at most this many blocks per multiprocessor: enough to fill
/// the device, few enough that each thread does several elements.
const BLOCKS_PER_SM: u32 = 8;

/// The environment variable that, set to `1` when a backend opens, makes every kernel
/// launch and cuBLAS product wait until it has run and report a failure as its own, naming
/// the op, the kernel and its `.cu` file. Without it work is queued and a fault (an illegal
/// address, say) surfaces at the next copy to the host, blamed on whatever asked for it.
/// Slow: for finding where a first GPU run fails (`scripts/gpu-check.sh` sets it for its
/// first, single-threaded test pass).
pub const SYNC_LAUNCHES_VAR: &str = "KERNELS_CUDA_SYNC";

/// One argument of a kernel launch, as the kernel declares the parameter: a device
/// pointer (`const float*`, `double*`, ... from [`CudaBuffer::device_ptr`], possibly
/// advanced by an element offset), an `int`, `unsigned int`, `unsigned long long`,
/// `float` or `double`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Arg {
    Ptr(u64),
    I32(i32),
    U32(u32),
    U64(u64),
    F32(f32),
    F64(f64),
}

impl Arg {
    /// A pointer to element `offset` of a buffer of `T`.
    pub fn ptr<T: DeviceRepr + Send + 'static>(buffer: &CudaBuffer<T>, offset: usize) -> Arg {
        Arg::Ptr(buffer.device_ptr() + (offset * std::mem::size_of::<T>()) as u64)
    }
}

/// A CUDA device ready to run the crate's kernels.
///
/// All work goes to one stream, in order, so buffers need no events or locks between
/// kernels; copies to the host wait for the stream.
pub struct CudaBackend {
    ordinal: usize,
    name: String,
    compute_capability: (i32, i32),
    arch: String,
    multiprocessors: u32,
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    /// cuBLAS handles must not be used by two threads at once.
    blas: Mutex<CudaBlas>,
    tf32: AtomicBool,
    /// [`SYNC_LAUNCHES_VAR`] was set: wait for every kernel and product as it is queued.
    sync_launches: bool,
    /// Compiled `.cu` files by file name.
    modules: Mutex<HashMap<&'static str, Arc<CudaModule>>>,
    /// Loaded kernels by (file name, kernel name).
    functions: Mutex<HashMap<(&'static str, &'static str), CudaFunction>>,
    pool: Arc<Pool>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A driver, cuBLAS or other CUDA error, with what was being done.
fn cuda_error(doing: &str, err: impl std::fmt::Display) -> Error {
    Error::Cuda(format!("{doing}: {err}"))
}

fn driver<T>(
    result: std::result::Result<T, cudarc::driver::DriverError>,
    doing: &str,
) -> Result<T> {
    result.map_err(|e| cuda_error(doing, e))
}

impl CudaBackend {
    /// Opens device `ordinal`. Use [`super::open`], which checks first that the libraries
    /// load (cudarc panics when they do not) and shares one backend per device.
    pub(super) fn new(ordinal: usize) -> Result<CudaBackend> {
        let ctx = driver(
            CudaContext::new(ordinal),
            &format!("could not open CUDA device {ordinal}"),
        )?;
        // One stream means no cross-stream hazards: the per-buffer events cudarc records
        // for multi-stream use would only add two driver calls per kernel argument.
        // SAFETY: nothing has been allocated in this context object yet, and every buffer
        // of this backend is used on `stream` only.
        unsafe { ctx.disable_event_tracking() };
        let stream = driver(ctx.new_stream(), "could not create a CUDA stream")?;
        let compute_capability = driver(
            ctx.compute_capability(),
            "could not read the compute capability",
        )?;
        let multiprocessors = driver(
            ctx.attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT),
            "could not read the multiprocessor count",
        )?;
        let name = driver(ctx.name(), "could not read the device name")?;
        let blas = CudaBlas::new(stream.clone())
            .map_err(|e| cuda_error("could not create a cuBLAS handle", e))?;
        let backend = CudaBackend {
            ordinal,
            name,
            compute_capability,
            arch: arch_for(compute_capability),
            multiprocessors: multiprocessors.max(1) as u32,
            pool: Arc::new(Pool::new(stream.clone())),
            ctx,
            stream,
            blas: Mutex::new(blas),
            tf32: AtomicBool::new(false),
            sync_launches: std::env::var(SYNC_LAUNCHES_VAR).is_ok_and(|v| v == "1"),
            modules: Mutex::new(HashMap::new()),
            functions: Mutex::new(HashMap::new()),
        };
        // Plain f32 products unless asked otherwise: results comparable with the CPU's.
        backend.set_tf32(false)?;
        Ok(backend)
    }

    pub fn ordinal(&self) -> usize {
        self.ordinal
    }

    /// The device's name, e.g. "NVIDIA H200".
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `(major, minor)`, e.g. `(9, 0)` for a Hopper GPU.
    pub fn compute_capability(&self) -> (i32, i32) {
        self.compute_capability
    }

    /// The architecture the kernels are compiled for, e.g. `"sm_90"`.
    pub fn arch(&self) -> &str {
        &self.arch
    }

    pub fn multiprocessors(&self) -> u32 {
        self.multiprocessors
    }

    pub fn context(&self) -> &Arc<CudaContext> {
        &self.ctx
    }

    /// The stream every kernel, copy and product of this backend runs on.
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// Lets cuBLAS use TF32 tensor cores for f32 products (about 10 significant bits in
    /// the multiplications, much faster on Ampere and later), or turns them off again.
    /// Off by default.
    pub fn set_tf32(&self, enabled: bool) -> Result<()> {
        let mode = if enabled {
            cublasMath_t::CUBLAS_TF32_TENSOR_OP_MATH
        } else {
            cublasMath_t::CUBLAS_DEFAULT_MATH
        };
        let blas = lock(&self.blas);
        // SAFETY: the handle is alive (owned by `blas`) and the mode is a valid enum value.
        unsafe { cudarc::cublas::sys::cublasSetMathMode(*blas.handle(), mode) }
            .result()
            .map_err(|e| cuda_error("could not set the cuBLAS math mode", e))?;
        self.tf32.store(enabled, Ordering::Relaxed);
        Ok(())
    }

    /// Whether cuBLAS may use TF32 (see [`CudaBackend::set_tf32`]).
    pub fn tf32(&self) -> bool {
        self.tf32.load(Ordering::Relaxed)
    }

    /// The compiled module of the `.cu` file `file` (e.g. `"relu.cu"`), compiled by NVRTC
    /// to machine code for this device on first use (see [`super::compile_cubin`]), or read
    /// from the disk cache of an earlier process's compile (`cache.rs`).
    pub fn module(&self, file: &'static str) -> Result<Arc<CudaModule>> {
        let mut modules = lock(&self.modules);
        if let Some(module) = modules.get(file) {
            return Ok(module.clone());
        }
        let source = kernel_source(file)
            .ok_or_else(|| Error::Cuda(format!("no kernel file named {file}")))?;
        let cubin = super::cache::cubin(file, source, &self.arch)?;
        let module = driver(
            self.ctx.load_module(cudarc::nvrtc::Ptx::from_binary(cubin)),
            &format!("could not load the compiled {file} on {}", self.arch),
        )?;
        modules.insert(file, module.clone());
        Ok(module)
    }

    /// The kernel `name` of the `.cu` file `file`, ready for `stream().launch_builder`.
    pub fn function(&self, file: &'static str, name: &'static str) -> Result<CudaFunction> {
        if let Some(function) = lock(&self.functions).get(&(file, name)) {
            return Ok(function.clone());
        }
        let module = self.module(file)?;
        let function = driver(
            module.load_function(name),
            &format!("no kernel {name} in {file}"),
        )?;
        lock(&self.functions).insert((file, name), function.clone());
        Ok(function)
    }

    /// A launch of [`BLOCK_SIZE`]-thread blocks for a grid-stride loop over `n` elements.
    pub fn grid_stride_config(&self, n: usize) -> LaunchConfig {
        let wanted = n.div_ceil(BLOCK_SIZE as usize).max(1);
        let cap = (self.multiprocessors * BLOCKS_PER_SM) as usize;
        LaunchConfig {
            grid_dim: (wanted.min(cap) as u32, 1, 1),
            block_dim: (BLOCK_SIZE, 1, 1),
            shared_mem_bytes: 0,
        }
    }

    /// A launch with one warp per row ([`BLOCK_SIZE`] / 32 rows per block), for the
    /// row-wise softmax kernels.
    pub fn warp_per_row_config(&self, rows: usize) -> LaunchConfig {
        let rows_per_block = (BLOCK_SIZE / 32) as usize;
        let wanted = rows.div_ceil(rows_per_block).max(1);
        let cap = (self.multiprocessors * BLOCKS_PER_SM) as usize;
        LaunchConfig {
            grid_dim: (wanted.min(cap) as u32, 1, 1),
            block_dim: (BLOCK_SIZE, 1, 1),
            shared_mem_bytes: 0,
        }
    }

    /// A launch with one [`BLOCK_SIZE`]-thread block per item (per channel for batch norm
    /// and the conv bias gradient), blocks striding over the items beyond 65535.
    pub fn block_per_item_config(&self, items: usize) -> LaunchConfig {
        LaunchConfig {
            grid_dim: (items.clamp(1, 65_535) as u32, 1, 1),
            block_dim: (BLOCK_SIZE, 1, 1),
            shared_mem_bytes: 0,
        }
    }

    /// A single block of [`BLOCK_SIZE`] threads (the final step of a reduction).
    pub fn single_block_config(&self) -> LaunchConfig {
        LaunchConfig {
            grid_dim: (1, 1, 1),
            block_dim: (BLOCK_SIZE, 1, 1),
            shared_mem_bytes: 0,
        }
    }

    /// The `(32, 8)` blocks of `linear_bias_grad`, one block per 32 columns.
    pub fn column_sum_config(&self, cols: usize) -> LaunchConfig {
        LaunchConfig {
            grid_dim: (cols.div_ceil(32).clamp(1, 65_535) as u32, 1, 1),
            block_dim: (32, 8, 1),
            shared_mem_bytes: 0,
        }
    }

    /// `len` elements from the caching allocator, with undefined contents: only for
    /// outputs a kernel writes in full.
    pub fn alloc<T: DeviceRepr + Send + 'static>(&self, len: usize) -> Result<CudaBuffer<T>> {
        driver(
            self.pool.alloc(len),
            &format!("could not allocate {len} elements on cuda:{}", self.ordinal),
        )
    }

    /// `len` zeros.
    pub fn alloc_zeros<T: DeviceRepr + ValidAsZeroBits + Send + 'static>(
        &self,
        len: usize,
    ) -> Result<CudaBuffer<T>> {
        let mut buffer = self.alloc::<T>(len)?;
        driver(
            self.stream.memset_zeros(&mut buffer.view_mut()),
            "could not zero a device buffer",
        )?;
        Ok(buffer)
    }

    /// Copies host values into a new device buffer.
    pub fn htod<T: DeviceRepr + Send + 'static>(&self, values: &[T]) -> Result<CudaBuffer<T>> {
        let mut buffer = self.alloc::<T>(values.len())?;
        if !values.is_empty() {
            driver(
                self.stream.memcpy_htod(values, &mut buffer.view_mut()),
                "could not copy to the device",
            )?;
        }
        Ok(buffer)
    }

    /// Copies a device buffer to the host, waiting for the work queued before it.
    pub fn dtoh<T: DeviceRepr + Default + Clone + Send + 'static>(
        &self,
        buffer: &CudaBuffer<T>,
    ) -> Result<Vec<T>> {
        if buffer.is_empty() {
            return Ok(Vec::new());
        }
        let values = driver(
            self.stream.clone_dtoh(&buffer.view()),
            "could not copy from the device",
        )?;
        // The copy is queued on the stream like everything else: the values are the
        // device's only once the stream has reached it (and a kernel queued before that
        // failed, the copy's values are not to be read at all).
        driver(
            self.stream.synchronize(),
            "a CUDA kernel or the copy to the host failed",
        )?;
        Ok(values)
    }

    /// A device copy of a device buffer.
    pub fn dtod<T: DeviceRepr + Send + 'static>(
        &self,
        buffer: &CudaBuffer<T>,
    ) -> Result<CudaBuffer<T>> {
        let mut copy = self.alloc::<T>(buffer.len())?;
        if !buffer.is_empty() {
            driver(
                self.stream
                    .memcpy_dtod(&buffer.view(), &mut copy.view_mut()),
                "could not copy on the device",
            )?;
        }
        Ok(copy)
    }

    /// Waits until everything queued on the stream has run, and reports an error that a
    /// kernel raised meanwhile.
    pub fn synchronize(&self) -> Result<()> {
        driver(self.stream.synchronize(), "a CUDA kernel failed")?;
        driver(self.ctx.check_err(), "a CUDA call failed")
    }

    /// Frees the allocator's cached buffers (live buffers are untouched).
    pub fn release_cached(&self) {
        self.pool.release_cached();
    }

    /// Bytes held by the caching allocator.
    pub fn memory_stats(&self) -> PoolStats {
        self.pool.stats()
    }

    /// Launches the kernel `name` of the `.cu` file `file` on the backend's stream with
    /// `args` in the order the kernel declares its parameters. `op` names the caller in
    /// errors.
    ///
    /// # Safety
    ///
    /// Every pointer in `args` must address a live device buffer of this backend at least
    /// as long as the kernel indexes for the sizes passed beside it. (That the arguments
    /// fit the kernel's parameter list in number and type is checked against the `.cu`
    /// source: a mismatch is an error, not a launch.)
    pub unsafe fn launch(
        &self,
        op: &'static str,
        (file, name): (&'static str, &'static str),
        config: LaunchConfig,
        args: &[Arg],
    ) -> Result<()> {
        super::signature::check_args(op, file, name, args)?;
        let function = self.function(file, name)?;
        let mut launch = self.stream.launch_builder(&function);
        for arg in args {
            match arg {
                Arg::Ptr(v) | Arg::U64(v) => launch.arg(v),
                Arg::I32(v) => launch.arg(v),
                Arg::U32(v) => launch.arg(v),
                Arg::F32(v) => launch.arg(v),
                Arg::F64(v) => launch.arg(v),
            };
        }
        // SAFETY: the caller vouches for the arguments (see above).
        unsafe { launch.launch(config) }
            .map(drop)
            .map_err(|e| cuda_error(&format!("{op}: could not launch {name} ({file})"), e))?;
        self.wait_if_synchronous(|| format!("{op}: kernel {name} ({file})"))
    }

    /// With [`SYNC_LAUNCHES_VAR`] set, waits for the work just queued and reports a failure
    /// as that work's (`what` names it); otherwise returns at once.
    fn wait_if_synchronous(&self, what: impl FnOnce() -> String) -> Result<()> {
        if !self.sync_launches {
            return Ok(());
        }
        self.stream
            .synchronize()
            .and_then(|()| self.ctx.check_err())
            .map_err(|e| cuda_error(&format!("{} failed on the device", what()), e))
    }

    /// Row-major `c = op(a) * op(b)`, or `c += op(a) * op(b)` when `accumulate`, in cuBLAS:
    /// the same contract as [`crate::gemm::gemm`]. `op(a)` is `m x k` (`a` stored `k x m`
    /// when `a_transposed`), `op(b)` is `k x n` (`b` stored `n x k` when `b_transposed`),
    /// `c` is `m x n`. Buffers that are too short are an error, not a fault.
    #[allow(clippy::too_many_arguments)]
    pub fn sgemm<A: DevicePtr<f32>, B: DevicePtr<f32>, C: DevicePtrMut<f32>>(
        &self,
        m: usize,
        n: usize,
        k: usize,
        a: &A,
        a_transposed: bool,
        b: &B,
        b_transposed: bool,
        c: &mut C,
        accumulate: bool,
    ) -> Result<()> {
        self.sgemm_strided_batched(
            1,
            m,
            n,
            k,
            (a, 0, a_transposed),
            (b, 0, b_transposed),
            (c, 0),
            accumulate,
        )
    }

    /// `batch` independent row-major products (see [`CudaBackend::sgemm`]); product `i`
    /// reads `a` from element `i * stride_a` (and likewise `b`) and writes `c` from
    /// `i * stride_c`. A stride of 0 reuses one matrix for every product (a shared weight).
    #[allow(clippy::too_many_arguments)]
    pub fn sgemm_strided_batched<A: DevicePtr<f32>, B: DevicePtr<f32>, C: DevicePtrMut<f32>>(
        &self,
        batch: usize,
        m: usize,
        n: usize,
        k: usize,
        (a, stride_a, a_transposed): (&A, usize, bool),
        (b, stride_b, b_transposed): (&B, usize, bool),
        (c, stride_c): (&mut C, usize),
        accumulate: bool,
    ) -> Result<()> {
        const OP: &str = "sgemm";
        let lengths = (a.len(), b.len(), c.len());
        check_product_lengths(
            OP,
            batch,
            (m, n, k),
            (stride_a, stride_b, stride_c),
            lengths,
        )?;
        if batch == 0 || m == 0 || n == 0 {
            return Ok(());
        }
        // cuBLAS runs in whatever context is current on the calling thread.
        driver(self.ctx.bind_to_thread(), "could not bind the CUDA context")?;
        if k == 0 {
            return self.empty_sums(c, (batch, m, n, stride_c), accumulate);
        }
        let int = |what: &str, v: usize| super::to_i32(OP, what, v);
        let long = |what: &str, v: usize| {
            i64::try_from(v).map_err(|_| Error::invalid(OP, format!("{what} = {v} is too large")))
        };
        // cuBLAS is column-major, and a row-major matrix is its transpose in column-major
        // order: the row-major c = op(a) op(b) is the column-major c^T = op(b)^T op(a)^T,
        // so b goes first, a second, and the transpose flags carry over unchanged.
        let gemm = GemmConfig {
            transa: cublas_op(b_transposed),
            transb: cublas_op(a_transposed),
            m: int("n", n)?,
            n: int("m", m)?,
            k: int("k", k)?,
            alpha: 1.0f32,
            lda: int("ldb", if b_transposed { k } else { n })?,
            ldb: int("lda", if a_transposed { m } else { k })?,
            beta: if accumulate { 1.0 } else { 0.0 },
            ldc: int("n", n)?,
        };
        let blas = lock(&self.blas);
        // SAFETY: the checks above bound every element each product reads or writes by
        // the buffers' lengths, and `c` is a unique borrow.
        let result = unsafe {
            if batch == 1 {
                blas.gemm(gemm, b, a, c)
            } else {
                blas.gemm_strided_batched(
                    StridedBatchedConfig {
                        gemm,
                        batch_size: int("batch", batch)?,
                        stride_a: long("stride_b", stride_b)?,
                        stride_b: long("stride_a", stride_a)?,
                        stride_c: long("stride_c", stride_c)?,
                    },
                    b,
                    a,
                    c,
                )
            }
        };
        result.map_err(|e| {
            cuda_error(
                &format!("cuBLAS sgemm failed ({batch} x m={m} n={n} k={k})"),
                e,
            )
        })?;
        drop(blas);
        self.wait_if_synchronous(|| format!("cuBLAS sgemm ({batch} x m={m} n={n} k={k})"))
    }

    /// [`CudaBackend::sgemm`] on bf16 operands: `a` and `b` hold bf16 (as their bits), the products are
    /// summed in f32 (`CUBLAS_COMPUTE_32F`, on the tensor cores) into the f32 `c`, as
    /// PyTorch's autocast products and the CPU's `kernels::bf16` kernels compute them.
    #[allow(clippy::too_many_arguments)]
    pub fn gemm_bf16<A: DevicePtr<u16>, B: DevicePtr<u16>, C: DevicePtrMut<f32>>(
        &self,
        m: usize,
        n: usize,
        k: usize,
        a: &A,
        a_transposed: bool,
        b: &B,
        b_transposed: bool,
        c: &mut C,
        accumulate: bool,
    ) -> Result<()> {
        const OP: &str = "gemm_bf16";
        let lengths = (a.len(), b.len(), c.len());
        check_product_lengths(OP, 1, (m, n, k), (0, 0, 0), lengths)?;
        if m == 0 || n == 0 {
            return Ok(());
        }
        driver(self.ctx.bind_to_thread(), "could not bind the CUDA context")?;
        if k == 0 {
            return self.empty_sums(c, (1, m, n, 0), accumulate);
        }
        let int = |what: &str, v: usize| super::to_i32(OP, what, v);
        // Row-major as column-major, b first: see sgemm_strided_batched.
        let (rows, cols, depth) = (int("n", n)?, int("m", m)?, int("k", k)?);
        let lda = int("ldb", if b_transposed { k } else { n })?;
        let ldb = int("lda", if a_transposed { m } else { k })?;
        let (alpha, beta) = (1.0f32, if accumulate { 1.0f32 } else { 0.0 });
        let blas = lock(&self.blas);
        let (a_ptr, _record_a) = a.device_ptr(&self.stream);
        let (b_ptr, _record_b) = b.device_ptr(&self.stream);
        let (c_ptr, _record_c) = c.device_ptr_mut(&self.stream);
        // SAFETY: the length check bounds every element read and written by the buffers'
        // lengths; alpha and beta are f32 on the host, as CUBLAS_COMPUTE_32F requires; the
        // handle is alive (owned by `blas`) and bound to this backend's stream.
        let result = unsafe {
            cudarc::cublas::result::gemm_ex(
                *blas.handle(),
                cublas_op(b_transposed),
                cublas_op(a_transposed),
                rows,
                cols,
                depth,
                (&alpha) as *const f32 as *const _,
                b_ptr as *const _,
                cudaDataType_t::CUDA_R_16BF,
                lda,
                a_ptr as *const _,
                cudaDataType_t::CUDA_R_16BF,
                ldb,
                (&beta) as *const f32 as *const _,
                c_ptr as *mut _,
                cudaDataType_t::CUDA_R_32F,
                rows,
                cublasComputeType_t::CUBLAS_COMPUTE_32F,
                cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
            )
        };
        result
            .map_err(|e| cuda_error(&format!("cuBLAS bf16 gemm failed (m={m} n={n} k={k})"), e))?;
        drop(blas);
        self.wait_if_synchronous(|| format!("cuBLAS bf16 gemm (m={m} n={n} k={k})"))
    }

    /// The result of products over an empty sum (`k == 0`): each product's `c` is zero, or
    /// unchanged when accumulating, and what lies between them untouched. (cuBLAS is not
    /// asked: it rejects a leading dimension of 0.)
    fn empty_sums<C: DevicePtrMut<f32>>(
        &self,
        c: &mut C,
        (batch, m, n, stride_c): (usize, usize, usize, usize),
        accumulate: bool,
    ) -> Result<()> {
        if accumulate {
            return Ok(());
        }
        const F32_BYTES: u64 = std::mem::size_of::<f32>() as u64;
        let (ptr, _record) = c.device_ptr_mut(&self.stream);
        for span in output_spans(batch, m, n, stride_c) {
            // SAFETY: every span lies inside the elements the products write, which the
            // caller's length check bounds by `c`'s length.
            let zeroed = unsafe {
                cudarc::driver::result::memset_d8_async(
                    ptr + span.start as u64 * F32_BYTES,
                    0,
                    span.len() * std::mem::size_of::<f32>(),
                    self.stream.cu_stream(),
                )
            };
            driver(zeroed, "could not zero a product")?;
        }
        Ok(())
    }
}

/// cuBLAS's flag for an operand stored transposed, or as it is.
fn cublas_op(transposed: bool) -> cublasOperation_t {
    if transposed {
        cublasOperation_t::CUBLAS_OP_T
    } else {
        cublasOperation_t::CUBLAS_OP_N
    }
}

/// Checks that `batch` row-major products `m x k` by `k x n` into `m x n`, the operands
/// `strides` elements apart, fit in buffers of `lengths` elements: too short is an error
/// naming the sizes, not a fault on the device.
fn check_product_lengths(
    op: &'static str,
    batch: usize,
    (m, n, k): (usize, usize, usize),
    (stride_a, stride_b, stride_c): (usize, usize, usize),
    (a_len, b_len, c_len): (usize, usize, usize),
) -> Result<()> {
    let needed = |stride: usize, rows: usize, cols: usize| {
        let one = rows.checked_mul(cols)?;
        if batch == 0 {
            return Some(0);
        }
        stride.checked_mul(batch - 1)?.checked_add(one)
    };
    let fits = |len: usize, need: Option<usize>| need.is_some_and(|need| need <= len);
    if fits(a_len, needed(stride_a, m, k))
        && fits(b_len, needed(stride_b, k, n))
        && fits(c_len, needed(stride_c, m, n))
    {
        return Ok(());
    }
    Err(Error::shape(
        op,
        format!(
            "buffers of {a_len} / {b_len} / {c_len} elements are too short for {batch} \
             product(s) m={m} n={n} k={k} with strides {stride_a} / {stride_b} / {stride_c}"
        ),
    ))
}

/// The elements of `c` that `batch` row-major `m x n` products written `stride_c` apart
/// cover: each product's `m * n`, merged where they touch or overlap (a stride of `m * n`
/// gives one span, a stride of 0 a single matrix). The gaps between products are not
/// theirs to write.
pub(super) fn output_spans(
    batch: usize,
    m: usize,
    n: usize,
    stride_c: usize,
) -> Vec<std::ops::Range<usize>> {
    let one = m * n;
    let mut spans: Vec<std::ops::Range<usize>> = Vec::new();
    if one == 0 {
        return spans;
    }
    for i in 0..batch {
        let start = i * stride_c;
        match spans.last_mut() {
            Some(last) if start <= last.end => last.end = last.end.max(start + one),
            _ => spans.push(start..start + one),
        }
    }
    spans
}

impl std::fmt::Debug for CudaBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaBackend")
            .field("ordinal", &self.ordinal)
            .field("name", &self.name)
            .field("arch", &self.arch)
            .field("tf32", &self.tf32())
            .finish_non_exhaustive()
    }
}
