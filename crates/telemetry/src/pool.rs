//! Database connection pool metrics, after OpenTelemetry's database conventions:
//! `db.client.connection.count` (by `state`: `idle`/`used`), `db.client.connection.max` and
//! `db.client.connection.wait_time`.

use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::Histogram;

/// Bucket boundaries (seconds) for waits on a pooled connection: 10 µs to 10 s.
const WAIT_BUCKETS: &[f64] = &[
    0.00001, 0.0001, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0,
];

/// The instruments of one connection pool.
#[derive(Debug, Clone)]
pub struct PoolMetrics {
    wait_time: Histogram<f64>,
    pool: [KeyValue; 1],
}

impl PoolMetrics {
    /// Registers the pool `name` of at most `max` connections; `observe` reports
    /// `(open, idle)` connections whenever metrics are collected.
    pub fn register(
        name: &'static str,
        max: u32,
        observe: impl Fn() -> (u32, u32) + Send + Sync + 'static,
    ) -> Self {
        let meter = opentelemetry::global::meter(crate::SCOPE);
        let pool = KeyValue::new("db.client.connection.pool.name", name);
        let counted_pool = pool.clone();
        meter
            .i64_observable_up_down_counter("db.client.connection.count")
            .with_unit("{connection}")
            .with_description("Open connections, by state")
            .with_callback(move |observer| {
                let (open, idle) = observe();
                let idle = idle.min(open);
                for (state, count) in [("idle", idle), ("used", open - idle)] {
                    observer.observe(
                        i64::from(count),
                        &[
                            counted_pool.clone(),
                            KeyValue::new("db.client.connection.state", state),
                        ],
                    );
                }
            })
            .build();
        let max_pool = pool.clone();
        meter
            .i64_observable_up_down_counter("db.client.connection.max")
            .with_unit("{connection}")
            .with_description("Most connections the pool opens")
            .with_callback(move |observer| {
                observer.observe(i64::from(max), std::slice::from_ref(&max_pool))
            })
            .build();
        Self {
            wait_time: meter
                .f64_histogram("db.client.connection.wait_time")
                .with_unit("s")
                .with_description("Time spent waiting for a pooled connection")
                .with_boundaries(WAIT_BUCKETS.to_vec())
                .build(),
            pool: [pool],
        }
    }

    pub fn record_wait(&self, waited: Duration) {
        self.wait_time.record(waited.as_secs_f64(), &self.pool);
    }
}
