//! The ATC engine: pure maths from `spec/ATC.md`.
//!
//! Slices in, vectors out; no I/O, no globals, no clocks, no logging, so the
//! same code can be batched, cached, parallelised and ported to a GPU
//! without changing a single bit of its results.

mod atc;
pub mod batch;
mod equity;
mod error;
mod lanes;
pub mod ma;
mod params;
pub mod registry;
mod shared;
mod signal;

pub use atc::{
    compute, compute_unchecked, compute_unchecked_par, layers, round2, signal_bank, validate_close,
    AtcOutput, Detail, SignalBank, LENGTHS_PER_FAMILY, MA_COUNT,
};
pub use batch::{compute_batch, BatchDetail, SharedSignals, BATCH_LANES, BATCH_LANES_AVX512};
pub use equity::{equity_into, growth_scaled_returns, rate_of_change};
pub use error::EngineError;
pub use params::{AtcParams, Family, Robustness};
pub use registry::{ParamError, ParamSpec, ParamValue, PARAMS};
pub use shared::{lane_directions, shared_signals, LaneScratch, LaneThresholds, LayerLanes};
pub use signal::{cross_signal, cut, direction};
