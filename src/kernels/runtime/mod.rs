//! What every kernel runs on: the instruction family chosen at run time ([`isa`]), the rayon
//! pool a model call starts on (`pool.rs`), output buffers made on the pool (`buffer.rs`), the
//! vectorisable `exp` and `erfc` (`math.rs`) and reductions in a fixed order (`reduce.rs`).

pub(crate) mod buffer;
pub mod isa;
pub(crate) mod math;
pub(crate) mod pool;
pub(crate) mod reduce;

/// Elements per parallel task: large enough to amortise scheduling, small enough to balance.
pub(crate) const CHUNK: usize = 1 << 14;
