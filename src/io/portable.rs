//! The portable backend (tokio on epoll, `pread` for piece data), used when io_uring is not
//! available, for example under Docker's default seccomp profile.

use super::conn::{self, Disk, Stream};
use super::Worker;
use crate::server::TorrentCtx;
use bytes::Bytes;
use std::io::{self, IoSlice};
use std::os::unix::fs::FileExt;
use std::rc::Rc;

struct TokioStream(tokio::net::TcpStream);

impl Stream for TokioStream {
    async fn read(&self, mut buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        loop {
            if let Err(e) = self.0.readable().await {
                return (Err(e), buf);
            }
            match self.0.try_read(&mut buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                r => return (r, buf),
            }
        }
    }

    async fn write_all(&self, mut bufs: Vec<Bytes>) -> io::Result<()> {
        while !bufs.is_empty() {
            self.0.writable().await?;
            let slices: Vec<IoSlice<'_>> = bufs
                .iter()
                .take(super::MAX_IOVECS)
                .map(|b| IoSlice::new(b))
                .collect();
            match self.0.try_write_vectored(&slices) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => conn::advance(&mut bufs, n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn shutdown(&self) {
        let _ = socket2::SockRef::from(&self.0).shutdown(std::net::Shutdown::Both);
    }
}

struct PreadDisk;

impl Disk for PreadDisk {
    async fn read_run(&self, ctx: &TorrentCtx, start: u64, len: usize) -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        let mut at = 0usize;
        for span in ctx.view.layout.spans(start, len as u64) {
            let n = span.len as usize;
            if !span.pad {
                let file = ctx.files[span.file].as_ref().ok_or_else(|| {
                    io::Error::new(io::ErrorKind::NotFound, "data file is not open")
                })?;
                file.read_exact_at(&mut buf[at..at + n], span.file_offset)?;
            }
            at += n;
        }
        Ok(buf)
    }
}

/// Runs one worker thread's accept loops and connections until shutdown.
pub fn run(worker: Worker) -> io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let active = Rc::new(std::cell::Cell::new(0usize));
        let mut accepts = Vec::new();
        for listener in worker.listeners {
            let listener = tokio::net::TcpListener::from_std(listener)?;
            let (shared, active) = (worker.shared.clone(), active.clone());
            accepts.push(tokio::task::spawn_local(async move {
                let mut shutdown = shared.shutdown.clone();
                loop {
                    let accepted = tokio::select! {
                        r = listener.accept() => r,
                        _ = shutdown.changed() => break,
                    };
                    let (stream, addr) = match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            super::accept_error(&e).await;
                            continue;
                        }
                    };
                    let Some(guard) = super::admit(&shared, &active, addr, None) else {
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    let shared = shared.clone();
                    tokio::task::spawn_local(async move {
                        conn::serve(shared, TokioStream(stream), &PreadDisk, addr, None).await;
                        drop(guard);
                    });
                }
            }));
        }
        {
            let (shared, active) = (worker.shared.clone(), active.clone());
            let mut rx = worker.outgoing;
            tokio::task::spawn_local(async move {
                let mut shutdown = shared.shutdown.clone();
                loop {
                    let o = tokio::select! {
                        o = rx.recv() => match o { Some(o) => o, None => break },
                        _ = shutdown.changed() => break,
                    };
                    let Some(guard) = super::admit(&shared, &active, o.addr, Some(&o)) else {
                        continue;
                    };
                    let shared = shared.clone();
                    tokio::task::spawn_local(async move {
                        match tokio::time::timeout(
                            super::CONNECT_TIMEOUT,
                            tokio::net::TcpStream::connect(o.addr),
                        )
                        .await
                        {
                            Ok(Ok(stream)) => {
                                let _ = stream.set_nodelay(true);
                                conn::serve(
                                    shared,
                                    TokioStream(stream),
                                    &PreadDisk,
                                    o.addr,
                                    Some(o.info_hash),
                                )
                                .await;
                            }
                            Ok(Err(e)) => super::dial_failed(&shared, &o, &e.to_string()),
                            Err(_) => super::dial_failed(&shared, &o, "timed out"),
                        }
                        drop(guard);
                    });
                }
            });
        }
        for a in accepts {
            let _ = a.await;
        }
        super::drain(&active).await;
        Ok::<(), io::Error>(())
    })
}
