//! pg_recsys: recommendations inside PostgreSQL.
//!
//! `engine` is pure Rust (built, tested and benched without Postgres); `sql` is the pgrx glue,
//! compiled only with the `pg` feature.

pub mod engine;

#[cfg(feature = "pg")]
mod sql;

#[cfg(feature = "pg")]
::pgrx::pg_module_magic!(name, version);

#[cfg(feature = "pg")]
::pgrx::extension_sql_file!("../sql/bootstrap.sql", name = "bootstrap", bootstrap);

// Each schema upgrade's statements also end a fresh install, so both reach the same catalog
// (the bootstrap tables exist before any of them; 0.4.0's follows the functions it replaces and
// comments, as does 0.5.0's; 0.3.0's comes last, after every function, and so after 0.7.0's views).
#[cfg(feature = "pg")]
::pgrx::extension_sql_file!("../sql/pg_recsys--0.1.0--0.2.0.sql", name = "upgrade_0_2_0");
#[cfg(feature = "pg")]
::pgrx::extension_sql_file!("../sql/pg_recsys--0.2.0--0.3.0.sql", name = "upgrade_0_3_0", finalize);
#[cfg(feature = "pg")]
::pgrx::extension_sql_file!(
    "../sql/pg_recsys--0.3.0--0.4.0.sql",
    name = "upgrade_0_4_0",
    requires = [sql::transfer::export_model, sql::transfer::import_model]
);
#[cfg(feature = "pg")]
::pgrx::extension_sql_file!(
    "../sql/pg_recsys--0.4.0--0.5.0.sql",
    name = "upgrade_0_5_0",
    requires = [sql::recommend::recommend_with_diversity, sql::tune::tune_search, "upgrade_0_4_0"]
);

#[cfg(feature = "pg")]
::pgrx::extension_sql_file!(
    "../sql/pg_recsys--0.5.0--0.6.0.sql",
    name = "upgrade_0_6_0",
    requires = [sql::progress::training_progress, sql::jobs::train_async, sql::jobs::cancel_job, "upgrade_0_5_0"]
);

#[cfg(feature = "pg")]
::pgrx::extension_sql_file!("../sql/pg_recsys--0.6.0--0.7.0.sql", name = "upgrade_0_7_0", requires = ["upgrade_0_6_0"]);

#[cfg(feature = "pg")]
::pgrx::extension_sql_file!("../sql/pg_recsys--0.7.0--0.7.1.sql", name = "upgrade_0_7_1", requires = ["upgrade_0_7_0"]);

#[cfg(feature = "pg")]
#[::pgrx::pg_guard]
pub extern "C-unwind" fn _PG_init() {
    // Before anything allocates: how mimalloc commits and returns memory (src/engine/memory.rs).
    engine::memory::settle_allocator();
    // Environment only, no threads: Candle's CPU threads stay inside recsys.max_threads.
    engine::neural::settle_candle_threads();
    sql::gucs::init();
    sql::progress::init();
}

#[cfg(feature = "pg_test")]
mod pg_tests;

/// Required by `cargo pgrx test`.
#[cfg(all(feature = "pg", any(test, feature = "pg_test")))]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        // recsys.progress reads shared memory that exists only when preloaded.
        vec!["shared_preload_libraries = 'pg_recsys'"]
    }
}
