//! The Python face: `streams._engine`.
//!
//! Records cross as bytes and come back as bytes (decision JSON, stored states): no
//! Python object is built per event. A panic inside the engine is caught here and
//! raised as `EngineError` naming the record it was handling, never an abort.

use crate::codec::{decode, Rejection};
use crate::events::{Event, PolicySwitch, EVENT_TYPES};
use crate::partition::{Partition as Core, Tally};
use crate::policy::Policy as CorePolicy;
use crate::state::{ShortStr, UserState};
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyTuple};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

create_exception!(_engine, EngineError, PyException, "The engine failed on a record.");

fn guarded<T>(place: impl FnOnce() -> String, f: impl FnOnce() -> T) -> PyResult<T> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|panic| {
        let what = crate::replay::panic_text(panic.as_ref());
        EngineError::new_err(format!("engine failed on {}: {what}", place()))
    })
}

/// A validated policy (`streams.policy.Policy.engine_json()`), compiled once.
#[pyclass(frozen, module = "streams._engine")]
pub struct Policy {
    inner: Arc<CorePolicy>,
}

#[pymethods]
impl Policy {
    #[new]
    fn new(data: &[u8]) -> PyResult<Self> {
        let inner = CorePolicy::from_json(data).map_err(PyValueError::new_err)?;
        Ok(Policy { inner: Arc::new(inner) })
    }

    #[getter]
    fn version(&self) -> &str {
        &self.inner.version
    }
}

fn rejection_tuple<'py>(py: Python<'py>, r: &Rejection) -> PyResult<Bound<'py, PyTuple>> {
    PyTuple::new(py, [r.reason.into_pyobject(py)?.into_any(), r.detail.as_str().into_pyobject(py)?.into_any(), r.event_type.into_pyobject(py)?.into_any()])
}

/// One record decoded: the event's fields in the order of the Python dataclass, led by
/// its event_type, or ("rejected", reason, detail, event_type).
#[pyfunction]
fn decode_fields<'py>(py: Python<'py>, raw: &[u8]) -> PyResult<Bound<'py, PyTuple>> {
    let decoded = guarded(|| "a record".to_owned(), || decode(raw))?;
    match decoded {
        Err(r) => {
            let rest = rejection_tuple(py, &r)?;
            let mut items: Vec<Bound<'py, PyAny>> = vec!["rejected".into_pyobject(py)?.into_any()];
            items.extend(rest.iter());
            PyTuple::new(py, items)
        }
        Ok(Event::Repayment(e)) => {
            let head = (
                "repayment", e.event_id.as_str(), e.user_id.as_str(), e.occurred_at,
                e.loan_id.as_str(), e.installment,
            );
            let tail = (e.product, e.due_date, e.amount_due, e.amount_paid, e.paid_at, e.region.as_deref().map(ShortStr::as_str));
            let mut items: Vec<Bound<'py, PyAny>> = head.into_pyobject(py)?.iter().collect();
            items.extend(tail.into_pyobject(py)?.iter());
            PyTuple::new(py, items)
        }
        Ok(Event::Application(e)) => (
            "application", e.event_id.as_str(), e.user_id.as_str(), e.occurred_at,
            e.application_id.as_str(), e.product, e.kind, e.requested_amount,
            e.channel.as_deref(), e.region.as_deref().map(ShortStr::as_str),
        )
            .into_pyobject(py),
        Ok(Event::CreditReport(e)) => {
            let head = (
                "credit_report", e.event_id.as_str(), e.user_id.as_str(), e.occurred_at,
                e.bureau.as_str(),
            );
            let tail = (
                e.credit_score, e.open_lenders, e.hard_inquiries_30d, e.delinquent_accounts,
                e.total_debt, e.monthly_income, e.region.as_deref().map(ShortStr::as_str),
            );
            let mut items: Vec<Bound<'py, PyAny>> = head.into_pyobject(py)?.iter().collect();
            items.extend(tail.into_pyobject(py)?.iter());
            PyTuple::new(py, items)
        }
        Ok(Event::Override(e)) => (
            "override", e.event_id.as_str(), e.user_id.as_str(), e.occurred_at, e.action,
            e.operator.as_str(), e.reason.as_str(), e.until, e.region.as_deref().map(ShortStr::as_str),
        )
            .into_pyobject(py),
        Ok(Event::Policy(_)) => Err(EngineError::new_err("the decoder made a policy switch")),
    }
}

/// A stored state read and written again (the loader's check, and the fuzz target's).
#[pyfunction]
fn reload_state<'py>(py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
    let state = guarded(|| "a stored state".to_owned(), || UserState::load(data))?
        .map_err(PyValueError::new_err)?;
    Ok(PyBytes::new(py, &state.dump()))
}

fn tally_dict<'py>(py: Python<'py>, t: &Tally) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("read", t.read)?;
    let by_type = |counts: &[u64; 4]| -> PyResult<Bound<'py, PyDict>> {
        let m = PyDict::new(py);
        for (name, n) in EVENT_TYPES.iter().zip(counts.iter()) {
            if *n > 0 {
                m.set_item(*name, *n)?;
            }
        }
        Ok(m)
    };
    d.set_item("applied", by_type(&t.applied)?)?;
    d.set_item("duplicates", by_type(&t.duplicates)?)?;
    d.set_item("late", by_type(&t.late)?)?;
    let rejected = PyDict::new(py);
    for (k, v) in &t.rejected {
        rejected.set_item(*k, *v)?;
    }
    d.set_item("rejected", rejected)?;
    let types = PyDict::new(py);
    for (k, v) in &t.rejected_types {
        types.set_item(*k, *v)?;
    }
    d.set_item("rejected_types", types)?;
    let decisions = PyDict::new(py);
    for ((action, code), v) in &t.decisions {
        decisions.set_item((*action, *code), *v)?;
    }
    d.set_item("decisions", decisions)?;
    Ok(d)
}

/// One partition of the engine: records in (bytes, with an integer handle each),
/// decisions, states, released handles and counts out.
#[pyclass(module = "streams._engine")]
pub struct Partition {
    core: Core,
    handles: Vec<u64>,
}

#[pymethods]
impl Partition {
    /// `track_dirty`: keep the users whose state changed, for `take_dirty` (a caller
    /// with no table to write them to says False).
    #[new]
    #[pyo3(signature = (policy, lateness, track_dirty=true))]
    fn new(policy: &Policy, lateness: f64, track_dirty: bool) -> Self {
        let mut core = Core::new(policy.inner.clone(), lateness);
        core.track_dirty = track_dirty;
        Partition { core, handles: Vec::new() }
    }

    fn add_input(&mut self, source: u32) {
        self.core.add_input(source);
    }

    fn remove_input(&mut self, source: u32) -> PyResult<()> {
        let Partition { core, handles } = self;
        guarded(|| format!("removing input {source}"), || core.remove_input(source, handles))
    }

    fn set_idle(&mut self, source: u32, idle: bool) -> PyResult<()> {
        let Partition { core, handles } = self;
        guarded(|| format!("input {source} going idle"), || core.set_idle(source, idle, handles))
    }

    /// Another partition's event at t from `source`: moves the watermark only.
    fn observe(&mut self, source: u32, t: f64) -> PyResult<()> {
        let Partition { core, handles } = self;
        guarded(|| format!("input {source} at {t}"), || core.observe(source, t, handles))
    }

    /// Decode one record and buffer it; apply what the watermark releases. Returns None,
    /// or for a rejected record (reason, detail, event_type); it is counted either way.
    fn offer<'py>(
        &mut self,
        py: Python<'py>,
        source: u32,
        raw: &[u8],
        handle: u64,
    ) -> PyResult<Option<Bound<'py, PyTuple>>> {
        let Partition { core, handles } = self;
        let rejected = guarded(
            || format!("record {handle} of input {source}"),
            || {
                core.tally.read += 1;
                match decode(raw) {
                    Ok(event) => {
                        core.offer(source, event, handle, handles);
                        None
                    }
                    Err(r) => {
                        core.tally.count_rejection(&r);
                        Some(r)
                    }
                }
            },
        )?;
        rejected.map(|r| rejection_tuple(py, &r)).transpose()
    }

    /// Decisions made since the last call, as JSON bytes, in order.
    fn take_decisions<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let out: Vec<Bound<'py, PyBytes>> = self
            .core
            .decisions
            .drain(..)
            .map(|d| PyBytes::new(py, d.to_json().as_bytes()))
            .collect();
        PyList::new(py, out)
    }

    /// A policy in force from `at` on (`Partition::switch`), ordered with the events of
    /// input `source` by (at, policy_id); applied when the watermark passes it.
    #[pyo3(signature = (source, at, policy_id, policy, handle, region=None))]
    fn offer_policy(&mut self, source: u32, at: f64, policy_id: String, policy: &Policy,
                    handle: u64, region: Option<String>) -> PyResult<()> {
        let policy = policy.inner.clone();
        let event = Event::Policy(Box::new(PolicySwitch { at, policy_id, policy, region }));
        let Partition { core, handles } = self;
        guarded(|| "a policy switch".to_owned(), || core.offer(source, event, handle, handles))
    }

    /// The version of the policy in force.
    #[getter]
    fn policy_version(&self) -> String {
        self.core.policy.version.to_string()
    }

    /// A switch a previous owner of the partition applied: in force at once, nothing
    /// fired (the states it stored are past it).
    #[pyo3(signature = (at, policy_id, policy, region=None))]
    fn restore_policy(&mut self, at: f64, policy_id: String, policy: &Policy,
                      region: Option<String>) {
        let policy = policy.inner.clone();
        self.core.restore_switch(PolicySwitch { at, policy_id, policy, region });
    }

    /// The policies in force: (region or None, version, policy_id of its switch).
    fn policies(&self) -> Vec<(Option<&str>, &str, &str)> {
        self.core.policies()
    }

    /// Handles of the records applied (or found duplicate) since the last call.
    fn take_handles(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.handles)
    }

    /// Overrides refused when they came to be applied since the last call (no such
    /// user; counted already): (handle, reason, detail), their handles also among
    /// `take_handles`'.
    fn take_refused(&mut self) -> Vec<(u64, &'static str, String)> {
        self.core
            .refused
            .drain(..)
            .map(|r| (r.handle, r.rejection.reason, r.rejection.detail))
            .collect()
    }

    fn tally<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        tally_dict(py, &self.core.tally)
    }

    #[getter]
    fn watermark(&self) -> f64 {
        self.core.buffer.watermark
    }

    #[getter]
    fn pending_deadlines(&self) -> usize {
        self.core.pending_deadlines()
    }

    #[getter]
    fn buffered(&self) -> usize {
        self.core.buffer.len()
    }

    fn __len__(&self) -> usize {
        self.core.states.len()
    }

    /// A user's stored state, or None.
    fn state<'py>(&self, py: Python<'py>, user_id: &str) -> Option<Bound<'py, PyBytes>> {
        self.core.states.get(user_id).map(|s| PyBytes::new(py, &s.dump()))
    }

    /// Every user's stored state, sorted by user id.
    fn states<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let mut users: Vec<_> = self.core.states.iter().collect();
        users.sort_by(|a, b| a.0.cmp(b.0));
        let items: Vec<(String, Bound<'py, PyBytes>)> = users
            .into_iter()
            .map(|(k, s)| (k.to_string(), PyBytes::new(py, &s.dump())))
            .collect();
        PyList::new(py, items)
    }

    /// Load a stored state (from the table) for a user; `schedule_all` indexes deadlines.
    fn put_state(&mut self, user_id: &str, data: &[u8]) -> PyResult<()> {
        let state = guarded(|| format!("the stored state of {user_id:?}"), || UserState::load(data))?
            .map_err(|e| PyValueError::new_err(format!("{user_id:?}: {e}")))?;
        self.core.put_state(user_id, state);
        Ok(())
    }

    fn schedule_all(&mut self) {
        self.core.schedule_all();
    }

    // --- the live worker's hand-off -------------------------------------------------

    /// One record fetched from input `source`, as the worker takes it: decoded and
    /// checked here (its key is its user id; its user lives in partition `home` of
    /// `partitions`, by Kafka's default partitioner), then buffered. Returns None when
    /// buffered (the released handles are taken with `take_handles`), ("rejected",
    /// reason, detail, event_type) for a dead letter, or ("elsewhere", user id bytes,
    /// partition) for a record to send on to its user's partition. A rejected record is
    /// counted here; one sent on is counted at its home.
    #[pyo3(signature = (source, raw, handle, key, partitions, home))]
    #[allow(clippy::too_many_arguments)]
    fn offer_record<'py>(
        &mut self,
        py: Python<'py>,
        source: u32,
        raw: &[u8],
        handle: u64,
        key: Option<&[u8]>,
        partitions: u32,
        home: u32,
    ) -> PyResult<Option<Bound<'py, PyTuple>>> {
        let Partition { core, handles } = self;
        let outcome = guarded(
            || format!("record {handle} of input {source}"),
            || -> Result<(), Result<Rejection, (String, u32)>> {
                let event = decode(raw).map_err(Ok)?;
                let uid = event.user_id();
                if key.is_some_and(|k| k != uid.as_bytes()) {
                    return Err(Ok(crate::route::key_mismatch(
                        key.unwrap_or_default(),
                        uid,
                        event.event_type(),
                    )));
                }
                let there = crate::route::partition_for(uid.as_bytes(), partitions);
                if there != home {
                    return Err(Err((uid.to_owned(), there)));
                }
                core.tally.read += 1;
                core.offer(source, event, handle, handles);
                Ok(())
            },
        )?;
        match outcome {
            Ok(()) => Ok(None),
            Err(Ok(r)) => {
                core.tally.read += 1;
                core.tally.count_rejection(&r);
                let tuple = (
                    "rejected",
                    r.reason,
                    r.detail.as_str(),
                    r.event_type,
                )
                    .into_pyobject(py)?;
                Ok(Some(tuple))
            }
            Err(Err((uid, there))) => {
                let tuple = ("elsewhere", PyBytes::new(py, uid.as_bytes()), there).into_pyobject(py)?;
                Ok(Some(tuple))
            }
        }
    }

    /// A record the partition's previous owner finished: not applied or counted again,
    /// but its event time moves the watermark, as it did for the previous owner (when
    /// it was applied here: valid, keyed by its user, at its home).
    #[pyo3(signature = (source, raw, key, partitions, home))]
    fn skip_record(
        &mut self,
        source: u32,
        raw: &[u8],
        key: Option<&[u8]>,
        partitions: u32,
        home: u32,
    ) -> PyResult<()> {
        let Partition { core, handles } = self;
        guarded(
            || format!("a record of input {source} skipped"),
            || {
                let Ok(event) = decode(raw) else { return };
                let uid = event.user_id().as_bytes();
                if key.is_none_or(|k| k == uid)
                    && crate::route::partition_for(uid, partitions) == home
                {
                    core.observe(source, event.occurred_at(), handles);
                }
            },
        )
    }

    /// Apply whatever the watermark has released (and fire due deadlines).
    fn release(&mut self) -> PyResult<()> {
        let Partition { core, handles } = self;
        guarded(|| "a release".to_owned(), || core.release(handles))
    }

    /// The least latest time over the inputs that are not idle (None if all are).
    fn slowest(&self) -> Option<f64> {
        self.core.buffer.slowest()
    }

    /// The latest event time input `source` has delivered (-inf before its first).
    fn latest(&self, source: u32) -> f64 {
        self.core.buffer.latest(source)
    }

    /// Mark input `source` idle or not without releasing (an input that has records
    /// again holds the watermark back from now; the watermark never goes back).
    fn mark_idle(&mut self, source: u32, idle: bool) {
        self.core.buffer.set_idle(source, idle);
    }

    /// Decisions made since the last call: (user id bytes, JSON bytes), in order.
    fn take_keyed_decisions<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let out: Vec<(Bound<'py, PyBytes>, Bound<'py, PyBytes>)> = self
            .core
            .decisions
            .drain(..)
            .map(|d| {
                (PyBytes::new(py, d.user_id.as_bytes()), PyBytes::new(py, d.to_json().as_bytes()))
            })
            .collect();
        PyList::new(py, out)
    }

    /// The counts since the last call (a dict as `tally`), and zero from now.
    fn take_tally<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let taken = std::mem::take(&mut self.core.tally);
        tally_dict(py, &taken)
    }

    /// Count every applied event's time (bounds: seconds) and lag behind the wall
    /// clock (bounds: seconds), as the worker's histograms have them.
    fn time_steps(&mut self, step_bounds: Vec<f64>, lag_bounds: Vec<f64>) {
        self.core.timings = Some(crate::partition::Timings::new(step_bounds, lag_bounds));
    }

    /// (step bucket counts, step sum, lag bucket counts, lag sum) since the last call;
    /// each list has one count more than its bounds (the last for +Inf).
    #[allow(clippy::type_complexity)]
    fn take_timings(&mut self) -> Option<(Vec<u64>, f64, Vec<u64>, f64)> {
        let t = self.core.timings.as_mut()?.take();
        Some((t.step, t.step_sum, t.lag, t.lag_sum))
    }

    /// The users whose state changed since the last call, with their stored states:
    /// (user id bytes, state bytes), the table's writes.
    fn take_dirty<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let mut users = std::mem::take(&mut self.core.dirty);
        users.sort();
        users.dedup();
        let items: Vec<(Bound<'py, PyBytes>, Bound<'py, PyBytes>)> = users
            .into_iter()
            .filter_map(|u| {
                let s = self.core.states.get(&u)?;
                Some((PyBytes::new(py, u.as_bytes()), PyBytes::new(py, &s.dump())))
            })
            .collect();
        PyList::new(py, items)
    }
}

/// One step of the core for one user, state in and out as stored bytes: a record's
/// bytes (then `tick` is None) or a watermark tick at `tick` (then `raw` is None).
/// Returns (state, decisions as JSON bytes, rejection or None); a redelivered event
/// returns the state unchanged.
#[pyfunction]
#[pyo3(signature = (policy, state, raw=None, tick=None))]
#[allow(clippy::type_complexity)]
fn step<'py>(
    py: Python<'py>,
    policy: &Policy,
    state: Option<&[u8]>,
    raw: Option<&[u8]>,
    tick: Option<f64>,
) -> PyResult<(Option<Bound<'py, PyBytes>>, Vec<Bound<'py, PyBytes>>, Option<Bound<'py, PyTuple>>)> {
    let mut current = match state {
        Some(data) => Some(
            guarded(|| "a stored state".to_owned(), || UserState::load(data))?
                .map_err(PyValueError::new_err)?,
        ),
        None => None,
    };
    let p = &policy.inner;
    let mut decisions = Vec::new();
    let mut rejected = None;
    guarded(
        || "a step".to_owned(),
        || match (raw, tick) {
            (Some(raw), _) => match decode(raw) {
                Err(r) => rejected = Some(r),
                Ok(Event::Override(o)) if current.is_none() => {
                    rejected = Some(crate::codec::Rejection {
                        reason: "unknown_user",
                        detail: format!("no such user: {}", o.user_id.as_str()),
                        event_type: Some("override"),
                    });
                }
                Ok(event) => {
                    let s = current.get_or_insert_with(|| {
                        UserState::new(event.user_id(), event.occurred_at())
                    });
                    if !s.has_seen(event.event_id()) {
                        crate::core::step_new(p, s, &event, &mut decisions);
                    }
                }
            },
            (None, Some(at)) => {
                if let Some(s) = current.as_mut() {
                    crate::core::fire(p, s, at, &mut decisions);
                }
            }
            (None, None) => {}
        },
    )?;
    let out: Vec<Bound<'py, PyBytes>> = decisions
        .iter()
        .map(|d| PyBytes::new(py, d.to_json().as_bytes()))
        .collect();
    let rejected = rejected.map(|r| rejection_tuple(py, &r)).transpose()?;
    Ok((current.map(|s| PyBytes::new(py, &s.dump())), out, rejected))
}

/// Hands a replay's output to Python callables, in batches, holding the GIL only then.
struct PySink {
    on_decisions: Py<PyAny>,
    on_reject: Option<Py<PyAny>>,
    progress: Option<Py<PyAny>>,
    rejected: Vec<String>,
    error: Option<PyErr>,
}

impl PySink {
    fn call(&mut self, f: impl FnOnce(Python<'_>) -> PyResult<()>) -> Result<(), String> {
        Python::attach(f).map_err(|e| {
            self.error = Some(e);
            "a callback failed".to_owned()
        })
    }

    fn flush_rejected(&mut self) -> Result<(), String> {
        if self.rejected.is_empty() {
            return Ok(());
        }
        let lines = std::mem::take(&mut self.rejected);
        let Some(on_reject) = self.on_reject.as_ref().map(|f| Python::attach(|py| f.clone_ref(py)))
        else {
            return Ok(());
        };
        self.call(|py| {
            let items: Vec<Bound<'_, PyBytes>> =
                lines.iter().map(|l| PyBytes::new(py, l.as_bytes())).collect();
            on_reject.call1(py, (PyList::new(py, items)?,)).map(|_| ())
        })
    }
}

impl crate::replay::Sink for PySink {
    fn decisions(&mut self, which: usize, lines: &[String]) -> Result<(), String> {
        let f = Python::attach(|py| self.on_decisions.clone_ref(py));
        self.call(|py| {
            let items: Vec<Bound<'_, PyBytes>> =
                lines.iter().map(|l| PyBytes::new(py, l.as_bytes())).collect();
            f.call1(py, (which, PyList::new(py, items)?)).map(|_| ())
        })
    }

    fn rejected(&mut self, record: String) -> Result<(), String> {
        self.rejected.push(record);
        if self.rejected.len() >= 1024 {
            self.flush_rejected()?;
        }
        Ok(())
    }

    fn progress(&mut self, lines: u64) -> Result<(), String> {
        self.flush_rejected()?;
        match self.progress.as_ref().map(|f| Python::attach(|py| f.clone_ref(py))) {
            Some(f) => self.call(|py| f.call1(py, (lines,)).map(|_| ())),
            None => Ok(()),
        }
    }

    fn wants_rejected(&self) -> bool {
        self.on_reject.is_some()
    }
}

/// Replay logs under each policy, the whole loop in the engine (see replay.rs).
/// `on_decisions(which, [json bytes])` gets policy `which`'s decisions in order, in
/// batches; `on_reject([record bytes])` the rejected lines' dead-letter records;
/// `progress(lines)` every 65,536 lines; with `steps` (a histogram's bounds), the time
/// each applied event took is counted. Returns one tally (a dict, `finished_dict`) per
/// policy. A log that cannot be read raises `streams.errors.LogError` with one line.
#[pyfunction]
#[pyo3(signature = (policies, paths, lateness, jobs, on_decisions, on_reject=None, progress=None, steps=None, keep=Vec::new(), schedule=Vec::new()))]
#[allow(clippy::too_many_arguments)]
fn replay<'py>(
    py: Python<'py>,
    policies: Vec<PyRef<'py, Policy>>,
    paths: Vec<String>,
    lateness: f64,
    jobs: usize,
    on_decisions: Py<PyAny>,
    on_reject: Option<Py<PyAny>>,
    progress: Option<Py<PyAny>>,
    steps: Option<Vec<f64>>,
    keep: Vec<String>,
    schedule: Vec<(f64, String, PyRef<'py, Policy>, Option<String>)>,
) -> PyResult<Vec<Bound<'py, PyDict>>> {
    let compiled: Vec<Arc<CorePolicy>> = policies.iter().map(|p| p.inner.clone()).collect();
    let schedule: Vec<PolicySwitch> = schedule
        .into_iter()
        .map(|(at, policy_id, p, region)| PolicySwitch { at, policy_id, policy: p.inner.clone(), region })
        .collect();
    let mut sink = PySink { on_decisions, on_reject, progress, rejected: Vec::new(), error: None };
    let result = py.detach(|| {
        catch_unwind(AssertUnwindSafe(|| {
            let r = crate::replay::replay(
                &compiled, &paths, lateness, jobs, steps.as_deref(), &keep, &schedule, &mut sink,
            );
            let flushed = sink.flush_rejected().err();
            (r, flushed)
        }))
    });
    let (result, flushed) = match result {
        Ok(r) => r,
        Err(_) => return Err(EngineError::new_err("engine failed during replay")),
    };
    if let Some(e) = sink.error.take() {
        return Err(e);
    }
    if let Some(e) = flushed {
        return Err(EngineError::new_err(e));
    }
    match result {
        Ok(finished) => finished.iter().map(|f| finished_dict(py, f)).collect(),
        Err(crate::replay::ReplayError::Log(msg)) => {
            let cls = py.import("streams.errors")?.getattr("LogError")?;
            Err(PyErr::from_value(cls.call1((msg,))?))
        }
        Err(crate::replay::ReplayError::Sink(msg) | crate::replay::ReplayError::Engine(msg)) => {
            Err(EngineError::new_err(msg))
        }
    }
}

/// A tally's dict (`tally_dict`) with where the run ended: users, pending_deadlines,
/// buffered, watermark, and with step times asked for, step (bucket counts, +Inf
/// last) and step_sum.
fn finished_dict<'py>(py: Python<'py>, f: &crate::replay::Finished) -> PyResult<Bound<'py, PyDict>> {
    let d = tally_dict(py, &f.tally)?;
    d.set_item("users", f.users)?;
    d.set_item("pending_deadlines", f.pending_deadlines)?;
    d.set_item("buffered", f.buffered)?;
    d.set_item("watermark", f.watermark)?;
    let kept = PyDict::new(py);
    for (user, state) in &f.kept {
        kept.set_item(user, PyBytes::new(py, state))?;
    }
    d.set_item("states", kept)?;
    if let Some(t) = &f.timings {
        d.set_item("step", t.step.clone())?;
        d.set_item("step_sum", t.step_sum)?;
    }
    Ok(d)
}

/// Why a user stands where they stand (`crate::explain`): the JSON of a stored state
/// under a policy. A state that does not load raises ValueError.
#[pyfunction]
fn explain<'py>(py: Python<'py>, policy: &Policy, state: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
    let s = guarded(|| "a stored state".to_owned(), || UserState::load(state))?
        .map_err(PyValueError::new_err)?;
    let view = guarded(|| format!("the explanation of {}", s.user_id.as_str()), || {
        crate::explain::explain(&policy.inner, &s)
    })?;
    let data = serde_json::to_vec(&view).map_err(|e| EngineError::new_err(e.to_string()))?;
    Ok(PyBytes::new(py, &data))
}

/// Kafka's default partitioner (murmur2), as the worker computes a user's home.
#[pyfunction]
fn partition_for(key: &[u8], partitions: u32) -> u32 {
    crate::route::partition_for(key, partitions)
}

#[pymodule]
fn _engine(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("EngineError", m.py().get_type::<EngineError>())?;
    m.add_class::<Policy>()?;
    m.add_class::<Partition>()?;
    m.add_function(wrap_pyfunction!(decode_fields, m)?)?;
    m.add_function(wrap_pyfunction!(reload_state, m)?)?;
    m.add_function(wrap_pyfunction!(step, m)?)?;
    m.add_function(wrap_pyfunction!(replay, m)?)?;
    m.add_function(wrap_pyfunction!(partition_for, m)?)?;
    m.add_function(wrap_pyfunction!(explain, m)?)?;
    Ok(())
}
