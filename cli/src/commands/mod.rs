pub mod bench_step;
pub mod eval;
pub mod predict;
pub mod summary;
pub mod train;
