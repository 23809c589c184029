//! This process's standard `process_*` metrics: those of the prometheus crate's process
//! collector, except `process_cpu_seconds_total`, which that collector rounds down to whole
//! seconds (so a rate over a minute of a lightly loaded server reads 0). Here it is the user
//! plus system time of every thread as the kernel counts it (getrusage, microseconds).
//!
//! It reads this process's own figures only and knows nothing of the server.

use prometheus::core::{Collector, Desc};
use prometheus::process_collector::ProcessCollector;
use prometheus::proto::MetricFamily;

const CPU: &str = "process_cpu_seconds_total";
const CPU_HELP: &str = "Total user and system CPU time spent in seconds.";

/// User plus system CPU time this process has used, in seconds.
pub fn cpu_seconds() -> Option<f64> {
    // SAFETY: an all-zero rusage is a valid value for getrusage to fill in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes one rusage into `usage`.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return None;
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Some(secs(usage.ru_utime) + secs(usage.ru_stime))
}

/// The process collector with a fractional CPU counter in place of its own.
pub struct ProcessMetrics {
    inner: ProcessCollector,
}

impl ProcessMetrics {
    pub fn for_self() -> ProcessMetrics {
        ProcessMetrics {
            inner: ProcessCollector::for_self(),
        }
    }
}

impl Collector for ProcessMetrics {
    /// The inner collector's descriptions, whose CPU counter has the same name and help as
    /// ours: each name stays unique in a registry.
    fn desc(&self) -> Vec<&Desc> {
        self.inner.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut families = self.inner.collect();
        families.retain(|f| f.name() != CPU);
        if let Some(secs) = cpu_seconds() {
            let c = prometheus::Counter::new(CPU, CPU_HELP).expect("valid metric");
            c.inc_by(secs);
            families.extend(c.collect());
        }
        families
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_seconds_are_fractional_and_exported_once() {
        // Some work, so the figure is not 0.
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert_ne!(x, 1);
        let reg = prometheus::Registry::new();
        reg.register(Box::new(ProcessMetrics::for_self())).unwrap();
        let families = reg.gather();
        let cpu: Vec<_> = families.iter().filter(|f| f.name() == CPU).collect();
        assert_eq!(cpu.len(), 1);
        let v = cpu[0].get_metric()[0].get_counter().get_value();
        assert!(v > 0.0 && v.fract() != 0.0, "{v}");
        for other in [
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_start_time_seconds",
        ] {
            assert_eq!(
                families.iter().filter(|f| f.name() == other).count(),
                1,
                "{other}"
            );
        }
    }
}
