//! Data layer: Parquet history in, memory-mapped columnar store out.

use std::path::Path;

/// Errors of the data layer.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// Placeholder until the data layer lands.
    #[error("{path}: reading Parquet is not implemented yet")]
    Unsupported {
        /// The file.
        path: String,
    },
}

/// Reads the close series of `symbol` from a long-format OHLCV Parquet file.
pub fn read_symbol_close(path: &Path, _symbol: &str) -> Result<Vec<f64>, DataError> {
    Err(DataError::Unsupported {
        path: path.display().to_string(),
    })
}
