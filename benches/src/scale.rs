//! Data sizes and per-scale measurement budgets.

use serde::{Deserialize, Serialize};

/// How big the catalogue is. Every category holds exactly [`PRODUCTS_PER_CATEGORY`] products,
/// so renaming one cascades to that many product documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Scale {
    Small,
    Medium,
    Large,
}

pub const PRODUCTS_PER_CATEGORY: u64 = 50;
/// Reviews per product, on average.
pub const REVIEWS_PER_PRODUCT: u64 = 3;
/// Share of products with an inventory row, in percent.
pub const INVENTORY_PERCENT: u64 = 90;
/// Statement sizes of the bulk operations (capped by the scale: see [`Scale::bulk_sizes`]).
pub const BULK_SIZES: [u64; 3] = [100, 1_000, 100_000];

impl Scale {
    pub fn name(self) -> &'static str {
        match self {
            Scale::Small => "small",
            Scale::Medium => "medium",
            Scale::Large => "large",
        }
    }

    pub fn products(self) -> u64 {
        match self {
            Scale::Small => 1_000,
            Scale::Medium => 100_000,
            Scale::Large => 1_000_000,
        }
    }

    pub fn categories(self) -> u64 {
        self.products() / PRODUCTS_PER_CATEGORY
    }

    pub fn reviews(self) -> u64 {
        self.products() * REVIEWS_PER_PRODUCT
    }

    /// Bulk statement sizes that fit: a bulk statement touches at most every product once.
    pub fn bulk_sizes(self) -> Vec<u64> {
        BULK_SIZES
            .iter()
            .copied()
            .filter(|&n| n <= self.products())
            .collect()
    }

    /// Bulk sizes left out at this scale.
    pub fn skipped_bulk_sizes(self) -> Vec<u64> {
        BULK_SIZES
            .iter()
            .copied()
            .filter(|&n| n > self.products())
            .collect()
    }

    /// Single-row transactions per sample.
    pub fn default_iterations(self) -> u64 {
        match self {
            Scale::Small => 60,
            Scale::Medium => 60,
            Scale::Large => 30,
        }
    }

    pub fn default_runs(self) -> u32 {
        match self {
            Scale::Small => 3,
            Scale::Medium => 3,
            Scale::Large => 3,
        }
    }

    /// Seconds each concurrent-throughput sample lasts.
    pub fn concurrency_seconds(self) -> f64 {
        match self {
            Scale::Small => 1.2,
            Scale::Medium => 3.0,
            Scale::Large => 4.5,
        }
    }

    /// Rounds of the concurrency safety check (each ends with a check of every read model,
    /// which takes a while on large data).
    pub fn safety_rounds(self) -> u32 {
        match self {
            Scale::Small => 5,
            Scale::Medium => 2,
            Scale::Large => 1,
        }
    }

    /// `shared_buffers` large enough to hold the working set of every approach's database.
    pub fn shared_buffers(self) -> &'static str {
        match self {
            Scale::Small => "256MB",
            Scale::Medium => "2GB",
            Scale::Large => "6GB",
        }
    }
}

/// Statements per sample for a bulk statement of `rows` rows.
pub fn bulk_iterations(rows: u64) -> u64 {
    match rows {
        0..=100 => 10,
        101..=1_000 => 3,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_follow_the_issue() {
        assert_eq!(Scale::Small.products(), 1_000);
        assert_eq!(Scale::Medium.products(), 100_000);
        assert_eq!(Scale::Large.products(), 1_000_000);
        assert_eq!(Scale::Small.categories(), 20);
        assert_eq!(Scale::Small.reviews(), 3_000);
    }

    #[test]
    fn bulk_sizes_are_capped_by_the_scale() {
        assert_eq!(Scale::Small.bulk_sizes(), vec![100, 1_000]);
        assert_eq!(Scale::Small.skipped_bulk_sizes(), vec![100_000]);
        assert_eq!(Scale::Medium.bulk_sizes(), vec![100, 1_000, 100_000]);
        assert!(Scale::Large.skipped_bulk_sizes().is_empty());
    }
}
