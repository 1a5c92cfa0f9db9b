//! Checks that need no GPU (every `.cu` file compiles with NVRTC, the tables are complete)
//! run everywhere; the few that launch kernels run only where a device opens.

use super::backend::output_spans;
use super::*;

/// Whether NVRTC is loadable; if not, explains how to get it, and fails under CI (where
/// `.ci/run` installs it) instead of skipping.
fn nvrtc_or_skip(test: &str) -> bool {
    if nvrtc_present() {
        return true;
    }
    let reason = format!(
        "{test}: libnvrtc could not be loaded; run scripts/install-nvrtc.sh and put the \
         folder it prints on LD_LIBRARY_PATH"
    );
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{reason} (CI=true, so this is a failure, not a skip)");
    }
    eprintln!("skipped: {reason}");
    false
}

#[test]
fn every_kernel_file_compiles_with_nvrtc_for_sm_80_and_sm_90() {
    if !nvrtc_or_skip("NVRTC compile test") {
        return;
    }
    let mut failures = Vec::new();
    for arch in ["sm_80", "sm_90"] {
        for &(file, source) in KERNEL_SOURCES {
            match compile_ptx(file, source, arch) {
                Ok(ptx) => {
                    let ptx = ptx.to_src();
                    let names = KERNEL_NAMES
                        .iter()
                        .find(|(f, _)| *f == file)
                        .map(|(_, names)| *names)
                        .unwrap_or_default();
                    for name in names {
                        // An extern "C" kernel keeps its plain name as the PTX entry.
                        if !ptx.contains(&format!(".entry {name}(")) {
                            failures.push(format!("{file} ({arch}): no kernel {name} in the PTX"));
                        }
                    }
                }
                Err(err) => failures.push(format!("{file} ({arch}): {err}")),
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn every_kernel_file_compiles_to_machine_code_for_sm_80_and_sm_90() {
    if !nvrtc_or_skip("NVRTC CUBIN test") {
        return;
    }
    for arch in ["sm_80", "sm_90"] {
        for &(file, source) in KERNEL_SOURCES {
            let cubin = compile_cubin(file, source, arch)
                .unwrap_or_else(|e| panic!("{file} ({arch}): {e}"));
            // A CUBIN is an ELF image of the device code.
            assert_eq!(cubin.get(..4), Some(&b"\x7fELF"[..]), "{file} ({arch})");
        }
    }
    let err = compile_cubin(
        "broken.cu",
        "extern \"C\" __global__ void f() { nope; }",
        "sm_90",
    )
    .unwrap_err()
    .to_string();
    for expected in ["broken.cu", "--gpu-architecture=sm_90", "nope"] {
        assert!(err.contains(expected), "{expected:?} missing from: {err}");
    }
}

#[test]
fn a_compile_error_names_the_file_the_options_and_the_log() {
    if !nvrtc_or_skip("NVRTC error test") {
        return;
    }
    let source = "extern \"C\" __global__ void broken(float* x) { x[0] = undeclared; }";
    let err = compile_ptx("broken.cu", source, "sm_90").unwrap_err();
    let message = err.to_string();
    for expected in [
        // The file's own line number, though the prelude is compiled before it.
        "broken.cu(1)",
        "--gpu-architecture=sm_90",
        "--fmad=false",
        "undeclared",
    ] {
        assert!(
            message.contains(expected),
            "{expected:?} missing from: {message}"
        );
    }
}

#[test]
fn kernel_sources_list_every_cu_file_of_the_crate() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut on_disk = Vec::new();
    for entry in std::fs::read_dir(&src).unwrap() {
        let dir = entry.unwrap().path();
        if !dir.is_dir() {
            continue;
        }
        for file in std::fs::read_dir(&dir).unwrap() {
            let path = file.unwrap().path();
            if path.extension().is_some_and(|e| e == "cu") {
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                // Each op's kernels sit beside its CPU code: kernels/src/<op>/<op>.cu.
                assert_eq!(
                    Some(name.trim_end_matches(".cu")),
                    dir.file_name().and_then(|d| d.to_str()),
                    "{} is not named after its folder",
                    path.display()
                );
                on_disk.push(name);
            }
        }
    }
    on_disk.sort();
    let mut listed: Vec<String> = KERNEL_SOURCES.iter().map(|(f, _)| f.to_string()).collect();
    listed.sort();
    assert_eq!(listed, on_disk);
    let mut named: Vec<String> = KERNEL_NAMES.iter().map(|(f, _)| f.to_string()).collect();
    named.sort();
    assert_eq!(named, on_disk);
}

#[test]
fn every_kernel_is_extern_c_and_nothing_is_included() {
    for &(file, source) in KERNEL_SOURCES {
        // NVRTC has no libc headers: an #include would compile here only by accident.
        assert!(
            !source
                .lines()
                .any(|line| line.trim_start().starts_with("#include")),
            "{file} includes a header"
        );
        let names = KERNEL_NAMES.iter().find(|(f, _)| *f == file).unwrap().1;
        let globals = source.matches("__global__").count();
        assert_eq!(globals, names.len(), "{file}: KERNEL_NAMES lists {names:?}");
        for name in names {
            assert!(
                source.contains(&format!("extern \"C\" __global__ void {name}(")),
                "{file}: {name} is not an extern \"C\" __global__ kernel"
            );
        }
    }
}

#[test]
fn every_kernel_signature_is_read_from_its_source() {
    for &(file, names) in KERNEL_NAMES {
        let source = kernel_source(file).unwrap();
        for name in names {
            let params = kernel_params(source, name);
            assert!(
                params.as_ref().is_some_and(|p| !p.is_empty()),
                "{file}: cannot read the parameters of {name}"
            );
        }
    }
    let relu = kernel_source("relu.cu").unwrap();
    assert_eq!(
        kernel_params(relu, "relu_forward").unwrap(),
        [Param::Ptr, Param::Ptr, Param::U64]
    );
    let optim = kernel_source("optim.cu").unwrap();
    assert_eq!(
        kernel_params(optim, "sgd_step").unwrap(),
        [
            Param::Ptr,
            Param::Ptr,
            Param::U64,
            Param::F32,
            Param::I32,
            Param::F32
        ]
    );
    let reduce = kernel_source("reduce.cu").unwrap();
    assert_eq!(
        kernel_params(reduce, "reduce_sum_finish").unwrap(),
        [Param::Ptr, Param::U32, Param::Ptr]
    );
    assert_eq!(
        kernel_params(reduce, "reduce_broadcast_scalar").unwrap(),
        [Param::Ptr, Param::F64, Param::Ptr, Param::U64]
    );
    assert!(kernel_params(relu, "no_such_kernel").is_none());
}

#[test]
fn the_prelude_is_compiled_before_each_file_with_its_own_line_numbers() {
    // NVRTC has no libc headers, and the kernels are the files' own.
    assert!(!PRELUDE.contains("__global__"));
    assert!(!PRELUDE
        .lines()
        .any(|line| line.trim_start().starts_with("#include")));
    for name in [
        "GRID_STRIDE",
        "WARP_PER_ROW",
        "warp_sum",
        "warp_max",
        "block_sum",
    ] {
        assert!(PRELUDE.contains(name), "{name} missing from the prelude");
    }
    let unit = compilation_unit("relu.cu", "int x;");
    let prelude_at = unit.find(PRELUDE).unwrap();
    let file_at = unit.find("#line 1 \"relu.cu\"\nint x;").unwrap();
    assert!(unit.starts_with("#line 1 \"prelude.cuh\"\n") && prelude_at < file_at);
}

#[test]
fn a_zero_k_batched_product_zeroes_each_output_matrix_and_not_the_gaps() {
    let spans = |batch, m, n, stride_c| -> Vec<(usize, usize)> {
        output_spans(batch, m, n, stride_c)
            .into_iter()
            .map(|r| (r.start, r.end))
            .collect()
    };
    // Three 2x3 products 10 elements apart: elements 0..6, 10..16, 20..26; 6..10 and
    // 16..20 belong to nobody and stay as they are.
    assert_eq!(spans(3, 2, 3, 10), [(0, 6), (10, 16), (20, 26)]);
    // Packed products make one span; overlapping ones merge; a stride of 0 is one matrix.
    assert_eq!(spans(4, 2, 3, 6), [(0, 24)]);
    assert_eq!(spans(3, 2, 3, 4), [(0, 14)]);
    assert_eq!(spans(5, 2, 3, 0), [(0, 6)]);
    assert_eq!(spans(1, 2, 3, 100), [(0, 6)]);
    // Nothing to write.
    assert!(spans(0, 2, 3, 10).is_empty());
    assert!(spans(3, 0, 3, 10).is_empty());
    assert!(spans(3, 2, 0, 10).is_empty());
}

#[test]
fn the_cubin_cache_compiles_once_and_rebuilds_a_damaged_entry() {
    use std::cell::Cell;
    let dir = tempfile::tempdir().unwrap();
    let cache = cache::CubinCache::at(Some(dir.path().join("cubin")));
    let compiles = Cell::new(0);
    let compile = |payload: &'static [u8]| {
        let compiles = &compiles;
        move || {
            compiles.set(compiles.get() + 1);
            Ok(payload.to_vec())
        }
    };
    let key = cache::key("relu.cu", "int x;", "sm_90", "13.0");
    let first = cache
        .get_or_compile("sm_90", &key, compile(b"first"))
        .unwrap();
    let again = cache
        .get_or_compile("sm_90", &key, compile(b"second"))
        .unwrap();
    assert_eq!(
        (first, again, compiles.get()),
        (b"first".to_vec(), b"first".to_vec(), 1)
    );

    // Another architecture, source, NVRTC or file is another entry.
    for (arch, other) in [
        ("sm_80", cache::key("relu.cu", "int x;", "sm_80", "13.0")),
        ("sm_90", cache::key("relu.cu", "int y;", "sm_90", "13.0")),
        ("sm_90", cache::key("relu.cu", "int x;", "sm_90", "13.2")),
        ("sm_90", cache::key("other.cu", "int x;", "sm_90", "13.0")),
    ] {
        assert_ne!(other, key);
        cache
            .get_or_compile(arch, &other, compile(b"other"))
            .unwrap();
    }
    assert_eq!(compiles.get(), 5);

    // A truncated entry, a flipped byte and a foreign file are ignored and replaced.
    let entry = dir.path().join("cubin").join(format!("sm_90-{key}.cubin"));
    let whole = std::fs::read(&entry).unwrap();
    let mut flipped = whole.clone();
    *flipped.last_mut().unwrap() ^= 1;
    for damaged in [
        whole[..whole.len() - 1].to_vec(),
        flipped,
        b"not a cubin".to_vec(),
    ] {
        std::fs::write(&entry, damaged).unwrap();
        let rebuilt = cache
            .get_or_compile("sm_90", &key, compile(b"rebuilt"))
            .unwrap();
        assert_eq!(rebuilt, b"rebuilt");
        assert_eq!(
            cache
                .get_or_compile("sm_90", &key, compile(b"never"))
                .unwrap(),
            b"rebuilt"
        );
    }
    assert_eq!(compiles.get(), 8);
    // No temporary files are left behind.
    let files = std::fs::read_dir(dir.path().join("cubin")).unwrap().count();
    assert_eq!(files, 5);

    // A compile error is the caller's, and is not cached.
    let failing = || Err(Error::Cuda("no".into()));
    let other = cache::key("broken.cu", "", "sm_90", "13.0");
    assert!(cache.get_or_compile("sm_90", &other, failing).is_err());
    assert_eq!(
        cache
            .get_or_compile("sm_90", &other, compile(b"ok"))
            .unwrap(),
        b"ok"
    );
}

#[test]
fn an_unusable_cache_folder_only_costs_the_compile() {
    let dir = tempfile::tempdir().unwrap();
    // A file where the folder should be: nothing can be stored under it.
    let blocked = dir.path().join("file");
    std::fs::write(&blocked, b"").unwrap();
    let cache = cache::CubinCache::at(Some(blocked.join("cubin")));
    for _ in 0..2 {
        let got = cache.get_or_compile("sm_90", "k", || Ok(b"code".to_vec()));
        assert_eq!(got.unwrap(), b"code");
    }
    let no_cache = cache::CubinCache::at(None);
    assert_eq!(
        no_cache
            .get_or_compile("sm_90", "k", || Ok(vec![1]))
            .unwrap(),
        [1]
    );
}

#[test]
fn the_cubin_cache_serves_nvrtc_output_to_the_next_process() {
    if !nvrtc_or_skip("NVRTC cache test") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let source = kernel_source("relu.cu").unwrap();
    let (major, minor) = nvrtc_version().unwrap();
    let key = cache::key("relu.cu", source, "sm_90", &format!("{major}.{minor}"));
    let compile = || compile_cubin("relu.cu", source, "sm_90");
    let fresh = cache::CubinCache::at(Some(dir.path().to_path_buf()))
        .get_or_compile("sm_90", &key, compile)
        .unwrap();
    // A second cache object over the same folder stands for the next process.
    let cached = cache::CubinCache::at(Some(dir.path().to_path_buf()))
        .get_or_compile("sm_90", &key, || panic!("compiled again"))
        .unwrap();
    assert_eq!(cached, fresh);
    assert_eq!(cached.get(..4), Some(&b"\x7fELF"[..]));
}

#[test]
fn the_cache_folder_follows_the_environment() {
    let os = |s: &str| Some(std::ffi::OsString::from(s));
    let path = std::path::PathBuf::from;
    assert_eq!(
        cache::dir_from(os("/c"), os("/x"), os("/h")),
        Some(path("/c"))
    );
    assert_eq!(cache::dir_from(os(""), os("/x"), os("/h")), None);
    assert_eq!(
        cache::dir_from(None, os("/x"), os("/h")),
        Some(path("/x/cifar-rs/cubin"))
    );
    assert_eq!(
        cache::dir_from(None, os(""), os("/h")),
        Some(path("/h/.cache/cifar-rs/cubin"))
    );
    assert_eq!(cache::dir_from(None, None, None), None);
}

#[test]
fn kernel_source_finds_files_by_name() {
    assert!(kernel_source("relu.cu").unwrap().contains("relu_forward"));
    assert!(kernel_source("nope.cu").is_none());
}

#[test]
fn arch_follows_the_compute_capability() {
    assert_eq!(arch_for((9, 0)), "sm_90");
    assert_eq!(arch_for((8, 6)), "sm_86");
    assert_eq!(arch_for((12, 0)), "sm_120");
}

#[test]
fn to_i32_refuses_sizes_a_kernel_cannot_index() {
    assert_eq!(to_i32("conv2d", "channels", 64).unwrap(), 64);
    let err = to_i32("conv2d", "channels", 1 << 31).unwrap_err();
    assert!(
        matches!(err, Error::InvalidArgument { op: "conv2d", .. }),
        "{err}"
    );
    assert!(err.to_string().contains("channels = 2147483648"), "{err}");
}

#[test]
fn without_a_driver_open_explains_and_does_not_panic() {
    if driver_present() {
        eprintln!("skipped: a CUDA driver is present on this machine");
        return;
    }
    assert!(!is_available());
    let err = open(0).unwrap_err();
    assert_eq!(
        err.to_string(),
        "CUDA is not available: no CUDA driver found (libcuda.so could not be loaded)"
    );
    assert!(device_count().is_err());
}

// The tests below launch kernels, so they run only where a device opens (never in CI).

#[test]
fn gpu_copies_round_trip() {
    let Some(gpu) = open_or_skip("gpu_copies_round_trip") else {
        return;
    };
    let values = [1.5f32, -2.0, 3.25, 0.0, 7.0];
    let first = gpu.htod(&values).unwrap();
    assert_eq!(gpu.dtoh(&first).unwrap(), values);
    let copy = gpu.dtod(&first).unwrap();
    drop(first);
    assert_eq!(gpu.dtoh(&copy).unwrap(), values);
    let zeros = gpu.alloc_zeros::<f32>(3).unwrap();
    assert_eq!(gpu.dtoh(&zeros).unwrap(), [0.0; 3]);
    assert!(gpu.dtoh(&gpu.htod::<f32>(&[]).unwrap()).unwrap().is_empty());
    gpu.synchronize().unwrap();
}

/// Buffer reuse, on a pool of its own: the backend's pool is shared with the GPU tests
/// running beside this one, so its totals move under any exact assertion.
#[test]
fn gpu_buffers_are_reused_by_size() {
    let Some(gpu) = open_or_skip("gpu_buffers_are_reused_by_size") else {
        return;
    };
    let pool = Arc::new(alloc::Pool::new(gpu.stream().clone()));
    let first = pool.alloc::<f32>(5).unwrap();
    let first_ptr = first.device_ptr();
    assert_eq!(pool.stats().live_bytes, 20);
    drop(first);
    assert_eq!(
        pool.stats(),
        PoolStats {
            live_bytes: 0,
            cached_bytes: 20
        }
    );
    // The same length (and element type) takes the freed buffer back; another length and
    // another type get fresh memory.
    let second = pool.alloc::<f32>(5).unwrap();
    assert_eq!(second.device_ptr(), first_ptr);
    assert_eq!(pool.stats().cached_bytes, 0);
    let other_len = pool.alloc::<f32>(6).unwrap();
    let other_type = pool.alloc::<u32>(5).unwrap();
    assert_ne!(other_len.device_ptr(), first_ptr);
    assert_ne!(other_type.device_ptr(), first_ptr);
    drop((second, other_len, other_type));
    assert_eq!(pool.stats().cached_bytes, 20 + 24 + 20);
    pool.release_cached();
    assert_eq!(pool.stats(), PoolStats::default());
    gpu.synchronize().unwrap();
}

#[test]
fn gpu_relu_and_dropout_match_the_cpu() {
    let Some(gpu) = open_or_skip("gpu_relu_and_dropout_match_the_cpu") else {
        return;
    };
    let x = [-1.0f32, 0.0, 2.5, -0.5, 4.0, f32::NAN];
    let xb = gpu.htod(&x).unwrap();
    let mut yb = gpu.alloc::<f32>(x.len()).unwrap();
    let f = gpu.function("relu.cu", "relu_forward").unwrap();
    let n = x.len() as u64;
    {
        let (xv, mut yv) = (xb.view(), yb.view_mut());
        let mut launch = gpu.stream().launch_builder(&f);
        launch.arg(&xv).arg(&mut yv).arg(&n);
        // SAFETY: relu_forward(const float*, float*, unsigned long long) over n elements.
        unsafe { launch.launch(gpu.grid_stride_config(x.len())) }.unwrap();
    }
    assert_eq!(gpu.dtoh(&yb).unwrap(), [0.0, 0.0, 2.5, 0.0, 4.0, 0.0]);

    // The counter RNG gives the CPU's numbers, index for index.
    let len = 10_000usize;
    let seed = 0xDEAD_BEEF_u64;
    let mut ub = gpu.alloc::<f32>(len).unwrap();
    let f = gpu.function("dropout.cu", "dropout_uniform").unwrap();
    let n = len as u64;
    {
        let mut uv = ub.view_mut();
        let mut launch = gpu.stream().launch_builder(&f);
        launch.arg(&mut uv).arg(&n).arg(&seed);
        // SAFETY: dropout_uniform(float*, unsigned long long, unsigned long long).
        unsafe { launch.launch(gpu.grid_stride_config(len)) }.unwrap();
    }
    let gpu_uniform = gpu.dtoh(&ub).unwrap();
    for (i, &u) in gpu_uniform.iter().enumerate() {
        assert_eq!(u, crate::dropout::uniform(seed, i as u64), "index {i}");
    }
}

#[test]
fn gpu_sgemm_is_row_major_with_transposes() {
    let Some(gpu) = open_or_skip("gpu_sgemm_is_row_major_with_transposes") else {
        return;
    };
    // a = [1 2 3; 4 5 6] (2x3), b = [1 0; 0 1; 1 1] (3x2): a b = [4 5; 10 11].
    let a = gpu.htod(&[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
    let b = gpu.htod(&[1.0f32, 0.0, 0.0, 1.0, 1.0, 1.0]).unwrap();
    let mut c = gpu.alloc::<f32>(4).unwrap();
    gpu.sgemm(
        2,
        2,
        3,
        &a.view(),
        false,
        &b.view(),
        false,
        &mut c.view_mut(),
        false,
    )
    .unwrap();
    assert_eq!(gpu.dtoh(&c).unwrap(), [4.0, 5.0, 10.0, 11.0]);
    // a^T stored (3x2) and b^T stored (2x3) give the same product; accumulate doubles it.
    let at = gpu.htod(&[1.0f32, 4.0, 2.0, 5.0, 3.0, 6.0]).unwrap();
    let bt = gpu.htod(&[1.0f32, 0.0, 1.0, 0.0, 1.0, 1.0]).unwrap();
    gpu.sgemm(
        2,
        2,
        3,
        &at.view(),
        true,
        &bt.view(),
        true,
        &mut c.view_mut(),
        true,
    )
    .unwrap();
    assert_eq!(gpu.dtoh(&c).unwrap(), [8.0, 10.0, 20.0, 22.0]);
    // Too-short buffers are an error, not a fault.
    let err = gpu
        .sgemm(
            3,
            2,
            3,
            &a.view(),
            false,
            &b.view(),
            false,
            &mut c.view_mut(),
            false,
        )
        .unwrap_err();
    assert!(matches!(err, Error::Shape { op: "sgemm", .. }), "{err}");
    // Turning TF32 on here would race with the parity tests running beside this one in
    // the same process (they need plain f32); `cli bench-step --tf32` exercises it.
    gpu.set_tf32(false).unwrap();
    assert!(!gpu.tf32());
}
