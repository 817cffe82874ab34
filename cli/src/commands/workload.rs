//! `tviews workload` (hidden from `--help`): realistic writes on the demo read model
//! (`demo/schema.sql`) from several concurrent sessions, so that `tviews top` has
//! something to show. `scripts/demo.sh` runs it in the background; the console's
//! end-to-end test (`cli/tests/top_pty.rs`) runs it against a scratch cluster.
//!
//! * **Clients** (`--clients`, paced to `--rate` transactions per second in total) run
//!   shop transactions: new reviews, rating changes, deleted reviews, price and name
//!   changes, orders taking stock, restocks, warehouse moves (a column no TVIEW reads),
//!   and now and then a category rename, which cascades to the category's products and
//!   through them to `tv_category`. Each transaction waits a little ("think time")
//!   before it commits, so the console sees queued keys. Serialization failures and
//!   deadlocks are retried; other errors are counted, never fatal; a lost connection is
//!   reopened.
//! * **Two-phase commit** (`--prepared-every`): a transaction in one *reserved* category
//!   (the clients leave it alone, so they never wait for it) is prepared, stays pending
//!   5 to 20 seconds, and is then committed (or, one time in four, rolled back) from
//!   another session. Every other time a writer of the same category is started beside
//!   it, which waits for its value locks: a lock wait whose holder is a prepared
//!   transaction.
//! * **Stopping** (the time is up, Ctrl-C, SIGTERM, SIGHUP): the clients stop, a pending
//!   prepared transaction is rolled back, and a one-line summary is printed. Each run
//!   holds an advisory lock named after its control session, whose backend pid is in
//!   its transaction ids (`tviews-workload:<pid>:<n>`): a run that was killed leaves the
//!   lock free, and the next run rolls its prepared transactions back.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use postgres_protocol::escape::escape_literal;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

use crate::conn::{
    self, ConnArgs, ConnTarget, ConnectError, Environment, PasswordPolicy, Settings, SystemFiles,
};
use crate::failure::{Failure, Outcome};

/// The prefix of the transaction ids of our prepared transactions.
const GID_PREFIX: &str = "tviews-workload";
/// First key of the advisory lock a run holds while it lives (`tvie`); the second is
/// the control session's backend pid. pg_tviews' own value locks are advisory locks
/// too, with `objsubid` 3 and 4; the two-int4 form has `objsubid` 2, so they never meet.
const LIVENESS_LOCK: i32 = 0x7476_6965;
/// How long a prepared transaction stays pending, in seconds.
const HOLD_SECONDS: (u64, u64) = (5, 20);
/// Think time before each commit, in milliseconds.
const THINK_MS: (u64, u64) = (10, 100);
/// Attempts at a transaction that fails with a serialization failure or deadlock.
const ATTEMPTS: u32 = 5;
/// How long a stopping run waits for its sessions.
const STOP_TIMEOUT: Duration = Duration::from_secs(45);
/// How often a progress line is printed.
const PROGRESS_EVERY: Duration = Duration::from_secs(30);

#[derive(clap::Args, Clone, Debug, PartialEq, Eq)]
pub struct WorkloadArgs {
    #[command(flatten)]
    pub target: ConnTarget,

    /// Concurrent writing sessions
    #[arg(long, value_name = "N", default_value_t = 4,
          value_parser = clap::value_parser!(u32).range(1..=64))]
    pub clients: u32,

    /// How long to run: a number of seconds, or "forever" (until Ctrl-C or SIGTERM)
    #[arg(long, value_name = "S|forever", default_value = "forever", value_parser = parse_run_for)]
    pub seconds: RunFor,

    /// Start a two-phase transaction every SECS seconds (0: never)
    #[arg(long, value_name = "SECS", default_value_t = 15)]
    pub prepared_every: u64,

    /// Transactions per second, all clients together (0: as fast as they go)
    #[arg(long, value_name = "TPS", default_value_t = 40)]
    pub rate: u32,
}

/// `--seconds`: a number of seconds, or forever.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunFor {
    Seconds(u64),
    Forever,
}

impl RunFor {
    fn duration(self) -> Option<Duration> {
        match self {
            RunFor::Seconds(s) => Some(Duration::from_secs(s)),
            RunFor::Forever => None,
        }
    }
}

fn parse_run_for(s: &str) -> Result<RunFor, String> {
    if s.eq_ignore_ascii_case("forever") {
        return Ok(RunFor::Forever);
    }
    match s.parse::<u64>() {
        Ok(n) if n > 0 => Ok(RunFor::Seconds(n)),
        _ => Err(format!(
            "\"{s}\" is neither a positive number of seconds nor \"forever\""
        )),
    }
}

// ---------------------------------------------------------------------------------
// Randomness: a small generator is plenty for picking rows, and keeps the CLI's
// dependencies as they are.

/// SplitMix64.
#[derive(Clone, Debug)]
struct Rng(u64);

impl Rng {
    #[cfg(test)]
    fn seeded(seed: u64) -> Rng {
        Rng(seed)
    }

    fn from_clock(salt: u64) -> Rng {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Rng(nanos ^ (u64::from(std::process::id()) << 32) ^ salt.wrapping_mul(0x9E37_79B9))
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi` (the modulo bias is irrelevant here).
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }

    /// True `num` times in `den`.
    fn chance(&mut self, num: u64, den: u64) -> bool {
        self.next() % den < num
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[(self.next() % items.len() as u64) as usize]
    }
}

// ---------------------------------------------------------------------------------
// What the clients write.

/// The rows the workload may touch, read once at the start.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Catalog {
    /// Products the clients write (none of the reserved category).
    products: Vec<i64>,
    /// Categories the clients rename.
    categories: Vec<i64>,
    /// The category kept for the prepared transactions, with its products.
    reserved: Option<(i64, Vec<i64>)>,
}

impl Catalog {
    /// Splits `(product, category)` pairs: with `reserve`, the highest category having
    /// at least two products (one for the prepared transaction, one for the writer that
    /// waits for it) goes to the prepared transactions, if another category is left.
    fn plan(products: &[(i64, i64)], categories: &[i64], reserve: bool) -> Catalog {
        let mut by_category: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
        for &(p, c) in products {
            by_category.entry(c).or_default().push(p);
        }
        let reserved = if reserve {
            by_category
                .iter()
                .rev()
                .find(|(_, ps)| ps.len() >= 2)
                .map(|(&c, ps)| (c, ps.clone()))
                .filter(|(c, _)| by_category.keys().any(|k| k != c))
        } else {
            None
        };
        let reserved_id = reserved.as_ref().map(|(c, _)| *c);
        Catalog {
            products: products
                .iter()
                .filter(|(_, c)| Some(*c) != reserved_id)
                .map(|(p, _)| *p)
                .collect(),
            categories: categories
                .iter()
                .copied()
                .filter(|c| Some(*c) != reserved_id)
                .collect(),
            reserved,
        }
    }
}

/// One statement of a transaction, with its values.
#[derive(Clone, Debug, PartialEq)]
enum Step {
    NewReview {
        id: i64,
        product: i64,
        rating: i32,
        body: String,
    },
    Rerate {
        product: i64,
        rating: i32,
    },
    DeleteReview {
        product: i64,
    },
    Reprice {
        product: i64,
        factor: f64,
    },
    RenameProduct {
        product: i64,
        name: String,
    },
    TakeStock {
        product: i64,
        quantity: i32,
    },
    Restock {
        product: i64,
        quantity: i32,
        warehouse: String,
    },
    DropEmptyStock {
        product: i64,
    },
    MoveWarehouse {
        product: i64,
        warehouse: String,
    },
    RenameCategory {
        category: i64,
        name: String,
    },
}

/// The kinds of client transaction and how often each is picked (out of the sum).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Review,
    Rerate,
    DeleteReview,
    Reprice,
    RenameProduct,
    Order,
    Restock,
    DropEmptyStock,
    MoveWarehouse,
    RenameCategory,
}

/// New reviews (here and in a third of the orders) about balance the deleted ones, so
/// that `tb_review` stays about its size however long the demo runs.
const MIX: [(Kind, u64); 10] = [
    (Kind::Review, 9),
    (Kind::Rerate, 18),
    (Kind::DeleteReview, 14),
    (Kind::Reprice, 14),
    (Kind::RenameProduct, 5),
    (Kind::Order, 16),
    (Kind::Restock, 8),
    (Kind::DropEmptyStock, 3),
    (Kind::MoveWarehouse, 6),
    (Kind::RenameCategory, 2),
];

const ADJECTIVES: [&str; 8] = [
    "classic",
    "new",
    "eco",
    "pro",
    "mini",
    "deluxe",
    "refurbished",
    "limited",
];
const CATEGORY_LABELS: [&str; 6] = [
    "spring sale",
    "new arrivals",
    "clearance",
    "best sellers",
    "staff picks",
    "back in stock",
];
const WAREHOUSES: [&str; 3] = ["wh-0", "wh-1", "wh-2"];

fn pick_kind(rng: &mut Rng) -> Kind {
    let total: u64 = MIX.iter().map(|(_, w)| w).sum();
    let mut n = rng.next() % total;
    for (kind, weight) in MIX {
        if n < weight {
            return kind;
        }
        n -= weight;
    }
    Kind::Rerate
}

/// A transaction's statements, with random rows and values.
fn plan_transaction(rng: &mut Rng, catalog: &Catalog, next_review: &AtomicI64) -> Vec<Step> {
    let product = rng.pick(&catalog.products);
    let rating = rng.range(1, 5) as i32;
    let new_review = |rng: &mut Rng, product: i64| {
        let id = next_review.fetch_add(1, Ordering::Relaxed);
        Step::NewReview {
            id,
            product,
            rating: rng.range(1, 5) as i32,
            body: format!("Review {id}"),
        }
    };
    match pick_kind(rng) {
        Kind::Review => vec![new_review(rng, product)],
        Kind::Rerate => vec![Step::Rerate { product, rating }],
        Kind::DeleteReview => vec![Step::DeleteReview { product }],
        Kind::Reprice => vec![Step::Reprice {
            product,
            factor: 0.9 + rng.range(0, 200) as f64 / 1000.0,
        }],
        Kind::RenameProduct => vec![Step::RenameProduct {
            product,
            name: format!("Product {product} ({})", rng.pick(&ADJECTIVES)),
        }],
        Kind::Order => {
            // Stock taken in product order, as an application would, so two orders
            // rarely deadlock on each other's rows.
            let mut items: Vec<i64> = (0..rng.range(1, 3))
                .map(|_| rng.pick(&catalog.products))
                .collect();
            items.sort_unstable();
            items.dedup();
            let mut steps: Vec<Step> = items
                .into_iter()
                .map(|product| Step::TakeStock {
                    product,
                    quantity: rng.range(1, 3) as i32,
                })
                .collect();
            if rng.chance(1, 3) {
                steps.push(new_review(rng, product));
            }
            steps
        }
        Kind::Restock => vec![Step::Restock {
            product,
            quantity: rng.range(5, 30) as i32,
            warehouse: rng.pick(&WAREHOUSES).to_string(),
        }],
        Kind::DropEmptyStock => vec![Step::DropEmptyStock { product }],
        Kind::MoveWarehouse => vec![Step::MoveWarehouse {
            product,
            warehouse: rng.pick(&WAREHOUSES).to_string(),
        }],
        Kind::RenameCategory => match catalog.categories.as_slice() {
            [] => vec![Step::Rerate { product, rating }],
            categories => {
                let category = rng.pick(categories);
                vec![Step::RenameCategory {
                    category,
                    name: format!("Category {category} ({})", rng.pick(&CATEGORY_LABELS)),
                }]
            }
        },
    }
}

async fn execute(client: &impl tokio_postgres::GenericClient, step: &Step) -> PgResult<u64> {
    match step {
        Step::NewReview {
            id,
            product,
            rating,
            body,
        } => {
            client
                .execute(
                    "INSERT INTO tb_review (pk_review, fk_product, rating, body) \
                     VALUES ($1, $2, $3, $4)",
                    &[id, product, rating, body],
                )
                .await
        }
        Step::Rerate { product, rating } => {
            client
                .execute(
                    "UPDATE tb_review SET rating = $2 WHERE pk_review = \
                     (SELECT pk_review FROM tb_review WHERE fk_product = $1 ORDER BY random() LIMIT 1)",
                    &[product, rating],
                )
                .await
        }
        Step::DeleteReview { product } => {
            client
                .execute(
                    "DELETE FROM tb_review WHERE pk_review = \
                     (SELECT pk_review FROM tb_review WHERE fk_product = $1 ORDER BY random() LIMIT 1)",
                    &[product],
                )
                .await
        }
        Step::Reprice { product, factor } => {
            client
                .execute(
                    "UPDATE tb_product \
                     SET price = least(9999.99, greatest(0.99, round(price * $2::float8::numeric, 2))) \
                     WHERE pk_product = $1",
                    &[product, factor],
                )
                .await
        }
        Step::RenameProduct { product, name } => {
            client
                .execute(
                    "UPDATE tb_product SET name = $2 WHERE pk_product = $1",
                    &[product, name],
                )
                .await
        }
        Step::TakeStock { product, quantity } => {
            client
                .execute(
                    "UPDATE tb_inventory SET quantity = quantity - $2 \
                     WHERE fk_product = $1 AND quantity >= $2",
                    &[product, quantity],
                )
                .await
        }
        Step::Restock {
            product,
            quantity,
            warehouse,
        } => {
            client
                .execute(
                    "INSERT INTO tb_inventory (fk_product, quantity, warehouse) VALUES ($1, $2, $3) \
                     ON CONFLICT (fk_product) DO UPDATE SET quantity = tb_inventory.quantity + excluded.quantity",
                    &[product, quantity, warehouse],
                )
                .await
        }
        Step::DropEmptyStock { product } => {
            client
                .execute(
                    "DELETE FROM tb_inventory WHERE fk_product = $1 AND quantity < 5",
                    &[product],
                )
                .await
        }
        Step::MoveWarehouse { product, warehouse } => {
            client
                .execute(
                    "UPDATE tb_inventory SET warehouse = $2 WHERE fk_product = $1",
                    &[product, warehouse],
                )
                .await
        }
        Step::RenameCategory { category, name } => {
            client
                .execute(
                    "UPDATE tb_category SET name = $2 WHERE pk_category = $1",
                    &[category, name],
                )
                .await
        }
    }
}

type PgResult<T> = Result<T, tokio_postgres::Error>;

/// Runs `steps` in one transaction, thinking for `think` before the commit.
async fn run_transaction(client: &mut Client, steps: &[Step], think: Duration) -> PgResult<()> {
    let tx = client.transaction().await?;
    for step in steps {
        execute(&tx, step).await?;
    }
    tokio::time::sleep(think).await;
    tx.commit().await
}

// ---------------------------------------------------------------------------------
// Counting.

#[derive(Debug, Default)]
struct Counters {
    committed: AtomicU64,
    retries: AtomicU64,
    reconnects: AtomicU64,
    /// Transactions given up, by SQLSTATE.
    failed: Mutex<BTreeMap<String, u64>>,
    prepared: AtomicU64,
    prepared_committed: AtomicU64,
    prepared_rolled_back: AtomicU64,
    /// Prepared transactions this run could not finish (the server went away).
    prepared_left: AtomicU64,
    /// Prepared transactions a writer waited for (their value locks).
    waited: AtomicU64,
}

impl Counters {
    /// Counts a failure; true the first time this SQLSTATE is seen (worth a message).
    fn fail(&self, code: &str) -> bool {
        let mut failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
        let n = failed.entry(code.to_string()).or_default();
        *n += 1;
        *n == 1
    }

    fn totals(&self) -> Totals {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Totals {
            committed: get(&self.committed),
            retries: get(&self.retries),
            reconnects: get(&self.reconnects),
            failed: self
                .failed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            prepared: get(&self.prepared),
            prepared_committed: get(&self.prepared_committed),
            prepared_rolled_back: get(&self.prepared_rolled_back),
            prepared_left: get(&self.prepared_left),
            waited: get(&self.waited),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Totals {
    committed: u64,
    retries: u64,
    reconnects: u64,
    failed: BTreeMap<String, u64>,
    prepared: u64,
    prepared_committed: u64,
    prepared_rolled_back: u64,
    prepared_left: u64,
    waited: u64,
}

/// The one-line summary (also the progress line).
fn summary(t: &Totals, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 {
        t.committed as f64 / secs
    } else {
        0.0
    };
    let mut s = format!(
        "{} transactions in {:.0} s ({rate:.1}/s), {} retried",
        t.committed, secs, t.retries
    );
    let failed: u64 = t.failed.values().sum();
    if failed > 0 {
        let codes: Vec<String> = t.failed.iter().map(|(c, n)| format!("{c}: {n}")).collect();
        let _ = write!(s, ", {failed} failed ({})", codes.join(", "));
    }
    if t.reconnects == 1 {
        s.push_str(", 1 reconnect");
    } else if t.reconnects > 1 {
        let _ = write!(s, ", {} reconnects", t.reconnects);
    }
    let _ = write!(
        s,
        ", {} prepared ({} committed, {} rolled back",
        t.prepared, t.prepared_committed, t.prepared_rolled_back
    );
    if t.waited > 0 {
        let _ = write!(s, ", {} blocked a writer", t.waited);
    }
    if t.prepared_left > 0 {
        let _ = write!(s, ", {} LEFT PENDING", t.prepared_left);
    }
    s.push(')');
    s
}

// ---------------------------------------------------------------------------------
// Connections.

/// Opens connections with the psql-style settings, resolved once; a password typed at
/// the prompt is remembered for the other sessions.
struct Connector {
    settings: Settings,
    policy: PasswordPolicy,
    typed: Mutex<Option<String>>,
}

impl Connector {
    fn new(args: &ConnArgs, positional: Option<&str>) -> Result<Connector, ConnectError> {
        use std::io::IsTerminal;
        let env = Environment::from_process();
        let mut settings = conn::resolve(&args.request(positional), &env, &SystemFiles)?;
        for w in &settings.warnings {
            eprintln!("tviews: warning: {w}");
        }
        settings.fallback_application_name = "tviews workload".to_string();
        let policy = PasswordPolicy::from_flags(
            args.no_password,
            args.password,
            std::io::stdin().is_terminal(),
        );
        Ok(Connector {
            settings,
            policy,
            typed: Mutex::new(None),
        })
    }

    async fn connect(&self) -> Result<Client, ConnectError> {
        let typed = &self.typed;
        let mut ask = |prompt: &str| -> std::io::Result<String> {
            let mut typed = typed.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(p) = typed.as_ref() {
                return Ok(p.clone());
            }
            let p = rpassword::prompt_password(prompt)?;
            *typed = Some(p.clone());
            Ok(p)
        };
        Ok(conn::connect(&self.settings, self.policy, &mut ask)
            .await?
            .client)
    }

    /// Connects, retrying every second until it works or the run is stopped.
    async fn reconnect(&self, stop: &mut watch::Receiver<bool>, who: &str) -> Option<Client> {
        let mut said = false;
        loop {
            match self.connect().await {
                Ok(c) => return Some(c),
                Err(e) if !said => {
                    eprintln!("tviews workload: {who}: cannot reconnect yet: {e}");
                    said = true;
                }
                Err(_) => {}
            }
            tokio::select! {
                _ = stopped(stop) => return None,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }
}

/// Resolves once the run is stopped.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // An error means the sender is gone, which also means stop.
    let _ = stop.wait_for(|s| *s).await;
}

fn sqlstate(e: &tokio_postgres::Error) -> Option<&SqlState> {
    e.as_db_error().map(|db| db.code())
}

fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}

// ---------------------------------------------------------------------------------
// A client.

struct Shared {
    connector: Connector,
    catalog: Catalog,
    next_review: AtomicI64,
    counters: Counters,
}

async fn client_loop(
    shared: Arc<Shared>,
    index: u32,
    mut client: Client,
    period: Option<Duration>,
    mut stop: watch::Receiver<bool>,
) {
    let mut rng = Rng::from_clock(u64::from(index) + 1);
    let mut pace = period.map(|p| {
        let mut i = tokio::time::interval(p);
        i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        i
    });
    let who = format!("client {index}");
    'run: loop {
        if let Some(pace) = pace.as_mut() {
            tokio::select! {
                biased;
                _ = stopped(&mut stop) => break,
                _ = pace.tick() => {}
            }
        }
        if *stop.borrow() {
            break;
        }
        let steps = plan_transaction(&mut rng, &shared.catalog, &shared.next_review);
        let think = Duration::from_millis(rng.range(THINK_MS.0, THINK_MS.1));
        for attempt in 1..=ATTEMPTS {
            // A transaction cut short here is rolled back when its client goes away.
            let result = tokio::select! {
                biased;
                _ = stopped(&mut stop) => break 'run,
                r = run_transaction(&mut client, &steps, think) => r,
            };
            let e = match result {
                Ok(()) => {
                    shared.counters.committed.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Err(e) => e,
            };
            let code = sqlstate(&e);
            let retry = matches!(
                code,
                Some(&SqlState::T_R_SERIALIZATION_FAILURE | &SqlState::T_R_DEADLOCK_DETECTED)
            );
            if retry && attempt < ATTEMPTS && !client.is_closed() {
                shared.counters.retries.fetch_add(1, Ordering::Relaxed);
                let backoff = rng.range(5, 20) * u64::from(attempt);
                tokio::time::sleep(Duration::from_millis(backoff)).await;
                continue;
            }
            let label = code.map_or("connection", SqlState::code);
            if shared.counters.fail(label) {
                eprintln!(
                    "tviews workload: {who}: a transaction failed: {} (counted; this SQLSTATE is not reported again)",
                    describe(&e)
                );
            }
            if code == Some(&SqlState::UNIQUE_VIOLATION) {
                // Someone else inserts reviews too: skip past their ids.
                if let Ok(row) = client
                    .query_one("SELECT coalesce(max(pk_review), 0) + 1 FROM tb_review", &[])
                    .await
                {
                    shared
                        .next_review
                        .fetch_max(row.get::<_, i64>(0), Ordering::Relaxed);
                }
            }
            if client.is_closed() {
                match shared.connector.reconnect(&mut stop, &who).await {
                    Some(c) => {
                        client = c;
                        shared.counters.reconnects.fetch_add(1, Ordering::Relaxed);
                    }
                    None => break 'run,
                }
            }
            break;
        }
    }
}

// ---------------------------------------------------------------------------------
// Two-phase commit.

struct TwoPhase {
    shared: Arc<Shared>,
    every: Duration,
    /// The control session's backend pid, in every gid.
    owner_pid: i32,
    /// The reserved category's products.
    products: Vec<i64>,
}

/// The writer started beside a prepared transaction, on its own session.
struct Waiter {
    handle: JoinHandle<(Client, Result<bool, String>)>,
}

impl TwoPhase {
    async fn run(self, mut stop: watch::Receiver<bool>) {
        let shared = &self.shared;
        let Some(mut preparer) = shared.connector.reconnect(&mut stop, "2pc").await else {
            return;
        };
        let Some(mut finisher) = shared.connector.reconnect(&mut stop, "2pc").await else {
            return;
        };
        let mut waiter_client = shared.connector.reconnect(&mut stop, "2pc").await;
        let mut rng = Rng::from_clock(0x2bc);
        // The first one soon, so a console opened with the workload shows one.
        let mut next = Instant::now() + Duration::from_secs(2).min(self.every);
        let mut n = 0u64;
        loop {
            tokio::select! {
                biased;
                _ = stopped(&mut stop) => return,
                _ = tokio::time::sleep_until(next.into()) => {}
            }
            let started = Instant::now();
            next = started + self.every;
            n += 1;
            let gid = format!("{GID_PREFIX}:{}:{n}", self.owner_pid);
            let product = rng.pick(&self.products);
            // Not raced against the stop signal: a PREPARE cut short could still
            // complete on the server, unseen. It takes milliseconds.
            if let Err(e) = self.prepare(&mut preparer, &gid, product, &mut rng).await {
                if shared
                    .counters
                    .fail(sqlstate(&e).map_or("connection", SqlState::code))
                {
                    eprintln!(
                        "tviews workload: 2pc: could not prepare {gid}: {}",
                        describe(&e)
                    );
                }
                if preparer.is_closed() {
                    match shared.connector.reconnect(&mut stop, "2pc").await {
                        Some(c) => preparer = c,
                        None => return,
                    }
                }
                continue;
            }
            shared.counters.prepared.fetch_add(1, Ordering::Relaxed);
            let waiter = match waiter_client.take() {
                Some(c) if rng.chance(1, 2) => Some(self.start_waiter(c, product, &mut rng)),
                other => {
                    waiter_client = other;
                    None
                }
            };
            let hold = Duration::from_secs(rng.range(HOLD_SECONDS.0, HOLD_SECONDS.1));
            let interrupted = tokio::select! {
                biased;
                _ = stopped(&mut stop) => true,
                _ = tokio::time::sleep(hold) => false,
            };
            let commit = !interrupted && rng.chance(3, 4);
            self.finish(&mut finisher, &gid, commit).await;
            if let Some(w) = waiter {
                waiter_client = self.end_waiter(w).await;
            }
            if waiter_client.is_none() && !interrupted {
                waiter_client = shared.connector.connect().await.ok();
            }
            if interrupted {
                return;
            }
            next = next.max(Instant::now());
        }
    }

    /// A small order in the reserved category, prepared.
    async fn prepare(
        &self,
        client: &mut Client,
        gid: &str,
        product: i64,
        rng: &mut Rng,
    ) -> PgResult<()> {
        let steps = [
            Step::Rerate {
                product,
                rating: rng.range(1, 5) as i32,
            },
            Step::Reprice {
                product,
                factor: 1.05,
            },
            Step::Restock {
                product,
                quantity: 10,
                warehouse: "wh-0".to_string(),
            },
        ];
        client.batch_execute("BEGIN").await?;
        let mut result = Ok(());
        for step in &steps {
            if let Err(e) = execute(client, step).await {
                result = Err(e);
                break;
            }
        }
        if result.is_ok() {
            result = client
                .batch_execute(&format!("PREPARE TRANSACTION {}", escape_literal(gid)))
                .await;
        }
        if result.is_err() && !client.is_closed() {
            let _ = client.batch_execute("ROLLBACK").await;
        }
        result
    }

    /// Renames another product of the reserved category: waits for the prepared
    /// transaction's value locks until it is finished, then commits.
    fn start_waiter(&self, client: Client, prepared_product: i64, rng: &mut Rng) -> Waiter {
        let others: Vec<i64> = self
            .products
            .iter()
            .copied()
            .filter(|p| *p != prepared_product)
            .collect();
        let product = if others.is_empty() {
            prepared_product
        } else {
            rng.pick(&others)
        };
        let name = format!("Product {product} ({})", rng.pick(&ADJECTIVES));
        let handle = tokio::task::spawn_local(async move {
            let mut client = client;
            let started = Instant::now();
            let steps = [Step::RenameProduct { product, name }];
            let result = run_transaction(&mut client, &steps, Duration::ZERO).await;
            let waited = started.elapsed() > Duration::from_millis(500);
            (client, result.map(|()| waited).map_err(|e| describe(&e)))
        });
        Waiter { handle }
    }

    /// Waits for the writer (its locks are free now) and gives its session back.
    async fn end_waiter(&self, w: Waiter) -> Option<Client> {
        let mut handle = w.handle;
        match tokio::time::timeout(Duration::from_secs(30), &mut handle).await {
            Ok(Ok((client, result))) => {
                match result {
                    Ok(true) => {
                        self.shared.counters.waited.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(false) => {}
                    Err(message) => {
                        if self.shared.counters.fail("waiter") {
                            eprintln!(
                                "tviews workload: 2pc: the writer waiting beside it failed: {message}"
                            );
                        }
                    }
                }
                (!client.is_closed()).then_some(client)
            }
            Ok(Err(_)) => None,
            Err(_) => {
                handle.abort();
                None
            }
        }
    }

    /// COMMIT PREPARED or ROLLBACK PREPARED, from the other session, retried (also when
    /// the run is stopping) for 30 seconds, then says what is left and how to end it.
    async fn finish(&self, finisher: &mut Client, gid: &str, commit: bool) {
        let verb = if commit { "COMMIT" } else { "ROLLBACK" };
        let sql = format!("{verb} PREPARED {}", escape_literal(gid));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match finisher.batch_execute(&sql).await {
                Ok(()) => {
                    let c = &self.shared.counters;
                    if commit {
                        c.prepared_committed.fetch_add(1, Ordering::Relaxed);
                    } else {
                        c.prepared_rolled_back.fetch_add(1, Ordering::Relaxed);
                    }
                    return;
                }
                Err(e) if sqlstate(&e) == Some(&SqlState::UNDEFINED_OBJECT) => {
                    // Gone already (someone finished it by hand).
                    return;
                }
                Err(e) => {
                    if Instant::now() > deadline {
                        self.shared
                            .counters
                            .prepared_left
                            .fetch_add(1, Ordering::Relaxed);
                        eprintln!(
                            "tviews workload: 2pc: could not finish {gid} ({}); run: {sql}",
                            describe(&e)
                        );
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    if finisher.is_closed() {
                        // Reconnect even when stopping: the transaction must not stay.
                        if let Ok(c) = self.shared.connector.connect().await {
                            *finisher = c;
                        }
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------
// The run.

/// What the control session learns before the clients start.
struct Setup {
    catalog: Catalog,
    next_review: i64,
    /// `None`: no two-phase commit (disabled, or `max_prepared_transactions = 0`).
    two_phase: Option<(i64, Vec<i64>)>,
    owner_pid: i32,
    database: String,
}

async fn prepare_run(control: &Client, args: &WorkloadArgs) -> Result<Setup, Failure> {
    let row = control
        .query_one(
            "SELECT current_database()::text, pg_backend_pid(), \
                    current_setting('max_prepared_transactions')::int4, \
                    array(SELECT t FROM unnest(ARRAY['tb_category', 'tb_product', 'tb_review', \
                          'tb_inventory']) t WHERE to_regclass(t) IS NULL)",
            &[],
        )
        .await?;
    let database: String = row.get(0);
    let owner_pid: i32 = row.get(1);
    let max_prepared: i32 = row.get(2);
    let missing: Vec<String> = row.get(3);
    if !missing.is_empty() {
        return Err(Failure::Other(anyhow::anyhow!(
            "database \"{database}\" does not hold the demo read model (missing: {}); \
             load demo/schema.sql first (scripts/demo.sh does)",
            missing.join(", ")
        )));
    }
    let mut reserve = args.prepared_every > 0;
    if reserve && max_prepared == 0 {
        eprintln!(
            "tviews workload: warning: max_prepared_transactions is 0 on this server: \
             no prepared transactions (set it above 0 and restart to get them)"
        );
        reserve = false;
    }
    let products: Vec<(i64, i64)> = control
        .query(
            "SELECT pk_product, fk_category FROM tb_product ORDER BY 1",
            &[],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let categories: Vec<i64> = control
        .query("SELECT pk_category FROM tb_category ORDER BY 1", &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let catalog = Catalog::plan(&products, &categories, reserve);
    if catalog.products.is_empty() {
        return Err(Failure::Other(anyhow::anyhow!(
            "no products to write in database \"{database}\" (tb_product is empty)"
        )));
    }
    if reserve && catalog.reserved.is_none() {
        eprintln!(
            "tviews workload: warning: no category can be set aside for prepared \
             transactions (it needs two products, and another category): none will run"
        );
    }
    let next_review: i64 = control
        .query_one("SELECT coalesce(max(pk_review), 0) + 1 FROM tb_review", &[])
        .await?
        .get(0);
    if reserve {
        control
            .execute(
                "SELECT pg_advisory_lock($1, pg_backend_pid())",
                &[&LIVENESS_LOCK],
            )
            .await?;
        roll_back_leftovers(control).await?;
    }
    Ok(Setup {
        two_phase: catalog.reserved.clone(),
        catalog,
        next_review,
        owner_pid,
        database,
    })
}

/// Rolls back the prepared transactions of runs that are gone (their liveness lock is
/// free), so that none stays behind a killed run.
async fn roll_back_leftovers(control: &Client) -> Result<(), Failure> {
    let rows = control
        .query(
            "SELECT gid FROM pg_prepared_xacts WHERE database = current_database() \
             AND gid LIKE $1",
            &[&format!("{GID_PREFIX}:%")],
        )
        .await?;
    for row in rows {
        let gid: String = row.get(0);
        let Some(pid) = gid.split(':').nth(1).and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        let free: bool = control
            .query_one(
                "SELECT pg_try_advisory_lock($1, $2)",
                &[&LIVENESS_LOCK, &pid],
            )
            .await?
            .get(0);
        if !free {
            continue;
        }
        control
            .execute("SELECT pg_advisory_unlock($1, $2)", &[&LIVENESS_LOCK, &pid])
            .await?;
        match control
            .batch_execute(&format!("ROLLBACK PREPARED {}", escape_literal(&gid)))
            .await
        {
            Ok(()) => eprintln!(
                "tviews workload: rolled back {gid}, left prepared by a run that was killed"
            ),
            Err(e) if sqlstate(&e) == Some(&SqlState::UNDEFINED_OBJECT) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Resolves when the run should stop: after `run_for`, or on Ctrl-C, SIGTERM, SIGHUP.
async fn stop_signal(run_for: Option<Duration>) -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let timer = async {
        match run_for {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    let mut term = signal(SignalKind::terminate()).ok();
    let mut hup = signal(SignalKind::hangup()).ok();
    let term = async {
        match term.as_mut() {
            Some(s) => {
                s.recv().await;
            }
            None => std::future::pending().await,
        }
    };
    let hup = async {
        match hup.as_mut() {
            Some(s) => {
                s.recv().await;
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = timer => "time is up",
        _ = tokio::signal::ctrl_c() => "interrupted",
        _ = term => "terminated",
        _ = hup => "hung up",
    }
}

/// Runs the workload until it is stopped; the summary is the outcome's stdout.
pub async fn run(conn_args: &ConnArgs, args: &WorkloadArgs) -> Result<Outcome, Failure> {
    // The sessions run as tasks of this thread: connecting may prompt for a password,
    // through a callback that is not `Send`.
    tokio::task::LocalSet::new()
        .run_until(run_local(conn_args, args))
        .await
}

async fn run_local(conn_args: &ConnArgs, args: &WorkloadArgs) -> Result<Outcome, Failure> {
    let connector = Connector::new(conn_args, args.target.conninfo.as_deref())?;
    let control = connector.connect().await?;
    let setup = prepare_run(&control, args).await?;
    let mut clients = Vec::new();
    for _ in 0..args.clients {
        clients.push(connector.connect().await?);
    }
    let shared = Arc::new(Shared {
        connector,
        catalog: setup.catalog,
        next_review: AtomicI64::new(setup.next_review),
        counters: Counters::default(),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let period = (args.rate > 0)
        .then(|| Duration::from_secs_f64(f64::from(args.clients) / f64::from(args.rate)));

    let pace = match args.rate {
        0 => "as fast as they go".to_string(),
        r => format!("{r} transactions/s in all"),
    };
    let two_phase = match &setup.two_phase {
        Some((category, _)) => format!(
            "a prepared transaction every {} s in category {category} (set aside for them)",
            args.prepared_every
        ),
        None => "no prepared transactions".to_string(),
    };
    let until = match args.seconds {
        RunFor::Seconds(s) => format!("for {s} s"),
        RunFor::Forever => "until Ctrl-C or SIGTERM".to_string(),
    };
    println!(
        "tviews workload: {} clients on {}, {pace}, {two_phase}, {until}",
        args.clients, setup.database
    );

    let started = Instant::now();
    let mut tasks: Vec<JoinHandle<()>> = clients
        .into_iter()
        .zip(0u32..)
        .map(|(client, i)| {
            tokio::task::spawn_local(client_loop(
                shared.clone(),
                i + 1,
                client,
                period,
                stop_rx.clone(),
            ))
        })
        .collect();
    if let Some((_, products)) = setup.two_phase {
        let two = TwoPhase {
            shared: shared.clone(),
            every: Duration::from_secs(args.prepared_every),
            owner_pid: setup.owner_pid,
            products,
        };
        tasks.push(tokio::task::spawn_local(two.run(stop_rx.clone())));
    }

    let mut progress =
        tokio::time::interval_at(tokio::time::Instant::now() + PROGRESS_EVERY, PROGRESS_EVERY);
    let stop = stop_signal(args.seconds.duration());
    tokio::pin!(stop);
    let why = loop {
        tokio::select! {
            why = &mut stop => break why,
            _ = progress.tick() => println!(
                "tviews workload: {}",
                summary(&shared.counters.totals(), started.elapsed())
            ),
        }
    };
    if why != "time is up" {
        eprintln!("tviews workload: {why}, stopping");
    }
    let _ = stop_tx.send(true);
    let elapsed = started.elapsed();
    // Clients stop at once; the two-phase task finishes its transaction first (its
    // own retries give up after 30 s). A PREPARE stuck behind another run's prepared
    // transaction is the one thing that could outlast that: stop waiting then.
    let deadline = tokio::time::Instant::now() + STOP_TIMEOUT;
    for task in tasks {
        if tokio::time::timeout_at(deadline, task).await.is_err() {
            eprintln!(
                "tviews workload: a session did not stop within {STOP_TIMEOUT:?}; leaving it \
                 (a transaction it prepares after all is rolled back by the next run)"
            );
        }
    }
    drop(control);
    let totals = shared.counters.totals();
    let mut outcome = Outcome::ok(format!("tviews workload: {}\n", summary(&totals, elapsed)));
    if totals.prepared_left > 0 {
        outcome.code = crate::failure::EXIT_ERROR;
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_or_forever() {
        assert_eq!(parse_run_for("10"), Ok(RunFor::Seconds(10)));
        assert_eq!(parse_run_for("forever"), Ok(RunFor::Forever));
        assert_eq!(parse_run_for("FOREVER"), Ok(RunFor::Forever));
        assert!(parse_run_for("0").is_err());
        assert!(parse_run_for("-3").is_err());
        assert!(parse_run_for("soon").is_err());
    }

    #[test]
    fn rng_stays_in_range_and_reaches_both_ends() {
        let mut rng = Rng::seeded(7);
        let draws: Vec<u64> = (0..1000).map(|_| rng.range(5, 20)).collect();
        assert!(draws.iter().all(|d| (5..=20).contains(d)));
        assert!(draws.contains(&5) && draws.contains(&20));
    }

    #[test]
    fn every_kind_of_transaction_is_picked() {
        let mut rng = Rng::seeded(1);
        let mut seen = Vec::new();
        for _ in 0..5000 {
            let k = pick_kind(&mut rng);
            if !seen.contains(&k) {
                seen.push(k);
            }
        }
        assert_eq!(seen.len(), MIX.len());
    }

    fn demo_products() -> Vec<(i64, i64)> {
        // demo/schema.sql: product i is in category 1 + i % 20.
        (1..=1000).map(|i| (i, 1 + i % 20)).collect()
    }

    #[test]
    fn the_last_category_is_set_aside_for_prepared_transactions() {
        let categories: Vec<i64> = (1..=20).collect();
        let c = Catalog::plan(&demo_products(), &categories, true);
        let (reserved, products) = c.reserved.clone().unwrap();
        assert_eq!(reserved, 20);
        assert_eq!(products.len(), 50);
        assert!(products.iter().all(|p| p % 20 == 19));
        assert_eq!(c.products.len(), 950);
        assert!(!c.products.iter().any(|p| products.contains(p)));
        assert!(!c.categories.contains(&20));

        let all = Catalog::plan(&demo_products(), &categories, false);
        assert_eq!(all.reserved, None);
        assert_eq!(all.products.len(), 1000);
        assert_eq!(all.categories.len(), 20);

        // One category only: nothing to set aside.
        let one = Catalog::plan(&[(1, 1), (2, 1)], &[1], true);
        assert_eq!(one.reserved, None);
        assert_eq!(one.products, vec![1, 2]);
    }

    #[test]
    fn clients_never_touch_the_reserved_category() {
        let categories: Vec<i64> = (1..=20).collect();
        let c = Catalog::plan(&demo_products(), &categories, true);
        let (reserved, reserved_products) = c.reserved.clone().unwrap();
        let next = AtomicI64::new(3001);
        let mut rng = Rng::seeded(3);
        for _ in 0..2000 {
            for step in plan_transaction(&mut rng, &c, &next) {
                match step {
                    Step::RenameCategory { category, .. } => assert_ne!(category, reserved),
                    Step::NewReview { product, .. }
                    | Step::Rerate { product, .. }
                    | Step::DeleteReview { product }
                    | Step::Reprice { product, .. }
                    | Step::RenameProduct { product, .. }
                    | Step::TakeStock { product, .. }
                    | Step::Restock { product, .. }
                    | Step::DropEmptyStock { product }
                    | Step::MoveWarehouse { product, .. } => {
                        assert!(!reserved_products.contains(&product), "{product}");
                    }
                }
            }
        }
        assert!(next.load(Ordering::Relaxed) > 3001);
    }

    #[test]
    fn summary_line() {
        let mut t = Totals {
            committed: 1200,
            retries: 3,
            prepared: 4,
            prepared_committed: 3,
            prepared_rolled_back: 1,
            ..Totals::default()
        };
        assert_eq!(
            summary(&t, Duration::from_secs(30)),
            "1200 transactions in 30 s (40.0/s), 3 retried, 4 prepared (3 committed, 1 rolled back)"
        );
        t.failed.insert("23505".into(), 2);
        t.waited = 2;
        t.prepared_left = 1;
        assert_eq!(
            summary(&t, Duration::from_secs(30)),
            "1200 transactions in 30 s (40.0/s), 3 retried, 2 failed (23505: 2), \
             4 prepared (3 committed, 1 rolled back, 2 blocked a writer, 1 LEFT PENDING)"
        );
    }
}
