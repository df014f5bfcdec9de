//! One TCP connection to a peer, framed with the shared wire codec.
//!
//! `Conn` owns the socket, a bounded read buffer and a write buffer. Every byte that goes out or
//! comes in passes through [`Conn::flush`] and [`Conn::fill`], and those are the only places
//! where a [`ConnObserver`] (the trace recorder) is told about bytes: what it records is
//! exactly what went on the wire, in order.
//!
//! "Incomplete" is the normal state of a stream (TCP delivers arbitrary chunks); only a real
//! protocol error (wrong handshake, a length over the cap, a malformed fixed-size message) ends
//! the connection.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::wire::{BlockRef, Handshake, Message, WireError, HANDSHAKE_LEN};

/// Receives the raw bytes of a connection as they are written and read (the tracer).
/// Calls must be cheap and must never block (they run on the async workers); back-pressure
/// goes through [`ConnObserver::room`], which a connection awaits before each read and write,
/// so that a trace is never silently incomplete and its memory stays bounded.
pub trait ConnObserver: Send + Sync {
    /// A connection was established (`local` is our end).
    fn opened(&self, conn: u64, local: SocketAddr, remote: SocketAddr);
    /// `bytes` were written to the socket.
    fn sent(&self, conn: u64, bytes: &[u8]);
    /// `bytes` were read from the socket.
    fn received(&self, conn: u64, bytes: &[u8]);
    /// The connection ended; `error` says why when it was not a clean close.
    fn closed(&self, conn: u64, error: Option<&str>);
    /// A note about the connection that is not bytes (e.g. "dropped: sent bad piece data").
    fn note(&self, _conn: u64, _text: &str) {}
    /// Resolves when the observer can take more bytes (its backlog is under its budget).
    /// The default always has room.
    fn room(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(std::future::ready(()))
    }
}

/// Why a peer connection ended. Each message says its cause itself and no variant has an
/// error `source`, so a `{:#}` chain prints the cause once.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("could not connect to {addr}: {error}")]
    Connect {
        addr: SocketAddr,
        error: std::io::Error,
    },
    #[error("timed out: {0}")]
    Timeout(&'static str),
    #[error("connection closed by the peer")]
    Closed,
    #[error("i/o error: {0}")]
    Io(std::io::Error),
    #[error("protocol error: {0}")]
    Wire(WireError),
    #[error("peer is serving a different torrent (info hash {0})")]
    WrongInfoHash(String),
    #[error("{0}")]
    Protocol(String),
}

impl From<std::io::Error> for PeerError {
    fn from(e: std::io::Error) -> PeerError {
        PeerError::Io(e)
    }
}

impl From<WireError> for PeerError {
    fn from(e: WireError) -> PeerError {
        PeerError::Wire(e)
    }
}

/// A connection id unique in this process (the engine, the metadata fetch and `handshake` all
/// draw from it), so that a trace never shows two connections under one id.
pub fn next_conn_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// Read-buffer chunk: how much we ask the kernel for at once.
const READ_CHUNK: usize = 256 * 1024;

/// A framed peer connection.
pub struct Conn {
    stream: TcpStream,
    rbuf: BytesMut,
    wbuf: Vec<u8>,
    pub remote: SocketAddr,
    pub local: SocketAddr,
    pub id: u64,
    observer: Option<Arc<dyn ConnObserver>>,
    closed_reported: bool,
}

impl Conn {
    /// Dials `addr` with a timeout.
    pub async fn connect(
        addr: SocketAddr,
        timeout: Duration,
        id: u64,
        observer: Option<Arc<dyn ConnObserver>>,
    ) -> Result<Conn, PeerError> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| PeerError::Timeout("connecting"))?
            .map_err(|error| PeerError::Connect { addr, error })?;
        Conn::from_stream(stream, id, observer)
    }

    /// Wraps an accepted or dialed socket.
    pub fn from_stream(
        stream: TcpStream,
        id: u64,
        observer: Option<Arc<dyn ConnObserver>>,
    ) -> Result<Conn, PeerError> {
        stream.set_nodelay(true)?;
        let remote = stream.peer_addr()?;
        let local = stream.local_addr()?;
        if let Some(o) = &observer {
            o.opened(id, local, remote);
        }
        Ok(Conn {
            stream,
            rbuf: BytesMut::with_capacity(READ_CHUNK),
            wbuf: Vec::with_capacity(16 * 1024),
            remote,
            local,
            id,
            observer,
            closed_reported: false,
        })
    }

    /// The pending output buffer: append encoded messages, then [`Conn::flush`].
    pub fn out(&mut self) -> &mut Vec<u8> {
        &mut self.wbuf
    }

    /// Queues one message.
    pub fn queue(&mut self, m: &Message<'_>) {
        tracing::trace!("{}: sent {m}", self.remote);
        m.emit(&mut self.wbuf);
    }

    /// Queues one `request` (the hot path: no `Message` built unless tracing wants it).
    pub fn queue_request(&mut self, r: BlockRef) {
        if tracing::enabled!(tracing::Level::TRACE) {
            tracing::trace!("{}: sent {}", self.remote, Message::Request(r));
        }
        Message::emit_request(&mut self.wbuf, r);
    }

    pub fn has_output(&self) -> bool {
        !self.wbuf.is_empty()
    }

    /// Writes all queued bytes.
    pub async fn flush(&mut self) -> Result<(), PeerError> {
        if self.wbuf.is_empty() {
            return Ok(());
        }
        self.room().await;
        self.stream.write_all(&self.wbuf).await?;
        if let Some(o) = &self.observer {
            o.sent(self.id, &self.wbuf);
        }
        self.wbuf.clear();
        Ok(())
    }

    /// Writes `head` then `body` (a piece message without copying the block into the buffer).
    pub async fn write_two(&mut self, head: &[u8], body: &[u8]) -> Result<(), PeerError> {
        self.flush().await?;
        self.room().await;
        self.stream.write_all(head).await?;
        self.stream.write_all(body).await?;
        if let Some(o) = &self.observer {
            o.sent(self.id, head);
            o.sent(self.id, body);
        }
        Ok(())
    }

    /// Reads more bytes into the buffer. Returns `Closed` at end of stream.
    pub async fn fill(&mut self) -> Result<usize, PeerError> {
        if self.rbuf.capacity() - self.rbuf.len() < READ_CHUNK / 4 {
            self.rbuf.reserve(READ_CHUNK);
        }
        // before the read, so that a cancelled `fill` never leaves read bytes unreported
        self.room().await;
        let before = self.rbuf.len();
        let n = self.stream.read_buf(&mut self.rbuf).await?;
        if n == 0 {
            return Err(PeerError::Closed);
        }
        if let Some(o) = &self.observer {
            o.received(self.id, &self.rbuf[before..]);
        }
        Ok(n)
    }

    /// Waits until the observer (if any) can take more bytes.
    async fn room(&self) {
        if let Some(o) = &self.observer {
            o.room().await;
        }
    }

    /// Sends our handshake and reads theirs (both with a timeout). Checks the info hash.
    pub async fn handshake(
        &mut self,
        ours: &Handshake,
        timeout: Duration,
    ) -> Result<Handshake, PeerError> {
        self.wbuf.extend_from_slice(&ours.emit());
        tokio::time::timeout(timeout, async {
            self.flush().await?;
            self.read_handshake().await
        })
        .await
        .map_err(|_| PeerError::Timeout("waiting for the handshake"))?
        .and_then(|theirs| {
            if theirs.info_hash != ours.info_hash {
                Err(PeerError::WrongInfoHash(hex::encode(theirs.info_hash)))
            } else {
                Ok(theirs)
            }
        })
    }

    /// Reads the peer's handshake (for the accepting side, which answers after reading).
    pub async fn read_handshake(&mut self) -> Result<Handshake, PeerError> {
        loop {
            match Handshake::parse(&self.rbuf) {
                Ok((h, used)) => {
                    self.rbuf.advance(used);
                    return Ok(h);
                }
                Err(WireError::Incomplete { .. }) if self.rbuf.len() < HANDSHAKE_LEN => {
                    self.fill().await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Parses the next complete message in the buffer without reading from the socket.
    /// Returns `Ok(None)` when more bytes are needed. The message borrows the buffer; call
    /// [`Conn::consume`] with the returned length when done with it.
    pub fn next_message(&self) -> Result<Option<(Message<'_>, usize)>, PeerError> {
        match Message::parse(&self.rbuf) {
            Ok((m, used)) => Ok(Some((m, used))),
            Err(WireError::Incomplete { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Takes `n` parsed bytes off the front of the read buffer without copying them (a
    /// block to store keeps only its part of the buffer alive).
    pub fn take(&mut self, n: usize) -> bytes::Bytes {
        self.rbuf.split_to(n).freeze()
    }

    /// Drops `n` parsed bytes from the front of the read buffer.
    pub fn consume(&mut self, n: usize) {
        self.rbuf.advance(n);
    }

    /// Reports the end of the connection to the observer (once).
    pub fn report_closed(&mut self, error: Option<&str>) {
        if !self.closed_reported {
            self.closed_reported = true;
            if let Some(o) = &self.observer {
                o.closed(self.id, error);
            }
        }
    }

    /// Tells the observer something about this connection.
    pub fn note(&self, text: &str) {
        if let Some(o) = &self.observer {
            o.note(self.id, text);
        }
    }

    /// Shuts the socket down for writing (a FIN), best effort.
    pub async fn shutdown(&mut self) {
        let _ = self.stream.shutdown().await;
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.report_closed(None);
    }
}
