//! The catalogue's data, generated deterministically from the seed: the same seed and scale
//! give byte-identical COPY payloads (and so identical tables in every approach's database).

use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};

use crate::scale::{INVENTORY_PERCENT, PRODUCTS_PER_CATEGORY, REVIEWS_PER_PRODUCT, Scale};

/// COPY payloads are cut into chunks of about this size.
const CHUNK_BYTES: usize = 1 << 20;

const ADJECTIVES: &[&str] = &[
    "Amber", "Brisk", "Cobalt", "Dusky", "Elegant", "Frosted", "Golden", "Hardy", "Ivory", "Jolly",
    "Keen", "Lunar", "Mellow", "Nimble", "Olive", "Plucky", "Quiet", "Rustic", "Sturdy", "Tidy",
    "Urban", "Vivid", "Woolly", "Zesty",
];
const NOUNS: &[&str] = &[
    "Kettle",
    "Lamp",
    "Backpack",
    "Chair",
    "Notebook",
    "Blender",
    "Jacket",
    "Mug",
    "Speaker",
    "Tent",
    "Watch",
    "Skillet",
    "Pillow",
    "Bicycle",
    "Scarf",
    "Drill",
    "Planter",
    "Headphones",
];
const WORDS: &[&str] = &[
    "great",
    "quality",
    "arrived",
    "quickly",
    "would",
    "buy",
    "again",
    "works",
    "as",
    "described",
    "a",
    "bit",
    "small",
    "sturdy",
    "cheap",
    "feel",
    "love",
    "it",
    "the",
    "colour",
    "is",
    "nice",
    "returned",
    "broke",
    "after",
    "week",
    "excellent",
    "value",
    "for",
    "money",
    "recommend",
];

/// A seed for one stream of random numbers, derived from the run's seed and a label, so that
/// adding a stream never shifts another (splitmix64 over the label's bytes: stable across
/// platforms and Rust versions, unlike `std::hash`).
pub fn sub_seed(seed: u64, label: &str, a: u64, b: u64) -> u64 {
    let mut h = splitmix(seed ^ 0x5151_7465_7374_7669);
    for byte in label.bytes() {
        h = splitmix(h ^ u64::from(byte));
    }
    splitmix(splitmix(h ^ a) ^ b)
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

pub fn rng(seed: u64, label: &str, a: u64, b: u64) -> StdRng {
    StdRng::seed_from_u64(sub_seed(seed, label, a, b))
}

/// What the generator decided that the workload needs to know to pick valid keys.
#[derive(Debug, Clone)]
pub struct Catalogue {
    pub scale: Scale,
    pub seed: u64,
    /// `product_category[p - 1]` is the category of product `p`.
    pub product_category: Vec<u32>,
    /// Products that have an inventory row, ascending.
    pub stocked: Vec<u64>,
}

impl Catalogue {
    /// Every category gets exactly [`PRODUCTS_PER_CATEGORY`] products, shuffled, so product ids
    /// that are close are in unrelated categories.
    pub fn generate(scale: Scale, seed: u64) -> Catalogue {
        let mut r = rng(seed, "catalogue", 0, 0);
        let mut product_category: Vec<u32> = (1..=scale.categories())
            .flat_map(|c| std::iter::repeat_n(c as u32, PRODUCTS_PER_CATEGORY as usize))
            .collect();
        product_category.shuffle(&mut r);
        let stocked = (1..=scale.products())
            .filter(|_| r.random_range(0..100) < INVENTORY_PERCENT)
            .collect();
        Catalogue {
            scale,
            seed,
            product_category,
            stocked,
        }
    }

    pub fn products(&self) -> u64 {
        self.product_category.len() as u64
    }

    pub fn categories(&self) -> u64 {
        self.scale.categories()
    }

    pub fn reviews(&self) -> u64 {
        self.scale.reviews()
    }

    /// The products of category `c`, ascending.
    pub fn products_of(&self, c: u64) -> Vec<u64> {
        self.product_category
            .iter()
            .enumerate()
            .filter(|(_, cat)| u64::from(**cat) == c)
            .map(|(i, _)| i as u64 + 1)
            .collect()
    }

    pub fn category_rows(&self) -> Vec<bytes::Bytes> {
        let mut r = rng(self.seed, "categories", 0, 0);
        let mut out = Chunker::default();
        for c in 1..=self.categories() {
            let adjective = ADJECTIVES.choose(&mut r).copied().unwrap_or("Plain");
            let noun = NOUNS.choose(&mut r).copied().unwrap_or("Thing");
            out.row(&[
                &c.to_string(),
                &format!("{adjective} {noun}s {c}"),
                &format!("category-{c}"),
            ]);
        }
        out.finish()
    }

    pub fn product_rows(&self) -> Vec<bytes::Bytes> {
        let mut r = rng(self.seed, "products", 0, 0);
        let mut out = Chunker::default();
        for (i, cat) in self.product_category.iter().enumerate() {
            let p = i + 1;
            let adjective = ADJECTIVES.choose(&mut r).copied().unwrap_or("Plain");
            let noun = NOUNS.choose(&mut r).copied().unwrap_or("Thing");
            out.row(&[
                &p.to_string(),
                &cat.to_string(),
                &format!("{adjective} {noun} {p}"),
                &price(r.random_range(99..100_000)),
            ]);
        }
        out.finish()
    }

    pub fn review_rows(&self) -> Vec<bytes::Bytes> {
        let mut r = rng(self.seed, "reviews", 0, 0);
        let mut out = Chunker::default();
        let products = self.products();
        for id in 1..=self.products() * REVIEWS_PER_PRODUCT {
            let product = r.random_range(1..=products);
            let rating = r.random_range(1..=5u32);
            // One review in ten has no text.
            let body = if r.random_range(0..10) == 0 {
                None
            } else {
                let n = r.random_range(3..=12);
                let words: Vec<&str> = (0..n)
                    .map(|_| WORDS.choose(&mut r).copied().unwrap_or("ok"))
                    .collect();
                Some(words.join(" "))
            };
            out.row_opt(&[
                Some(id.to_string().as_str()),
                Some(product.to_string().as_str()),
                Some(rating.to_string().as_str()),
                body.as_deref(),
            ]);
        }
        out.finish()
    }

    pub fn inventory_rows(&self) -> Vec<bytes::Bytes> {
        let mut r = rng(self.seed, "inventory", 0, 0);
        let mut out = Chunker::default();
        for p in &self.stocked {
            out.row(&[
                &p.to_string(),
                &r.random_range(0..1_000u32).to_string(),
                &format!("wh-{}", r.random_range(0..6u32)),
            ]);
        }
        out.finish()
    }
}

/// Cents as a numeric(10,2) literal: 12345 → "123.45".
pub fn price(cents: u64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// Rows of COPY's text format, in chunks of about [`CHUNK_BYTES`].
#[derive(Default)]
struct Chunker {
    current: String,
    done: Vec<bytes::Bytes>,
}

impl Chunker {
    fn row(&mut self, fields: &[&str]) {
        let fields: Vec<Option<&str>> = fields.iter().map(|f| Some(*f)).collect();
        self.row_opt(&fields);
    }

    fn row_opt(&mut self, fields: &[Option<&str>]) {
        for (i, f) in fields.iter().enumerate() {
            if i > 0 {
                self.current.push('\t');
            }
            match f {
                Some(text) => copy_escape(text, &mut self.current),
                None => self.current.push_str("\\N"),
            }
        }
        self.current.push('\n');
        if self.current.len() >= CHUNK_BYTES {
            self.done
                .push(bytes::Bytes::from(std::mem::take(&mut self.current)));
        }
    }

    fn finish(mut self) -> Vec<bytes::Bytes> {
        if !self.current.is_empty() {
            self.done.push(bytes::Bytes::from(self.current));
        }
        self.done
    }
}

/// Escapes a value for COPY's text format.
fn copy_escape(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(chunks: &[bytes::Bytes]) -> String {
        chunks
            .iter()
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect()
    }

    #[test]
    fn the_same_seed_gives_the_same_data() {
        let a = Catalogue::generate(Scale::Small, 7);
        let b = Catalogue::generate(Scale::Small, 7);
        assert_eq!(text(&a.review_rows()), text(&b.review_rows()));
        assert_eq!(text(&a.product_rows()), text(&b.product_rows()));
        assert_eq!(a.stocked, b.stocked);
        let c = Catalogue::generate(Scale::Small, 8);
        assert_ne!(text(&a.review_rows()), text(&c.review_rows()));
    }

    #[test]
    fn every_category_has_fifty_products() {
        let cat = Catalogue::generate(Scale::Small, 1);
        for c in 1..=cat.categories() {
            assert_eq!(cat.products_of(c).len() as u64, PRODUCTS_PER_CATEGORY);
        }
        assert_eq!(text(&cat.product_rows()).lines().count(), 1_000);
        assert_eq!(text(&cat.review_rows()).lines().count(), 3_000);
        let stocked = cat.stocked.len();
        assert!((850..=950).contains(&stocked), "{stocked} stocked");
    }

    #[test]
    fn copy_text_is_escaped() {
        let mut out = String::new();
        copy_escape("a\tb\\c\nd", &mut out);
        assert_eq!(out, "a\\tb\\\\c\\nd");
        assert_eq!(price(12345), "123.45");
        assert_eq!(price(99), "0.99");
    }

    #[test]
    fn sub_seeds_differ_by_label_and_index() {
        let s = sub_seed(42, "x", 0, 0);
        assert_eq!(s, sub_seed(42, "x", 0, 0));
        assert_ne!(s, sub_seed(42, "y", 0, 0));
        assert_ne!(s, sub_seed(42, "x", 1, 0));
        assert_ne!(s, sub_seed(42, "x", 0, 1));
        assert_ne!(s, sub_seed(43, "x", 0, 0));
    }
}
