//! The `.cu` kernels, run on the CPU by a small CUDA emulator (`emulator.h`), against the
//! CPU kernels they mirror. No GPU is needed: this is how CI checks the kernels' indexing,
//! reductions and arithmetic.
//!
//! Every kernel file is compiled with g++ (C++20, `-ffp-contract=off` like NVRTC's
//! `--fmad=false`) into one shared library, loaded with `dlopen`, and launched through its
//! `emu_launch(name, grid, block_x, block_y, args)`, whose `args` are pointers to the
//! arguments exactly as `cuLaunchKernel` takes them. Kernels whose arithmetic is
//! element-wise must match the CPU bit for bit; reductions and `exp`/`ln` (summed in
//! another order, or from another math library) to a few ulps.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use super::{compilation_unit, KERNEL_NAMES, KERNEL_SOURCES};
use crate::cross_entropy::{CrossEntropy, Reduction};
use crate::pool2d::{Pool2dGeometry, PoolKind};
use crate::{
    batch_norm, conv2d, cross_entropy, dropout, elementwise, gelu, linear, log_softmax, optim,
    reduce, relu, Storage,
};

extern "C" {
    fn dlopen(filename: *const c_char, flags: c_int) -> *mut c_void;
    fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void;
    fn dlerror() -> *const c_char;
}
const RTLD_NOW: c_int = 2;

type LaunchFn = unsafe extern "C" fn(*const c_char, u32, u32, u32, *mut *mut c_void) -> c_int;

/// The compiled kernels. The emulator's launch state is global, so launches are serialised.
pub(super) struct Emulator {
    launch: LaunchFn,
    lock: Mutex<()>,
}

/// One kernel argument, as the kernel declares it.
#[derive(Clone, Copy)]
pub(super) enum Arg {
    Ptr(*mut c_void),
    I32(i32),
    U32(u32),
    U64(u64),
    F32(f32),
    F64(f64),
}

/// A `const T*` argument.
pub(super) fn input<T>(values: &[T]) -> Arg {
    Arg::Ptr(values.as_ptr() as *mut c_void)
}

/// A `T*` argument the kernel writes.
pub(super) fn output<T>(values: &mut [T]) -> Arg {
    Arg::Ptr(values.as_mut_ptr() as *mut c_void)
}

/// Threads per block in the emulation: a multiple of 32 like the real 256, smaller so
/// that grids of several blocks (and the striding between them) are exercised.
pub(super) const BLOCK: (u32, u32) = (64, 1);

impl Emulator {
    pub(super) fn launch(&self, name: &str, grid: u32, block: (u32, u32), args: &[Arg]) {
        let mut values = args.to_vec();
        let mut pointers: Vec<*mut c_void> = values
            .iter_mut()
            .map(|arg| match arg {
                Arg::Ptr(p) => p as *mut *mut c_void as *mut c_void,
                Arg::I32(v) => v as *mut i32 as *mut c_void,
                Arg::U32(v) => v as *mut u32 as *mut c_void,
                Arg::U64(v) => v as *mut u64 as *mut c_void,
                Arg::F32(v) => v as *mut f32 as *mut c_void,
                Arg::F64(v) => v as *mut f64 as *mut c_void,
            })
            .collect();
        let name_c = CString::new(name).unwrap();
        let _serial = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        // SAFETY: each test passes the arguments its kernel declares, with buffers at least
        // as long as the kernel indexes for the sizes it passes.
        let rc = unsafe {
            (self.launch)(
                name_c.as_ptr(),
                grid,
                block.0,
                block.1,
                pointers.as_mut_ptr(),
            )
        };
        assert_eq!(rc, 0, "the emulator has no kernel {name}");
    }
}

/// The C++ translation unit: the emulator, every kernel file (behind the shared prelude, as
/// NVRTC compiles it) in a namespace of its own (their helpers share names), and the
/// launch table generated from `KERNEL_NAMES`.
fn translation_unit(header: &str) -> String {
    let mut tu = format!("#include \"{header}\"\n#include <cstring>\n");
    for &(file, source) in KERNEL_SOURCES {
        let ns = file.trim_end_matches(".cu");
        tu += &format!(
            "namespace emu_{ns} {{\n{}}}\n",
            compilation_unit(file, source)
        );
    }
    tu += "extern \"C\" int emu_launch(const char* name, unsigned grid, unsigned bx, \
           unsigned by, void** args) {\n    dim3 block{bx, by, 1};\n";
    for &(file, names) in KERNEL_NAMES {
        let ns = file.trim_end_matches(".cu");
        for name in names {
            tu += &format!(
                "    if (std::strcmp(name, \"{name}\") == 0) {{ emu_run(grid, block, [&] {{ \
                 emu_call(emu_{ns}::{name}, args); }}); return 0; }}\n"
            );
        }
    }
    tu + "    return -1;\n}\n"
}

fn build() -> Result<Emulator, String> {
    let header = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/cuda/emulator.h");
    let dir = std::env::temp_dir().join(format!("kernels-cuda-emulator-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let source = dir.join("kernels.cpp");
    let library = dir.join("libkernels_emulated.so");
    std::fs::write(&source, translation_unit(&header.display().to_string()))
        .map_err(|e| format!("cannot write {}: {e}", source.display()))?;
    let compiled = Command::new("g++")
        .args([
            "-std=c++20",
            "-O1",
            "-ffp-contract=off",
            "-fPIC",
            "-shared",
            "-pthread",
            "-w",
            "-o",
        ])
        .arg(&library)
        .arg(&source)
        .output()
        .map_err(|e| format!("g++ could not be run ({e})"))?;
    if !compiled.status.success() {
        // A kernel that g++ rejects is a real failure, not a missing tool.
        panic!(
            "g++ could not compile the emulated kernels:\n{}",
            String::from_utf8_lossy(&compiled.stderr)
        );
    }
    let path = CString::new(library.display().to_string()).unwrap();
    // SAFETY: loads the library just built; its initialisers only set up globals.
    let handle = unsafe { dlopen(path.as_ptr(), RTLD_NOW) };
    if handle.is_null() {
        // SAFETY: dlerror returns a C string describing the last dlopen failure.
        let why = unsafe { CStr::from_ptr(dlerror()) }.to_string_lossy();
        panic!("cannot load {}: {why}", library.display());
    }
    // SAFETY: the symbol exists with this signature (written by translation_unit).
    let symbol = unsafe { dlsym(handle, c"emu_launch".as_ptr()) };
    assert!(
        !symbol.is_null(),
        "emu_launch missing from the emulated kernels"
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(Emulator {
        // SAFETY: emu_launch is `int(const char*, unsigned, unsigned, unsigned, void**)`.
        launch: unsafe { std::mem::transmute::<*mut c_void, LaunchFn>(symbol) },
        lock: Mutex::new(()),
    })
}

/// The emulator, or `None` (with the reason printed) where g++ is missing; under CI a
/// missing g++ is a failure, since the machine image ships it.
pub(super) fn emulator() -> Option<&'static Emulator> {
    static EMULATOR: OnceLock<Result<Emulator, String>> = OnceLock::new();
    match EMULATOR.get_or_init(build) {
        Ok(emulator) => Some(emulator),
        Err(reason) => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("emulated kernel tests: {reason} (CI=true, so this is a failure)");
            }
            eprintln!("skipped: emulated kernel tests: {reason}");
            None
        }
    }
}

/// Deterministic test values in `[-scale, scale)`.
pub(super) struct Lcg(pub(super) u64);

impl Lcg {
    pub(super) fn next(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    pub(super) fn values(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.next() * scale).collect()
    }

    /// Small whole numbers, so that pooling windows have ties.
    pub(super) fn whole(&mut self, n: usize, levels: u32) -> Vec<f32> {
        (0..n)
            .map(|_| ((self.next() + 1.0) * 0.5 * levels as f32).floor())
            .collect()
    }
}

pub(super) fn host(s: &Storage) -> Vec<f32> {
    s.to_vec_f32().unwrap()
}

pub(super) fn dev(v: &[f32]) -> Storage {
    Storage::f32(v.to_vec())
}

/// Same bits (any NaN matching any NaN).
pub(super) fn assert_bitwise(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()),
            "{what}[{i}]: got {g:e}, the CPU gives {w:e}"
        );
    }
}

/// `|got - want| <= atol + rtol * |want|`, equal infinities and NaNs allowed.
pub(super) fn assert_close(what: &str, got: &[f32], want: &[f32], rtol: f32, atol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let same = g == w || (g.is_nan() && w.is_nan());
        assert!(
            same || (g - w).abs() <= atol + rtol * w.abs(),
            "{what}[{i}]: got {g:e}, the CPU gives {w:e}"
        );
    }
}

/// Row-major `op(a) op(b)` in f64, standing in for cuBLAS.
#[allow(clippy::too_many_arguments)]
pub(super) fn product(
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    at: bool,
    b: &[f32],
    bt: bool,
) -> Vec<f32> {
    let mut c = vec![0.0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            let s: f64 = (0..k)
                .map(|p| {
                    let x = if at { a[p * m + i] } else { a[i * k + p] };
                    let y = if bt { b[j * k + p] } else { b[p * n + j] };
                    x as f64 * y as f64
                })
                .sum();
            c[i * n + j] = s as f32;
        }
    }
    c
}

#[test]
fn emulated_gelu_matches_the_cpu_bit_for_bit() {
    let Some(emu) = emulator() else { return };
    let mut rng = Lcg(7);
    // Every branch of the piecewise normal cdf, both tails and the special values.
    let mut x = rng.values(4000, 9.0);
    let seam = std::f32::consts::SQRT_2;
    x.extend([
        0.0,
        -0.0,
        1e-30,
        seam,
        -seam,
        4.0 * seam,
        -4.0 * seam,
        40.0,
        -40.0,
    ]);
    x.extend([f32::INFINITY, f32::NEG_INFINITY, f32::NAN]);
    let dy = rng.values(x.len(), 2.0);
    let n = x.len() as u64;
    let mut y = vec![0.0f32; x.len()];
    emu.launch(
        "gelu_forward",
        3,
        BLOCK,
        &[input(&x), output(&mut y), Arg::U64(n)],
    );
    assert_bitwise("gelu_forward", &y, &host(&gelu::forward(&dev(&x)).unwrap()));
    emu.launch(
        "gelu_backward",
        3,
        BLOCK,
        &[input(&x), input(&dy), output(&mut y), Arg::U64(n)],
    );
    let want = host(&gelu::backward(&dev(&x), &dev(&dy)).unwrap());
    assert_bitwise("gelu_backward", &y, &want);
}

#[test]
fn emulated_relu_elementwise_dropout_and_reduce_match_the_cpu() {
    let Some(emu) = emulator() else { return };
    let mut rng = Lcg(1);
    let mut a = rng.values(3000, 3.0);
    a[3] = f32::NAN;
    let b = rng.values(3000, 3.0);
    let n = a.len() as u64;
    let mut y = vec![0.0f32; a.len()];

    emu.launch(
        "relu_forward",
        3,
        BLOCK,
        &[input(&a), output(&mut y), Arg::U64(n)],
    );
    let relu_y = host(&relu::forward(&dev(&a)).unwrap());
    assert_bitwise("relu_forward", &y, &relu_y);
    // The mask is the forward input, NaN included, as autograd passes it.
    emu.launch(
        "relu_backward",
        3,
        BLOCK,
        &[input(&a), input(&b), output(&mut y), Arg::U64(n)],
    );
    let want = host(&relu::backward(&dev(&a), &dev(&b)).unwrap());
    assert_bitwise("relu_backward", &y, &want);

    for (kernel, want) in [
        ("elementwise_add", elementwise::add(&dev(&a), &dev(&b))),
        ("elementwise_mul", elementwise::mul(&dev(&a), &dev(&b))),
    ] {
        emu.launch(
            kernel,
            5,
            BLOCK,
            &[input(&a), input(&b), output(&mut y), Arg::U64(n)],
        );
        assert_bitwise(kernel, &y, &host(&want.unwrap()));
    }
    emu.launch(
        "elementwise_scale",
        5,
        BLOCK,
        &[
            input(&a),
            Arg::F32(0.37f64 as f32),
            output(&mut y),
            Arg::U64(n),
        ],
    );
    assert_bitwise(
        "scale",
        &y,
        &host(&elementwise::scale(&dev(&a), 0.37).unwrap()),
    );
    let mut acc = a.clone();
    emu.launch(
        "elementwise_add_assign",
        5,
        BLOCK,
        &[output(&mut acc), input(&b), Arg::U64(n)],
    );
    let mut want = dev(&a);
    elementwise::add_assign(&mut want, &dev(&b)).unwrap();
    assert_bitwise("add_assign", &acc, &host(&want));
    let mut acc = a.clone();
    emu.launch(
        "elementwise_lerp_assign",
        5,
        BLOCK,
        &[output(&mut acc), input(&b), Arg::F32(0.185), Arg::U64(n)],
    );
    let mut want = dev(&a);
    elementwise::lerp_assign(&mut want, &dev(&b), 0.185f32 as f64).unwrap();
    assert_bitwise("lerp_assign", &acc, &host(&want));
    emu.launch(
        "elementwise_fill",
        5,
        BLOCK,
        &[output(&mut y), Arg::F32(2.5), Arg::U64(n)],
    );
    assert!(y.iter().all(|&v| v == 2.5));

    // Dropout draws the CPU's mask, so the results are identical.
    let (p, seed) = (0.3f64, 42u64);
    let threshold = (p * (1u32 << 24) as f64).ceil() as u32;
    let scale = (1.0 / (1.0 - p)) as f32;
    emu.launch(
        "dropout_apply",
        4,
        BLOCK,
        &[
            input(&a),
            output(&mut y),
            Arg::U64(n),
            Arg::U64(seed),
            Arg::U32(threshold),
            Arg::F32(scale),
        ],
    );
    assert_bitwise(
        "dropout_apply",
        &y,
        &host(&dropout::forward(&dev(&a), p, seed).unwrap()),
    );
    emu.launch(
        "dropout_uniform",
        4,
        BLOCK,
        &[output(&mut y), Arg::U64(n), Arg::U64(seed)],
    );
    let uniform: Vec<f32> = (0..n).map(|i| dropout::uniform(seed, i)).collect();
    assert_bitwise("dropout_uniform", &y, &uniform);

    // The f64 sum rounds to the same f32 as the CPU's.
    let x = rng.values(50_000, 1.0);
    let mut partials = vec![0.0f64; 7];
    let mut sum = [0.0f32];
    emu.launch(
        "reduce_sum_partials",
        7,
        BLOCK,
        &[input(&x), Arg::U64(x.len() as u64), output(&mut partials)],
    );
    emu.launch(
        "reduce_sum_finish",
        1,
        BLOCK,
        &[input(&partials), Arg::U32(7), output(&mut sum)],
    );
    assert_bitwise("reduce_sum", &sum, &host(&reduce::sum(&dev(&x)).unwrap()));
    let mut spread = vec![0.0f32; 100];
    emu.launch(
        "reduce_broadcast_scalar",
        2,
        BLOCK,
        &[
            input(&[1.7f32]),
            Arg::F64(1.0 / 3.0),
            output(&mut spread),
            Arg::U64(100),
        ],
    );
    let want = reduce::broadcast_scalar(&dev(&[1.7]), 100, 1.0 / 3.0).unwrap();
    assert_bitwise("broadcast_scalar", &spread, &host(&want));
}

#[test]
fn emulated_log_softmax_and_cross_entropy_match_the_cpu() {
    let Some(emu) = emulator() else { return };
    let mut rng = Lcg(2);
    for (rows, cols) in [(37usize, 10usize), (9, 100)] {
        let mut x = rng.values(rows * cols, 5.0);
        // An all -inf row, and logits of 1e4 (the shift by the max keeps them finite).
        for j in 0..cols {
            x[cols + j] = f32::NEG_INFINITY;
            x[2 * cols + j] = 1e4 + j as f32;
        }
        let g = rng.values(rows * cols, 1.0);
        let (r, c) = (rows as i32, cols as i32);
        let mut y = vec![0.0f32; x.len()];
        emu.launch(
            "log_softmax_forward",
            2,
            BLOCK,
            &[input(&x), output(&mut y), Arg::I32(r), Arg::I32(c)],
        );
        let want_y = host(&log_softmax::forward(&dev(&x), rows, cols).unwrap());
        assert_close("log_softmax_forward", &y, &want_y, 1e-6, 1e-6);
        let mut gx = vec![0.0f32; x.len()];
        emu.launch(
            "log_softmax_backward",
            2,
            BLOCK,
            &[
                input(&want_y),
                input(&g),
                output(&mut gx),
                Arg::I32(r),
                Arg::I32(c),
            ],
        );
        let want = log_softmax::backward(&dev(&want_y), &dev(&g), rows, cols).unwrap();
        assert_close("log_softmax_backward", &gx, &host(&want), 1e-5, 1e-6);
    }

    let (rows, cols) = (50usize, 10usize);
    let mut x = rng.values(rows * cols, 4.0);
    x[0] = 1e4;
    let labels: Vec<u32> = (0..rows).map(|r| ((r * 7 + 3) % cols) as u32).collect();
    let (r, c) = (rows as i32, cols as i32);
    // PyTorch's default, then airbench94's loss: smoothing 0.2, summed over the rows.
    for loss_options in [
        CrossEntropy::default(),
        CrossEntropy {
            label_smoothing: 0.2,
            reduction: Reduction::Sum,
        },
    ] {
        let what = format!("cross_entropy {loss_options:?}");
        let smoothing = loss_options.label_smoothing;
        let off = smoothing / cols as f64;
        let divisor = match loss_options.reduction {
            Reduction::Mean => rows as f64,
            Reduction::Sum => 1.0,
        };
        let mut probs = vec![0.0f32; x.len()];
        let mut row_loss = vec![0.0f32; rows];
        let mut loss = [0.0f32];
        emu.launch(
            "cross_entropy_forward",
            3,
            BLOCK,
            &[
                input(&x),
                input(&labels),
                Arg::I32(r),
                Arg::I32(c),
                Arg::F32((1.0 - smoothing) as f32),
                Arg::F32(off as f32),
                output(&mut probs),
                output(&mut row_loss),
            ],
        );
        emu.launch(
            "cross_entropy_reduce",
            1,
            BLOCK,
            &[
                input(&row_loss),
                Arg::I32(r),
                Arg::F64(divisor),
                output(&mut loss),
            ],
        );
        let (want_loss, want_probs) =
            cross_entropy::forward_with(&dev(&x), &labels, rows, cols, loss_options).unwrap();
        assert_close(&what, &probs, &host(&want_probs), 1e-6, 1e-7);
        // The smoothing term is summed across a warp on the GPU, in order on the CPU.
        assert_close(&what, &loss, &host(&want_loss), 1e-6, 0.0);
        let want_probs = host(&want_probs);
        let mut grad = vec![0.0f32; x.len()];
        emu.launch(
            "cross_entropy_backward",
            3,
            BLOCK,
            &[
                input(&want_probs),
                input(&labels),
                input(&[1.7f32]),
                Arg::I32(r),
                Arg::I32(c),
                Arg::F64(divisor),
                Arg::F32((1.0 - smoothing + off) as f32),
                Arg::F32(off as f32),
                output(&mut grad),
            ],
        );
        let want = cross_entropy::backward_with(
            &dev(&want_probs),
            &labels,
            &dev(&[1.7]),
            rows,
            cols,
            loss_options,
        )
        .unwrap();
        assert_bitwise(&what, &grad, &host(&want));
    }
}

#[test]
fn emulated_pooling_matches_the_cpu_bit_for_bit() {
    let Some(emu) = emulator() else { return };
    let mut rng = Lcg(3);
    let avg = |count_include_pad| PoolKind::Avg { count_include_pad };
    let cases = [
        (PoolKind::Max, [2, 3, 8, 8], [2, 2], [2, 2], [0, 0]),
        (PoolKind::Max, [2, 3, 7, 9], [3, 3], [2, 1], [1, 1]),
        (PoolKind::Max, [1, 2, 6, 5], [3, 2], [1, 1], [1, 0]),
        (avg(true), [2, 3, 7, 9], [3, 3], [2, 1], [1, 1]),
        (avg(false), [2, 3, 7, 9], [3, 3], [2, 1], [1, 1]),
        (avg(true), [2, 3, 8, 8], [2, 2], [2, 2], [0, 0]),
    ];
    for (case, (kind, shape, kernel, stride, padding)) in cases.into_iter().enumerate() {
        let g = Pool2dGeometry::new(kind, &shape, kernel, stride, padding).unwrap();
        // Whole numbers make ties (the first maximum must win), and a NaN must win too.
        let mut x = rng.whole(shape.iter().product(), 5);
        x[5] = f32::NAN;
        let want_y = host(&crate::pool2d::forward(&dev(&x), &g).unwrap());
        let gy = rng.values(want_y.len(), 1.0);
        let want_gx = host(&crate::pool2d::backward(&dev(&x), &dev(&gy), &g).unwrap());
        let dims = [
            g.batch * g.channels,
            g.in_h,
            g.in_w,
            kernel[0],
            kernel[1],
            stride[0],
            stride[1],
            padding[0],
            padding[1],
            g.out_h,
            g.out_w,
        ]
        .map(|d| Arg::I32(d as i32));
        let mut y = vec![0.0f32; want_y.len()];
        let mut gx = vec![0.0f32; x.len()];
        match kind {
            PoolKind::Max => {
                let args: Vec<Arg> = [input(&x), output(&mut y)]
                    .into_iter()
                    .chain(dims)
                    .collect();
                emu.launch("max_pool2d_forward", 3, BLOCK, &args);
                let args: Vec<Arg> = [input(&x), input(&gy), output(&mut gx)]
                    .into_iter()
                    .chain(dims)
                    .collect();
                emu.launch("max_pool2d_backward", 3, BLOCK, &args);
            }
            PoolKind::Avg { count_include_pad } => {
                let flag = Arg::I32(count_include_pad as i32);
                let args: Vec<Arg> = [input(&x), output(&mut y)]
                    .into_iter()
                    .chain(dims)
                    .chain([flag])
                    .collect();
                emu.launch("avg_pool2d_forward", 3, BLOCK, &args);
                let args: Vec<Arg> = [input(&gy), output(&mut gx)]
                    .into_iter()
                    .chain(dims)
                    .chain([flag])
                    .collect();
                emu.launch("avg_pool2d_backward", 3, BLOCK, &args);
            }
        }
        assert_bitwise(&format!("pool case {case} forward"), &y, &want_y);
        assert_bitwise(&format!("pool case {case} backward"), &gx, &want_gx);
    }
}

#[test]
fn emulated_conv2d_and_linear_with_reference_products_match_the_cpu() {
    let Some(emu) = emulator() else { return };
    let mut rng = Lcg(4);
    let cases = [
        ([2, 3, 8, 8], [4, 3, 3, 3], [1, 1], [1, 1]),
        ([3, 2, 9, 7], [5, 2, 3, 2], [2, 1], [1, 0]),
        ([2, 4, 5, 5], [3, 4, 1, 1], [1, 1], [0, 0]),
    ];
    for (case, (xs, ws, stride, padding)) in cases.into_iter().enumerate() {
        let g = conv2d::Conv2dGeometry::new(&xs, &ws, stride, padding).unwrap();
        let x = rng.values(xs.iter().product(), 1.0);
        let w = rng.values(ws.iter().product(), 1.0);
        let bias = rng.values(ws[0], 1.0);
        let want_y = conv2d::forward(&dev(&x), &dev(&w), Some(&dev(&bias)), &g).unwrap();
        let gy = rng.values(want_y.len(), 1.0);
        let want = conv2d::backward(&dev(&x), &dev(&w), &dev(&gy), &g, true, true).unwrap();

        let (n, c_out, p) = (g.batch, g.out_channels, g.out_h * g.out_w);
        let ckk = g.in_channels * g.kernel[0] * g.kernel[1];
        let cols = n * p;
        let geometry = [
            n,
            g.in_channels,
            g.in_h,
            g.in_w,
            g.kernel[0],
            g.kernel[1],
            g.stride[0],
            g.stride[1],
            g.padding[0],
            g.padding[1],
            g.out_h,
            g.out_w,
        ]
        .map(|d| Arg::I32(d as i32));
        let ncp = [n, c_out, p].map(|d| Arg::I32(d as i32));

        let mut col = vec![0.0f32; ckk * cols];
        let args: Vec<Arg> = [input(&x), output(&mut col)]
            .into_iter()
            .chain(geometry)
            .collect();
        emu.launch("conv2d_im2col", 4, BLOCK, &args);
        let wide = product(c_out, cols, ckk, &w, false, &col, false);
        let mut y = vec![0.0f32; n * c_out * p];
        let args: Vec<Arg> = [input(&wide), input(&bias), Arg::I32(1), output(&mut y)]
            .into_iter()
            .chain(ncp)
            .collect();
        emu.launch("conv2d_cnp_to_ncp", 4, BLOCK, &args);
        assert_close(
            &format!("conv case {case} forward"),
            &y,
            &host(&want_y),
            1e-5,
            1e-5,
        );

        let mut gy_wide = vec![0.0f32; c_out * cols];
        let args: Vec<Arg> = [input(&gy), output(&mut gy_wide)]
            .into_iter()
            .chain(ncp)
            .collect();
        emu.launch("conv2d_ncp_to_cnp", 4, BLOCK, &args);
        let gw = product(c_out, ckk, cols, &gy_wide, false, &col, true);
        let gcol = product(ckk, cols, c_out, &w, true, &gy_wide, false);
        let mut gx = vec![0.0f32; x.len()];
        let args: Vec<Arg> = [input(&gcol), output(&mut gx)]
            .into_iter()
            .chain(geometry)
            .collect();
        emu.launch("conv2d_col2im", 4, BLOCK, &args);
        let mut gb = vec![0.0f32; c_out];
        let args: Vec<Arg> = [input(&gy)]
            .into_iter()
            .chain(ncp)
            .chain([output(&mut gb)])
            .collect();
        emu.launch("conv2d_bias_grad", 2, BLOCK, &args);
        let what = |part: &str| format!("conv case {case} {part}");
        assert_close(&what("weight grad"), &gw, &host(&want.weight), 1e-5, 1e-5);
        assert_close(
            &what("input grad"),
            &gx,
            &host(want.input.as_ref().unwrap()),
            1e-5,
            1e-5,
        );
        assert_close(
            &what("bias grad"),
            &gb,
            &host(want.bias.as_ref().unwrap()),
            1e-5,
            1e-5,
        );
    }

    let (batch, inputs, outputs) = (13usize, 70usize, 37usize);
    let g = linear::LinearGeometry::new(&[batch, inputs], &[outputs, inputs]).unwrap();
    let x = rng.values(batch * inputs, 1.0);
    let w = rng.values(outputs * inputs, 1.0);
    let bias = rng.values(outputs, 1.0);
    let want_y = linear::forward(&dev(&x), &dev(&w), Some(&dev(&bias)), &g).unwrap();
    let mut y = product(batch, outputs, inputs, &x, false, &w, true);
    let (r, c) = (Arg::I32(batch as i32), Arg::I32(outputs as i32));
    emu.launch(
        "linear_bias_add",
        3,
        BLOCK,
        &[output(&mut y), input(&bias), r, c],
    );
    assert_close("linear forward", &y, &host(&want_y), 1e-5, 1e-5);
    let gy = rng.values(batch * outputs, 1.0);
    let want = linear::backward(&dev(&x), &dev(&w), &dev(&gy), &g, true, false).unwrap();
    let mut gb = vec![0.0f32; outputs];
    emu.launch(
        "linear_bias_grad",
        1,
        (32, 8),
        &[input(&gy), r, c, output(&mut gb)],
    );
    assert_close(
        "linear bias grad",
        &gb,
        &host(want.bias.as_ref().unwrap()),
        1e-6,
        1e-6,
    );
}

#[test]
fn emulated_batch_norm_matches_the_cpu_bit_for_bit() {
    let Some(emu) = emulator() else { return };
    let mut rng = Lcg(5);
    for shape in [vec![6usize, 5, 7, 3], vec![40, 9]] {
        let (n, c) = (shape[0], shape[1]);
        let s: usize = shape[2..].iter().product();
        let g = batch_norm::BatchNormGeometry::new(&shape, c).unwrap();
        // An offset mean, so that centring before scaling matters.
        let x: Vec<f32> = rng.values(n * c * s, 2.0).iter().map(|v| v + 3.0).collect();
        let gamma = rng.values(c, 1.0);
        let beta = rng.values(c, 1.0);
        let rm0 = rng.values(c, 0.5);
        let rv0: Vec<f32> = rng.values(c, 0.5).iter().map(|v| v + 1.0).collect();
        let gy = rng.values(x.len(), 1.0);
        let (momentum, eps) = (0.1, 1e-5);
        let (mut want_rm, mut want_rv) = (dev(&rm0), dev(&rv0));
        let (want_y, stats) = batch_norm::forward_train(
            &dev(&x),
            &dev(&gamma),
            &dev(&beta),
            &mut want_rm,
            &mut want_rv,
            momentum,
            eps,
            &g,
        )
        .unwrap();
        let ncs = [n, c, s].map(|d| Arg::I32(d as i32));

        let (mut rm, mut rv) = (rm0.clone(), rv0.clone());
        let (mut mean, mut inv_std, mut scale) =
            (vec![0.0f32; c], vec![0.0f32; c], vec![0.0f32; c]);
        let args: Vec<Arg> = [input(&x), input(&gamma), output(&mut rm), output(&mut rv)]
            .into_iter()
            .chain(ncs)
            .chain([
                Arg::F64(momentum),
                Arg::F64(eps),
                output(&mut mean),
                output(&mut inv_std),
                output(&mut scale),
            ])
            .collect();
        emu.launch("batch_norm_train_stats", 2, BLOCK, &args);
        assert_bitwise("mean", &mean, &host(&stats.mean));
        assert_bitwise("inv_std", &inv_std, &host(&stats.inv_std));
        assert_bitwise("running_mean", &rm, &host(&want_rm));
        assert_bitwise("running_var", &rv, &host(&want_rv));
        let mut y = vec![0.0f32; x.len()];
        let args: Vec<Arg> = [input(&x), input(&mean), input(&scale), input(&beta)]
            .into_iter()
            .chain(ncs)
            .chain([output(&mut y)])
            .collect();
        emu.launch("batch_norm_affine", 3, BLOCK, &args);
        assert_bitwise("train forward", &y, &host(&want_y));

        let want =
            batch_norm::backward_train(&dev(&x), &dev(&gamma), &stats, &dev(&gy), &g).unwrap();
        let (mut dgamma, mut dbeta, mut coef) =
            (vec![0.0f32; c], vec![0.0f32; c], vec![0.0f32; 3 * c]);
        let args: Vec<Arg> = [
            input(&x),
            input(&gy),
            input(&gamma),
            input(&mean),
            input(&inv_std),
        ]
        .into_iter()
        .chain(ncs)
        .chain([output(&mut dgamma), output(&mut dbeta), output(&mut coef)])
        .collect();
        emu.launch("batch_norm_backward_train_reduce", 2, BLOCK, &args);
        let mut gx = vec![0.0f32; x.len()];
        let args: Vec<Arg> = [input(&x), input(&gy), input(&mean), input(&coef)]
            .into_iter()
            .chain(ncs)
            .chain([output(&mut gx)])
            .collect();
        emu.launch("batch_norm_input_grad", 3, BLOCK, &args);
        assert_bitwise("train grad gamma", &dgamma, &host(&want.gamma));
        assert_bitwise("train grad beta", &dbeta, &host(&want.beta));
        assert_bitwise("train grad input", &gx, &host(&want.input));

        // Inference: the running statistics are constants.
        let want_y = batch_norm::forward_eval(
            &dev(&x),
            &dev(&gamma),
            &dev(&beta),
            &dev(&rm0),
            &dev(&rv0),
            eps,
            &g,
        )
        .unwrap();
        emu.launch(
            "batch_norm_eval_scale",
            1,
            BLOCK,
            &[
                input(&gamma),
                input(&rv0),
                Arg::I32(c as i32),
                Arg::F64(eps),
                output(&mut scale),
            ],
        );
        let args: Vec<Arg> = [input(&x), input(&rm0), input(&scale), input(&beta)]
            .into_iter()
            .chain(ncs)
            .chain([output(&mut y)])
            .collect();
        emu.launch("batch_norm_affine", 3, BLOCK, &args);
        assert_bitwise("eval forward", &y, &host(&want_y));
        let want = batch_norm::backward_eval(
            &dev(&x),
            &dev(&gamma),
            &dev(&rm0),
            &dev(&rv0),
            eps,
            &dev(&gy),
            &g,
        )
        .unwrap();
        let args: Vec<Arg> = [
            input(&x),
            input(&gy),
            input(&gamma),
            input(&rm0),
            input(&rv0),
        ]
        .into_iter()
        .chain([Arg::F64(eps)])
        .chain(ncs)
        .chain([output(&mut dgamma), output(&mut dbeta), output(&mut coef)])
        .collect();
        emu.launch("batch_norm_backward_eval_reduce", 2, BLOCK, &args);
        let args: Vec<Arg> = [input(&x), input(&gy), input(&rm0), input(&coef)]
            .into_iter()
            .chain(ncs)
            .chain([output(&mut gx)])
            .collect();
        emu.launch("batch_norm_input_grad", 3, BLOCK, &args);
        assert_bitwise("eval grad gamma", &dgamma, &host(&want.gamma));
        assert_bitwise("eval grad beta", &dbeta, &host(&want.beta));
        assert_bitwise("eval grad input", &gx, &host(&want.input));
    }
}

#[test]
fn emulated_optimizer_steps_match_the_cpu_bit_for_bit() {
    let Some(emu) = emulator() else { return };
    let mut rng = Lcg(6);
    let len = 2000usize;
    let n = Arg::U64(len as u64);
    let p0 = rng.values(len, 1.0);
    let grads: Vec<Vec<f32>> = (0..3).map(|_| rng.values(len, 1.0)).collect();

    let sgd = optim::SgdConfig {
        lr: 0.05,
        momentum: 0.0,
        dampening: 0.0,
        weight_decay: 1e-3,
        nesterov: false,
    };
    let (mut want, mut p) = (dev(&p0), p0.clone());
    for g in &grads {
        optim::sgd_step(&mut want, &dev(g), &mut None, &sgd).unwrap();
        let args = [
            output(&mut p),
            input(g),
            n,
            Arg::F32(sgd.lr as f32),
            Arg::I32(1),
            Arg::F32(sgd.weight_decay as f32),
        ];
        emu.launch("sgd_step", 4, BLOCK, &args);
    }
    assert_bitwise("sgd", &p, &host(&want));

    for cfg in [
        optim::SgdConfig {
            lr: 0.05,
            momentum: 0.9,
            dampening: 0.1,
            weight_decay: 0.0,
            nesterov: false,
        },
        optim::SgdConfig {
            lr: 0.05,
            momentum: 0.9,
            dampening: 0.0,
            weight_decay: 1e-2,
            nesterov: true,
        },
    ] {
        let (mut want, mut want_buf) = (dev(&p0), None);
        // The first step must not read the buffer: start it with garbage.
        let (mut p, mut buf) = (p0.clone(), vec![f32::NAN; len]);
        for (step, g) in grads.iter().enumerate() {
            optim::sgd_step(&mut want, &dev(g), &mut want_buf, &cfg).unwrap();
            let args = [
                output(&mut p),
                input(g),
                output(&mut buf),
                n,
                Arg::F32(cfg.lr as f32),
                Arg::I32((cfg.weight_decay != 0.0) as i32),
                Arg::F32(cfg.weight_decay as f32),
                Arg::F32(cfg.momentum as f32),
                Arg::F32((1.0 - cfg.dampening) as f32),
                Arg::I32(cfg.nesterov as i32),
                Arg::I32((step == 0) as i32),
            ];
            emu.launch("sgd_momentum_step", 4, BLOCK, &args);
        }
        assert_bitwise("sgd momentum", &p, &host(&want));
        assert_bitwise(
            "sgd momentum buffer",
            &buf,
            &host(want_buf.as_ref().unwrap()),
        );
    }

    let cfg = optim::AdamConfig {
        weight_decay: 1e-2,
        ..Default::default()
    };
    let (mut want, mut want_m, mut want_v) = (dev(&p0), dev(&vec![0.0; len]), dev(&vec![0.0; len]));
    let (mut p, mut m, mut v) = (p0.clone(), vec![0.0f32; len], vec![0.0f32; len]);
    for (i, g) in grads.iter().enumerate() {
        let step = i as u64 + 1;
        optim::adam_step(&mut want, &dev(g), &mut want_m, &mut want_v, step, &cfg).unwrap();
        // The per-step scalars, formed in f64 and rounded once, as the CPU code does.
        let bias_correction1 = 1.0 - cfg.beta1.powf(step as f64);
        let bias_correction2 = 1.0 - cfg.beta2.powf(step as f64);
        let args = [
            output(&mut p),
            input(g),
            output(&mut m),
            output(&mut v),
            n,
            Arg::F32(cfg.beta1 as f32),
            Arg::F32((1.0 - cfg.beta1) as f32),
            Arg::F32(cfg.beta2 as f32),
            Arg::F32((1.0 - cfg.beta2) as f32),
            Arg::F32((cfg.lr / bias_correction1) as f32),
            Arg::F32(bias_correction2.sqrt() as f32),
            Arg::F32(cfg.eps as f32),
            Arg::I32(1),
            Arg::F32(cfg.weight_decay as f32),
        ];
        emu.launch("adam_step", 4, BLOCK, &args);
    }
    assert_bitwise("adam param", &p, &host(&want));
    assert_bitwise("adam exp_avg", &m, &host(&want_m));
    assert_bitwise("adam exp_avg_sq", &v, &host(&want_v));
}
