//! loadgen on PostgreSQL: a scratch schema for the server it starts (made before, dropped
//! after), and PostgreSQL's own insert rate of the rows the server stored, the baseline its
//! figures are read against.
//!
//! The baseline copies the run's pings into `raw_pings`, a table made `LIKE pings INCLUDING
//! ALL` (the same columns, identity, primary key, unique key and indexes; none of handoff's
//! triggers, change feed or engine), in the shape the server wrote them: the OsmAnd scenario's
//! rows one INSERT a commit, the batch scenario's in multi-row INSERTs of the batch size through
//! `UNNEST` (the server's own fast path), with as many connections as loadgen had requests in
//! flight. What the server achieves divided by this is what handoff costs over the database.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use sqlx_core::connection::Connection as _;
use sqlx_core::query::query;
use sqlx_core::row::Row as _;
use sqlx_core::sql_str::AssertSqlSafe;
use sqlx_postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};

/// A schema made for one run, in a database on this machine; [`Scratch::drop_schema`] removes
/// it.
pub struct Scratch {
    options: PgConnectOptions,
    url: String,
    schema: String,
}

impl Scratch {
    /// A new schema in the database `url` names (whose host must be on this machine).
    pub async fn create(url: &str) -> anyhow::Result<Scratch> {
        let options: PgConnectOptions = url
            .parse()
            .with_context(|| format!("--db: `{url}` is not a PostgreSQL URL"))?;
        let host = options.get_host();
        let local = host.starts_with('/')
            || host.eq_ignore_ascii_case("localhost")
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if !local {
            bail!("--db: loadgen only uses a database on this machine, not `{host}`");
        }
        let schema = format!(
            "loadgen_{}_{}",
            std::process::id(),
            jiff::Timestamp::now().as_second()
        );
        let mut conn = PgConnection::connect_with(&options)
            .await
            .with_context(|| format!("cannot connect to {host}:{}", options.get_port()))?;
        // The name is ours (letters, digits, underscores): nothing to quote.
        query(AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&mut conn)
            .await
            .context("creating the scratch schema")?;
        let _ = conn.close().await;
        let join = if url.contains('?') { '&' } else { '?' };
        Ok(Scratch {
            url: format!("{url}{join}options=-c%20search_path%3D{schema}"),
            options: options.options([("search_path", schema.as_str())]),
            schema,
        })
    }

    /// The URL `handoff serve --db` takes for the schema.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Drops the schema and everything in it.
    pub async fn drop_schema(&self) -> anyhow::Result<()> {
        let mut conn = PgConnection::connect_with(&self.options).await?;
        query(AssertSqlSafe(format!(
            "DROP SCHEMA {} CASCADE",
            self.schema
        )))
        .execute(&mut conn)
        .await?;
        let _ = conn.close().await;
        Ok(())
    }

    /// PostgreSQL's own rate for the rows the server stored: the first `singles` pings (in
    /// arrival order) one INSERT a commit, the rest in INSERTs of `batch_size` rows.
    pub async fn raw_inserts(
        &self,
        singles: usize,
        batch_size: usize,
        concurrency: usize,
    ) -> anyhow::Result<(Raw, Raw)> {
        let pool = PgPoolOptions::new()
            .max_connections(u32::try_from(concurrency.clamp(1, 64)).unwrap_or(64))
            .connect_with(self.options.clone())
            .await?;
        query("CREATE TABLE raw_pings (LIKE pings INCLUDING ALL)")
            .execute(&pool)
            .await?;
        let rows = Arc::new(Rows::load(&pool).await?);
        let singles = singles.min(rows.len());
        let one = run(&pool, &rows, 0, singles, 1, concurrency).await?;
        let batched = run(
            &pool,
            &rows,
            singles,
            rows.len(),
            batch_size.max(1),
            concurrency,
        )
        .await?;
        pool.close().await;
        Ok((one, batched))
    }
}

/// What one raw insert run did: rows, commits, time.
#[derive(Debug, Clone, Copy)]
pub struct Raw {
    pub rows: usize,
    pub commits: usize,
    pub elapsed: Duration,
}

impl Raw {
    pub fn rows_per_s(&self) -> f64 {
        self.rows as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// The stored pings, column by column (as `UNNEST` takes them).
struct Rows {
    event: Vec<String>,
    device: Vec<String>,
    t_us: Vec<i64>,
    lon: Vec<f64>,
    lat: Vec<f64>,
    acc: Vec<Option<f64>>,
    speed: Vec<Option<f64>>,
    heading: Vec<Option<f64>>,
    alt: Vec<Option<f64>>,
    batt: Vec<Option<f64>>,
    received_us: Vec<i64>,
}

impl Rows {
    async fn load(pool: &PgPool) -> anyhow::Result<Rows> {
        let all = query(
            "SELECT event_id, device_id, t_us, lon, lat, acc_m, speed_mps, heading_deg, alt_m,
                    batt_pct, received_us
             FROM pings ORDER BY seq",
        )
        .fetch_all(pool)
        .await?;
        let mut r = Rows {
            event: Vec::with_capacity(all.len()),
            device: Vec::with_capacity(all.len()),
            t_us: Vec::with_capacity(all.len()),
            lon: Vec::with_capacity(all.len()),
            lat: Vec::with_capacity(all.len()),
            acc: Vec::with_capacity(all.len()),
            speed: Vec::with_capacity(all.len()),
            heading: Vec::with_capacity(all.len()),
            alt: Vec::with_capacity(all.len()),
            batt: Vec::with_capacity(all.len()),
            received_us: Vec::with_capacity(all.len()),
        };
        for row in &all {
            r.event.push(row.try_get(0)?);
            r.device.push(row.try_get(1)?);
            r.t_us.push(row.try_get(2)?);
            r.lon.push(row.try_get(3)?);
            r.lat.push(row.try_get(4)?);
            r.acc.push(row.try_get(5)?);
            r.speed.push(row.try_get(6)?);
            r.heading.push(row.try_get(7)?);
            r.alt.push(row.try_get(8)?);
            r.batt.push(row.try_get(9)?);
            r.received_us.push(row.try_get(10)?);
        }
        Ok(r)
    }

    fn len(&self) -> usize {
        self.t_us.len()
    }
}

/// Inserts rows `from..to` into `raw_pings`, `per` rows a commit, from `concurrency` tasks.
async fn run(
    pool: &PgPool,
    rows: &Arc<Rows>,
    from: usize,
    to: usize,
    per: usize,
    concurrency: usize,
) -> anyhow::Result<Raw> {
    let next = Arc::new(AtomicUsize::new(from));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (pool, rows, next) = (pool.clone(), Arc::clone(rows), Arc::clone(&next));
        tasks.spawn(async move {
            let mut commits = 0usize;
            loop {
                let a = next.fetch_add(per, Ordering::Relaxed);
                if a >= to {
                    return Ok::<_, anyhow::Error>(commits);
                }
                let b = (a + per).min(to);
                let r = &rows;
                query(
                    "INSERT INTO raw_pings (event_id, device_id, t_us, lon, lat, acc_m, speed_mps,
                                            heading_deg, alt_m, batt_pct, received_us)
                     SELECT * FROM UNNEST($1::text[], $2::text[], $3::int8[], $4::float8[],
                                          $5::float8[], $6::float8[], $7::float8[], $8::float8[],
                                          $9::float8[], $10::float8[], $11::int8[])
                     ON CONFLICT (event_id, device_id, t_us) DO NOTHING",
                )
                .bind(&r.event[a..b])
                .bind(&r.device[a..b])
                .bind(&r.t_us[a..b])
                .bind(&r.lon[a..b])
                .bind(&r.lat[a..b])
                .bind(&r.acc[a..b])
                .bind(&r.speed[a..b])
                .bind(&r.heading[a..b])
                .bind(&r.alt[a..b])
                .bind(&r.batt[a..b])
                .bind(&r.received_us[a..b])
                .execute(&pool)
                .await?;
                commits += 1;
            }
        });
    }
    let mut commits = 0;
    while let Some(done) = tasks.join_next().await {
        commits += done??;
    }
    Ok(Raw {
        rows: to.saturating_sub(from),
        commits,
        elapsed: started.elapsed(),
    })
}
