//! Synthesized network frames: Ethernet II + IPv4/IPv6 + TCP/UDP, built from bytes that
//! really went through a socket.
//!
//! bt-trace never sniffs the network. It knows the endpoints of each connection and the
//! bytes it wrote and read, and this module turns them into the frames a capture would
//! have shown: a TCP conversation (SYN, SYN-ACK, ACK; data split at the MSS; ACKs; FIN or
//! RST) or a lone UDP datagram. Headers follow RFC 894 (Ethernet II), RFC 791 (IPv4),
//! RFC 8200 (IPv6), RFC 9293 (TCP), RFC 7323 (window scale), RFC 2018 (SACK permitted) and
//! RFC 768 (UDP); every IPv4 header checksum and every TCP/UDP checksum (RFC 1071, over the
//! pseudo header and the *whole* payload) is correct. `docs/tracing.md` explains the
//! choices (ISNs, MSS, ACK policy, MACs) in words.
//!
//! Frames are handed to a caller-supplied callback as a [`Frame`]: the headers live in a
//! buffer the conversation reuses, the payload is borrowed from the caller's bytes, so
//! synthesis allocates nothing per frame and copies no payload.
//!
//! Contract: nothing here panics, whatever the addresses, ports, sequence numbers or
//! payload sizes. Impossible requests (mixed IPv4/IPv6 endpoints, an MSS of 0, data on a
//! closed conversation, an oversized UDP payload) are [`SynthError`]s.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;

use etherparse::{
    EtherType, Ethernet2Header, IpNumber, Ipv4Header, Ipv6FlowLabel, Ipv6Header, TcpHeader,
    TcpOptionElement, UdpHeader,
};

/// Typical MSS over Ethernet for IPv4: 1500 − 20 (IPv4) − 20 (TCP).
pub const MSS_IPV4: u16 = 1460;
/// Typical MSS over Ethernet for IPv6: 1500 − 40 (IPv6) − 20 (TCP).
pub const MSS_IPV6: u16 = 1440;
/// Largest MSS we accept: any segment, with a full 60-byte TCP header, still fits an IPv4
/// total length (65535 − 20 − 60).
pub const MAX_MSS: u16 = 65_455;
/// Window scale shift both sides announce in their SYN (RFC 7323), as Linux does.
pub const WINDOW_SCALE: u8 = 7;
/// Unscaled window in SYN and SYN-ACK (window scaling does not apply to them).
pub const SYN_WINDOW: u16 = 65_535;
/// Window field after the handshake: 32768 << 7 = 4 MiB, far more than is ever in flight.
pub const WINDOW: u16 = 32_768;
/// The receiver acknowledges at least every this many bytes within one long write, and
/// always after the write's last segment, so bytes in flight stay ≤ 64 KiB.
pub const ACK_EVERY: u64 = 64 * 1024;
/// IPv4 TTL / IPv6 hop limit of every frame (the Linux default).
pub const TTL: u8 = 64;
/// Largest UDP payload that fits one IPv4 datagram (65535 − 20 − 8).
pub const MAX_UDP_PAYLOAD: usize = 65_507;

/// Why a frame could not be synthesized, or why the frame callback failed.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    /// One endpoint is IPv4 and the other IPv6 (after unmapping `::ffff:a.b.c.d`).
    #[error("endpoints {a} and {b} mix IPv4 and IPv6; one connection uses one family")]
    MixedFamilies {
        /// First endpoint.
        a: SocketAddr,
        /// Second endpoint.
        b: SocketAddr,
    },
    /// The MSS must be within `1..=MAX_MSS`.
    #[error("MSS {0} is outside 1..={MAX_MSS}")]
    InvalidMss(u16),
    /// The conversation is not in a state where this step makes sense.
    #[error("cannot {action}: the TCP conversation is {state}")]
    WrongState {
        /// What the caller asked for (`"open"`, `"send data"`, ...).
        action: &'static str,
        /// Where the conversation is (`"not opened yet"`, `"already open"`, `"closed"`).
        state: &'static str,
    },
    /// A payload too large for one datagram.
    #[error("payload of {len} bytes exceeds the maximum of {max} for one datagram")]
    PayloadTooLarge {
        /// Bytes given.
        len: usize,
        /// Bytes allowed.
        max: usize,
    },
    /// etherparse refused the SYN options (cannot happen with our fixed 12 bytes).
    #[error("TCP options: {0}")]
    Options(#[from] etherparse::TcpOptionWriteError),
    /// The frame callback returned an error (typically the pcapng writer's I/O error).
    #[error("frame sink: {0}")]
    Sink(#[from] io::Error),
}

/// What a synthesized frame is, for the recorder's bookkeeping and comments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameKind {
    /// First handshake segment, client → server.
    Syn,
    /// Second handshake segment, server → client.
    SynAck,
    /// A segment with ACK and no payload: the handshake's third segment or a pure ACK.
    Ack,
    /// A segment carrying payload.
    Data,
    /// A segment with FIN (always with ACK).
    Fin,
    /// A segment with RST (with ACK).
    Rst,
    /// A UDP datagram.
    Udp,
}

/// One synthesized frame. `headers` followed by `payload` is the complete Ethernet frame.
#[derive(Debug, Clone)]
pub struct Frame<'a> {
    /// Ethernet + IP + TCP/UDP headers (in a buffer the synthesizer reuses).
    pub headers: &'a [u8],
    /// The payload, borrowed from the caller's bytes (empty for control segments).
    pub payload: &'a [u8],
    /// What this frame is.
    pub kind: FrameKind,
    /// Sent by the conversation's client (TCP). For UDP: always `true` (src → dst).
    pub from_client: bool,
    /// TCP sequence number (0 for UDP).
    pub seq: u32,
    /// TCP acknowledgement number (0 when ACK is not set, and for UDP).
    pub ack: u32,
    /// Which bytes of the slice passed to this call the frame carries; empty for control
    /// segments (positioned where the data stood when they were sent).
    pub data_range: Range<usize>,
    /// Offset of the payload's first byte in its direction's byte stream: bytes this side
    /// sent before it since the handshake (0 for UDP).
    pub stream_offset: u64,
}

impl Frame<'_> {
    /// Length of the whole frame on the wire (headers + payload).
    pub fn len(&self) -> usize {
        self.headers.len() + self.payload.len()
    }

    /// Whether the frame is empty (never true for a synthesized frame).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the byte at position `end - 1` of this call's slice is in this frame, i.e.
    /// a message ending at `end` (exclusive) completes here. `end == 0` never matches.
    pub fn carries_end(&self, end: usize) -> bool {
        end > self.data_range.start && end <= self.data_range.end
    }

    /// The same as [`Frame::carries_end`], in stream offsets: whether a message whose last
    /// byte is at stream offset `end - 1` of this direction completes in this frame.
    pub fn carries_stream_end(&self, end: u64) -> bool {
        let start = self.stream_offset;
        let stop = start + self.payload.len() as u64;
        end > start && end <= stop
    }
}

/// How to pick initial sequence numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IsnMode {
    /// Random ISNs, as a real stack chooses (RFC 6528 in spirit).
    Random,
    /// ISNs hashed from the endpoints and a salt: the same inputs give the same trace.
    Deterministic {
        /// Mixed into the hash, e.g. a connection counter, so that two connections
        /// between the same endpoints still get different ISNs.
        salt: u64,
    },
}

/// A random initial sequence number (never `u32::MAX`, see [`usable_isn`]).
pub fn random_isn() -> u32 {
    usable_isn(rand::random())
}

/// Maps `u32::MAX` to `u32::MAX - 1` and keeps every other ISN. With a server ISN of
/// `0xFFFF_FFFF` the handshake's last ACK acknowledges 0, the value tshark remembers from
/// the SYN's (unused) ACK field, so tshark would label that ACK "TCP Window Update". A
/// real stack hits this once in 2^32 connections; generated ISNs simply avoid it.
pub fn usable_isn(isn: u32) -> u32 {
    if isn == u32::MAX {
        u32::MAX - 1
    } else {
        isn
    }
}

/// A reproducible initial sequence number for the side `from` of a connection to `to`:
/// 32-bit FNV-1a over both (unmapped) addresses, ports and `salt`. Stable across runs,
/// machines and Rust versions (unlike `std`'s `DefaultHasher`).
pub fn deterministic_isn(from: SocketAddr, to: SocketAddr, salt: u64) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes {
            h ^= u32::from(b);
            h = h.wrapping_mul(0x0100_0193);
        }
    };
    for addr in [from, to] {
        match addr.ip().to_canonical() {
            IpAddr::V4(ip) => eat(&ip.octets()),
            IpAddr::V6(ip) => eat(&ip.octets()),
        }
        eat(&addr.port().to_be_bytes());
    }
    eat(&salt.to_be_bytes());
    usable_isn(h)
}

/// The usual Ethernet MSS for this address family: [`MSS_IPV4`] or [`MSS_IPV6`].
pub fn default_mss(addr: SocketAddr) -> u16 {
    match addr.ip().to_canonical() {
        IpAddr::V4(_) => MSS_IPV4,
        IpAddr::V6(_) => MSS_IPV6,
    }
}

/// The fixed, locally administered (first byte `02`) unicast MAC we give an IP address:
/// IPv4 `a.b.c.d` → `02:00:a:b:c:d` (so 127.0.0.1 is `02:00:7f:00:00:01`), IPv6 →
/// `02:06:` + its last four bytes. One host, one MAC, in every conversation.
pub fn mac_for(ip: IpAddr) -> [u8; 6] {
    match ip.to_canonical() {
        IpAddr::V4(ip) => {
            let o = ip.octets();
            [0x02, 0x00, o[0], o[1], o[2], o[3]]
        }
        IpAddr::V6(ip) => {
            let o = ip.octets();
            [0x02, 0x06, o[12], o[13], o[14], o[15]]
        }
    }
}

/// The two IP addresses of a frame, as one family.
#[derive(Debug, Clone, Copy)]
enum IpPair {
    V4([u8; 4], [u8; 4]),
    V6([u8; 16], [u8; 16]),
}

impl IpPair {
    /// Both addresses in one family; `::ffff:a.b.c.d` counts as IPv4.
    fn new(src: SocketAddr, dst: SocketAddr) -> Result<Self, SynthError> {
        match (src.ip().to_canonical(), dst.ip().to_canonical()) {
            (IpAddr::V4(s), IpAddr::V4(d)) => Ok(IpPair::V4(s.octets(), d.octets())),
            (IpAddr::V6(s), IpAddr::V6(d)) => Ok(IpPair::V6(s.octets(), d.octets())),
            _ => Err(SynthError::MixedFamilies { a: src, b: dst }),
        }
    }

    fn reversed(self) -> Self {
        match self {
            IpPair::V4(s, d) => IpPair::V4(d, s),
            IpPair::V6(s, d) => IpPair::V6(d, s),
        }
    }
}

fn too_large(len: usize, max: usize) -> SynthError {
    SynthError::PayloadTooLarge { len, max }
}

/// Writes Ethernet + IP + TCP headers for `payload` into `buf` (cleared first), with the
/// IPv4 header checksum and the TCP checksum computed.
fn build_tcp(
    buf: &mut Vec<u8>,
    macs: ([u8; 6], [u8; 6]),
    ips: IpPair,
    ip_id: u16,
    tcp: &mut TcpHeader,
    payload: &[u8],
) -> Result<(), SynthError> {
    buf.clear();
    let l4_len = tcp.header_len() + payload.len();
    // The pseudo header's sum (RFC 9293 3.1, RFC 8200 8.1), then the IP header.
    let pseudo = match ips {
        IpPair::V4(src, dst) => {
            let len16 = u16::try_from(l4_len).map_err(|_| too_large(l4_len, 65_515))?;
            let mut ip = Ipv4Header::new(len16, TTL, IpNumber::TCP, src, dst)
                .map_err(|_| too_large(l4_len, 65_515))?;
            ip.identification = ip_id;
            ip.header_checksum = ip.calc_header_checksum();
            buf.extend_from_slice(&ether(macs, EtherType::IPV4));
            buf.extend_from_slice(&ip.to_bytes());
            let len = (l4_len as u16).to_be_bytes();
            let mut p = [0u8; 12];
            p[..4].copy_from_slice(&src);
            p[4..8].copy_from_slice(&dst);
            p[9] = IpNumber::TCP.0;
            p[10..].copy_from_slice(&len);
            checksum::add(0, &p)
        }
        IpPair::V6(src, dst) => {
            let len16 = u16::try_from(l4_len).map_err(|_| too_large(l4_len, 65_535))?;
            let ip = ipv6(src, dst, IpNumber::TCP, len16);
            buf.extend_from_slice(&ether(macs, EtherType::IPV6));
            buf.extend_from_slice(&ip.to_bytes());
            let mut p = [0u8; 40];
            p[..16].copy_from_slice(&src);
            p[16..32].copy_from_slice(&dst);
            p[34..36].copy_from_slice(&len16.to_be_bytes());
            p[39] = IpNumber::TCP.0;
            checksum::add(0, &p)
        }
    };
    // The TCP checksum over pseudo header, TCP header (checksum field zero) and payload,
    // in one pass over the payload.
    let start = buf.len();
    tcp.checksum = 0;
    tcp_header_bytes(buf, tcp);
    let sum = checksum::add(checksum::add(pseudo, &buf[start..]), payload);
    tcp.checksum = checksum::finish(sum);
    buf[start + 16..start + 18].copy_from_slice(&tcp.checksum.to_be_bytes());
    Ok(())
}

/// Appends `tcp` as RFC 9293 lays it out (what `TcpHeader::to_bytes` gives, without its
/// per-byte copying: this runs for every frame).
fn tcp_header_bytes(buf: &mut Vec<u8>, tcp: &TcpHeader) {
    let flags = [
        tcp.fin, tcp.syn, tcp.rst, tcp.psh, tcp.ack, tcp.urg, tcp.ece, tcp.cwr,
    ]
    .iter()
    .enumerate()
    .fold(0u8, |f, (bit, &on)| f | (u8::from(on) << bit));
    let mut h = [0u8; 20];
    h[0..2].copy_from_slice(&tcp.source_port.to_be_bytes());
    h[2..4].copy_from_slice(&tcp.destination_port.to_be_bytes());
    h[4..8].copy_from_slice(&tcp.sequence_number.to_be_bytes());
    h[8..12].copy_from_slice(&tcp.acknowledgment_number.to_be_bytes());
    h[12] = (tcp.data_offset() << 4) | u8::from(tcp.ns);
    h[13] = flags;
    h[14..16].copy_from_slice(&tcp.window_size.to_be_bytes());
    h[16..18].copy_from_slice(&tcp.checksum.to_be_bytes());
    h[18..20].copy_from_slice(&tcp.urgent_pointer.to_be_bytes());
    buf.extend_from_slice(&h);
    buf.extend_from_slice(tcp.options.as_slice());
}

/// The Internet checksum (RFC 1071), fast: 32-bit words summed into a 64-bit accumulator
/// (no carry handling per word, so the compiler vectorizes the loop), folded at the end.
/// The sum of native-endian words is the byte-swapped sum of big-endian ones (RFC 1071
/// 2(B)), so [`finish`](checksum::finish) gives the big-endian value on any machine.
mod checksum {
    /// Adds `bytes`, which start at an even offset of the checksummed data, to `acc` (an
    /// odd last byte is padded with zero, so only the data's last slice may be odd).
    pub(super) fn add(acc: u64, bytes: &[u8]) -> u64 {
        let mut words = bytes.chunks_exact(4);
        // Up to 2^32 words of < 2^32 each: no overflow below 16 GiB of input.
        let mut sum = acc;
        for w in &mut words {
            sum += u64::from(u32::from_ne_bytes([w[0], w[1], w[2], w[3]]));
        }
        let mut rest = [0u8; 4];
        let tail = words.remainder();
        rest[..tail.len()].copy_from_slice(tail);
        sum + u64::from(u32::from_ne_bytes(rest))
    }

    /// The checksum field's value: the folded sum, complemented, as a big-endian number.
    pub(super) fn finish(mut sum: u64) -> u16 {
        while sum >> 16 != 0 {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        u16::from_be_bytes((!(sum as u16)).to_ne_bytes())
    }
}

fn ether(macs: ([u8; 6], [u8; 6]), ether_type: EtherType) -> [u8; 14] {
    Ethernet2Header {
        source: macs.0,
        destination: macs.1,
        ether_type,
    }
    .to_bytes()
}

fn ipv6(
    source: [u8; 16],
    destination: [u8; 16],
    next: IpNumber,
    payload_length: u16,
) -> Ipv6Header {
    Ipv6Header {
        traffic_class: 0,
        flow_label: Ipv6FlowLabel::ZERO,
        payload_length,
        next_header: next,
        hop_limit: TTL,
        source,
        destination,
    }
}

/// Builds one UDP datagram from `src` to `dst` carrying `payload` (BEP 15 tracker packets).
/// The headers are written into `buf` (cleared first, reuse it between calls); the frame
/// borrows `buf` and `payload`. The UDP checksum is computed (mandatory for IPv6).
pub fn udp_datagram<'a>(
    buf: &'a mut Vec<u8>,
    src: SocketAddr,
    dst: SocketAddr,
    payload: &'a [u8],
) -> Result<Frame<'a>, SynthError> {
    let ips = IpPair::new(src, dst)?;
    if payload.len() > MAX_UDP_PAYLOAD {
        return Err(too_large(payload.len(), MAX_UDP_PAYLOAD));
    }
    // Fits: MAX_UDP_PAYLOAD + 8 < 65536.
    let l4_len = (payload.len() + UdpHeader::LEN) as u16;
    let macs = (mac_for(src.ip()), mac_for(dst.ip()));
    buf.clear();
    match ips {
        IpPair::V4(s, d) => {
            let mut ip = Ipv4Header::new(l4_len, TTL, IpNumber::UDP, s, d)
                .map_err(|_| too_large(payload.len(), MAX_UDP_PAYLOAD))?;
            ip.header_checksum = ip.calc_header_checksum();
            let udp = UdpHeader::with_ipv4_checksum(src.port(), dst.port(), &ip, payload)
                .map_err(|e| too_large(e.actual, e.max_allowed))?;
            buf.extend_from_slice(&ether(macs, EtherType::IPV4));
            buf.extend_from_slice(&ip.to_bytes());
            buf.extend_from_slice(&udp.to_bytes());
        }
        IpPair::V6(s, d) => {
            let ip = ipv6(s, d, IpNumber::UDP, l4_len);
            let udp = UdpHeader::with_ipv6_checksum(src.port(), dst.port(), &ip, payload)
                .map_err(|e| too_large(e.actual, e.max_allowed))?;
            buf.extend_from_slice(&ether(macs, EtherType::IPV6));
            buf.extend_from_slice(&ip.to_bytes());
            buf.extend_from_slice(&udp.to_bytes());
        }
    }
    Ok(Frame {
        headers: buf,
        payload,
        kind: FrameKind::Udp,
        from_client: true,
        seq: 0,
        ack: 0,
        data_range: 0..payload.len(),
        stream_offset: 0,
    })
}

/// One direction's sending state.
#[derive(Debug, Clone)]
struct Side {
    addr: SocketAddr,
    mac: [u8; 6],
    /// Next sequence number this side sends (starts at its ISN, so the SYN uses the ISN).
    snd_nxt: u32,
    /// Payload bytes this side sent that no frame of the other side has acknowledged yet.
    unacked: u64,
    /// Payload bytes this side sent since the handshake: the stream offset of its next byte.
    sent: u64,
    /// IPv4 identification of this side's next frame.
    ip_id: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    New,
    Open,
    Closed,
}

impl State {
    fn name(self) -> &'static str {
        match self {
            State::New => "not opened yet",
            State::Open => "already open",
            State::Closed => "closed",
        }
    }
}

/// TCP flags of a segment we emit (ACK is implied except on the SYN).
#[derive(Debug, Clone, Copy, Default)]
struct Flags {
    syn: bool,
    ack: bool,
    psh: bool,
    fin: bool,
    rst: bool,
}

const CLIENT: usize = 0;
const SERVER: usize = 1;

/// A consistent synthesized TCP conversation between two real endpoints.
///
/// Call [`open`](Self::open) once, then [`data`](Self::data) for every write or read in the
/// order it happened, then [`close_fin`](Self::close_fin) or [`reset`](Self::reset). Each
/// call hands its frames, in wire order, to the callback; the callback's
/// `io::Error` stops the call and comes back as [`SynthError::Sink`].
///
/// ```
/// use bt_trace::trace::synth::{FrameKind, TcpConversation};
/// let client = "10.0.0.1:50000".parse().unwrap();
/// let server = "10.0.0.2:51413".parse().unwrap();
/// let mut conv = TcpConversation::new(client, server, 1000, 2000, 1460).unwrap();
/// let mut kinds = Vec::new();
/// conv.open(|f| { kinds.push(f.kind); Ok(()) }).unwrap();
/// conv.data(true, &[0u8; 3000], |f| { kinds.push(f.kind); Ok(()) }).unwrap();
/// use FrameKind::*;
/// assert_eq!(kinds, [Syn, SynAck, Ack, Data, Data, Data, Ack]);
/// ```
#[derive(Debug, Clone)]
pub struct TcpConversation {
    sides: [Side; 2],
    /// Client → server IP addresses (reverse them for the other direction).
    ips: IpPair,
    mss: u16,
    state: State,
    /// Reused header buffer: the only per-frame memory.
    hdr: Vec<u8>,
}

impl TcpConversation {
    /// A conversation between `client` (the side that connects) and `server`, with the
    /// given initial sequence numbers and the MSS both sides announce (the segment size).
    /// `::ffff:a.b.c.d` addresses are treated as IPv4. Any ISN works; see [`usable_isn`]
    /// for the one value tshark mislabels.
    pub fn new(
        client: SocketAddr,
        server: SocketAddr,
        isn_client: u32,
        isn_server: u32,
        mss: u16,
    ) -> Result<Self, SynthError> {
        let ips = IpPair::new(client, server)?;
        if mss == 0 || mss > MAX_MSS {
            return Err(SynthError::InvalidMss(mss));
        }
        let side = |addr: SocketAddr, isn: u32| Side {
            addr,
            mac: mac_for(addr.ip()),
            snd_nxt: isn,
            unacked: 0,
            sent: 0,
            ip_id: (isn >> 16) as u16,
        };
        Ok(TcpConversation {
            sides: [side(client, isn_client), side(server, isn_server)],
            ips,
            mss,
            state: State::New,
            hdr: Vec::with_capacity(128),
        })
    }

    /// A conversation with ISNs chosen by `mode` and the family's usual MSS
    /// ([`default_mss`]).
    pub fn with_isn_mode(
        client: SocketAddr,
        server: SocketAddr,
        mode: IsnMode,
    ) -> Result<Self, SynthError> {
        let (ic, is) = match mode {
            IsnMode::Random => (random_isn(), random_isn()),
            IsnMode::Deterministic { salt } => (
                deterministic_isn(client, server, salt),
                deterministic_isn(server, client, salt),
            ),
        };
        Self::new(client, server, ic, is, default_mss(client))
    }

    /// The connecting side's address.
    pub fn client(&self) -> SocketAddr {
        self.sides[CLIENT].addr
    }

    /// The accepting side's address.
    pub fn server(&self) -> SocketAddr {
        self.sides[SERVER].addr
    }

    /// The segment size.
    pub fn mss(&self) -> u16 {
        self.mss
    }

    /// Whether the handshake is done and no FIN/RST has been sent.
    pub fn is_open(&self) -> bool {
        self.state == State::Open
    }

    /// Payload bytes sent so far by the client (`true`) or the server (`false`): the stream
    /// offset the next byte in that direction will have.
    pub fn stream_len(&self, from_client: bool) -> u64 {
        self.sides[idx(from_client)].sent
    }

    /// The sequence number the given side will use next.
    pub fn next_seq(&self, from_client: bool) -> u32 {
        self.sides[idx(from_client)].snd_nxt
    }

    /// The three-way handshake: SYN, SYN-ACK, ACK. The SYNs carry MSS, window scale
    /// ([`WINDOW_SCALE`]) and SACK-permitted options, as a real stack sends them.
    pub fn open<F>(&mut self, mut sink: F) -> Result<(), SynthError>
    where
        F: FnMut(&Frame<'_>) -> io::Result<()>,
    {
        self.expect(State::New, "open")?;
        let syn = Flags {
            syn: true,
            ..Flags::default()
        };
        self.emit(CLIENT, FrameKind::Syn, syn, &[], 0, &mut sink)?;
        self.sides[CLIENT].snd_nxt = self.sides[CLIENT].snd_nxt.wrapping_add(1);
        let syn_ack = Flags { ack: true, ..syn };
        self.emit(SERVER, FrameKind::SynAck, syn_ack, &[], 0, &mut sink)?;
        self.sides[SERVER].snd_nxt = self.sides[SERVER].snd_nxt.wrapping_add(1);
        self.emit(CLIENT, FrameKind::Ack, ack_only(), &[], 0, &mut sink)?;
        self.state = State::Open;
        Ok(())
    }

    /// A refused connection: the client's SYN, answered by RST-ACK. The conversation is
    /// closed afterwards.
    pub fn open_refused<F>(&mut self, mut sink: F) -> Result<(), SynthError>
    where
        F: FnMut(&Frame<'_>) -> io::Result<()>,
    {
        self.expect(State::New, "open")?;
        let syn = Flags {
            syn: true,
            ..Flags::default()
        };
        self.emit(CLIENT, FrameKind::Syn, syn, &[], 0, &mut sink)?;
        self.sides[CLIENT].snd_nxt = self.sides[CLIENT].snd_nxt.wrapping_add(1);
        // The refusing side has no sequence number of its own: RFC 9293 uses SEQ=0.
        self.sides[SERVER].snd_nxt = 0;
        let rst = Flags {
            rst: true,
            ack: true,
            ..Flags::default()
        };
        self.emit(SERVER, FrameKind::Rst, rst, &[], 0, &mut sink)?;
        self.state = State::Closed;
        Ok(())
    }

    /// `bytes` sent by the client (`from_client`) or the server, as data segments of at
    /// most MSS bytes (PSH on the last), each acknowledging everything the other side sent;
    /// then a pure ACK from the receiver. In a write longer than [`ACK_EVERY`] the receiver
    /// also ACKs in between, as a real receiver would. Empty `bytes` emit nothing.
    ///
    /// [`Frame::data_range`] tells which bytes of `bytes` each data frame carries, so the
    /// caller can find the frame where a message ends ([`Frame::carries_end`]).
    pub fn data<F>(
        &mut self,
        from_client: bool,
        bytes: &[u8],
        mut sink: F,
    ) -> Result<(), SynthError>
    where
        F: FnMut(&Frame<'_>) -> io::Result<()>,
    {
        self.expect(State::Open, "send data")?;
        let tx = idx(from_client);
        let rx = 1 - tx;
        let mut off = 0usize;
        for chunk in bytes.chunks(usize::from(self.mss)) {
            let len = chunk.len() as u64;
            if self.sides[tx].unacked > 0 && self.sides[tx].unacked + len > ACK_EVERY {
                self.emit(rx, FrameKind::Ack, ack_only(), &[], off, &mut sink)?;
                self.sides[tx].unacked = 0;
            }
            let end = off + chunk.len();
            let flags = Flags {
                psh: end == bytes.len(),
                ..ack_only()
            };
            self.emit(tx, FrameKind::Data, flags, chunk, off, &mut sink)?;
            let side = &mut self.sides[tx];
            side.snd_nxt = side.snd_nxt.wrapping_add(chunk.len() as u32);
            side.unacked += len;
            side.sent += len;
            self.sides[rx].unacked = 0;
            off = end;
        }
        if self.sides[tx].unacked > 0 {
            self.emit(rx, FrameKind::Ack, ack_only(), &[], off, &mut sink)?;
            self.sides[tx].unacked = 0;
        }
        Ok(())
    }

    /// An orderly close: FIN-ACK from the initiator, FIN-ACK from the other side (its ACK
    /// and FIN in one segment, as Linux does when it closes at once), and the initiator's
    /// final ACK. The conversation is closed afterwards.
    pub fn close_fin<F>(&mut self, initiator_is_client: bool, mut sink: F) -> Result<(), SynthError>
    where
        F: FnMut(&Frame<'_>) -> io::Result<()>,
    {
        self.expect(State::Open, "close")?;
        let a = idx(initiator_is_client);
        let b = 1 - a;
        let fin = Flags {
            fin: true,
            ..ack_only()
        };
        for side in [a, b] {
            self.emit(side, FrameKind::Fin, fin, &[], 0, &mut sink)?;
            self.sides[side].snd_nxt = self.sides[side].snd_nxt.wrapping_add(1);
            self.sides[1 - side].unacked = 0;
        }
        self.emit(a, FrameKind::Ack, ack_only(), &[], 0, &mut sink)?;
        self.state = State::Closed;
        Ok(())
    }

    /// An abortive close: one RST-ACK from the given side. The conversation is closed
    /// afterwards.
    pub fn reset<F>(&mut self, from_client: bool, mut sink: F) -> Result<(), SynthError>
    where
        F: FnMut(&Frame<'_>) -> io::Result<()>,
    {
        self.expect(State::Open, "reset")?;
        let rst = Flags {
            rst: true,
            ..ack_only()
        };
        self.emit(idx(from_client), FrameKind::Rst, rst, &[], 0, &mut sink)?;
        self.state = State::Closed;
        Ok(())
    }

    fn expect(&self, want: State, action: &'static str) -> Result<(), SynthError> {
        if self.state == want {
            Ok(())
        } else {
            Err(SynthError::WrongState {
                action,
                state: self.state.name(),
            })
        }
    }

    /// Builds one segment from side `tx` with its current `snd_nxt`, acknowledging the
    /// other side's `snd_nxt`, and hands it to the sink. Sequence bookkeeping is the
    /// caller's.
    fn emit<F>(
        &mut self,
        tx: usize,
        kind: FrameKind,
        flags: Flags,
        payload: &[u8],
        off: usize,
        sink: &mut F,
    ) -> Result<(), SynthError>
    where
        F: FnMut(&Frame<'_>) -> io::Result<()>,
    {
        let (t, r) = (&self.sides[tx], &self.sides[1 - tx]);
        let window = if flags.syn {
            SYN_WINDOW
        } else if flags.rst {
            0
        } else {
            WINDOW
        };
        let mut tcp = TcpHeader::new(t.addr.port(), r.addr.port(), t.snd_nxt, window);
        tcp.syn = flags.syn;
        tcp.ack = flags.ack;
        tcp.psh = flags.psh;
        tcp.fin = flags.fin;
        tcp.rst = flags.rst;
        if flags.ack {
            tcp.acknowledgment_number = r.snd_nxt;
        }
        if flags.syn {
            // 12 bytes, the layout Windows uses; Linux adds timestamps, which we leave out
            // so that data frames keep a 20-byte TCP header.
            tcp.set_options(&[
                TcpOptionElement::MaximumSegmentSize(self.mss),
                TcpOptionElement::Noop,
                TcpOptionElement::WindowScale(WINDOW_SCALE),
                TcpOptionElement::Noop,
                TcpOptionElement::Noop,
                TcpOptionElement::SelectiveAcknowledgementPermitted,
            ])?;
        }
        let ips = if tx == CLIENT {
            self.ips
        } else {
            self.ips.reversed()
        };
        build_tcp(
            &mut self.hdr,
            (t.mac, r.mac),
            ips,
            t.ip_id,
            &mut tcp,
            payload,
        )?;
        let frame = Frame {
            headers: &self.hdr,
            payload,
            kind,
            from_client: tx == CLIENT,
            seq: tcp.sequence_number,
            ack: tcp.acknowledgment_number,
            data_range: off..off + payload.len(),
            stream_offset: t.sent,
        };
        sink(&frame)?;
        let t = &mut self.sides[tx];
        t.ip_id = t.ip_id.wrapping_add(1);
        Ok(())
    }
}

fn idx(from_client: bool) -> usize {
    if from_client {
        CLIENT
    } else {
        SERVER
    }
}

fn ack_only() -> Flags {
    Flags {
        ack: true,
        ..Flags::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};
    use proptest::prelude::*;

    /// A frame copied out of the callback, re-parsed and checksum-verified.
    #[derive(Debug, Clone)]
    struct Parsed {
        kind: FrameKind,
        from_client: bool,
        tcp: TcpHeader,
        payload: Vec<u8>,
        data_range: Range<usize>,
        stream_offset: u64,
        src_mac: [u8; 6],
        dst_mac: [u8; 6],
    }

    /// Parses a whole frame with etherparse and checks every checksum; panics (test only)
    /// when anything is off.
    fn verify(bytes: &[u8]) -> (Option<TcpHeader>, Option<UdpHeader>, Vec<u8>) {
        let p = SlicedPacket::from_ethernet(bytes).expect("frame parses");
        let (tcp, udp) = match (&p.net, &p.transport) {
            (Some(NetSlice::Ipv4(ip)), Some(TransportSlice::Tcp(t))) => {
                let h = ip.header().to_header();
                assert_eq!(h.header_checksum, h.calc_header_checksum(), "IPv4 checksum");
                assert_eq!(
                    usize::from(h.total_len),
                    bytes.len() - 14,
                    "IPv4 total length"
                );
                let th = t.to_header();
                let sum = th.calc_checksum_ipv4(&h, t.payload()).unwrap();
                assert_eq!(th.checksum, sum, "TCP/IPv4 checksum");
                (Some(th), None)
            }
            (Some(NetSlice::Ipv6(ip)), Some(TransportSlice::Tcp(t))) => {
                let h = ip.header().to_header();
                assert_eq!(
                    usize::from(h.payload_length),
                    bytes.len() - 54,
                    "IPv6 length"
                );
                let th = t.to_header();
                let sum = th.calc_checksum_ipv6(&h, t.payload()).unwrap();
                assert_eq!(th.checksum, sum, "TCP/IPv6 checksum");
                (Some(th), None)
            }
            (Some(NetSlice::Ipv4(ip)), Some(TransportSlice::Udp(u))) => {
                let h = ip.header().to_header();
                assert_eq!(h.header_checksum, h.calc_header_checksum(), "IPv4 checksum");
                let uh = u.to_header();
                assert_eq!(uh.checksum, uh.calc_checksum_ipv4(&h, u.payload()).unwrap());
                (None, Some(uh))
            }
            (Some(NetSlice::Ipv6(ip)), Some(TransportSlice::Udp(u))) => {
                let h = ip.header().to_header();
                let uh = u.to_header();
                assert_ne!(uh.checksum, 0, "UDP/IPv6 checksum is mandatory");
                assert_eq!(uh.checksum, uh.calc_checksum_ipv6(&h, u.payload()).unwrap());
                (None, Some(uh))
            }
            other => panic!("unexpected layers {other:?}"),
        };
        let payload = match &p.transport {
            Some(TransportSlice::Tcp(t)) => t.payload().to_vec(),
            Some(TransportSlice::Udp(u)) => u.payload().to_vec(),
            _ => Vec::new(),
        };
        (tcp, udp, payload)
    }

    fn collect(out: &mut Vec<Parsed>) -> impl FnMut(&Frame<'_>) -> io::Result<()> + '_ {
        move |f| {
            let mut whole = f.headers.to_vec();
            whole.extend_from_slice(f.payload);
            assert_eq!(whole.len(), f.len());
            let (tcp, _, payload) = verify(&whole);
            let tcp = tcp.expect("a TCP frame");
            assert_eq!(payload, f.payload);
            assert_eq!(tcp.sequence_number, f.seq);
            assert_eq!(tcp.acknowledgment_number, f.ack);
            out.push(Parsed {
                kind: f.kind,
                from_client: f.from_client,
                tcp,
                payload,
                data_range: f.data_range.clone(),
                stream_offset: f.stream_offset,
                src_mac: whole[6..12].try_into().unwrap(),
                dst_mac: whole[0..6].try_into().unwrap(),
            });
            Ok(())
        }
    }

    fn v4() -> (SocketAddr, SocketAddr) {
        (
            "192.168.1.10:50123".parse().unwrap(),
            "10.1.2.3:51413".parse().unwrap(),
        )
    }

    fn v6() -> (SocketAddr, SocketAddr) {
        (
            "[2001:db8::10]:50123".parse().unwrap(),
            "[2001:db8::3]:51413".parse().unwrap(),
        )
    }

    #[test]
    fn handshake_frames_and_options() {
        let (c, s) = v4();
        let mut conv = TcpConversation::new(c, s, 1000, 5000, 1460).unwrap();
        let mut out = Vec::new();
        conv.open(collect(&mut out)).unwrap();
        assert_eq!(out.len(), 3);
        let (syn, syn_ack, ack) = (&out[0].tcp, &out[1].tcp, &out[2].tcp);
        assert!(syn.syn && !syn.ack && syn.sequence_number == 1000);
        assert!(syn_ack.syn && syn_ack.ack);
        assert_eq!(
            (syn_ack.sequence_number, syn_ack.acknowledgment_number),
            (5000, 1001)
        );
        assert!(!ack.syn && ack.ack);
        assert_eq!(
            (ack.sequence_number, ack.acknowledgment_number),
            (1001, 5001)
        );
        assert_eq!((syn.source_port, syn.destination_port), (50123, 51413));
        assert_eq!(
            (syn_ack.source_port, syn_ack.destination_port),
            (51413, 50123)
        );
        for syn in [syn, syn_ack] {
            let opts: Vec<_> = syn.options_iterator().map(|o| o.unwrap()).collect();
            assert!(opts.contains(&TcpOptionElement::MaximumSegmentSize(1460)));
            assert!(opts.contains(&TcpOptionElement::WindowScale(WINDOW_SCALE)));
            assert!(opts.contains(&TcpOptionElement::SelectiveAcknowledgementPermitted));
            assert_eq!(syn.window_size, SYN_WINDOW);
        }
        assert_eq!(ack.window_size, WINDOW);
        assert_eq!(out[0].src_mac, [2, 0, 192, 168, 1, 10]);
        assert_eq!(out[0].dst_mac, [2, 0, 10, 1, 2, 3]);
        assert_eq!(out[1].src_mac, [2, 0, 10, 1, 2, 3]);
        assert!(conv.is_open());
        assert!(matches!(
            conv.open(|_| Ok(())),
            Err(SynthError::WrongState { .. })
        ));
    }

    #[test]
    fn data_split_at_mss_with_psh_on_last_and_one_ack() {
        let (c, s) = v6();
        let mut conv = TcpConversation::new(c, s, 7, 9, 1440).unwrap();
        conv.open(|_| Ok(())).unwrap();
        let bytes: Vec<u8> = (0..16397u32).map(|i| i as u8).collect();
        let mut out = Vec::new();
        conv.data(false, &bytes, collect(&mut out)).unwrap();
        // 16397 = 11 * 1440 + 557 → 12 data segments, then the client's ACK.
        assert_eq!(out.len(), 13);
        let data = &out[..12];
        let mut seq = 10u32;
        let mut joined = Vec::new();
        for (i, f) in data.iter().enumerate() {
            assert_eq!(f.kind, FrameKind::Data);
            assert!(!f.from_client);
            assert_eq!(f.tcp.sequence_number, seq);
            assert_eq!(f.tcp.acknowledgment_number, 8);
            assert_eq!(f.tcp.psh, i == 11);
            assert_eq!(f.data_range.start, joined.len());
            assert_eq!(f.stream_offset, joined.len() as u64);
            seq = seq.wrapping_add(f.payload.len() as u32);
            joined.extend_from_slice(&f.payload);
        }
        assert_eq!(joined, bytes);
        let ack = &out[12];
        assert_eq!(ack.kind, FrameKind::Ack);
        assert!(ack.from_client && ack.payload.is_empty());
        assert_eq!(
            (ack.tcp.sequence_number, ack.tcp.acknowledgment_number),
            (8, seq)
        );
        assert_eq!(conv.stream_len(false), 16397);
        assert_eq!(conv.stream_len(true), 0);
    }

    #[test]
    fn carries_end_finds_the_completing_frame() {
        let (c, s) = v4();
        let mut conv = TcpConversation::new(c, s, 0, 0, 100).unwrap();
        conv.open(|_| Ok(())).unwrap();
        let mut hits = Vec::new();
        let mut n = 0;
        conv.data(true, &[0u8; 250], |f| {
            n += 1;
            for end in [1usize, 100, 101, 250] {
                if f.carries_end(end) {
                    hits.push((end, n, f.kind));
                }
            }
            Ok(())
        })
        .unwrap();
        use FrameKind::Data;
        assert_eq!(
            hits,
            [(1, 1, Data), (100, 1, Data), (101, 2, Data), (250, 3, Data)]
        );
    }

    #[test]
    fn long_write_is_acked_every_64_kib() {
        let (c, s) = v4();
        let mut conv = TcpConversation::new(c, s, 1, 2, 1460).unwrap();
        conv.open(|_| Ok(())).unwrap();
        let mut out = Vec::new();
        conv.data(true, &vec![1u8; 1 << 20], collect(&mut out))
            .unwrap();
        let mut in_flight = 0u64;
        for f in &out {
            if f.kind == FrameKind::Data {
                in_flight += f.payload.len() as u64;
                assert!(in_flight <= ACK_EVERY);
            } else {
                assert_eq!(f.kind, FrameKind::Ack);
                assert!(!f.from_client);
                in_flight = 0;
            }
        }
        assert_eq!(in_flight, 0);
    }

    #[test]
    fn fin_exchange() {
        let (c, s) = v4();
        let mut conv = TcpConversation::new(c, s, 100, 200, 1460).unwrap();
        conv.open(|_| Ok(())).unwrap();
        conv.data(true, b"hello", |_| Ok(())).unwrap();
        let mut out = Vec::new();
        conv.close_fin(false, collect(&mut out)).unwrap();
        let t: Vec<_> = out
            .iter()
            .map(|f| {
                (
                    f.kind,
                    f.from_client,
                    f.tcp.fin,
                    f.tcp.sequence_number,
                    f.tcp.acknowledgment_number,
                )
            })
            .collect();
        assert_eq!(
            t,
            [
                (FrameKind::Fin, false, true, 201, 106),
                (FrameKind::Fin, true, true, 106, 202),
                (FrameKind::Ack, false, false, 202, 107),
            ]
        );
        assert!(!conv.is_open());
        assert!(matches!(
            conv.data(true, b"x", |_| Ok(())),
            Err(SynthError::WrongState { .. })
        ));
    }

    #[test]
    fn reset_and_refused() {
        let (c, s) = v6();
        let mut conv = TcpConversation::new(c, s, 100, 200, 1440).unwrap();
        assert!(matches!(
            conv.reset(true, |_| Ok(())),
            Err(SynthError::WrongState { .. })
        ));
        conv.open(|_| Ok(())).unwrap();
        let mut out = Vec::new();
        conv.reset(true, collect(&mut out)).unwrap();
        assert_eq!(out.len(), 1);
        assert!(out[0].tcp.rst && out[0].tcp.ack && out[0].from_client);
        assert_eq!(
            (out[0].tcp.sequence_number, out[0].tcp.acknowledgment_number),
            (101, 201)
        );

        let mut conv = TcpConversation::new(c, s, 100, 200, 1440).unwrap();
        let mut out = Vec::new();
        conv.open_refused(collect(&mut out)).unwrap();
        assert_eq!(out.len(), 2);
        assert!(out[1].tcp.rst && out[1].tcp.ack);
        assert_eq!(out[1].tcp.acknowledgment_number, 101);
    }

    #[test]
    fn sink_error_stops_and_is_reported() {
        let (c, s) = v4();
        let mut conv = TcpConversation::new(c, s, 1, 2, 1460).unwrap();
        let mut n = 0;
        let err = conv
            .open(|_| {
                n += 1;
                Err(io::Error::other("disk full"))
            })
            .unwrap_err();
        assert!(matches!(err, SynthError::Sink(_)));
        assert_eq!(n, 1);
    }

    #[test]
    fn construction_errors() {
        let (c4, s4) = v4();
        let (c6, _) = v6();
        assert!(matches!(
            TcpConversation::new(c4, c6, 0, 0, 1460),
            Err(SynthError::MixedFamilies { .. })
        ));
        assert!(matches!(
            TcpConversation::new(c4, s4, 0, 0, 0),
            Err(SynthError::InvalidMss(0))
        ));
        assert!(TcpConversation::new(c4, s4, 0, 0, MAX_MSS).is_ok());
        assert!(matches!(
            TcpConversation::new(c4, s4, 0, 0, MAX_MSS + 1),
            Err(SynthError::InvalidMss(_))
        ));
        let mut buf = Vec::new();
        assert!(matches!(
            udp_datagram(&mut buf, c4, s4, &vec![0; MAX_UDP_PAYLOAD + 1]),
            Err(SynthError::PayloadTooLarge { .. })
        ));
    }

    #[test]
    fn mapped_ipv6_counts_as_ipv4() {
        let c: SocketAddr = "[::ffff:127.0.0.1]:6000".parse().unwrap();
        let s: SocketAddr = "127.0.0.1:6881".parse().unwrap();
        let mut conv = TcpConversation::new(c, s, 1, 2, 1460).unwrap();
        let mut out = Vec::new();
        conv.open(|f| {
            out.push(f.headers[12..14].to_vec());
            Ok(())
        })
        .unwrap();
        assert!(out.iter().all(|et| et == &[0x08, 0x00]));
        assert_eq!(mac_for(c.ip()), [2, 0, 127, 0, 0, 1]);
    }

    #[test]
    fn max_mss_segments_fit() {
        for (c, s) in [v4(), v6()] {
            let mut conv = TcpConversation::new(c, s, 1, 2, MAX_MSS).unwrap();
            let mut out = Vec::new();
            conv.open(collect(&mut out)).unwrap();
            conv.data(
                true,
                &vec![9u8; 3 * usize::from(MAX_MSS) + 1],
                collect(&mut out),
            )
            .unwrap();
            assert_eq!(out.iter().filter(|f| f.kind == FrameKind::Data).count(), 4);
        }
    }

    #[test]
    fn udp_v4_and_v6() {
        let mut buf = Vec::new();
        for (c, s) in [v4(), v6()] {
            let payload = b"\x00\x00\x04\x17\x27\x10\x19\x80\x00\x00\x00\x00\x12\x34\x56\x78";
            let f = udp_datagram(&mut buf, c, s, payload).unwrap();
            assert_eq!(f.kind, FrameKind::Udp);
            let mut whole = f.headers.to_vec();
            whole.extend_from_slice(f.payload);
            let (_, udp, p) = verify(&whole);
            let udp = udp.unwrap();
            assert_eq!((udp.source_port, udp.destination_port), (50123, 51413));
            assert_eq!(p, payload);
        }
        // Empty payload is a valid datagram too.
        let (c, s) = v6();
        let f = udp_datagram(&mut buf, c, s, &[]).unwrap();
        verify(f.headers);
    }

    #[test]
    fn stream_offsets_across_writes() {
        let (c, s) = v4();
        let mut conv = TcpConversation::new(c, s, 0, 0, 10).unwrap();
        conv.open(|_| Ok(())).unwrap();
        // A 25-byte message written in two parts (15 + 10 bytes): it completes in the
        // second write's only data frame.
        let mut done = Vec::new();
        for part in [&[0u8; 15][..], &[0u8; 10][..]] {
            conv.data(true, part, |f| {
                if f.kind == FrameKind::Data {
                    done.push((f.stream_offset, f.carries_stream_end(25)));
                }
                Ok(())
            })
            .unwrap();
        }
        assert_eq!(done, [(0, false), (10, false), (15, true)]);
    }

    #[test]
    fn isns() {
        assert_eq!(usable_isn(u32::MAX), u32::MAX - 1);
        assert_eq!(usable_isn(0), 0);
        let (c, s) = v4();
        assert_eq!(deterministic_isn(c, s, 3), deterministic_isn(c, s, 3));
        assert_ne!(deterministic_isn(c, s, 3), deterministic_isn(s, c, 3));
        assert_ne!(deterministic_isn(c, s, 3), deterministic_isn(c, s, 4));
        // Pinned: the reproducible mode must not change silently between versions.
        assert_eq!(deterministic_isn(c, s, 0), 0xba4a_bfc1);
        let a = TcpConversation::with_isn_mode(c, s, IsnMode::Deterministic { salt: 1 }).unwrap();
        let b = TcpConversation::with_isn_mode(c, s, IsnMode::Deterministic { salt: 1 }).unwrap();
        assert_eq!(a.next_seq(true), b.next_seq(true));
        assert_eq!(a.next_seq(false), b.next_seq(false));
        assert_eq!(a.mss(), MSS_IPV4);
        let (c6, s6) = v6();
        let r = TcpConversation::with_isn_mode(c6, s6, IsnMode::Random).unwrap();
        assert_eq!(r.mss(), MSS_IPV6);
    }

    /// Replays every frame as a receiver would and checks the TCP invariants tshark's
    /// analysis relies on: each segment starts where its side's previous one ended, every
    /// ACK acknowledges exactly what the other side sent, ACK numbers never go back, a
    /// pure ACK always acknowledges something new (no duplicate ACKs), and the payloads
    /// reassemble into the bytes given.
    fn check_conversation(isn_c: u32, isn_s: u32, mss: u16, writes: &[(bool, usize)]) {
        let (c, s) = v4();
        let mut conv = TcpConversation::new(c, s, isn_c, isn_s, mss).unwrap();
        let mut out = Vec::new();
        conv.open(collect(&mut out)).unwrap();
        let mut sent: [Vec<u8>; 2] = [Vec::new(), Vec::new()];
        let mut k = 0u8;
        for &(from_client, len) in writes {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    k = k.wrapping_add(1);
                    k
                })
                .collect();
            conv.data(from_client, &bytes, collect(&mut out)).unwrap();
            sent[idx(from_client)].extend_from_slice(&bytes);
        }
        conv.close_fin(true, collect(&mut out)).unwrap();

        let isn = [isn_c, isn_s];
        let mut next = [isn_c.wrapping_add(1), isn_s.wrapping_add(1)];
        let mut last_ack: [Option<u32>; 2] = [None, None];
        let mut got: [Vec<u8>; 2] = [Vec::new(), Vec::new()];
        let mut fin_seen = [false, false];
        for f in &out[3..] {
            let t = idx(f.from_client);
            let r = 1 - t;
            assert_eq!(f.tcp.sequence_number, next[t], "seq continues");
            assert!(f.tcp.ack);
            assert_eq!(
                f.tcp.acknowledgment_number, next[r],
                "acks all the other side sent"
            );
            if f.kind == FrameKind::Ack {
                assert_ne!(last_ack[t], Some(f.tcp.acknowledgment_number), "no dup ACK");
            }
            last_ack[t] = Some(f.tcp.acknowledgment_number);
            assert_eq!(f.stream_offset, got[t].len() as u64);
            got[t].extend_from_slice(&f.payload);
            next[t] = next[t].wrapping_add(f.payload.len() as u32);
            if f.tcp.fin {
                assert!(!fin_seen[t]);
                fin_seen[t] = true;
                next[t] = next[t].wrapping_add(1);
            }
            // In flight never exceeds the window we announce.
            let in_flight = next[t].wrapping_sub(last_ack[r].unwrap_or(isn[t].wrapping_add(1)));
            assert!(u64::from(in_flight) <= ACK_EVERY + 1);
        }
        assert_eq!(got, sent);
        assert_eq!(fin_seen, [true, true]);
        assert_eq!(conv.stream_len(true), sent[0].len() as u64);
    }

    #[test]
    fn sequence_space_wraps_around() {
        // Both ISNs a few segments below 2^32: the stream crosses zero in the middle.
        let writes = [
            (true, 5000),
            (false, 70_000),
            (true, 13),
            (false, 1),
            (true, 65_536),
        ];
        check_conversation(u32::MAX - 3000, u32::MAX - 10, 1460, &writes);
        check_conversation(u32::MAX, u32::MAX, 536, &writes);
    }

    proptest! {
        #[test]
        fn bookkeeping_holds_for_any_writes(
            isn_c in any::<u32>(),
            isn_s in prop_oneof![any::<u32>(), (u32::MAX - 20_000)..=u32::MAX],
            mss in prop_oneof![1u16..64, 500u16..1461, Just(MAX_MSS)],
            writes in proptest::collection::vec((any::<bool>(), 0usize..40_000), 0..12),
        ) {
            check_conversation(isn_c, isn_s, mss, &writes);
        }

        #[test]
        fn any_endpoints_work_or_fail_cleanly(
            a in any::<[u8; 16]>(), b in any::<[u8; 16]>(),
            pa in any::<u16>(), pb in any::<u16>(),
            a6 in any::<bool>(), b6 in any::<bool>(),
            mss in any::<u16>(), len in 0usize..5000,
        ) {
            let ip = |bytes: [u8; 16], v6: bool| -> IpAddr {
                if v6 {
                    std::net::Ipv6Addr::from(bytes).into()
                } else {
                    std::net::Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]).into()
                }
            };
            let c = SocketAddr::new(ip(a, a6), pa);
            let s = SocketAddr::new(ip(b, b6), pb);
            match TcpConversation::new(c, s, pa.into(), pb.into(), mss) {
                Ok(mut conv) => {
                    let mut out = Vec::new();
                    conv.open(collect(&mut out)).unwrap();
                    conv.data(pa % 2 == 0, &vec![1u8; len], collect(&mut out)).unwrap();
                    conv.reset(false, collect(&mut out)).unwrap();
                }
                Err(SynthError::InvalidMss(m)) => prop_assert!(m == 0 || m > MAX_MSS),
                Err(SynthError::MixedFamilies { .. }) => {}
                Err(e) => prop_assert!(false, "unexpected {e}"),
            }
        }

        /// Our TCP header bytes are etherparse's, for any fields and options.
        #[test]
        fn tcp_header_bytes_match_etherparse(
            ports in any::<(u16, u16)>(), seq in any::<(u32, u32)>(), window in any::<u16>(),
            flags in any::<[bool; 9]>(), urgent in any::<u16>(), checksum in any::<u16>(),
            syn_options in any::<bool>(),
        ) {
            let mut tcp = TcpHeader::new(ports.0, ports.1, seq.0, window);
            tcp.acknowledgment_number = seq.1;
            [tcp.ns, tcp.fin, tcp.syn, tcp.rst, tcp.psh, tcp.ack, tcp.urg, tcp.ece, tcp.cwr] =
                flags;
            tcp.urgent_pointer = urgent;
            tcp.checksum = checksum;
            if syn_options {
                tcp.set_options(&[
                    TcpOptionElement::MaximumSegmentSize(1460),
                    TcpOptionElement::WindowScale(WINDOW_SCALE),
                    TcpOptionElement::SelectiveAcknowledgementPermitted,
                ]).unwrap();
            }
            let mut ours = Vec::new();
            tcp_header_bytes(&mut ours, &tcp);
            prop_assert_eq!(ours, tcp.to_bytes().to_vec());
        }

        /// The fast checksum agrees with etherparse's for any payload, length and family.
        #[test]
        fn tcp_checksums_match_etherparse(
            payload in proptest::collection::vec(any::<u8>(), 0..3000),
            a in any::<[u8; 16]>(), b in any::<[u8; 16]>(), v6 in any::<bool>(),
            mss in 1u16..1461,
        ) {
            let ip = |bytes: [u8; 16]| -> IpAddr {
                if v6 {
                    std::net::Ipv6Addr::from(bytes).into()
                } else {
                    std::net::Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]).into()
                }
            };
            let mut conv = TcpConversation::new(
                SocketAddr::new(ip(a), 40000), SocketAddr::new(ip(b), 6881), 7, 9, mss,
            ).unwrap();
            conv.open(|f| { verify(&[f.headers, f.payload].concat()); Ok(()) }).unwrap();
            conv.data(true, &payload, |f| { verify(&[f.headers, f.payload].concat()); Ok(()) })
                .unwrap();
        }

        #[test]
        fn udp_never_panics(port in any::<u16>(), len in 0usize..70_000, v6 in any::<bool>()) {
            let (c, s) = if v6 { super::tests::v6() } else { v4() };
            let c = SocketAddr::new(c.ip(), port);
            let mut buf = Vec::new();
            let payload = vec![0xabu8; len];
            match udp_datagram(&mut buf, c, s, &payload) {
                Ok(f) => {
                    let mut whole = f.headers.to_vec();
                    whole.extend_from_slice(f.payload);
                    verify(&whole);
                }
                Err(SynthError::PayloadTooLarge { .. }) => prop_assert!(len > MAX_UDP_PAYLOAD),
                Err(e) => prop_assert!(false, "unexpected {e}"),
            }
        }
    }
}
