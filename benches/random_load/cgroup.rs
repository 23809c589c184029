//! A memory cgroup for `benches/random_load.rs`'s cold scenario: created for the run with a
//! memory limit (page cache included), processes started inside it, and `fio` run inside it as
//! the disk's limit. cgroup v1 (`/sys/fs/cgroup/memory`) or v2 (`memory.max`); removed at the
//! end.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Group {
    dir: PathBuf,
}

impl Group {
    /// A new group limited to `mb` MiB, or why there can be none here.
    pub fn create(mb: u64) -> Result<Group, String> {
        let name = format!("uringseed-bench-{}", std::process::id());
        let bytes = (mb << 20).to_string();
        let v1 = Path::new("/sys/fs/cgroup/memory");
        let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers");
        let (dir, limit) = if v1.join("cgroup.procs").exists() {
            (v1.join(&name), "memory.limit_in_bytes")
        } else if std::fs::read_to_string(v2)
            .is_ok_and(|c| c.split_whitespace().any(|w| w == "memory"))
        {
            (Path::new("/sys/fs/cgroup").join(&name), "memory.max")
        } else {
            return Err("no memory cgroup controller mounted".into());
        };
        std::fs::create_dir(&dir)
            .map_err(|e| format!("cannot create {}: {e} (needs root)", dir.display()))?;
        let group = Group { dir };
        std::fs::write(group.dir.join(limit), &bytes)
            .map_err(|e| format!("cannot set {limit} in {}: {e}", group.dir.display()))?;
        Ok(group)
    }

    pub fn describe(&self) -> String {
        self.dir.display().to_string()
    }

    /// `cmd`, started inside the group (a shell moves itself in, then execs it).
    pub fn wrap(&self, cmd: Command) -> Command {
        let mut w = Command::new("sh");
        w.arg("-c")
            .arg(format!(
                "echo $$ > {}/cgroup.procs && exec \"$@\"",
                self.dir.display()
            ))
            .arg("sh")
            .arg(cmd.get_program())
            .args(cmd.get_args());
        for (k, v) in cmd.get_envs() {
            match v {
                Some(v) => w.env(k, v),
                None => w.env_remove(k),
            };
        }
        if let Some(d) = cmd.get_current_dir() {
            w.current_dir(d);
        }
        w
    }

    /// fio's random buffered reads of `bs` bytes over `paths` (io_uring, `jobs` jobs each with
    /// `depth` in flight) inside the group, for `secs` seconds after the same warm-up the
    /// leechers get; its MB/s, or None if it failed.
    pub fn fio(
        &self,
        paths: &[PathBuf],
        bs: u64,
        depth: usize,
        jobs: usize,
        warmup: u64,
        secs: u64,
    ) -> Option<f64> {
        let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        let mut fio = Command::new("fio");
        fio.args([
            "--name=random-pieces",
            "--rw=randread",
            "--ioengine=io_uring",
            "--direct=0",
            "--invalidate=1",
            "--norandommap",
            "--randrepeat=0",
            "--time_based",
            "--group_reporting",
            "--output-format=json",
        ])
        .arg(format!("--filename={}", names.join(":")))
        .arg(format!("--bs={bs}"))
        .arg(format!("--iodepth={depth}"))
        .arg(format!("--numjobs={jobs}"))
        .arg(format!("--ramp_time={warmup}"))
        .arg(format!("--runtime={secs}"));
        let out = self.wrap(fio).output().ok()?;
        if !out.status.success() {
            println!("fio failed: {}", String::from_utf8_lossy(&out.stderr));
            return None;
        }
        let text = String::from_utf8_lossy(&out.stdout);
        // fio may print notes before its JSON.
        let json: serde_json::Value = serde_json::from_str(&text[text.find('{')?..]).ok()?;
        Some(json["jobs"][0]["read"]["bw_bytes"].as_f64()? / 1e6)
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.dir);
    }
}

pub fn has_fio() -> bool {
    Command::new("fio")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}
