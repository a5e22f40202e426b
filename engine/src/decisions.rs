//! Decisions, schema v1: the values the core returns and the JSON they travel as,
//! written as the Python engine's `orjson.dumps(decision.as_dict())` writes them.

use crate::pyfmt::{write_int, write_json_float, write_json_str, write_py_repr, write_time};
use blake2::digest::{Update, VariableOutput};
use blake2::Blake2bVar;
use std::sync::Arc;

/// A number as Python holds it: an int or a float (JSON writes `3` and `3.0`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Num {
    Int(i64),
    Float(f64),
}

impl Num {
    pub fn as_f64(self) -> f64 {
        match self {
            Num::Int(i) => i as f64,
            Num::Float(f) => f,
        }
    }

    /// `str()` of the value, as `str.format` writes it.
    pub fn write_py(self, out: &mut String) {
        match self {
            Num::Int(i) => write_int(i, out),
            Num::Float(f) => write_py_repr(f, out),
        }
    }

    pub fn write_json(self, out: &mut String) {
        match self {
            Num::Int(i) => write_int(i, out),
            Num::Float(f) => write_json_float(f, out),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Reason {
    pub code: &'static str,
    pub message: String,
    pub observed: Num,
    pub threshold: Num,
}

pub const STATUSES: [&str; 4] = ["active", "warned", "downgraded", "closed"];

#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub decision_id: String,
    pub user_id: String,
    /// warn | downgrade | close | restore
    pub action: &'static str,
    pub status_before: &'static str,
    pub status_after: &'static str,
    pub limit_factor: Option<f64>,
    pub reasons: Vec<Reason>,
    /// None when a deadline fired it.
    pub trigger_event_id: Option<String>,
    pub event_time: f64,
    /// warn only
    pub effective_at: Option<f64>,
    pub supersedes: Option<String>,
    /// Who made an override's decision; None (and not written) for the engine's own.
    pub operator: Option<String>,
    /// The version of the policy that made it.
    pub policy_version: Arc<str>,
}

fn write_opt_str(value: Option<&str>, out: &mut String) {
    match value {
        Some(s) => write_json_str(s, out),
        None => out.push_str("null"),
    }
}

impl Decision {
    /// The decision's JSON, byte for byte as the Python engine writes it.
    pub fn write_json(&self, out: &mut String) {
        out.push_str("{\"decision_id\":");
        write_json_str(&self.decision_id, out);
        out.push_str(",\"user_id\":");
        write_json_str(&self.user_id, out);
        out.push_str(",\"action\":\"");
        out.push_str(self.action);
        out.push_str("\",\"status_before\":\"");
        out.push_str(self.status_before);
        out.push_str("\",\"status_after\":\"");
        out.push_str(self.status_after);
        out.push_str("\",\"limit_factor\":");
        match self.limit_factor {
            Some(f) => write_json_float(f, out),
            None => out.push_str("null"),
        }
        out.push_str(",\"reasons\":[");
        for (i, r) in self.reasons.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str("{\"code\":\"");
            out.push_str(r.code);
            out.push_str("\",\"message\":");
            write_json_str(&r.message, out);
            out.push_str(",\"observed\":");
            r.observed.write_json(out);
            out.push_str(",\"threshold\":");
            r.threshold.write_json(out);
            out.push('}');
        }
        out.push_str("],\"policy_version\":");
        write_json_str(&self.policy_version, out);
        out.push_str(",\"trigger_event_id\":");
        write_opt_str(self.trigger_event_id.as_deref(), out);
        out.push_str(",\"event_time\":\"");
        write_time(self.event_time, out);
        out.push_str("\",\"effective_at\":");
        match self.effective_at {
            Some(t) => {
                out.push('"');
                write_time(t, out);
                out.push('"');
            }
            None => out.push_str("null"),
        }
        out.push_str(",\"supersedes\":");
        write_opt_str(self.supersedes.as_deref(), out);
        if let Some(operator) = &self.operator {
            out.push_str(",\"operator\":");
            write_json_str(operator, out);
        }
        out.push('}');
    }

    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(512);
        self.write_json(&mut out);
        out
    }
}

/// `decisions.decision_id`: "d-" and the 10-byte BLAKE2b of the version, user, sequence
/// number, action and time (Python's float repr), joined by U+001F.
pub fn decision_id(policy_version: &str, user_id: &str, seq: i64, action: &str, at: f64) -> String {
    let mut text = String::with_capacity(policy_version.len() + user_id.len() + action.len() + 48);
    for part in [policy_version, "\x1f", user_id, "\x1f"] {
        text.push_str(part);
    }
    write_int(seq, &mut text);
    for part in ["\x1f", action, "\x1f"] {
        text.push_str(part);
    }
    write_py_repr(at, &mut text);
    let mut digest = [0u8; 10];
    if let Ok(mut hasher) = Blake2bVar::new(10) {
        hasher.update(text.as_bytes());
        let _ = hasher.finalize_variable(&mut digest);
    }
    let mut id = String::with_capacity(22);
    id.push_str("d-");
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for b in digest {
        id.push(char::from(HEX[usize::from(b >> 4)]));
        id.push(char::from(HEX[usize::from(b & 15)]));
    }
    id
}
