//! The ATC parameter flags shared by every computing command. Flag names
//! are the spec's parameter names with `_` written `-`; units are the
//! spec's (lambda and decay in Pine input units).

use clap::Args;

use atc_bt::engine::{AtcParams, Robustness};

/// ATC parameter overrides; a flag left out keeps the value from the
/// strategy file (or the spec default).
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "ATC parameters (spec units; defaults from spec/ATC.md)")]
pub struct AtcArgs {
    /// Growth factor in Pine input units (engine uses lambda/1000) [default: 0.02; >= 0]
    #[arg(long, value_name = "X", allow_negative_numbers = true)]
    pub lambda: Option<f64>,
    /// Equity decay in percent per bar (engine uses decay/100) [default: 0.03; 0 <= decay < 100]
    #[arg(long, value_name = "X", allow_negative_numbers = true)]
    pub decay: Option<f64>,
    /// Bars before equities start (na before) [default: 0]
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub cutout: Option<usize>,
    /// Spread of the nine lengths: narrow (1,2,3,4), medium (1,2,4,6), wide (1,3,5,7) [default: medium]
    #[arg(long, value_name = "narrow|medium|wide")]
    pub robustness: Option<Robustness>,
    /// Base length of the EMA family [default: 28]
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub ema_len: Option<usize>,
    /// Base length of the HMA family (Pine's HMA branch is an SMA) [default: 28]
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub hma_len: Option<usize>,
    /// Base length of the WMA family [default: 28]
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub wma_len: Option<usize>,
    /// Base length of the DEMA family [default: 28]
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub dema_len: Option<usize>,
    /// Base length of the LSMA family [default: 28]
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub lsma_len: Option<usize>,
    /// Base length of the KAMA family [default: 28]
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub kama_len: Option<usize>,
    /// Average signal crossing above this goes long [default: 0.1]
    #[arg(long, value_name = "X", allow_negative_numbers = true)]
    pub long_threshold: Option<f64>,
    /// Average signal crossing below this goes short [default: -0.1]
    #[arg(long, value_name = "X", allow_negative_numbers = true)]
    pub short_threshold: Option<f64>,
    /// Starting equity of every layer-1 equity curve [default: 1.0; > 0]
    #[arg(long, value_name = "X", allow_negative_numbers = true)]
    pub starting_equity: Option<f64>,
    /// Layer-2 starting equity (Pine weight) of the EMA family [default: 1.0]
    #[arg(long, value_name = "X", allow_negative_numbers = true)]
    pub ema_w: Option<f64>,
    /// Layer-2 starting equity of the HMA family [default: 1.0]
    #[arg(long, value_name = "X", allow_negative_numbers = true)]
    pub hma_w: Option<f64>,
    /// Layer-2 starting equity of the WMA family [default: 1.0]
    #[arg(long, value_name = "X", allow_negative_numbers = true)]
    pub wma_w: Option<f64>,
    /// Layer-2 starting equity of the DEMA family [default: 1.0]
    #[arg(long, value_name = "X", allow_negative_numbers = true)]
    pub dema_w: Option<f64>,
    /// Layer-2 starting equity of the LSMA family [default: 1.0]
    #[arg(long, value_name = "X", allow_negative_numbers = true)]
    pub lsma_w: Option<f64>,
    /// Layer-2 starting equity of the KAMA family [default: 1.0]
    #[arg(long, value_name = "X", allow_negative_numbers = true)]
    pub kama_w: Option<f64>,
}

impl AtcArgs {
    /// `base` with every given flag applied.
    pub fn apply(&self, mut p: AtcParams) -> AtcParams {
        macro_rules! set {
            ($($f:ident),*) => { $( if let Some(v) = self.$f { p.$f = v; } )* };
        }
        set!(
            lambda,
            decay,
            cutout,
            robustness,
            ema_len,
            hma_len,
            wma_len,
            dema_len,
            lsma_len,
            kama_len,
            long_threshold,
            short_threshold,
            starting_equity,
            ema_w,
            hma_w,
            wma_w,
            dema_w,
            lsma_w,
            kama_w
        );
        p
    }
}
