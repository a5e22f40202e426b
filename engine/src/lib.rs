//! The decision engine of closure-monitor.
//!
//! The Python package (`streams`) keeps the command line, the policy file's
//! validation, the Faust shell, metrics and the generator; this crate owns what
//! is done per record: decoding and validation, event-time order, per-user
//! state, the rules and the decisions with their JSON. It is checked byte for
//! byte against the Python engine it replaces (`tests/` keeps that as the
//! oracle).

pub mod codec;
pub mod core;
pub mod decisions;
pub mod events;
pub mod explain;
pub mod partition;
pub mod policy;
pub mod pyfmt;
pub mod reorder;
pub mod replay;
pub mod route;
pub mod state;

#[cfg(feature = "python")]
mod py;

/// mimalloc: the engine allocates and frees many small strings and vectors per event,
/// where glibc's allocator spent about a sixth of a replay's time (perf).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
