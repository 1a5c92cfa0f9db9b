pub mod bench_step;
pub mod eval;
pub mod plot;
pub mod predict;
pub mod summary;
pub mod train;
