//! The PostgreSQL trust store against the local server (DESIGN.md §4):
//! `postgres://root@127.0.0.1:5432/test`, or `WARDEN_TEST_PG_URL`. Every test
//! works in a fresh schema with a random name and drops it at the end.
#![cfg(feature = "postgres")]
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use warden_identity::trust_pg::PgTrustStore;
use warden_identity::{Signal, TrustBook, TrustConfig};

const T0: u64 = 1_800_000_000;

fn url() -> String {
    std::env::var("WARDEN_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/test".into())
}

/// A fresh schema, dropped on drop.
struct Schema(String);

impl Schema {
    fn new() -> Self {
        let mut random = [0u8; 6];
        getrandom::fill(&mut random).unwrap();
        Schema(format!(
            "warden_trust_test_{}_{}",
            std::process::id(),
            hex::encode(random)
        ))
    }

    fn book(&self) -> TrustBook {
        let store = PgTrustStore::open(&url(), &self.0).unwrap();
        TrustBook::with_store(Box::new(store), TrustConfig::default()).unwrap()
    }

    fn sql(&self, text: &str) {
        execute(&text.replace("S.", &format!("\"{}\".", self.0)));
    }
}

fn execute(text: &str) {
    let text = text.to_owned();
    {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            use sqlx::Connection as _;
            let mut conn = sqlx::PgConnection::connect(&url()).await.unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(text))
                .execute(&mut conn)
                .await
                .unwrap();
        });
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let name = self.0.clone();
        let _ = std::panic::catch_unwind(|| {
            execute(&format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE"));
        });
    }
}

fn successes(n: usize) -> f64 {
    let c = TrustConfig::default();
    (0..n).fold(c.baseline, |s, _| TrustConfig::apply(s, c.success))
}

#[test]
fn two_books_on_one_table_lose_no_signal() {
    let schema = Schema::new();
    let books = [Arc::new(schema.book()), Arc::new(schema.book())];
    let (threads, per_thread) = (4, 40);
    std::thread::scope(|s| {
        for (i, book) in books.iter().enumerate() {
            for t in 0..threads {
                s.spawn(move || {
                    for k in 0..per_thread {
                        book.record("shared", Signal::Success, &[], T0).unwrap();
                        book.record(&format!("own-{i}"), Signal::Success, &[], T0)
                            .unwrap();
                        if (k + t) % 5 == 0 {
                            book.save().unwrap();
                        }
                    }
                });
            }
            // A syncer racing the writers, as a server's sync thread does.
            s.spawn(move || {
                for _ in 0..20 {
                    book.save().unwrap();
                }
            });
        }
    });
    for b in &books {
        b.save().unwrap();
    }
    // Every signal applied exactly once, with the same formula: bit for bit.
    let total = books.len() * threads * per_thread;
    let fresh = schema.book();
    assert_eq!(fresh.score("shared", T0).unwrap(), successes(total));
    assert_eq!(
        fresh.score("own-0", T0).unwrap(),
        successes(threads * per_thread)
    );
    assert_eq!(
        fresh.score("own-1", T0).unwrap(),
        successes(threads * per_thread)
    );
    // Each book's view is the table's after its save.
    books[0].save().unwrap();
    assert_eq!(books[0].score("shared", T0).unwrap(), successes(total));
}

#[test]
fn operator_set_replaces_the_committed_score_and_signals_apply_on_top() {
    let schema = Schema::new();
    let server = schema.book();
    server
        .record("a", Signal::PolicyViolation, &[], T0)
        .unwrap();
    server.save().unwrap();
    assert_eq!(server.score("a", T0).unwrap(), 360.0);
    let operator = schema.book();
    operator.set("a", 900.0, T0).unwrap();
    // Nothing queued for `a`: the server's save reloads the set score.
    server.record("b", Signal::Success, &[], T0).unwrap();
    server.save().unwrap();
    assert_eq!(server.score("a", T0).unwrap(), 900.0);
    server
        .record("a", Signal::PolicyViolation, &[], T0)
        .unwrap();
    server.save().unwrap();
    assert_eq!(schema.book().score("a", T0).unwrap(), 810.0);
    // Out-of-range sets are refused before reaching the table.
    assert!(operator.set("a", 1000.5, T0).is_err());
    assert_eq!(schema.book().list(T0).unwrap().len(), 2);
}

#[test]
fn corrupt_rows_and_bad_settings_fail_closed() {
    let schema = Schema::new();
    let book = schema.book();
    book.record("x", Signal::Success, &[], T0).unwrap();
    book.save().unwrap();
    // An attacker with table rights bypasses the CHECK: reads refuse it.
    schema.sql(
        "ALTER TABLE S.trust DROP CONSTRAINT trust_score_check; \
         UPDATE S.trust SET score = 5000 WHERE agent = 'x'",
    );
    let store = PgTrustStore::open(&url(), &schema.0).unwrap();
    let e = TrustBook::with_store(Box::new(store), TrustConfig::default()).unwrap_err();
    assert!(e.to_string().contains("out of range"), "{e}");
    book.record("x", Signal::Success, &[], T0).unwrap();
    assert!(book.save().is_err());
    assert_eq!(book.queued(), 1, "the signal stays queued");
    // Bad schema names and unreachable servers are errors, not empty books.
    assert!(PgTrustStore::open(&url(), "Bad-Name").is_err());
    assert!(PgTrustStore::open(&url(), "pg_catalog").is_err());
    assert!(PgTrustStore::open("postgres://root@127.0.0.1:1/test", "warden_trust").is_err());
}
