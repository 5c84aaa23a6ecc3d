//! A TCP proxy to a PostgreSQL socket that fails like a network path or a server can:
//! - frozen, it forwards nothing and closes nothing, like a path that silently stopped carrying packets;
//! - armed with a [`Cut`], it closes the connection that next sends a message holding a marker (some
//!   bytes a statement binds), either before the server sees the message or after the server ran it
//!   and before its answer reaches the client, like a crash or failover at that instant.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UnixStream};

/// Where an armed proxy cuts the connection that sends the marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// The message is dropped: the server never runs it.
    BeforeTheServer,
    /// The server runs the message; its answer is dropped.
    BeforeTheAnswer,
}

#[derive(Default)]
struct Faults {
    frozen: AtomicBool,
    armed: Mutex<Option<(Cut, Vec<u8>)>>,
    cuts: AtomicUsize,
}

impl Faults {
    /// The cut to make for a client message `chunk`, if the proxy is armed for it (disarming it).
    fn cut_for(&self, chunk: &[u8]) -> Option<Cut> {
        let mut armed = self.armed.lock().unwrap();
        let matches = armed
            .as_ref()
            .is_some_and(|(_, marker)| chunk.windows(marker.len()).any(|w| w == marker.as_slice()));
        if !matches {
            return None;
        }
        self.cuts.fetch_add(1, Ordering::SeqCst);
        armed.take().map(|(cut, _)| cut)
    }
}

pub struct FaultyProxy {
    pub port: u16,
    faults: Arc<Faults>,
}

impl FaultyProxy {
    /// Forwards 127.0.0.1:`port` to the Unix socket at `socket`.
    pub async fn start(socket: PathBuf) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let faults = Arc::new(Faults::default());
        let shared = faults.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (socket, faults) = (socket.clone(), shared.clone());
                tokio::spawn(async move {
                    wait_thawed(&faults).await;
                    let Ok(server) = UnixStream::connect(&socket).await else {
                        return;
                    };
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    let doomed = Arc::new(AtomicBool::new(false));
                    // Either direction ending ends the connection: both sockets are dropped.
                    tokio::select! {
                        () = pump(Direction::ClientToServer, client_read, server_write, faults.clone(), doomed.clone()) => {}
                        () = pump(Direction::ServerToClient, server_read, client_write, faults, doomed) => {}
                    }
                });
            }
        });
        Self { port, faults }
    }

    pub fn freeze(&self, frozen: bool) {
        self.faults.frozen.store(frozen, Ordering::SeqCst);
    }

    /// Cuts, as `cut` says, the next connection that sends a message containing `marker`; once.
    pub fn arm(&self, cut: Cut, marker: Vec<u8>) {
        *self.faults.armed.lock().unwrap() = Some((cut, marker));
    }

    /// Connections cut so far.
    pub fn cuts(&self) -> usize {
        self.faults.cuts.load(Ordering::SeqCst)
    }
}

async fn wait_thawed(faults: &Faults) {
    while faults.frozen.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Which way a pump carries bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    ClientToServer,
    ServerToClient,
}

/// Carries bytes one way until either side closes or a cut ends the connection: a client message the
/// proxy is armed for is dropped (`BeforeTheServer`) or marks the connection doomed
/// (`BeforeTheAnswer`), and a doomed connection's next answer is dropped.
async fn pump(
    direction: Direction,
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    faults: Arc<Faults>,
    doomed: Arc<AtomicBool>,
) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let Some(chunk) = read(&mut from, &mut buffer).await else {
            return;
        };
        wait_thawed(&faults).await;
        match direction {
            Direction::ClientToServer => match faults.cut_for(chunk) {
                Some(Cut::BeforeTheServer) => return,
                Some(Cut::BeforeTheAnswer) => doomed.store(true, Ordering::SeqCst),
                None => {}
            },
            Direction::ServerToClient if doomed.load(Ordering::SeqCst) => return,
            Direction::ServerToClient => {}
        }
        if to.write_all(chunk).await.is_err() {
            return;
        }
    }
}

async fn read<'b>(from: &mut (impl AsyncRead + Unpin), buffer: &'b mut [u8]) -> Option<&'b [u8]> {
    match from.read(buffer).await {
        Ok(0) | Err(_) => None,
        Ok(read) => buffer.get(..read),
    }
}
