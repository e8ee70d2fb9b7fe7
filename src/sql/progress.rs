//! `recsys.progress`: one row per training in progress in any backend or background worker, the
//! way `pg_stat_progress_create_index` shows index builds. The rows live in a small board in
//! shared memory, which exists only when the library is in `shared_preload_libraries`; without
//! it trainings still run (and still report NOTICEs to their own client), the view is empty and
//! says why in a NOTICE.
//!
//! A backend claims a slot when a training starts and frees it when the training ends, however
//! it ends (a guard's Drop: pgrx unwinds Rust frames on ERROR); a slot whose process is gone is
//! free too, so a killed backend leaves nothing behind.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};

use pgrx::prelude::*;
use pgrx::{pg_shmem_init, PGRXSharedMemory, PgLwLock};

/// How many trainings the board shows at once (a training that finds it full runs unseen).
const SLOTS: usize = 64;
const NAME_BYTES: usize = 200;
const ALGORITHM_BYTES: usize = 32;
const METRIC_BYTES: usize = 32;

#[derive(Copy, Clone)]
struct Text<const N: usize> {
    len: u16,
    bytes: [u8; N],
}

impl<const N: usize> Text<N> {
    const EMPTY: Self = Text { len: 0, bytes: [0; N] };

    fn set(&mut self, s: &str) {
        // Cut at a character boundary that fits.
        let mut end = s.len().min(N);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        self.bytes[..end].copy_from_slice(&s.as_bytes()[..end]);
        self.len = end as u16;
    }

    fn get(&self) -> String {
        String::from_utf8_lossy(&self.bytes[..self.len as usize]).into_owned()
    }
}

#[derive(Copy, Clone)]
struct Slot {
    /// 0: free.
    pid: i32,
    database: pg_sys::Oid,
    role: pg_sys::Oid,
    job: i64,
    model: Text<NAME_BYTES>,
    algorithm: Text<ALGORITHM_BYTES>,
    phase: Text<16>,
    metric: Text<METRIC_BYTES>,
    loss: f64,
    has_loss: bool,
    step: u64,
    steps: u64,
    /// Microseconds since the PostgreSQL epoch.
    started: i64,
    phase_started: i64,
    /// In tune's search: step and loss count trials, and the trials' own fits do not report.
    searching: bool,
}

impl Slot {
    const FREE: Slot = Slot {
        pid: 0,
        database: pg_sys::Oid::INVALID,
        role: pg_sys::Oid::INVALID,
        job: 0,
        model: Text::EMPTY,
        algorithm: Text::EMPTY,
        phase: Text::EMPTY,
        metric: Text::EMPTY,
        loss: 0.0,
        has_loss: false,
        step: 0,
        steps: 0,
        started: 0,
        phase_started: 0,
        searching: false,
    };
}

#[derive(Copy, Clone)]
pub struct Board {
    slots: [Slot; SLOTS],
}

impl Default for Board {
    fn default() -> Self {
        Board { slots: [Slot::FREE; SLOTS] }
    }
}

// SAFETY: plain data (no pointers), only touched under the board's LWLock.
unsafe impl PGRXSharedMemory for Board {}

static BOARD: PgLwLock<Board> = unsafe { PgLwLock::new(c"pg_recsys progress") };
static PRELOADED: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// The slot of the training this backend runs now.
    static CURRENT: Cell<Option<usize>> = const { Cell::new(None) };
}

/// From `_PG_init`: ask for the board when loaded by shared_preload_libraries.
#[allow(unexpected_cfgs)]
pub fn init() {
    // SAFETY: read once in _PG_init, on the postmaster's (or the backend's) only thread.
    if unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        pg_shmem_init!(BOARD);
        PRELOADED.store(true, Ordering::Relaxed);
    }
}

fn now() -> i64 {
    // SAFETY: reads the clock.
    unsafe { pg_sys::GetCurrentTimestamp() }
}

fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    pid > 0 && unsafe { libc_kill(pid, 0) } == 0
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

/// Shows one training on the board for as long as it lives.
pub struct Tracker {
    slot: Option<usize>,
}

/// Start showing a training of `model` (`job`: its recsys.jobs id, 0 for a direct call).
pub fn begin(model: &str, algorithm: &str, job: i64) -> Tracker {
    if !PRELOADED.load(Ordering::Relaxed) || CURRENT.get().is_some() {
        // Not preloaded, or nested (auto's fits inside a tune): the outer one is shown.
        return Tracker { slot: None };
    }
    // SAFETY: backend globals, read on the backend thread.
    let (pid, database, role) = unsafe { (pg_sys::MyProcPid, pg_sys::MyDatabaseId, pg_sys::GetUserId()) };
    let t = now();
    let mut board = BOARD.exclusive();
    let free = board.slots.iter().position(|s| s.pid == 0 || s.pid == pid || !alive(s.pid));
    let slot = free.map(|i| {
        let s = &mut board.slots[i];
        *s = Slot::FREE;
        s.pid = pid;
        s.database = database;
        s.role = role;
        s.job = job;
        s.model.set(model);
        s.algorithm.set(algorithm);
        s.phase.set("read");
        s.started = t;
        s.phase_started = t;
        i
    });
    drop(board);
    CURRENT.set(slot);
    Tracker { slot }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        if let Some(i) = self.slot {
            let mut board = BOARD.exclusive();
            // SAFETY: backend global.
            if board.slots[i].pid == unsafe { pg_sys::MyProcPid } {
                board.slots[i] = Slot::FREE;
            }
            drop(board);
            CURRENT.set(None);
        }
    }
}

fn with_slot(f: impl FnOnce(&mut Slot)) {
    if let Some(i) = CURRENT.get() {
        let mut board = BOARD.exclusive();
        f(&mut board.slots[i]);
    }
}

/// The training moved on to `phase` (read, fit, write).
pub fn phase(phase: &str) {
    let t = now();
    with_slot(|s| {
        s.phase.set(phase);
        s.phase_started = t;
        s.step = 0;
        s.steps = 0;
        s.searching = false;
    });
}

/// recsys.tune scored `done` of `total` configurations, the last at `value` of `metric`.
pub fn trial(done: usize, total: usize, metric: &str, value: f64) {
    let t = now();
    with_slot(|s| {
        if !s.searching {
            s.phase.set("search");
            s.phase_started = t;
            s.searching = true;
        }
        s.step = done as u64;
        s.steps = total.max(done) as u64;
        s.metric.set(metric);
        s.loss = value;
        s.has_loss = true;
    });
}

/// `done` of `total` steps (chunks, iterations, epochs) of the current phase.
pub fn step(done: usize, total: usize) {
    with_slot(|s| {
        if s.searching {
            return;
        }
        s.step = done as u64;
        s.steps = total as u64;
    });
}

/// The objective after an iteration or epoch.
pub fn loss(metric: &str, value: f64) {
    with_slot(|s| {
        if s.searching {
            return;
        }
        s.metric.set(metric);
        s.loss = value;
        s.has_loss = true;
    });
}


/// The board's rows the caller may see: trainings of roles whose privileges it has, all of them
/// for members of pg_read_all_stats (as pg_stat_activity shows queries).
#[pg_extern(volatile, parallel_restricted)]
fn training_progress() -> TableIterator<'static, (
    name!(pid, i32),
    name!(database, pg_sys::Oid),
    name!(role, pg_sys::Oid),
    name!(job_id, Option<i64>),
    name!(model, String),
    name!(algorithm, String),
    name!(phase, String),
    name!(step, i64),
    name!(steps, i64),
    name!(metric, Option<String>),
    name!(loss, Option<f64>),
    name!(started_epoch, f64),
    name!(seconds_left, Option<f64>),
)> {
    if !PRELOADED.load(Ordering::Relaxed) {
        pgrx::pg_sys::panic::ErrorReport::new(
            pgrx::PgSqlErrorCode::ERRCODE_SUCCESSFUL_COMPLETION,
            "pg_recsys: recsys.progress is empty because pg_recsys is not in shared_preload_libraries",
            "pg_recsys",
        )
        .set_hint("add pg_recsys to shared_preload_libraries in postgresql.conf and restart the server")
        .report(pgrx::PgLogLevel::NOTICE);
        return TableIterator::new(Vec::new());
    }
    // SAFETY: privilege checks and the clock, on the backend thread.
    let (me, all) = unsafe {
        let me = pg_sys::GetUserId();
        (me, pg_sys::has_privs_of_role(me, pg_sys::Oid::from(pg_sys::ROLE_PG_READ_ALL_STATS)))
    };
    let t = now();
    let slots: Vec<Slot> = BOARD.share().slots.iter().filter(|s| s.pid != 0).copied().collect();
    let rows = slots
        .into_iter()
        .filter(|s| alive(s.pid))
        // SAFETY: catalog lookup on the backend thread.
        .filter(|s| all || unsafe { pg_sys::has_privs_of_role(me, s.role) })
        .map(|s| {
            let in_phase = (t - s.phase_started) as f64 / 1e6;
            let left = (s.step > 0 && s.steps >= s.step).then(|| in_phase / s.step as f64 * (s.steps - s.step) as f64);
            (
                s.pid,
                s.database,
                s.role,
                (s.job != 0).then_some(s.job),
                s.model.get(),
                s.algorithm.get(),
                s.phase.get(),
                s.step as i64,
                s.steps as i64,
                s.has_loss.then(|| s.metric.get()),
                s.has_loss.then_some(s.loss),
                s.started as f64 / 1e6 + crate::sql::PG_EPOCH_OFFSET as f64,
                left,
            )
        })
        .collect::<Vec<_>>();
    TableIterator::new(rows)
}
