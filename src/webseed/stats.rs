//! The web seed's lock-free counters: requests by status class, payload bytes, connections
//! (active, total, refused by a cap), timeouts and refused paths. The driver bumps them; the
//! metrics endpoint reads them.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// The status classes requests are counted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    Ok200,
    Partial206,
    NotModified304,
    BadRequest400,
    NotFound404,
    MethodNotAllowed405,
    RangeNotSatisfiable416,
    HeaderTooLarge431,
    Unavailable503,
    VersionNotSupported505,
    Other,
}

impl Status {
    /// Every class, in label order.
    pub const ALL: [Status; 11] = [
        Status::Ok200,
        Status::Partial206,
        Status::NotModified304,
        Status::BadRequest400,
        Status::NotFound404,
        Status::MethodNotAllowed405,
        Status::RangeNotSatisfiable416,
        Status::HeaderTooLarge431,
        Status::Unavailable503,
        Status::VersionNotSupported505,
        Status::Other,
    ];

    /// The class of a status code.
    pub fn of(status: u16) -> Status {
        match status {
            200 => Status::Ok200,
            206 => Status::Partial206,
            304 => Status::NotModified304,
            400 => Status::BadRequest400,
            404 => Status::NotFound404,
            405 => Status::MethodNotAllowed405,
            416 => Status::RangeNotSatisfiable416,
            431 => Status::HeaderTooLarge431,
            503 => Status::Unavailable503,
            505 => Status::VersionNotSupported505,
            _ => Status::Other,
        }
    }

    /// The metric label: "200", "206", ..., "other".
    pub fn label(&self) -> &'static str {
        match self {
            Status::Ok200 => "200",
            Status::Partial206 => "206",
            Status::NotModified304 => "304",
            Status::BadRequest400 => "400",
            Status::NotFound404 => "404",
            Status::MethodNotAllowed405 => "405",
            Status::RangeNotSatisfiable416 => "416",
            Status::HeaderTooLarge431 => "431",
            Status::Unavailable503 => "503",
            Status::VersionNotSupported505 => "505",
            Status::Other => "other",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Counters of one web seed listener (or of all of them).
#[derive(Debug, Default)]
pub struct WebStats {
    requests: [AtomicU64; 11],
    /// File bytes sent in bodies.
    pub payload_bytes: AtomicU64,
    /// Connections open now.
    pub connections_active: AtomicI64,
    /// Connections accepted since start.
    pub connections_total: AtomicU64,
    /// Connections closed at once because a cap was reached.
    pub connections_refused: AtomicU64,
    /// Connections closed for a deadline (slow head, slow reader, idle keep-alive).
    pub timeouts: AtomicU64,
    /// Targets refused by `split_target`.
    pub refused_paths: AtomicU64,
}

impl WebStats {
    pub fn new() -> WebStats {
        WebStats::default()
    }

    /// Counts one request answered with `status`.
    pub fn count(&self, status: u16) {
        self.requests[Status::of(status).index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Requests answered in class `s` so far.
    pub fn requests(&self, s: Status) -> u64 {
        self.requests[s.index()].load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_class_and_labels_are_distinct() {
        let s = WebStats::new();
        for code in [
            200, 200, 206, 304, 400, 404, 405, 416, 431, 503, 505, 500, 413,
        ] {
            s.count(code);
        }
        assert_eq!(s.requests(Status::Ok200), 2);
        assert_eq!(s.requests(Status::Other), 2);
        for st in Status::ALL {
            if !matches!(st, Status::Ok200 | Status::Other) {
                assert_eq!(s.requests(st), 1, "{st:?}");
            }
            assert_eq!(Status::ALL[st.index()], st);
        }
        let labels: std::collections::HashSet<_> = Status::ALL.iter().map(|s| s.label()).collect();
        assert_eq!(labels.len(), Status::ALL.len());
        assert_eq!(Status::of(206).label(), "206");
    }
}
