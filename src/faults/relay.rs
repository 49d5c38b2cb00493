//! A TCP relay on 127.0.0.1 between the worker and the server. It reads the PostgreSQL protocol
//! passing through it, so it can do what a network does to a real system at the worst moment:
//! cut one transaction's connection at its COMMIT, either after the server's reply (the server
//! committed, the worker never hears it) or before the COMMIT reaches the server (the server rolls
//! the transaction back). It also gives the worker one address that outlives a server restart,
//! as a DNS name or a pooler in front of a real database does: after a crash the relay forwards
//! to wherever the restarted server answers (a container's port changes), so the worker rides
//! the restart out on its own.
//!
//! The relay never changes a byte: it forwards whole protocol messages, and a cut drops the
//! connection on both sides, so the server sees its client go away and the client sees its
//! server go away.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UnixStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio_postgres::Config;
use tokio_postgres::config::Host;

use crate::error::{Error, Result};

/// Where the relay forwards connections to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upstream {
    /// A TCP host (name or address) and port.
    Tcp {
        /// Host name or address.
        host: String,
        /// Port.
        port: u16,
    },
    /// A Unix-domain socket.
    Unix(PathBuf),
}

impl Upstream {
    /// The server `login` connects to: its first address or host, and its first port (5432 by
    /// default). `None` when the login names no host.
    pub fn of(login: &Config) -> Option<Self> {
        let port = login.get_ports().first().copied().unwrap_or(5432);
        if let Some(addr) = login.get_hostaddrs().first() {
            return Some(Self::Tcp {
                host: addr.to_string(),
                port,
            });
        }
        match login.get_hosts().first()? {
            Host::Tcp(host) => Some(Self::Tcp {
                host: host.clone(),
                port,
            }),
            Host::Unix(dir) => Some(Self::Unix(dir.join(format!(".s.PGSQL.{port}")))),
        }
    }
}

/// Where a cut lands in the armed transaction's COMMIT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CutAt {
    /// After the server committed: its reply to COMMIT is dropped with the connection.
    Reply,
    /// Before the server got it: the COMMIT is dropped with the connection, so the server rolls
    /// the transaction back.
    Request,
}

/// What an armed cut has seen so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArmState {
    /// No transaction carrying the armed `application_name` yet.
    Armed,
    /// A transaction carries it; it wrote nothing yet.
    Marked,
    /// That transaction wrote a row (a command reported more than 0 rows).
    Wrote,
    /// Its COMMIT was cut.
    Fired,
    /// It ended without a COMMIT to cut (it rolled back, committed nothing, or its connection
    /// closed): the cut will not fire.
    Spent,
}

/// The relay: a listener on 127.0.0.1 and one task per relayed connection. Dropping it closes
/// every connection it relays.
pub struct Relay {
    shared: Arc<Shared>,
    addr: SocketAddr,
    accept: JoinHandle<()>,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("addr", &self.addr)
            .field("upstream", &*self.shared.upstream.lock().unwrap())
            .finish()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        // The accept task owns the connection tasks: aborting it ends them all.
        self.accept.abort();
    }
}

struct Shared {
    upstream: Mutex<Upstream>,
    /// The generation of the connections accepted now; a crash starts the next one.
    generation: AtomicU64,
    /// Connections of a generation below this value are cut.
    cut_below: watch::Sender<u64>,
    next_id: AtomicU64,
    arm: Mutex<Option<Slot>>,
    next_arm: AtomicU64,
}

/// The one armed cut.
struct Slot {
    /// Which [`Arm`] owns it.
    id: u64,
    /// The `application_name` the target's transaction sets.
    name: String,
    at: CutAt,
    /// The connection of the first transaction seen carrying `name`: the only one that can fire.
    conn: Option<u64>,
    state: watch::Sender<ArmState>,
}

impl Slot {
    fn set(&self, state: ArmState) {
        self.state.send_replace(state);
    }

    fn state(&self) -> ArmState {
        *self.state.borrow()
    }

    /// Whether `conn` carries the armed transaction, still open.
    fn open_on(&self, conn: u64) -> bool {
        self.conn == Some(conn) && matches!(self.state(), ArmState::Marked | ArmState::Wrote)
    }
}

/// Forward a message, or cut the connection instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Forward,
    Cut,
}

impl Shared {
    fn with_slot<T>(&self, f: impl FnOnce(&mut Slot) -> T) -> Option<T> {
        self.arm.lock().unwrap().as_mut().map(f)
    }

    /// The server reported `application_name` = `value` on connection `conn`.
    fn application_name(&self, conn: u64, value: &str) {
        self.with_slot(|slot| {
            if slot.conn.is_none() && slot.state() == ArmState::Armed && value == slot.name {
                slot.conn = Some(conn);
                slot.set(ArmState::Marked);
            }
        });
    }

    /// The server completed a command with `tag` on `conn`.
    fn command_complete(&self, conn: u64, tag: &str) -> Verdict {
        self.with_slot(|slot| {
            if !slot.open_on(conn) {
                return Verdict::Forward;
            }
            if writes_rows(tag) {
                slot.set(ArmState::Wrote);
            } else if tag == "COMMIT" && slot.state() == ArmState::Wrote && slot.at == CutAt::Reply
            {
                slot.set(ArmState::Fired);
                return Verdict::Cut;
            } else if tag == "COMMIT" || tag == "ROLLBACK" {
                slot.set(ArmState::Spent);
            }
            Verdict::Forward
        })
        .unwrap_or(Verdict::Forward)
    }

    /// The server is ready for a query on `conn`, with transaction status `status`.
    fn ready(&self, conn: u64, status: u8) {
        self.with_slot(|slot| {
            if status == b'I' && slot.open_on(conn) {
                slot.set(ArmState::Spent);
            }
        });
    }

    /// The client sent the simple query `text` on `conn`.
    fn query(&self, conn: u64, text: &str) -> Verdict {
        self.with_slot(|slot| {
            if slot.open_on(conn)
                && slot.state() == ArmState::Wrote
                && slot.at == CutAt::Request
                && is_commit(text)
            {
                slot.set(ArmState::Fired);
                Verdict::Cut
            } else {
                Verdict::Forward
            }
        })
        .unwrap_or(Verdict::Forward)
    }

    /// Connection `conn` closed.
    fn closed(&self, conn: u64) {
        self.with_slot(|slot| {
            if slot.open_on(conn) {
                slot.set(ArmState::Spent);
            }
        });
    }
}

/// An armed cut: the next transaction that carries an `application_name` has its COMMIT cut,
/// if it wrote something. Dropping it disarms the relay.
pub struct Arm {
    id: u64,
    shared: Arc<Shared>,
    state: watch::Receiver<ArmState>,
}

impl std::fmt::Debug for Arm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Arm").field("state", &self.state()).finish()
    }
}

impl Arm {
    /// What the cut has seen so far.
    pub fn state(&self) -> ArmState {
        *self.state.borrow()
    }

    /// Wait until the armed transaction wrote a row, was cut, or ended without a cut.
    pub async fn wrote(&mut self) {
        let _ = self
            .state
            .wait_for(|s| !matches!(s, ArmState::Armed | ArmState::Marked))
            .await;
    }

    /// Whether the cut fired.
    pub fn fired(&self) -> bool {
        self.state() == ArmState::Fired
    }
}

impl Drop for Arm {
    fn drop(&mut self) {
        let mut slot = self.shared.arm.lock().unwrap();
        if slot.as_ref().is_some_and(|s| s.id == self.id) {
            *slot = None;
        }
    }
}

impl Relay {
    /// A relay listening on 127.0.0.1 (a port the system chooses) that forwards to `upstream`.
    ///
    /// # Errors
    /// A provisioning error when no port can be bound.
    pub async fn start(upstream: Upstream) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| Error::io("binding the worker's relay on 127.0.0.1", e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::io("reading the relay's address", e))?;
        let shared = Arc::new(Shared {
            upstream: Mutex::new(upstream),
            generation: AtomicU64::new(0),
            cut_below: watch::Sender::new(0),
            next_id: AtomicU64::new(0),
            arm: Mutex::new(None),
            next_arm: AtomicU64::new(0),
        });
        let accept = tokio::spawn(accept(listener, Arc::clone(&shared)));
        Ok(Self {
            shared,
            addr,
            accept,
        })
    }

    /// `login` (user, password, database, options) through the relay: 127.0.0.1 at the relay's
    /// port.
    pub fn login(&self, login: &Config) -> Config {
        let mut relayed = Config::new();
        relayed
            .host("127.0.0.1")
            .port(self.addr.port())
            .ssl_mode(login.get_ssl_mode())
            .channel_binding(login.get_channel_binding());
        if let Some(user) = login.get_user() {
            relayed.user(user);
        }
        if let Some(password) = login.get_password() {
            relayed.password(password);
        }
        if let Some(dbname) = login.get_dbname() {
            relayed.dbname(dbname);
        }
        if let Some(options) = login.get_options() {
            relayed.options(options);
        }
        if let Some(name) = login.get_application_name() {
            relayed.application_name(name);
        }
        if let Some(timeout) = login.get_connect_timeout() {
            relayed.connect_timeout(*timeout);
        }
        relayed
    }

    /// Arm a cut `at` the COMMIT of the first transaction whose `application_name` is
    /// `application_name` (as the server reports it: at most 63 bytes), if that transaction
    /// wrote a row. One cut is armed at a time; arming replaces the previous one.
    pub fn arm(&self, application_name: &str, at: CutAt) -> Arm {
        let id = self.shared.next_arm.fetch_add(1, Ordering::SeqCst);
        let (state, receiver) = watch::channel(ArmState::Armed);
        *self.shared.arm.lock().unwrap() = Some(Slot {
            id,
            name: truncate_name(application_name),
            at,
            conn: None,
            state,
        });
        Arm {
            id,
            shared: Arc::clone(&self.shared),
            state: receiver,
        }
    }

    /// Call right before the server crashes: the connections open now die with it. Returns the
    /// generation to pass to [`Relay::restarted`].
    pub fn crashing(&self) -> u64 {
        self.shared.generation.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// The server restarted at `upstream`: forward new connections there, and cut every
    /// connection opened before the crash (`crashed`, from [`Relay::crashing`]); their backends
    /// are gone, and a dead server's connection is not always closed by its peer.
    pub fn restarted(&self, upstream: Upstream, crashed: u64) {
        *self.shared.upstream.lock().unwrap() = upstream;
        self.shared.cut_below.send_replace(crashed);
    }
}

/// The first 63 bytes of `name`, cut at a character boundary, as the server keeps it.
fn truncate_name(name: &str) -> String {
    let mut end = name.len().min(63);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name[..end].to_string()
}

async fn accept(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((client, _)) => {
                    connections.spawn(relay_one(client, Arc::clone(&shared)));
                }
                // Out of descriptors, say: the worker's connect fails and it tries again.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Relay one client connection until either side closes or the relay cuts it.
async fn relay_one(client: TcpStream, shared: Arc<Shared>) {
    let conn = shared.next_id.fetch_add(1, Ordering::SeqCst);
    let generation = shared.generation.load(Ordering::SeqCst);
    let cut = shared.cut_below.subscribe();
    let upstream = shared.upstream.lock().unwrap().clone();
    let _ = client.set_nodelay(true);
    let link = Link { conn, shared };
    // A server that cannot be reached (it is restarting) closes the client's connection at
    // once: the worker sees the server unreachable, as it would without the relay.
    match upstream {
        Upstream::Tcp { host, port } => {
            if let Ok(server) = TcpStream::connect((host.as_str(), port)).await {
                let _ = server.set_nodelay(true);
                link.run(client, server, cut, generation).await;
            }
        }
        Upstream::Unix(path) => {
            if let Ok(server) = UnixStream::connect(&path).await {
                link.run(client, server, cut, generation).await;
            }
        }
    }
}

/// One relayed connection.
struct Link {
    conn: u64,
    shared: Arc<Shared>,
}

impl Drop for Link {
    fn drop(&mut self) {
        self.shared.closed(self.conn);
    }
}

impl Link {
    async fn run<S>(
        &self,
        mut client: TcpStream,
        mut server: S,
        mut cut: watch::Receiver<u64>,
        generation: u64,
    ) where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        if self.startup(&mut client, &mut server).await.is_err() {
            return;
        }
        let (client_reads, client_writes) = client.into_split();
        let (server_reads, server_writes) = tokio::io::split(server);
        // Whichever ends first ends the connection: dropping every half closes both sides.
        tokio::select! {
            _ = self.pump(client_reads, server_writes, Direction::ToServer) => {}
            _ = self.pump(server_reads, client_writes, Direction::ToClient) => {}
            _ = cut.wait_for(|below| *below > generation) => {}
        }
    }

    /// The client's untyped first messages: an SSL or GSS encryption request is declined here
    /// (the worker does not use TLS), the startup or cancel message is forwarded.
    async fn startup<S>(&self, client: &mut TcpStream, server: &mut S) -> std::io::Result<()>
    where
        S: AsyncWrite + Unpin,
    {
        const SSL_REQUEST: u32 = 80_877_103;
        const GSS_REQUEST: u32 = 80_877_104;
        loop {
            let mut len = [0u8; 4];
            client.read_exact(&mut len).await?;
            let len = u32::from_be_bytes(len) as usize;
            if !(8..=10_000).contains(&len) {
                return Err(std::io::ErrorKind::InvalidData.into());
            }
            let mut body = vec![0u8; len - 4];
            client.read_exact(&mut body).await?;
            let code = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
            if len == 8 && (code == SSL_REQUEST || code == GSS_REQUEST) {
                client.write_all(b"N").await?;
                continue;
            }
            server.write_all(&(len as u32).to_be_bytes()).await?;
            server.write_all(&body).await?;
            return Ok(());
        }
    }

    /// Forward whole messages from `from` to `to`, looking at each, until a side closes or a
    /// message is cut (then neither it nor anything after it is forwarded).
    async fn pump(
        &self,
        mut from: impl AsyncRead + Unpin,
        mut to: impl AsyncWrite + Unpin,
        direction: Direction,
    ) -> std::io::Result<()> {
        let mut frames = Frames::default();
        let mut chunk = vec![0u8; 16 * 1024];
        loop {
            let n = from.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            frames.extend(&chunk[..n]);
            let mut out = Vec::with_capacity(n);
            while let Some(frame) = frames.next_frame() {
                if let Frame::Message(message) = &frame
                    && self.inspect(message, direction) == Verdict::Cut
                {
                    to.write_all(&out).await?;
                    return Ok(());
                }
                out.extend_from_slice(frame.bytes());
            }
            to.write_all(&out).await?;
        }
    }

    fn inspect(&self, message: &[u8], direction: Direction) -> Verdict {
        let body = &message[5..];
        match (direction, message[0]) {
            (Direction::ToClient, b'S') => {
                let mut parts = body.split(|b| *b == 0);
                if let (Some(b"application_name"), Some(value)) = (parts.next(), parts.next()) {
                    self.shared
                        .application_name(self.conn, &String::from_utf8_lossy(value));
                }
                Verdict::Forward
            }
            (Direction::ToClient, b'C') => self.shared.command_complete(self.conn, &c_string(body)),
            (Direction::ToClient, b'Z') => {
                if let Some(status) = body.first() {
                    self.shared.ready(self.conn, *status);
                }
                Verdict::Forward
            }
            (Direction::ToServer, b'Q') => self.shared.query(self.conn, &c_string(body)),
            _ => Verdict::Forward,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    ToServer,
    ToClient,
}

/// The text of a NUL-terminated string at the start of `body`.
fn c_string(body: &[u8]) -> String {
    let end = body.iter().position(|b| *b == 0).unwrap_or(body.len());
    String::from_utf8_lossy(&body[..end]).into_owned()
}

/// Whether a command tag (`INSERT 0 1`, `UPDATE 3`, ...) reports rows written.
fn writes_rows(tag: &str) -> bool {
    let mut words = tag.split_ascii_whitespace();
    let verb = words.next().unwrap_or("");
    ["INSERT", "UPDATE", "DELETE", "MERGE", "COPY"].contains(&verb)
        && words
            .last()
            .and_then(|n| n.parse::<u64>().ok())
            .is_some_and(|n| n > 0)
}

/// Whether a simple query is a COMMIT of the transaction.
fn is_commit(text: &str) -> bool {
    let statement = text.trim().trim_end_matches(';').trim();
    [
        "COMMIT",
        "END",
        "COMMIT WORK",
        "COMMIT TRANSACTION",
        "END TRANSACTION",
    ]
    .iter()
    .any(|c| statement.eq_ignore_ascii_case(c))
}

/// A piece of the byte stream: a whole typed message, or (once the stream stopped looking like
/// the protocol) raw bytes forwarded as they come.
#[derive(Debug, PartialEq, Eq)]
enum Frame {
    Message(Vec<u8>),
    Raw(Vec<u8>),
}

impl Frame {
    fn bytes(&self) -> &[u8] {
        match self {
            Self::Message(b) | Self::Raw(b) => b,
        }
    }
}

/// Splits a byte stream into typed protocol messages: a type byte, then a length that counts
/// itself and the body.
#[derive(Debug, Default)]
struct Frames {
    buf: Vec<u8>,
    raw: bool,
}

impl Frames {
    fn extend(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole message, or `None` until more bytes arrive.
    fn next_frame(&mut self) -> Option<Frame> {
        if self.raw {
            return (!self.buf.is_empty()).then(|| Frame::Raw(std::mem::take(&mut self.buf)));
        }
        if self.buf.len() < 5 {
            return None;
        }
        let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize;
        if len < 4 {
            // Not the protocol: stop looking, keep forwarding.
            self.raw = true;
            return self.next_frame();
        }
        if self.buf.len() < 1 + len {
            return None;
        }
        Some(Frame::Message(self.buf.drain(..1 + len).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![kind];
        m.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
        m.extend_from_slice(body);
        m
    }

    #[test]
    fn frames_split_a_stream_into_whole_messages_whatever_the_chunks() {
        let commit = message(b'C', b"COMMIT\0");
        let ready = message(b'Z', b"I");
        let stream: Vec<u8> = [commit.clone(), ready.clone()].concat();
        for cut in 0..stream.len() {
            let mut frames = Frames::default();
            let mut seen = Vec::new();
            frames.extend(&stream[..cut]);
            while let Some(f) = frames.next_frame() {
                seen.push(f);
            }
            frames.extend(&stream[cut..]);
            while let Some(f) = frames.next_frame() {
                seen.push(f);
            }
            assert_eq!(
                seen,
                vec![
                    Frame::Message(commit.clone()),
                    Frame::Message(ready.clone())
                ],
                "split at {cut}"
            );
        }
    }

    #[test]
    fn a_stream_that_is_not_the_protocol_is_forwarded_raw() {
        let mut frames = Frames::default();
        frames.extend(&[b'X', 0, 0, 0, 1, 9, 9]);
        assert_eq!(
            frames.next_frame(),
            Some(Frame::Raw(vec![b'X', 0, 0, 0, 1, 9, 9]))
        );
        frames.extend(&[1, 2]);
        assert_eq!(frames.next_frame(), Some(Frame::Raw(vec![1, 2])));
        assert_eq!(frames.next_frame(), None);
    }

    #[test]
    fn only_tags_that_report_rows_count_as_writes() {
        assert!(writes_rows("INSERT 0 1"));
        assert!(writes_rows("UPDATE 3"));
        assert!(!writes_rows("INSERT 0 0"));
        assert!(!writes_rows("SELECT 1"));
        assert!(!writes_rows("COMMIT"));
        assert!(is_commit("COMMIT"));
        assert!(is_commit(" commit ; "));
        assert!(!is_commit("COMMIT PREPARED 'x'"));
        assert!(!is_commit("ROLLBACK"));
    }

    fn shared(at: CutAt) -> (Shared, watch::Receiver<ArmState>) {
        let (state, receiver) = watch::channel(ArmState::Armed);
        let shared = Shared {
            upstream: Mutex::new(Upstream::Unix(PathBuf::new())),
            generation: AtomicU64::new(0),
            cut_below: watch::Sender::new(0),
            next_id: AtomicU64::new(0),
            next_arm: AtomicU64::new(1),
            arm: Mutex::new(Some(Slot {
                id: 0,
                name: "task-1".into(),
                at,
                conn: None,
                state,
            })),
        };
        (shared, receiver)
    }

    #[test]
    fn a_reply_cut_fires_on_the_commit_of_the_first_transaction_that_wrote() {
        let (s, state) = shared(CutAt::Reply);
        s.application_name(7, "another-task");
        s.application_name(3, "task-1");
        // Another connection with the same name later is not the armed one.
        s.application_name(4, "task-1");
        assert_eq!(*state.borrow(), ArmState::Marked);
        assert_eq!(s.command_complete(3, "SELECT 1"), Verdict::Forward);
        assert_eq!(s.command_complete(3, "INSERT 0 1"), Verdict::Forward);
        assert_eq!(*state.borrow(), ArmState::Wrote);
        assert_eq!(
            s.query(3, "COMMIT"),
            Verdict::Forward,
            "a reply cut lets the COMMIT through"
        );
        assert_eq!(s.command_complete(4, "COMMIT"), Verdict::Forward);
        assert_eq!(s.command_complete(3, "COMMIT"), Verdict::Cut);
        assert_eq!(*state.borrow(), ArmState::Fired);
        assert_eq!(
            s.command_complete(3, "COMMIT"),
            Verdict::Forward,
            "it fires once"
        );
    }

    #[test]
    fn a_request_cut_fires_on_the_commit_query_and_never_on_a_transaction_that_wrote_nothing() {
        let (s, state) = shared(CutAt::Request);
        s.application_name(1, "task-1");
        s.command_complete(1, "INSERT 0 1");
        assert_eq!(s.query(1, "COMMIT"), Verdict::Cut);
        assert_eq!(*state.borrow(), ArmState::Fired);

        // A replay: the claim inserted nothing, so its COMMIT commits nothing and is not cut.
        let (s, state) = shared(CutAt::Request);
        s.application_name(1, "task-1");
        s.command_complete(1, "INSERT 0 0");
        assert_eq!(s.query(1, "COMMIT"), Verdict::Forward);
        s.command_complete(1, "COMMIT");
        assert_eq!(*state.borrow(), ArmState::Spent);
    }

    #[test]
    fn a_transaction_that_ends_without_commit_spends_the_cut() {
        for end in ["rollback", "idle", "closed"] {
            let (s, state) = shared(CutAt::Reply);
            s.application_name(1, "task-1");
            s.command_complete(1, "INSERT 0 1");
            match end {
                "rollback" => {
                    s.command_complete(1, "ROLLBACK");
                }
                "idle" => s.ready(1, b'I'),
                _ => s.closed(1),
            }
            assert_eq!(*state.borrow(), ArmState::Spent, "{end}");
            // The connection goes back to the pool: a later transaction on it is not cut.
            s.application_name(1, "task-1");
            s.command_complete(1, "INSERT 0 1");
            assert_eq!(s.command_complete(1, "COMMIT"), Verdict::Forward, "{end}");
        }
    }

    #[test]
    fn dropping_an_arm_disarms_only_its_own_cut() {
        let (s, _) = shared(CutAt::Reply);
        let shared = Arc::new(s);
        let old = Arm {
            id: 7,
            shared: Arc::clone(&shared),
            state: watch::channel(ArmState::Armed).1,
        };
        drop(old);
        assert!(
            shared.arm.lock().unwrap().is_some(),
            "a newer cut stays armed"
        );
        let own = Arm {
            id: 0,
            shared: Arc::clone(&shared),
            state: watch::channel(ArmState::Armed).1,
        };
        drop(own);
        assert!(shared.arm.lock().unwrap().is_none());
    }

    #[test]
    fn names_are_cut_to_what_the_server_keeps() {
        assert_eq!(truncate_name(&"a".repeat(70)).len(), 63);
        assert_eq!(truncate_name(&"é".repeat(40)).len(), 62);
        assert_eq!(truncate_name("short"), "short");
    }
}
