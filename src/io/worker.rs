//! One worker thread's life, the same for every backend: accept loops on its listeners, the
//! queue of outgoing connections (peers from trackers), admission, and a bounded drain at
//! shutdown. Backends supply sockets through [`Net`] and piece reads through [`Disk`].

use super::conn::{self, Disk, Stream};
use super::Worker;
use std::cell::Cell;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::rc::Rc;

/// A backend's sockets.
#[allow(async_fn_in_trait)]
pub trait Net: 'static {
    type Listener: 'static;
    type Conn: Stream + 'static;
    /// Adopts a bound, listening, non-blocking std listener.
    fn listen(l: TcpListener) -> io::Result<Self::Listener>;
    async fn accept(l: &Self::Listener) -> io::Result<(Self::Conn, SocketAddr)>;
    async fn connect(addr: SocketAddr) -> io::Result<Self::Conn>;
}

/// Runs the worker until shutdown; must run inside a `LocalSet` (both backends' runtimes are).
pub async fn run<N: Net, D: Disk + 'static>(worker: Worker, disk: Rc<D>) -> io::Result<()> {
    let active = Rc::new(Cell::new(0usize));
    let mut accepts = Vec::new();
    for listener in worker.listeners {
        let listener = N::listen(listener)?;
        let (shared, disk, active) = (worker.shared.clone(), disk.clone(), active.clone());
        accepts.push(tokio::task::spawn_local(async move {
            let mut shutdown = shared.shutdown.clone();
            loop {
                let accepted = tokio::select! {
                    r = N::accept(&listener) => r,
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
                let (shared, disk) = (shared.clone(), disk.clone());
                tokio::task::spawn_local(async move {
                    conn::serve(shared, stream, &*disk, addr, None).await;
                    drop(guard);
                });
            }
        }));
    }
    let (shared, outgoing_active) = (worker.shared.clone(), active.clone());
    let mut rx = worker.outgoing;
    tokio::task::spawn_local(async move {
        let mut shutdown = shared.shutdown.clone();
        loop {
            let o = tokio::select! {
                o = rx.recv() => match o { Some(o) => o, None => break },
                _ = shutdown.changed() => break,
            };
            let Some(guard) = super::admit(&shared, &outgoing_active, o.addr, Some(&o)) else {
                continue;
            };
            let (shared, disk) = (shared.clone(), disk.clone());
            tokio::task::spawn_local(async move {
                match tokio::time::timeout(super::CONNECT_TIMEOUT, N::connect(o.addr)).await {
                    Ok(Ok(stream)) => {
                        conn::serve(shared, stream, &*disk, o.addr, Some(o.info_hash)).await
                    }
                    Ok(Err(e)) => super::dial_failed(&shared, &o, &e.to_string()),
                    Err(_) => super::dial_failed(&shared, &o, "timed out"),
                }
                drop(guard);
            });
        }
    });
    for a in accepts {
        let _ = a.await;
    }
    super::drain(&active).await;
    Ok(())
}
