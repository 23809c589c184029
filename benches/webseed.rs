//! HTTP range serving (the BEP 19 web seed, `serve --webseed`): uringseed against nginx, same
//! run, same file, same load.
//!
//! Run: `cargo bench --bench webseed`. Writes a file (URINGSEED_BENCH_MB, default 1024 MiB),
//! makes a torrent of it, and for each connection count in URINGSEED_BENCH_CONNS (default
//! "1,16") runs URINGSEED_BENCH_ROUNDS (default 2) rounds of nginx then uringseed, each for
//! URINGSEED_BENCH_SECS (default 8) seconds, the file read once into the page cache before each.
//! The load generator is this process: one thread per connection, a blocking keep-alive
//! connection each, issuing `GET /NAME` with `Range: bytes=a-b` of pseudo-random lengths of
//! 256 KiB to 4 MiB at 16 KiB-aligned offsets, reading each whole body (Content-Length and
//! Content-Range checked, its first and last 64 bytes compared with the file). Reports MB/s,
//! the server's CPU seconds per GiB sent (utime + stime from /proc: for nginx its master and
//! every worker) and the ratios uringseed / nginx of the sums over the rounds.
//!
//! nginx (Debian's, `apt-get install nginx`) runs unprivileged in a temp prefix with its own
//! nginx.conf: `sendfile on; tcp_nopush on; keepalive_requests 100000; worker_processes 2;
//! access_log off`. Without nginx its rows are skipped with a message. URINGSEED_BENCH_BIN
//! measures another uringseed binary. On 2 cores the load generator competes with the server.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const NAME: &str = "webseed-bench.bin";
const MIN_LEN: u64 = 256 << 10;
const MAX_LEN: u64 = 4 << 20;
const ALIGN: u64 = 16 << 10;

fn bench_bin() -> String {
    std::env::var("URINGSEED_BENCH_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_uringseed").into())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

/// utime + stime of `pid` and, with `children`, of every process whose parent it is; and how
/// many processes that was.
fn tree_cpu_secs(pid: u32, children: bool) -> (f64, usize) {
    let (mut total, mut procs) = (cpu_secs(pid), 1);
    if children {
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(child) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, r)| r.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            if ppid == Some(pid) {
                total += cpu_secs(child);
                procs += 1;
            }
        }
    }
    (total, procs)
}

/// A server under test: its process, the address it serves HTTP on, and whether its CPU
/// includes its children's (nginx's workers).
struct Server {
    child: Child,
    addr: SocketAddr,
    with_children: bool,
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.with_children {
            // nginx: SIGQUIT to the master (graceful: its workers exit with it).
            let _ = Command::new("/bin/sh")
                .arg("-c")
                .arg(format!("kill -s QUIT {}", self.child.id()))
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn nginx_bin() -> Option<PathBuf> {
    ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// nginx serving `root` on a free loopback port from its own prefix `prefix`.
fn start_nginx(bin: &Path, prefix: &Path, root: &Path) -> Server {
    let port = free_port();
    std::fs::create_dir_all(prefix.join("logs")).unwrap();
    // As root its workers would switch to nobody, who cannot read the temp dir.
    let user = if unsafe { libc::geteuid() } == 0 {
        "user root;\n"
    } else {
        ""
    };
    let p = prefix.display();
    let conf = format!(
        "{user}worker_processes 2;\nerror_log {p}/logs/error.log;\nevents {{ worker_connections 1024; }}\n\
         http {{\n  sendfile on; tcp_nopush on; keepalive_requests 100000; access_log off;\n  \
         default_type application/octet-stream;\n  client_body_temp_path {p}/body;\n  \
         proxy_temp_path {p}/proxy;\n  fastcgi_temp_path {p}/fastcgi;\n  uwsgi_temp_path {p}/uwsgi;\n  \
         scgi_temp_path {p}/scgi;\n  server {{ listen 127.0.0.1:{port}; root {}; }}\n}}\n",
        root.display()
    );
    std::fs::write(prefix.join("nginx.conf"), conf).unwrap();
    let child = Command::new(bin)
        .arg("-p")
        .arg(prefix)
        .args(["-c", "nginx.conf", "-e"])
        .arg(prefix.join("logs/error.log"))
        .arg("-g")
        .arg(format!("daemon off; pid {p}/nginx.pid;"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nginx");
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_serving(addr);
    Server {
        child,
        addr,
        with_children: true,
    }
}

/// `uringseed serve --torrent T --data DIR --webseed 127.0.0.1:W`, ready.
fn start_uringseed(torrent: &Path, dir: &Path, config: &Path) -> Server {
    let port = free_port();
    let mut cmd = serve_cmd(&bench_bin(), torrent, dir, config);
    cmd.args(["--webseed", &format!("127.0.0.1:{port}")]);
    let (child, _) = spawn_server(cmd, "listening: ", Some("ready: "));
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_serving(addr);
    Server {
        child,
        addr,
        with_children: false,
    }
}

/// Waits (at most 30 s) until a 4-byte range GET is answered 206.
fn wait_serving(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(s) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            let mut c = Client::new(s);
            if c.range(0, 4).is_ok_and(|(status, _)| status == 206) {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{addr} serves no range within 30 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One keep-alive connection of the load generator.
struct Client {
    s: TcpStream,
    head: Vec<u8>,
    body: Vec<u8>,
}

impl Client {
    fn new(s: TcpStream) -> Client {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.set_nodelay(true).unwrap();
        Client {
            s,
            head: Vec::with_capacity(1024),
            body: vec![0u8; MAX_LEN as usize],
        }
    }

    /// GET bytes `a..a+len`; returns the status and reads the body into `self.body[..len]`.
    fn range(&mut self, a: u64, len: u64) -> Result<(u16, usize), String> {
        let b = a + len - 1;
        let req =
            format!("GET /{NAME} HTTP/1.1\r\nHost: 127.0.0.1\r\nRange: bytes={a}-{b}\r\n\r\n");
        self.s
            .write_all(req.as_bytes())
            .map_err(|e| e.to_string())?;
        // The head, a byte at a time is too slow: read chunks, keep what follows it.
        self.head.clear();
        let mut chunk = [0u8; 4096];
        let end = loop {
            let n = self.s.read(&mut chunk).map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("closed".into());
            }
            self.head.extend_from_slice(&chunk[..n]);
            if let Some(at) = self.head.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
        };
        let text = String::from_utf8_lossy(&self.head[..end]).to_ascii_lowercase();
        let status: u16 = text
            .get(9..12)
            .and_then(|c| c.parse().ok())
            .ok_or("status")?;
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().to_string())
        };
        let clen: usize = field("content-length:")
            .and_then(|v| v.parse().ok())
            .ok_or("no Content-Length")?;
        if status == 206 {
            if clen as u64 != len {
                return Err(format!("Content-Length {clen} for {len} bytes"));
            }
            let cr = field("content-range:").unwrap_or_default();
            if !cr.starts_with(&format!("bytes {a}-{b}/")) {
                return Err(format!("Content-Range {cr:?} for {a}-{b}"));
            }
        }
        let have = self.head.len() - end;
        self.body[..have].copy_from_slice(&self.head[end..]);
        let mut got = have;
        while got < clen {
            let n = self
                .s
                .read(&mut self.body[got..clen])
                .map_err(|e| e.to_string())?;
            if n == 0 {
                return Err(format!("closed after {got} of {clen} body bytes"));
            }
            got += n;
        }
        Ok((status, clen))
    }
}

/// `conns` connections issuing random ranges of `data` (the file) for `secs`; body bytes read.
fn load(addr: SocketAddr, conns: usize, secs: f64, data: Arc<memmap2::Mmap>) -> u64 {
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..conns)
        .map(|i| {
            let (stop, data) = (stop.clone(), data.clone());
            std::thread::spawn(move || {
                let mut c = Client::new(TcpStream::connect(addr).unwrap());
                let mut x =
                    0x9E37_79B9_7F4A_7C15u64 ^ (i as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03);
                let mut rand = move || {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x
                };
                let size = data.len() as u64;
                let mut bytes = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let len = MIN_LEN + rand() % (MAX_LEN - MIN_LEN + 1);
                    let a = rand() % ((size - len) / ALIGN + 1) * ALIGN;
                    let (status, n) = c.range(a, len).unwrap_or_else(|e| panic!("{addr}: {e}"));
                    assert_eq!(status, 206, "{addr}: range {a}+{len}");
                    let (a, n_u) = (a as usize, n);
                    assert!(
                        c.body[..64] == data[a..a + 64]
                            && c.body[n_u - 64..n_u] == data[a + n_u - 64..a + n_u],
                        "{addr}: wrong bytes for range {a}+{len}"
                    );
                    bytes += n as u64;
                }
                bytes
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(secs));
    stop.store(true, Ordering::Relaxed);
    threads.into_iter().map(|t| t.join().unwrap()).sum()
}

#[derive(Default, Clone, Copy)]
struct Sum {
    bytes: u64,
    secs: f64,
    cpu: f64,
    /// Processes whose CPU was counted (nginx: master and workers).
    procs: usize,
}

impl Sum {
    fn mbps(&self) -> f64 {
        self.bytes as f64 / self.secs / 1e6
    }
    fn add(self, o: Sum) -> Sum {
        Sum {
            bytes: self.bytes + o.bytes,
            secs: self.secs + o.secs,
            cpu: self.cpu + o.cpu,
            procs: o.procs,
        }
    }
    fn cpu_per_gib(&self) -> f64 {
        self.cpu / (self.bytes as f64 / (1u64 << 30) as f64)
    }
}

fn measure(server: &Server, conns: usize, secs: f64, data: &Arc<memmap2::Mmap>) -> Sum {
    let pid = server.child.id();
    let (cpu0, procs) = tree_cpu_secs(pid, server.with_children);
    let t = Instant::now();
    let bytes = load(server.addr, conns, secs, data.clone());
    let secs = t.elapsed().as_secs_f64();
    let (cpu1, _) = tree_cpu_secs(pid, server.with_children);
    let cpu = cpu1 - cpu0;
    Sum {
        bytes,
        secs,
        cpu,
        procs,
    }
}

fn row(name: &str, round: usize, s: &Sum) {
    println!(
        "{name:<28} {round:>5} {:>9.0} {:>17.3} {:>6}",
        s.mbps(),
        s.cpu_per_gib(),
        s.procs
    );
}

fn warm(file: &Path) {
    let mut f = std::fs::File::open(file).unwrap();
    let mut buf = vec![0u8; 4 << 20];
    while f.read(&mut buf).unwrap() > 0 {}
}

fn main() {
    let mb = env("URINGSEED_BENCH_MB", 1024);
    let secs = env("URINGSEED_BENCH_SECS", 8) as f64;
    let rounds = env("URINGSEED_BENCH_ROUNDS", 2);
    let conns: Vec<usize> = std::env::var("URINGSEED_BENCH_CONNS")
        .unwrap_or_else(|_| "1,16".into())
        .split(',')
        .filter_map(|c| c.trim().parse().ok())
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(NAME);
    write_pseudo_random(&file, mb);
    let data =
        Arc::new(unsafe { memmap2::Mmap::map(&std::fs::File::open(&file).unwrap()).unwrap() });
    let nginx = nginx_bin();
    if nginx.is_none() {
        println!("SKIPPED nginx rows: nginx not installed (apt-get install nginx)");
    }
    let torrent = dir.path().join("webseed-bench.torrent");
    let uring = if std::env::var_os("URINGSEED_BENCH_NO_URINGSEED").is_some() {
        println!("SKIPPED uringseed rows: URINGSEED_BENCH_NO_URINGSEED is set");
        false
    } else {
        make_torrent(&file, &torrent);
        true
    };
    let config = dir.path().join("bench.toml");
    std::fs::write(
        &config,
        "[metrics]\nenabled = false\n[tracker]\nannounce = false\n",
    )
    .unwrap();
    println!(
        "webseed benchmark: {mb} MiB file in page cache, ranges of 256 KiB-4 MiB at 16 KiB-aligned offsets, \
         {secs} s per row, {rounds} round(s) alternating nginx and uringseed ({})",
        bench_bin()
    );
    println!(
        "{:<28} {:>5} {:>9} {:>17} {:>6}",
        "server", "round", "MB/s", "server CPU s/GiB", "procs"
    );
    let mut totals: Vec<(usize, Sum, Sum)> = Vec::new();
    for &n in &conns {
        let (mut ng, mut us) = (Sum::default(), Sum::default());
        for round in 1..=rounds {
            if let Some(bin) = &nginx {
                warm(&file);
                let server = start_nginx(
                    bin,
                    &dir.path().join(format!("nginx-{n}-{round}")),
                    dir.path(),
                );
                let s = measure(&server, n, secs, &data);
                drop(server);
                row(&format!("nginx, {n} conn(s)"), round, &s);
                ng = ng.add(s);
            }
            if uring {
                warm(&file);
                let server = start_uringseed(&torrent, dir.path(), &config);
                let s = measure(&server, n, secs, &data);
                drop(server);
                row(&format!("uringseed, {n} conn(s)"), round, &s);
                us = us.add(s);
            }
        }
        totals.push((n, ng, us));
    }
    if nginx.is_none() || !uring {
        return;
    }
    println!("\nuringseed / nginx over all rounds (target: throughput >= 0.9, CPU/GiB <= 1.1)");
    println!(
        "{:<10} {:>12} {:>12} {:>14} {:>10} {:>12} {:>14}",
        "conns",
        "nginx MB/s",
        "uring MB/s",
        "throughput x",
        "nginx s/GiB",
        "uring s/GiB",
        "CPU/GiB x"
    );
    for (n, ng, us) in totals {
        println!(
            "{n:<10} {:>12.0} {:>12.0} {:>14.2} {:>10.3} {:>12.3} {:>14.2}",
            ng.mbps(),
            us.mbps(),
            us.mbps() / ng.mbps(),
            ng.cpu_per_gib(),
            us.cpu_per_gib(),
            us.cpu_per_gib() / ng.cpu_per_gib()
        );
    }
}
