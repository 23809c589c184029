//! systemd service notifications (`sd_notify(3)` protocol, no libsystemd): when the service
//! manager passes `NOTIFY_SOCKET`, the daemon tells it READY=1 once its listeners are up,
//! RELOADING=1 (with MONOTONIC_USEC, as Type=notify-reload wants)/READY=1 around a SIGHUP
//! reload, STOPPING=1 at shutdown, a one-line STATUS= (shown by `systemctl status`), and
//! WATCHDOG=1 keep-alives when `$WATCHDOG_USEC` asks for them ([`watchdog_interval`]; the
//! decision to send them is [`crate::watchdog`]'s). Without `NOTIFY_SOCKET` every call is a
//! no-op.
//!
//! It owns the notification socket only and knows nothing of what the server does.

use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// Where notifications go: the socket named by `NOTIFY_SOCKET`, if any.
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET` (a path, or `@name` for an abstract socket). A bad value is logged
    /// once and notifications are off: the server runs the same without them.
    pub fn from_env() -> Notifier {
        let Some(value) = std::env::var_os("NOTIFY_SOCKET") else {
            return Notifier { target: None };
        };
        let value = value.to_string_lossy().into_owned();
        match Notifier::to(&value) {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!("NOTIFY_SOCKET={value:?} unusable, no systemd notifications: {e}");
                Notifier { target: None }
            }
        }
    }

    /// Notifications to the datagram socket `addr` (a path, or `@name` for an abstract one).
    pub fn to(addr: &str) -> io::Result<Notifier> {
        let sock_addr = if let Some(name) = addr.strip_prefix('@') {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name.as_bytes())?
        } else if addr.starts_with('/') {
            SocketAddr::from_pathname(addr)?
        } else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "neither an absolute path nor @abstract",
            ));
        };
        let sock = UnixDatagram::unbound()?;
        sock.set_nonblocking(true)?;
        Ok(Notifier {
            target: Some((sock, sock_addr)),
        })
    }

    /// Whether notifications go anywhere.
    pub fn enabled(&self) -> bool {
        self.target.is_some()
    }

    /// Sends `state` (newline-separated `KEY=VALUE` assignments). Failures are logged, never
    /// fatal: a service manager that went away must not stop the seeding.
    pub fn send(&self, state: &str) {
        if let Some((sock, addr)) = &self.target {
            if let Err(e) = sock.send_to_addr(state.as_bytes(), addr) {
                tracing::debug!("systemd notification not sent: {e}");
            }
        }
    }

    pub fn ready(&self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={}", one_line(status)));
    }

    /// RELOADING=1 with the CLOCK_MONOTONIC time systemd (Type=notify-reload) asks for.
    pub fn reloading(&self) {
        self.send(&format!(
            "RELOADING=1\nMONOTONIC_USEC={}\nSTATUS=reloading the configuration",
            monotonic_usec()
        ));
    }

    pub fn stopping(&self) {
        self.send("STOPPING=1\nSTATUS=stopping: closing peers, telling trackers");
    }

    pub fn status(&self, status: &str) {
        self.send(&format!("STATUS={}", one_line(status)));
    }

    /// The watchdog keep-alive.
    pub fn watchdog(&self) {
        self.send("WATCHDOG=1");
    }
}

/// How often to send WATCHDOG=1: half of `$WATCHDOG_USEC`, when systemd sets it for this
/// process (`$WATCHDOG_PID`, if set, must be ours); `None` when no watchdog is wanted.
pub fn watchdog_interval() -> Option<std::time::Duration> {
    let var = |k: &str| std::env::var(k).ok();
    watchdog_interval_from(
        var("WATCHDOG_USEC").as_deref(),
        var("WATCHDOG_PID").as_deref(),
        std::process::id(),
    )
}

fn watchdog_interval_from(
    usec: Option<&str>,
    pid: Option<&str>,
    me: u32,
) -> Option<std::time::Duration> {
    let usec: u64 = usec?.trim().parse().ok().filter(|&u| u > 0)?;
    if pid.is_some_and(|p| p.trim().parse::<u32>().ok() != Some(me)) {
        return None;
    }
    Some(std::time::Duration::from_micros(usec / 2))
}

/// A status text cannot span lines (each line is an assignment).
fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into `ts`.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1000
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn recv(sock: &UnixDatagram) -> String {
        let mut buf = [0u8; 512];
        let n = sock.recv(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn path_and_abstract_sockets_receive_the_assignments() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        listener
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let n = Notifier::to(path.to_str().unwrap()).unwrap();
        assert!(n.enabled());
        n.ready("seeding 2 torrents\non 1 address");
        assert_eq!(
            recv(&listener),
            "READY=1\nSTATUS=seeding 2 torrents on 1 address"
        );
        n.reloading();
        let r = recv(&listener);
        let usec: u64 = r
            .lines()
            .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
            .unwrap()
            .parse()
            .unwrap();
        assert!(r.starts_with("RELOADING=1\n") && usec > 0, "{r}");
        n.stopping();
        assert!(recv(&listener).starts_with("STOPPING=1\n"));

        use std::os::linux::net::SocketAddrExt;
        let name = format!("uringseed-test-{}", std::process::id());
        let abs = UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(&name).unwrap()).unwrap();
        abs.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        Notifier::to(&format!("@{name}")).unwrap().status("x");
        assert_eq!(recv(&abs), "STATUS=x");
    }

    #[test]
    fn watchdog_interval_is_half_of_watchdog_usec_for_this_process_only() {
        let half = |u, p| watchdog_interval_from(u, p, 42);
        assert_eq!(half(Some("30000000"), None), Some(Duration::from_secs(15)));
        assert_eq!(
            half(Some("2000000"), Some("42")),
            Some(Duration::from_secs(1))
        );
        assert_eq!(half(Some("2000000"), Some("43")), None, "another process's");
        for bad in [None, Some(""), Some("0"), Some("soon"), Some("-5")] {
            assert_eq!(half(bad, None), None, "{bad:?}");
        }
    }

    #[test]
    fn bad_or_absent_targets_are_harmless() {
        assert!(Notifier::to("relative/path").is_err());
        // Nobody listens there: sending is a logged no-op, not an error or a panic.
        let dir = tempfile::tempdir().unwrap();
        let n = Notifier::to(dir.path().join("gone").to_str().unwrap()).unwrap();
        n.ready("x");
        assert!(!Notifier { target: None }.enabled());
    }
}
