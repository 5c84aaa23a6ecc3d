//! A real SMTP server for the tests: it takes every message (refusing recipients at `bounce.example` for
//! good, as a server refuses an unknown mailbox), keeps them, and can be stopped and started again on
//! the same port. A black hole that accepts connections and never answers stands for a stuck server.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

pub struct SmtpSink {
    address: SocketAddr,
    received: Arc<Mutex<Vec<String>>>,
    server: Option<JoinHandle<()>>,
}

impl SmtpSink {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("the bound address");
        let received = Arc::default();
        let server = Some(tokio::spawn(serve(listener, Arc::clone(&received))));
        Self {
            address,
            received,
            server,
        }
    }

    /// `HUB_SMTP_URL` for this server.
    pub fn url(&self) -> String {
        format!("smtp://{}", self.address)
    }

    /// Stops listening and drops every open connection: the port refuses connections.
    pub fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }

    /// Listens again on the same port, keeping what was received.
    pub async fn restart(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match TcpListener::bind(self.address).await {
                Ok(listener) => break listener,
                Err(e) => {
                    assert!(
                        Instant::now() < deadline,
                        "cannot bind {} again: {e}",
                        self.address
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        self.server = Some(tokio::spawn(serve(listener, Arc::clone(&self.received))));
    }

    /// Every message received, quoted-printable decoded.
    pub fn messages(&self) -> Vec<String> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .map(|raw| super::decode_quoted_printable(raw))
            .collect()
    }

    /// The messages to `to` whose subject contains `subject`.
    pub fn find(&self, to: &str, subject: &str) -> Vec<String> {
        self.messages()
            .into_iter()
            .filter(|m| {
                m.lines().any(|l| l.starts_with("To:") && l.contains(to))
                    && m.lines()
                        .any(|l| l.starts_with("Subject:") && l.contains(subject))
            })
            .collect()
    }

    /// Waits for a message to `to` whose subject contains `subject`.
    pub async fn wait_for(&self, to: &str, subject: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(mail) = self.find(to, subject).into_iter().next() {
                return mail;
            }
            assert!(
                Instant::now() < deadline,
                "no mail to {to} about {subject:?}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn serve(listener: TcpListener, received: Arc<Mutex<Vec<String>>>) {
    // Dropped with this task, so stopping the server also cuts its connections.
    let mut sessions = JoinSet::new();
    loop {
        while sessions.try_join_next().is_some() {}
        if let Ok((socket, _)) = listener.accept().await {
            sessions.spawn(session(socket, Arc::clone(&received)));
        }
    }
}

async fn session(socket: TcpStream, received: Arc<Mutex<Vec<String>>>) -> std::io::Result<()> {
    let (read, mut write) = socket.into_split();
    let mut lines = BufReader::new(read);
    write.write_all(b"220 sink ESMTP\r\n").await?;
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let command = line.trim_end().to_ascii_uppercase();
        if command.starts_with("QUIT") {
            write.write_all(b"221 bye\r\n").await?;
            return Ok(());
        }
        let reply: &[u8] = if command.starts_with("RCPT") && command.contains("BOUNCE.EXAMPLE") {
            b"550 5.1.1 no such mailbox\r\n"
        } else if command.starts_with("DATA") {
            write.write_all(b"354 end with a dot\r\n").await?;
            let mut message = String::new();
            loop {
                line.clear();
                if lines.read_line(&mut line).await? == 0 {
                    return Ok(());
                }
                if line == ".\r\n" || line == ".\n" {
                    break;
                }
                message.push_str(line.strip_prefix('.').unwrap_or(&line));
            }
            received.lock().unwrap().push(message);
            b"250 2.0.0 queued\r\n"
        } else {
            b"250 OK\r\n"
        };
        write.write_all(reply).await?;
    }
}

/// Accepts connections and never says a word: a mail server that hangs.
pub struct BlackHole {
    address: SocketAddr,
    server: JoinHandle<()>,
}

impl BlackHole {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("the bound address");
        let server = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        Self { address, server }
    }

    pub fn url(&self) -> String {
        format!("smtp://{}", self.address)
    }

    /// The same hole as an HTTP URL: a web server that never answers.
    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }
}

impl Drop for BlackHole {
    fn drop(&mut self) {
        self.server.abort();
    }
}
