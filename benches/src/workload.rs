//! The operations, their statements (the same in every approach: they write the sources), and
//! their deterministic key schedules.
//!
//! Within a run the operations go in [`Op::sequence`] order: updates first (so a category
//! still holds exactly 50 products when it is renamed), then inserts, then deletes of exactly
//! the rows the inserts created, so every run starts from the same row counts.

use rand::Rng;
use rand::seq::IndexedRandom;
use serde::{Deserialize, Serialize};
use tokio_postgres::types::{ToSql, Type};

use crate::approach::{Approach, Doc};
use crate::data::{Catalogue, price, rng};
use crate::scale::{PRODUCTS_PER_CATEGORY, Scale, bulk_iterations};

/// Ids of rows created by the benchmark start here, far above the generated ones.
const NEW_IDS: i64 = 1_000_000_000;
const NEW_IDS_PER_RUN: i64 = 1_000_000;
const BULK_IDS: i64 = 2_000_000_000;
const BULK_IDS_PER_RUN: i64 = 10_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Category,
    Product,
    Review,
    Inventory,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Insert,
    Update,
    Delete,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BulkKind {
    UpdateProducts,
    InsertReviews,
    DeleteReviews,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Group {
    /// Single-row transactions, one per level and kind of write.
    Row,
    /// One statement writing many rows.
    Bulk,
    /// Reading one document (context: what the stored documents buy).
    Read,
    /// Throughput of concurrent clients.
    Concurrency,
    /// Building the read model from loaded data.
    Creation,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Op {
    Row { level: Level, action: Action },
    Bulk { bulk: BulkKind, rows: u64 },
    Read { doc: Doc },
    Concurrent { clients: u32, hot: bool },
    Create,
}

/// A statement parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Int(i64),
    Text(String),
}

impl Value {
    pub fn as_sql(&self) -> &(dyn ToSql + Sync) {
        match self {
            Value::Int(i) => i,
            Value::Text(t) => t,
        }
    }
}

pub type Params = Vec<Value>;

impl Op {
    /// Every operation of a run, in order, for this scale.
    pub fn sequence(scale: Scale) -> Vec<Op> {
        use Action::*;
        use Level::*;
        let mut ops = Vec::new();
        for action in [Update, Insert] {
            for level in [Category, Product, Review, Inventory] {
                ops.push(Op::Row { level, action });
            }
        }
        for level in [Inventory, Review, Product, Category] {
            ops.push(Op::Row {
                level,
                action: Delete,
            });
        }
        for rows in scale.bulk_sizes() {
            for bulk in [
                BulkKind::UpdateProducts,
                BulkKind::InsertReviews,
                BulkKind::DeleteReviews,
            ] {
                ops.push(Op::Bulk { bulk, rows });
            }
        }
        ops.push(Op::Read { doc: Doc::Product });
        ops.push(Op::Read { doc: Doc::Category });
        for clients in [1, 8] {
            for hot in [false, true] {
                ops.push(Op::Concurrent { clients, hot });
            }
        }
        ops.push(Op::Create);
        ops
    }

    pub fn id(&self) -> String {
        match self {
            Op::Row { level, action } => format!("{}_{}", action_name(*action), level_name(*level)),
            Op::Bulk { bulk, rows } => format!("bulk_{}_{rows}", bulk_name(*bulk)),
            Op::Read { doc } => format!("read_{}", doc.name()),
            Op::Concurrent { clients, hot } => {
                format!(
                    "concurrent_{clients}_{}",
                    if *hot { "hot" } else { "disjoint" }
                )
            }
            Op::Create => "create".to_owned(),
        }
    }

    pub fn group(&self) -> Group {
        match self {
            Op::Row { .. } => Group::Row,
            Op::Bulk { .. } => Group::Bulk,
            Op::Read { .. } => Group::Read,
            Op::Concurrent { .. } => Group::Concurrency,
            Op::Create => Group::Creation,
        }
    }

    /// What one transaction does, for the report.
    pub fn title(&self) -> String {
        use Action::*;
        use Level::*;
        let per_cat = PRODUCTS_PER_CATEGORY;
        match self {
            Op::Row { level, action } => match (level, action) {
                (Category, Update) => format!(
                    "rename a category (cascades to its {per_cat} product documents and the category document)"
                ),
                (Product, Update) => "change a product's price".to_owned(),
                (Review, Update) => "change a review's rating".to_owned(),
                (Inventory, Update) => "change a product's stock quantity".to_owned(),
                (Category, Insert) => "insert a category (no products yet)".to_owned(),
                (Product, Insert) => "insert a product into an existing category".to_owned(),
                (Review, Insert) => "insert a review of an existing product".to_owned(),
                (Inventory, Insert) => "insert the stock row of a new product".to_owned(),
                (Inventory, Delete) => "delete a stock row (one the inserts created)".to_owned(),
                (Review, Delete) => "delete a review (one the inserts created)".to_owned(),
                (Product, Delete) => "delete a product (one the inserts created)".to_owned(),
                (Category, Delete) => "delete a category (one the inserts created)".to_owned(),
            },
            Op::Bulk { bulk, rows } => match bulk {
                BulkKind::UpdateProducts => {
                    format!(
                        "one UPDATE changing the price of {rows} products (consecutive ids, spread over categories)"
                    )
                }
                BulkKind::InsertReviews => format!("one INSERT of {rows} reviews"),
                BulkKind::DeleteReviews => {
                    format!("one DELETE of {rows} reviews (those the bulk insert created)")
                }
            },
            Op::Read { doc } => format!(
                "read one {} document by key (plain DML: computed from the definition)",
                doc.name()
            ),
            Op::Concurrent { clients, hot } => format!(
                "{clients} client{} changing product prices, {}",
                if *clients == 1 { "" } else { "s" },
                if *hot {
                    "all on the same product (hot key)"
                } else {
                    "each on products of its own categories (disjoint keys)"
                }
            ),
            Op::Create => {
                "build the read model from the loaded data (plain DML: CREATE TABLE AS)".to_owned()
            }
        }
    }

    /// Source rows each transaction writes (the denominator of WAL bytes per changed row).
    pub fn rows_per_txn(&self) -> u64 {
        match self {
            Op::Row { .. } | Op::Concurrent { .. } => 1,
            Op::Bulk { rows, .. } => *rows,
            Op::Read { .. } | Op::Create => 0,
        }
    }

    /// Transactions per sample.
    pub fn iterations(&self, single_row: u64) -> u64 {
        match self {
            Op::Row { .. } | Op::Read { .. } => single_row,
            Op::Bulk { rows, .. } => bulk_iterations(*rows),
            Op::Concurrent { .. } | Op::Create => 1,
        }
    }

    /// The documents a change can affect: what a client keeping materialized views current
    /// has to refresh after it.
    pub fn touched_docs(&self) -> Vec<Doc> {
        use Action::*;
        use Level::*;
        match self {
            Op::Row { level, action } => match (level, action) {
                (Category, Insert | Delete) => vec![Doc::Category],
                // The price and the stock are in product documents only; a deleted product's
                // reviews go with it.
                (Category, Update) | (Inventory, _) | (Product, Insert | Update) => {
                    vec![Doc::Product, Doc::Category]
                }
                (Product, Delete) | (Review, _) => Doc::ALL.to_vec(),
            },
            Op::Bulk { bulk, .. } => match bulk {
                BulkKind::UpdateProducts => vec![Doc::Product, Doc::Category],
                BulkKind::InsertReviews | BulkKind::DeleteReviews => Doc::ALL.to_vec(),
            },
            Op::Concurrent { .. } => vec![Doc::Product, Doc::Category],
            Op::Read { .. } | Op::Create => Vec::new(),
        }
    }

    /// The prepared statement of one transaction and its parameter types.
    pub fn statement(&self, approach: Approach) -> Option<(String, Vec<Type>)> {
        use Action::*;
        use Level::*;
        let i8 = Type::INT8;
        let text = Type::TEXT;
        let (sql, types): (&str, Vec<Type>) = match self {
            Op::Row { level, action } => match (level, action) {
                (Category, Update) => (
                    "UPDATE tb_category SET name = $2 WHERE pk_category = $1",
                    vec![i8, text],
                ),
                (Product, Update) => (
                    "UPDATE tb_product SET price = $2::numeric WHERE pk_product = $1",
                    vec![i8, text],
                ),
                (Review, Update) => (
                    "UPDATE tb_review SET rating = rating % 5 + 1 WHERE pk_review = $1",
                    vec![i8],
                ),
                (Inventory, Update) => (
                    "UPDATE tb_inventory SET quantity = quantity + 1 WHERE fk_product = $1",
                    vec![i8],
                ),
                (Category, Insert) => (
                    "INSERT INTO tb_category (pk_category, name, slug) VALUES ($1, $2, $3)",
                    vec![i8, text.clone(), text],
                ),
                (Product, Insert) => (
                    "INSERT INTO tb_product (pk_product, fk_category, name, price) VALUES ($1, $2, $3, $4::numeric)",
                    vec![i8.clone(), i8, text.clone(), text],
                ),
                (Review, Insert) => (
                    "INSERT INTO tb_review (pk_review, fk_product, rating, body) VALUES ($1, $2, $3::int, $4)",
                    vec![i8.clone(), i8.clone(), i8, text],
                ),
                (Inventory, Insert) => (
                    "INSERT INTO tb_inventory (fk_product, quantity, warehouse) VALUES ($1, $2::int, $3)",
                    vec![i8.clone(), i8, text],
                ),
                (Inventory, Delete) => ("DELETE FROM tb_inventory WHERE fk_product = $1", vec![i8]),
                (Review, Delete) => ("DELETE FROM tb_review WHERE pk_review = $1", vec![i8]),
                (Product, Delete) => ("DELETE FROM tb_product WHERE pk_product = $1", vec![i8]),
                (Category, Delete) => ("DELETE FROM tb_category WHERE pk_category = $1", vec![i8]),
            },
            Op::Bulk { bulk, .. } => match bulk {
                BulkKind::UpdateProducts => (
                    "UPDATE tb_product SET price = price + 1 WHERE pk_product BETWEEN $1 AND $2",
                    vec![i8.clone(), i8],
                ),
                BulkKind::InsertReviews => (
                    "INSERT INTO tb_review (pk_review, fk_product, rating, body) \
                     SELECT $1 + g, 1 + ($3 + g * 7919) % $4, 1 + g % 5, 'bulk review ' || g \
                     FROM generate_series(0::bigint, $2 - 1) g",
                    vec![i8.clone(), i8.clone(), i8.clone(), i8],
                ),
                BulkKind::DeleteReviews => (
                    "DELETE FROM tb_review WHERE pk_review BETWEEN $1 AND $2",
                    vec![i8.clone(), i8],
                ),
            },
            Op::Read { doc } => {
                let sql = format!(
                    "SELECT data FROM {} WHERE {} = $1",
                    approach.read_source(*doc),
                    doc.key()
                );
                return Some((sql, vec![i8]));
            }
            Op::Concurrent { .. } => (
                "UPDATE tb_product SET price = price + 0.01 WHERE pk_product = $1",
                vec![i8],
            ),
            Op::Create => return None,
        };
        Some((sql.to_owned(), types))
    }

    /// The parameters of each of the `n` transactions of run `run`: the same in every approach.
    pub fn transactions(&self, cat: &Catalogue, run: u32, n: u64) -> Vec<Params> {
        use Action::*;
        use Level::*;
        let mut r = rng(cat.seed, &self.id(), u64::from(run), 0);
        let new_id = |i: u64| NEW_IDS + i64::from(run) * NEW_IDS_PER_RUN + i as i64;
        let products = cat.products() as i64;
        let (lo, hi) = (1, products);
        (0..n)
            .map(|i| match self {
                Op::Row { level, action } => match (level, action) {
                    (Category, Update) => {
                        let c = r.random_range(1..=cat.categories() as i64);
                        vec![
                            Value::Int(c),
                            Value::Text(format!("Category {c} (run {run}, change {i})")),
                        ]
                    }
                    (Product, Update) => vec![
                        Value::Int(r.random_range(lo..=hi)),
                        Value::Text(price(r.random_range(99..100_000))),
                    ],
                    (Review, Update) => {
                        vec![Value::Int(r.random_range(1..=cat.reviews() as i64))]
                    }
                    (Inventory, Update) => vec![Value::Int(
                        cat.stocked.choose(&mut r).copied().unwrap_or(1) as i64,
                    )],
                    (Category, Insert) => vec![
                        Value::Int(new_id(i)),
                        Value::Text(format!("New category {}", new_id(i))),
                        Value::Text(format!("new-category-{}", new_id(i))),
                    ],
                    (Product, Insert) => vec![
                        Value::Int(new_id(i)),
                        Value::Int(r.random_range(1..=cat.categories() as i64)),
                        Value::Text(format!("New product {}", new_id(i))),
                        Value::Text(price(r.random_range(99..100_000))),
                    ],
                    (Review, Insert) => vec![
                        Value::Int(new_id(i)),
                        Value::Int(r.random_range(lo..=hi)),
                        Value::Int(r.random_range(1..=5)),
                        Value::Text("new review: works as described".to_owned()),
                    ],
                    (Inventory, Insert) => vec![
                        Value::Int(new_id(i)),
                        Value::Int(r.random_range(0..1_000)),
                        Value::Text(format!("wh-{}", r.random_range(0..6))),
                    ],
                    (_, Delete) => vec![Value::Int(new_id(i))],
                },
                Op::Bulk { bulk, rows } => {
                    let rows = *rows as i64;
                    let class = match rows {
                        0..=100 => 0,
                        101..=1_000 => 1,
                        _ => 2,
                    };
                    let base = BULK_IDS
                        + i64::from(run) * BULK_IDS_PER_RUN
                        + class * (BULK_IDS_PER_RUN / 4)
                        + i as i64 * rows;
                    match bulk {
                        BulkKind::UpdateProducts => {
                            let start = r.random_range(1..=products - rows + 1);
                            vec![Value::Int(start), Value::Int(start + rows - 1)]
                        }
                        BulkKind::InsertReviews => vec![
                            Value::Int(base),
                            Value::Int(rows),
                            Value::Int(r.random_range(0..products)),
                            Value::Int(products),
                        ],
                        BulkKind::DeleteReviews => {
                            vec![Value::Int(base), Value::Int(base + rows - 1)]
                        }
                    }
                }
                Op::Read { doc } => {
                    let max = match doc {
                        Doc::Review => cat.reviews(),
                        Doc::Product => cat.products(),
                        Doc::Category => cat.categories(),
                    };
                    vec![Value::Int(r.random_range(1..=max as i64))]
                }
                Op::Concurrent { .. } | Op::Create => Vec::new(),
            })
            .collect()
    }
}

/// An endless, deterministic stream of products for one concurrent client: on a hot key every
/// client gets the same product; on disjoint keys client `k` of `clients` gets products of the
/// categories `c` with `c % clients == k`, so no two clients share a product or a category.
pub struct ClientKeys {
    choices: Vec<i64>,
    rng: rand::rngs::StdRng,
}

impl ClientKeys {
    pub fn new(cat: &Catalogue, run: u32, clients: u32, hot: bool, client: u32) -> ClientKeys {
        let mut pick = rng(cat.seed, "concurrent-hot", u64::from(run), 0);
        let choices = if hot {
            vec![pick.random_range(1..=cat.products() as i64)]
        } else {
            cat.product_category
                .iter()
                .enumerate()
                .filter(|(_, c)| **c % clients == client)
                .map(|(i, _)| i as i64 + 1)
                .collect()
        };
        ClientKeys {
            choices,
            rng: rng(
                cat.seed,
                "concurrent",
                u64::from(run),
                u64::from(clients) << 32 | u64::from(client),
            ),
        }
    }

    /// Every client on the products of one category: distinct products, one shared document
    /// (the category's), the case where a refresh must see the other writers' commits.
    pub fn shared_category(cat: &Catalogue, category: u64, client: u32) -> ClientKeys {
        ClientKeys {
            choices: cat
                .products_of(category)
                .iter()
                .map(|p| *p as i64)
                .collect(),
            rng: rng(cat.seed, "shared-category", category, u64::from(client)),
        }
    }

    pub fn next_key(&mut self) -> i64 {
        self.choices.choose(&mut self.rng).copied().unwrap_or(1)
    }
}

fn action_name(a: Action) -> &'static str {
    match a {
        Action::Insert => "insert",
        Action::Update => "update",
        Action::Delete => "delete",
    }
}

fn level_name(l: Level) -> &'static str {
    match l {
        Level::Category => "category",
        Level::Product => "product",
        Level::Review => "review",
        Level::Inventory => "inventory",
    }
}

fn bulk_name(b: BulkKind) -> &'static str {
    match b {
        BulkKind::UpdateProducts => "update_products",
        BulkKind::InsertReviews => "insert_reviews",
        BulkKind::DeleteReviews => "delete_reviews",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sequence_covers_the_issue() {
        let ids: Vec<String> = Op::sequence(Scale::Small).iter().map(Op::id).collect();
        for level in ["category", "product", "review", "inventory"] {
            for action in ["insert", "update", "delete"] {
                assert!(ids.contains(&format!("{action}_{level}")));
            }
        }
        assert!(ids.contains(&"bulk_update_products_1000".to_owned()));
        assert!(!ids.iter().any(|i| i.ends_with("_100000")));
        assert!(ids.contains(&"concurrent_8_hot".to_owned()));
        assert_eq!(ids.last().map(String::as_str), Some("create"));
        // Updates before inserts, inserts before deletes.
        let pos = |id: &str| ids.iter().position(|i| i == id).unwrap();
        assert!(pos("update_category") < pos("insert_product"));
        assert!(pos("insert_product") < pos("insert_inventory"));
        assert!(pos("insert_inventory") < pos("delete_inventory"));
        assert!(pos("delete_inventory") < pos("delete_product"));
        assert!(pos("delete_product") < pos("delete_category"));
        assert!(pos("bulk_insert_reviews_100") < pos("bulk_delete_reviews_100"));
    }

    #[test]
    fn deletes_remove_what_the_inserts_created() {
        let cat = Catalogue::generate(Scale::Small, 3);
        for level in [
            Level::Category,
            Level::Product,
            Level::Review,
            Level::Inventory,
        ] {
            let ins = Op::Row {
                level,
                action: Action::Insert,
            }
            .transactions(&cat, 2, 5);
            let del = Op::Row {
                level,
                action: Action::Delete,
            }
            .transactions(&cat, 2, 5);
            let ins_keys: Vec<&Value> = ins.iter().map(|t| &t[0]).collect();
            let del_keys: Vec<&Value> = del.iter().map(|t| &t[0]).collect();
            assert_eq!(ins_keys, del_keys);
        }
        let bulk = |b| Op::Bulk { bulk: b, rows: 100 }.transactions(&cat, 1, 10);
        let ins = bulk(BulkKind::InsertReviews);
        let del = bulk(BulkKind::DeleteReviews);
        for (i, d) in ins.iter().zip(&del) {
            assert_eq!(i[0], d[0]);
            let (Value::Int(lo), Value::Int(hi)) = (&d[0], &d[1]) else {
                panic!("ints")
            };
            assert_eq!(hi - lo + 1, 100);
        }
    }

    #[test]
    fn schedules_are_deterministic_and_differ_by_run() {
        let cat = Catalogue::generate(Scale::Small, 3);
        let op = Op::Row {
            level: Level::Product,
            action: Action::Update,
        };
        assert_eq!(op.transactions(&cat, 0, 20), op.transactions(&cat, 0, 20));
        assert_ne!(op.transactions(&cat, 0, 20), op.transactions(&cat, 1, 20));
    }

    #[test]
    fn disjoint_clients_share_no_category() {
        let cat = Catalogue::generate(Scale::Small, 3);
        let mut seen = std::collections::HashMap::new();
        for client in 0..8 {
            let mut keys = ClientKeys::new(&cat, 0, 8, false, client);
            for _ in 0..50 {
                let p = keys.next_key();
                let c = cat.product_category[(p - 1) as usize];
                assert_eq!(*seen.entry(c).or_insert(client), client);
            }
        }
        let mut a = ClientKeys::new(&cat, 0, 8, true, 0);
        let mut b = ClientKeys::new(&cat, 0, 8, true, 5);
        assert_eq!(a.next_key(), b.next_key());
    }
}
