//! The recommendation engine: pure Rust, no Postgres bindings, no SPI, no Datum.
//! Everything here is testable and benchable without PostgreSQL; `src/sql` is the only glue.

pub mod als;
pub mod bpr;
pub mod content;
pub mod ease;
pub mod graph;
pub mod hybrid;
pub mod error;
pub mod factors;
pub mod format;
pub mod interactions;
pub mod legacy;
pub mod knn;
pub mod linalg;
pub mod memory;
pub mod metrics;
pub mod mf;
pub mod ncf;
pub mod neural;
pub mod model;
pub mod params;
pub mod popularity;
pub mod recommender;
pub mod rng;
pub mod sequential;
pub mod similarity;
pub mod split;
pub mod svd;
pub mod synthetic;
pub mod text;
pub mod topk;
pub mod tune;
pub mod two_tower;
pub mod weighting;
pub mod userknn;

pub use error::{ErrorKind, RecsysError, Result};

/// Called by long-running fits between chunks of work, on the calling (backend) thread.
/// The glue checks for query cancel there; an `Err` aborts the fit.
pub trait Progress {
    fn step(&mut self, done: usize, total: usize) -> Result<()>;

    /// After each full pass (iteration or epoch) of an iterative fit, with its objective.
    fn epoch(&mut self, _algorithm: &str, done: usize, total: usize, _metric: &str, _value: f64) -> Result<()> {
        self.step(done, total)
    }

    /// A line for the user about the fit (the glue sends it as a NOTICE), e.g. the device it runs on.
    fn note(&mut self, _text: &str) {}
}

/// A no-op progress sink for tests and benches.
pub struct NoProgress;
impl Progress for NoProgress {
    fn step(&mut self, _done: usize, _total: usize) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod purity {
    /// The engine must stay free of Postgres: this fails if any engine file names the glue crate.
    #[test]
    fn engine_stays_free_of_postgres_bindings() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/engine");
        let needle = ["pg", "rx"].concat();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                assert!(!text.contains(&needle), "{} mentions {needle}", path.display());
            }
        }
    }
}
