use kernels::conv2d::{self, Conv2dGeometry};
use kernels::Storage;
#[global_allocator]
static A: mimalloc::MiMalloc = mimalloc::MiMalloc;
fn main() {
    benches::keep_freed_memory();
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().unwrap())
        .collect();
    let (b, ci, co, hw, reps) = (args[0], args[1], args[2], args[3], args[4]);
    let g = Conv2dGeometry::new(&[b, ci, hw, hw], &[co, ci, 3, 3], [1, 1], [1, 1]).unwrap();
    let x = Storage::f32(benches::random_vec(b * ci * hw * hw, 1));
    let w = Storage::f32(benches::random_vec(co * ci * 9, 2));
    let _ = conv2d::forward_bf16(&x, &w, None, &g).unwrap();
    let mut ts = libc_time();
    for _ in 0..reps {
        let _ = conv2d::forward_bf16(&x, &w, None, &g).unwrap();
    }
    ts = libc_time() - ts;
    let flop = 2.0 * (b * co * ci * 9 * hw * hw) as f64;
    let gy = Storage::f32(benches::random_vec(b * co * hw * hw, 3));
    let mut tb = libc_time();
    for _ in 0..reps {
        let _ = conv2d::backward_bf16(&x, &w, &gy, &g, false, true).unwrap();
    }
    tb = libc_time() - tb;
    println!(
        "cpu ms per call fwd {:.2} bwd {:.2}  {:.1} / {:.1} GFLOP/cpu-s",
        ts * 1e3 / reps as f64,
        tb * 1e3 / reps as f64,
        flop * reps as f64 / ts / 1e9,
        2.0 * flop * reps as f64 / tb / 1e9
    );
}
fn libc_time() -> f64 {
    let mut t = std::mem::MaybeUninit::<[i64; 2]>::uninit();
    unsafe {
        clock_gettime(2, t.as_mut_ptr().cast());
        let t = t.assume_init();
        t[0] as f64 + t[1] as f64 * 1e-9
    }
}
extern "C" {
    fn clock_gettime(clk: i32, tp: *mut i64) -> i32;
}
