//! The io_uring backend (tokio-uring): one runtime per worker thread, piece reads and socket
//! reads/writes as io_uring operations, data files opened once per thread.

use super::conn::{self, Disk, Stream};
use super::Worker;
use crate::metainfo::InfoHash;
use crate::server::TorrentCtx;
use bytes::Bytes;
use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::rc::Rc;
use tokio_uring::buf::BoundedBuf;

/// True if this kernel and seccomp profile let us create an io_uring.
pub fn available() -> Result<(), io::Error> {
    tokio_uring::Runtime::new(&tokio_uring::builder()).map(drop)
}

struct UringStream(tokio_uring::net::TcpStream);

impl Stream for UringStream {
    async fn read(&self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        self.0.read(buf).await
    }

    async fn write_all(&self, mut bufs: Vec<Bytes>) -> io::Result<()> {
        while !bufs.is_empty() {
            let rest = bufs.split_off(bufs.len().min(super::MAX_IOVECS));
            while !bufs.is_empty() {
                let (res, b) = self.0.writev(bufs).await;
                bufs = b;
                match res? {
                    0 => return Err(io::ErrorKind::WriteZero.into()),
                    n => conn::advance(&mut bufs, n),
                }
            }
            bufs = rest;
        }
        Ok(())
    }

    fn shutdown(&self) {
        let _ = self.0.shutdown(std::net::Shutdown::Both);
    }
}

/// Per-thread table of data files opened for io_uring reads.
#[derive(Default)]
struct UringDisk {
    files: RefCell<HashMap<(InfoHash, usize), Rc<tokio_uring::fs::File>>>,
}

impl UringDisk {
    fn file(&self, ctx: &TorrentCtx, index: usize) -> io::Result<Rc<tokio_uring::fs::File>> {
        let key = (ctx.view.info_hash, index);
        if let Some(f) = self.files.borrow().get(&key) {
            return Ok(f.clone());
        }
        let std_file = ctx.files[index]
            .as_ref()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "data file is not open"))?
            .try_clone()?;
        let f = Rc::new(tokio_uring::fs::File::from_std(std_file));
        self.files.borrow_mut().insert(key, f.clone());
        Ok(f)
    }
}

impl Disk for UringDisk {
    async fn read_run(&self, ctx: &TorrentCtx, start: u64, len: usize) -> io::Result<Vec<u8>> {
        let mut buf: Vec<u8> = Vec::with_capacity(len);
        for span in ctx.view.layout.spans(start, len as u64) {
            let at = buf.len();
            let n = span.len as usize;
            if span.pad {
                buf.resize(at + n, 0);
                continue;
            }
            let file = self.file(ctx, span.file)?;
            let (res, slice) = file
                .read_exact_at(buf.slice(at..at + n), span.file_offset)
                .await;
            buf = slice.into_inner();
            res?;
        }
        Ok(buf)
    }
}

/// Runs one worker thread's accept loops and connections until shutdown.
pub fn run(worker: Worker) -> io::Result<()> {
    let rt = tokio_uring::Runtime::new(tokio_uring::builder().entries(1024))?;
    rt.block_on(async move {
        let disk = Rc::new(UringDisk::default());
        let active = Rc::new(std::cell::Cell::new(0usize));
        let mut accepts = Vec::new();
        for listener in worker.listeners {
            let listener = tokio_uring::net::TcpListener::from_std(listener);
            let (shared, disk, active) = (worker.shared.clone(), disk.clone(), active.clone());
            accepts.push(tokio_uring::spawn(async move {
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
                    let (shared, disk) = (shared.clone(), disk.clone());
                    tokio_uring::spawn(async move {
                        conn::serve(shared, UringStream(stream), &*disk, addr, None).await;
                        drop(guard);
                    });
                }
            }));
        }
        {
            let (shared, active) = (worker.shared.clone(), active.clone());
            let disk = disk.clone();
            let mut rx = worker.outgoing;
            tokio_uring::spawn(async move {
                let mut shutdown = shared.shutdown.clone();
                loop {
                    let o = tokio::select! {
                        o = rx.recv() => match o { Some(o) => o, None => break },
                        _ = shutdown.changed() => break,
                    };
                    let Some(guard) = super::admit(&shared, &active, o.addr, Some(&o)) else {
                        continue;
                    };
                    let (shared, disk) = (shared.clone(), disk.clone());
                    tokio_uring::spawn(async move {
                        let _ = &disk;
                        match tokio::time::timeout(
                            super::CONNECT_TIMEOUT,
                            tokio_uring::net::TcpStream::connect(o.addr),
                        )
                        .await
                        {
                            Ok(Ok(stream)) => {
                                let _ = stream.set_nodelay(true);
                                conn::serve(
                                    shared,
                                    UringStream(stream),
                                    &*disk,
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
    });
    Ok(())
}
