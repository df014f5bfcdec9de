//! Link layers, IPv4/IPv6 and TCP/UDP headers: from a captured frame to the transport payload.
//!
//! Link types (tcpdump.org LINKTYPE_ values): Ethernet (1) with 802.1Q / 802.1ad (QinQ) VLAN tags, Linux cooked
//! capture SLL (113) and SLL2 (276) — what `-i any` gives —, raw IP (101), raw IPv4 (228) / IPv6 (229), BSD
//! NULL/loopback (0, family in either byte order) and OpenBSD LOOP (108). Others are kept as
//! [`LinkType::Unknown`]. IPv4 (options skipped; fragments reported, not reassembled) and IPv6 (hop-by-hop,
//! routing, fragment, destination options and AH extension headers skipped). TCP checksums are not verified
//! (captures on `lo` carry partial checksums).
//!
//! Frames cut by a snap length: whatever payload is there is returned with `truncated` set.
//!
//! Contract: [`dissect`] never panics and never allocates; payloads borrow from the frame.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A pcap/pcapng link-layer header type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LinkType {
    /// BSD loopback: a 4-byte address family in the capturing host's byte order.
    Null,
    Ethernet,
    /// Raw IP, version taken from the first nibble.
    Raw,
    /// OpenBSD loopback: like `Null` but the family is big-endian.
    Loop,
    LinuxSll,
    LinuxSll2,
    Ipv4,
    Ipv6,
    /// Any other LINKTYPE value, kept so it can be shown.
    Unknown(u32),
}

impl LinkType {
    pub fn from_code(code: u32) -> LinkType {
        match code {
            0 => LinkType::Null,
            1 => LinkType::Ethernet,
            101 => LinkType::Raw,
            108 => LinkType::Loop,
            113 => LinkType::LinuxSll,
            276 => LinkType::LinuxSll2,
            228 => LinkType::Ipv4,
            229 => LinkType::Ipv6,
            c => LinkType::Unknown(c),
        }
    }

    pub fn code(self) -> u32 {
        match self {
            LinkType::Null => 0,
            LinkType::Ethernet => 1,
            LinkType::Raw => 101,
            LinkType::Loop => 108,
            LinkType::LinuxSll => 113,
            LinkType::LinuxSll2 => 276,
            LinkType::Ipv4 => 228,
            LinkType::Ipv6 => 229,
            LinkType::Unknown(c) => c,
        }
    }

    /// Short name as tcpdump prints it (`EN10MB`, `LINUX_SLL`, ...).
    pub fn name(self) -> &'static str {
        match self {
            LinkType::Null => "NULL",
            LinkType::Ethernet => "EN10MB",
            LinkType::Raw => "RAW",
            LinkType::Loop => "LOOP",
            LinkType::LinuxSll => "LINUX_SLL",
            LinkType::LinuxSll2 => "LINUX_SLL2",
            LinkType::Ipv4 => "IPV4",
            LinkType::Ipv6 => "IPV6",
            LinkType::Unknown(_) => "unknown",
        }
    }
}

impl fmt::Display for LinkType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.code())
    }
}

/// TCP header flags (the 9 low bits of bytes 12–13).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpFlags(pub u16);

impl TcpFlags {
    pub const FIN: u16 = 0x001;
    pub const SYN: u16 = 0x002;
    pub const RST: u16 = 0x004;
    pub const PSH: u16 = 0x008;
    pub const ACK: u16 = 0x010;
    pub const URG: u16 = 0x020;
    pub const ECE: u16 = 0x040;
    pub const CWR: u16 = 0x080;
    pub const NS: u16 = 0x100;

    #[inline]
    pub fn has(self, bit: u16) -> bool {
        self.0 & bit != 0
    }
    #[inline]
    pub fn syn(self) -> bool {
        self.has(Self::SYN)
    }
    #[inline]
    pub fn fin(self) -> bool {
        self.has(Self::FIN)
    }
    #[inline]
    pub fn rst(self) -> bool {
        self.has(Self::RST)
    }
    #[inline]
    pub fn ack(self) -> bool {
        self.has(Self::ACK)
    }
}

/// A TCP segment's header fields and payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpSegment<'a> {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: TcpFlags,
    pub window: u16,
    pub payload: &'a [u8],
}

/// A UDP datagram's ports and payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpDatagram<'a> {
    pub src_port: u16,
    pub dst_port: u16,
    pub payload: &'a [u8],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport<'a> {
    Tcp(TcpSegment<'a>),
    Udp(UdpDatagram<'a>),
}

/// A frame reduced to what TCP reassembly and UDP decoding need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dissected<'a> {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub transport: Transport<'a>,
    /// The IP header announces more bytes than were captured: the payload is a prefix of the real one.
    pub truncated: bool,
}

/// Why a frame gave no TCP/UDP payload. `Truncated` / `Malformed` name the layer that was cut or broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skipped {
    /// The link type is not one we dissect.
    UnknownLink(LinkType),
    /// Neither IPv4 nor IPv6 (ARP, LLDP, ...): the EtherType, or the address family for NULL/LOOP.
    NotIp { ethertype: u16 },
    /// IP carried something else than TCP or UDP (ICMP, ...).
    OtherProtocol { protocol: u8 },
    /// An IP fragment (not reassembled).
    Fragment,
    /// The frame ends inside a header.
    Truncated { layer: &'static str },
    /// A header field is impossible (bad version, header length too small, ...).
    Malformed { layer: &'static str },
}

impl fmt::Display for Skipped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Skipped::UnknownLink(l) => write!(f, "link type {l} is not dissected"),
            Skipped::NotIp { ethertype } => write!(f, "not IP (type 0x{ethertype:04x})"),
            Skipped::OtherProtocol { protocol } => {
                write!(f, "IP protocol {protocol} is neither TCP nor UDP")
            }
            Skipped::Fragment => write!(f, "IP fragment"),
            Skipped::Truncated { layer } => write!(f, "frame ends inside the {layer} header"),
            Skipped::Malformed { layer } => write!(f, "malformed {layer} header"),
        }
    }
}

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88a8;
const ETHERTYPE_QINQ_OLD: u16 = 0x9100;
/// Stacked VLAN tags followed before giving up.
const MAX_VLAN_TAGS: usize = 8;
/// IPv6 extension headers followed before giving up.
const MAX_IPV6_EXT: usize = 16;

#[inline]
fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

#[inline]
fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes([
        *b.get(at)?,
        *b.get(at + 1)?,
        *b.get(at + 2)?,
        *b.get(at + 3)?,
    ]))
}

/// Dissects a frame of link type `link` down to its TCP segment or UDP datagram.
pub fn dissect(link: LinkType, frame: &[u8]) -> Result<Dissected<'_>, Skipped> {
    match link {
        LinkType::Ethernet => {
            let ethertype = be16(frame, 12).ok_or(Skipped::Truncated { layer: "Ethernet" })?;
            by_ethertype(ethertype, frame, 14)
        }
        LinkType::LinuxSll => {
            let proto = be16(frame, 14).ok_or(Skipped::Truncated { layer: "Linux SLL" })?;
            by_ethertype(proto, frame, 16)
        }
        LinkType::LinuxSll2 => {
            if frame.len() < 20 {
                return Err(Skipped::Truncated {
                    layer: "Linux SLL2",
                });
            }
            let proto = be16(frame, 0).ok_or(Skipped::Truncated {
                layer: "Linux SLL2",
            })?;
            by_ethertype(proto, frame, 20)
        }
        LinkType::Raw => ip_any(frame),
        LinkType::Ipv4 => ipv4(frame),
        LinkType::Ipv6 => ipv6(frame),
        LinkType::Null | LinkType::Loop => {
            let b: [u8; 4] = frame
                .get(..4)
                .and_then(|s| s.try_into().ok())
                .ok_or(Skipped::Truncated { layer: "loopback" })?;
            // NULL is in the capturing host's byte order: a family is small, so the non-zero half tells.
            let family = if link == LinkType::Loop || u32::from_le_bytes(b) > 0xffff {
                u32::from_be_bytes(b)
            } else {
                u32::from_le_bytes(b)
            };
            match family {
                2 => ipv4(&frame[4..]),
                10 | 24 | 28 | 30 => ipv6(&frame[4..]),
                f => Err(Skipped::NotIp {
                    ethertype: f as u16,
                }),
            }
        }
        LinkType::Unknown(_) => Err(Skipped::UnknownLink(link)),
    }
}

/// Follows VLAN tags, then hands the IP packet at `at` to the right parser.
fn by_ethertype(mut ethertype: u16, frame: &[u8], mut at: usize) -> Result<Dissected<'_>, Skipped> {
    for _ in 0..MAX_VLAN_TAGS {
        match ethertype {
            ETHERTYPE_IPV4 => return ipv4(frame.get(at..).unwrap_or_default()),
            ETHERTYPE_IPV6 => return ipv6(frame.get(at..).unwrap_or_default()),
            ETHERTYPE_VLAN | ETHERTYPE_QINQ | ETHERTYPE_QINQ_OLD => {
                // Tag: 2 bytes of priority/VLAN id, then the inner EtherType.
                ethertype = be16(frame, at + 2).ok_or(Skipped::Truncated { layer: "802.1Q" })?;
                at += 4;
            }
            other => return Err(Skipped::NotIp { ethertype: other }),
        }
    }
    Err(Skipped::Malformed { layer: "802.1Q" })
}

fn ip_any(pkt: &[u8]) -> Result<Dissected<'_>, Skipped> {
    match pkt.first().map(|b| b >> 4) {
        Some(4) => ipv4(pkt),
        Some(6) => ipv6(pkt),
        Some(_) => Err(Skipped::Malformed { layer: "IP" }),
        None => Err(Skipped::Truncated { layer: "IP" }),
    }
}

fn ipv4(pkt: &[u8]) -> Result<Dissected<'_>, Skipped> {
    if pkt.len() < 20 {
        return Err(Skipped::Truncated { layer: "IPv4" });
    }
    if pkt[0] >> 4 != 4 {
        return Err(Skipped::Malformed { layer: "IPv4" });
    }
    let ihl = usize::from(pkt[0] & 0x0f) * 4;
    if ihl < 20 {
        return Err(Skipped::Malformed { layer: "IPv4" });
    }
    if pkt.len() < ihl {
        return Err(Skipped::Truncated { layer: "IPv4" });
    }
    let total = usize::from(u16::from_be_bytes([pkt[2], pkt[3]]));
    // Total length 0 is what TSO-offloaded packets show: take what was captured.
    let (end, truncated) = if total == 0 {
        (pkt.len(), false)
    } else if total < ihl {
        return Err(Skipped::Malformed { layer: "IPv4" });
    } else if total > pkt.len() {
        (pkt.len(), true)
    } else {
        (total, false) // drops Ethernet padding
    };
    let frag = u16::from_be_bytes([pkt[6], pkt[7]]);
    if frag & 0x3fff != 0 {
        return Err(Skipped::Fragment); // more-fragments flag or a non-zero offset
    }
    let src = IpAddr::V4(Ipv4Addr::new(pkt[12], pkt[13], pkt[14], pkt[15]));
    let dst = IpAddr::V4(Ipv4Addr::new(pkt[16], pkt[17], pkt[18], pkt[19]));
    transport(pkt[9], src, dst, &pkt[ihl..end], truncated)
}

fn ipv6(pkt: &[u8]) -> Result<Dissected<'_>, Skipped> {
    if pkt.len() < 40 {
        return Err(Skipped::Truncated { layer: "IPv6" });
    }
    if pkt[0] >> 4 != 6 {
        return Err(Skipped::Malformed { layer: "IPv6" });
    }
    let payload_len = usize::from(u16::from_be_bytes([pkt[4], pkt[5]]));
    let (end, truncated) = if payload_len == 0 {
        (pkt.len(), false) // jumbogram or TSO: take what was captured
    } else if 40 + payload_len > pkt.len() {
        (pkt.len(), true)
    } else {
        (40 + payload_len, false)
    };
    let mut src = [0u8; 16];
    src.copy_from_slice(&pkt[8..24]);
    let mut dst = [0u8; 16];
    dst.copy_from_slice(&pkt[24..40]);
    let (src, dst) = (
        IpAddr::V6(Ipv6Addr::from(src)),
        IpAddr::V6(Ipv6Addr::from(dst)),
    );
    let pkt = &pkt[..end];
    let mut next = pkt[6];
    let mut at = 40;
    for _ in 0..MAX_IPV6_EXT {
        match next {
            // Hop-by-hop, routing, destination options: length in 8-byte units, not counting the first 8.
            0 | 43 | 60 => {
                let (Some(&n), Some(&l)) = (pkt.get(at), pkt.get(at + 1)) else {
                    return Err(Skipped::Truncated {
                        layer: "IPv6 extension",
                    });
                };
                next = n;
                at += (usize::from(l) + 1) * 8;
            }
            44 => {
                let (Some(&n), Some(off)) = (pkt.get(at), be16(pkt, at + 2)) else {
                    return Err(Skipped::Truncated {
                        layer: "IPv6 fragment",
                    });
                };
                if off & 0xfff9 != 0 {
                    return Err(Skipped::Fragment); // offset != 0 or more fragments follow
                }
                next = n; // an atomic fragment: the whole packet is here
                at += 8;
            }
            // Authentication header: length in 4-byte units, not counting the first 8 bytes.
            51 => {
                let (Some(&n), Some(&l)) = (pkt.get(at), pkt.get(at + 1)) else {
                    return Err(Skipped::Truncated { layer: "IPv6 AH" });
                };
                next = n;
                at += (usize::from(l) + 2) * 4;
            }
            proto => {
                let payload = pkt.get(at..).ok_or(Skipped::Truncated {
                    layer: "IPv6 extension",
                })?;
                return transport(proto, src, dst, payload, truncated);
            }
        }
    }
    Err(Skipped::Malformed {
        layer: "IPv6 extension",
    })
}

fn transport<'a>(
    proto: u8,
    src: IpAddr,
    dst: IpAddr,
    p: &'a [u8],
    truncated: bool,
) -> Result<Dissected<'a>, Skipped> {
    let cut = |layer| {
        if truncated {
            Skipped::Truncated { layer }
        } else {
            Skipped::Malformed { layer }
        }
    };
    match proto {
        6 => {
            if p.len() < 20 {
                return Err(cut("TCP"));
            }
            let off = usize::from(p[12] >> 4) * 4;
            if off < 20 {
                return Err(Skipped::Malformed { layer: "TCP" });
            }
            let payload = p.get(off..).ok_or_else(|| cut("TCP"))?;
            let seg = TcpSegment {
                src_port: u16::from_be_bytes([p[0], p[1]]),
                dst_port: u16::from_be_bytes([p[2], p[3]]),
                seq: be32(p, 4).unwrap_or(0),
                ack: be32(p, 8).unwrap_or(0),
                flags: TcpFlags(u16::from_be_bytes([p[12], p[13]]) & 0x01ff),
                window: u16::from_be_bytes([p[14], p[15]]),
                payload,
            };
            Ok(Dissected {
                src,
                dst,
                transport: Transport::Tcp(seg),
                truncated,
            })
        }
        17 => {
            if p.len() < 8 {
                return Err(cut("UDP"));
            }
            let ulen = usize::from(u16::from_be_bytes([p[4], p[5]]));
            // The UDP length bounds the payload when it is sane; 0 (jumbogram) or a bigger one: take what is there.
            let payload = if (8..=p.len()).contains(&ulen) {
                &p[8..ulen]
            } else {
                &p[8..]
            };
            let dg = UdpDatagram {
                src_port: u16::from_be_bytes([p[0], p[1]]),
                dst_port: u16::from_be_bytes([p[2], p[3]]),
                payload,
            };
            let truncated = truncated || ulen > p.len();
            Ok(Dissected {
                src,
                dst,
                transport: Transport::Udp(dg),
                truncated,
            })
        }
        protocol => Err(Skipped::OtherProtocol { protocol }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{LinuxSllPacketType, PacketBuilder, TcpOptionElement, VlanId};

    const A4: [u8; 4] = [10, 0, 0, 1];
    const B4: [u8; 4] = [10, 0, 0, 2];

    /// Raw IPv4 + TCP packet (with MSS and timestamp options) carrying `payload`.
    fn ipv4_tcp(payload: &[u8]) -> Vec<u8> {
        let b = PacketBuilder::ipv4(A4, B4, 64)
            .tcp(6881, 40000, 0xffff_fff0, 512)
            .ack(77)
            .options(&[
                TcpOptionElement::MaximumSegmentSize(1460),
                TcpOptionElement::Timestamp(1, 2),
            ])
            .unwrap();
        let mut v = Vec::with_capacity(b.size(payload.len()));
        b.write(&mut v, payload).unwrap();
        v
    }

    fn ipv6_udp(payload: &[u8]) -> Vec<u8> {
        let b = PacketBuilder::ipv6([1; 16], [2; 16], 64).udp(6969, 1234);
        let mut v = Vec::new();
        b.write(&mut v, payload).unwrap();
        v
    }

    fn tcp<'a>(d: &Dissected<'a>) -> TcpSegment<'a> {
        match d.transport {
            Transport::Tcp(s) => s,
            Transport::Udp(_) => panic!("expected TCP"),
        }
    }

    fn check_tcp(d: Dissected<'_>, payload: &[u8]) {
        assert_eq!(d.src, IpAddr::from(A4));
        assert_eq!(d.dst, IpAddr::from(B4));
        let s = tcp(&d);
        assert_eq!(
            (s.src_port, s.dst_port, s.seq, s.ack, s.window),
            (6881, 40000, 0xffff_fff0, 77, 512)
        );
        assert!(s.flags.ack() && !s.flags.syn());
        assert_eq!(s.payload, payload);
        assert!(!d.truncated);
    }

    #[test]
    fn ethernet_plain_and_vlan_tagged() {
        let payload = b"\x13BitTorrent protocol";
        let mut f = Vec::new();
        PacketBuilder::ethernet2([1; 6], [2; 6])
            .ipv4(A4, B4, 64)
            .tcp(6881, 40000, 0xffff_fff0, 512)
            .ack(77)
            .write(&mut f, payload)
            .unwrap();
        check_tcp(dissect(LinkType::Ethernet, &f).unwrap(), payload);

        let mut f = Vec::new();
        PacketBuilder::ethernet2([1; 6], [2; 6])
            .double_vlan(VlanId::try_new(10).unwrap(), VlanId::try_new(20).unwrap())
            .ipv4(A4, B4, 64)
            .tcp(6881, 40000, 0xffff_fff0, 512)
            .ack(77)
            .write(&mut f, payload)
            .unwrap();
        assert_eq!(&f[12..14], &[0x88, 0xa8]);
        check_tcp(dissect(LinkType::Ethernet, &f).unwrap(), payload);
    }

    #[test]
    fn ethernet_padding_is_not_payload() {
        let mut f = Vec::new();
        PacketBuilder::ethernet2([1; 6], [2; 6])
            .ipv4(A4, B4, 64)
            .tcp(6881, 40000, 0xffff_fff0, 512)
            .ack(77)
            .write(&mut f, b"")
            .unwrap();
        f.resize(60, 0); // minimum Ethernet frame
        check_tcp(dissect(LinkType::Ethernet, &f).unwrap(), b"");
    }

    #[test]
    fn linux_cooked_v1_and_v2() {
        let ip = ipv4_tcp(b"hello");
        let mut f = Vec::new();
        PacketBuilder::linux_sll(LinuxSllPacketType::HOST, 6, [0; 8])
            .ipv4(A4, B4, 64)
            .tcp(6881, 40000, 0xffff_fff0, 512)
            .ack(77)
            .write(&mut f, b"hello")
            .unwrap();
        check_tcp(dissect(LinkType::LinuxSll, &f).unwrap(), b"hello");

        // SLL2: protocol, reserved, ifindex, ARPHRD, packet type, address length, address.
        let mut f = vec![
            0x08, 0x00, 0, 0, 0, 0, 0, 1, 0x03, 0x04, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        f.extend_from_slice(&ip);
        let d = dissect(LinkType::LinuxSll2, &f).unwrap();
        assert_eq!(tcp(&d).payload, b"hello");
    }

    #[test]
    fn raw_null_and_loop() {
        let ip = ipv4_tcp(b"x");
        assert_eq!(tcp(&dissect(LinkType::Raw, &ip).unwrap()).payload, b"x");
        assert_eq!(tcp(&dissect(LinkType::Ipv4, &ip).unwrap()).payload, b"x");
        for hdr in [[2, 0, 0, 0], [0, 0, 0, 2]] {
            let f = [&hdr[..], &ip].concat();
            assert_eq!(
                tcp(&dissect(LinkType::Null, &f).unwrap()).payload,
                b"x",
                "{hdr:?}"
            );
        }
        let f = [&[0, 0, 0, 2][..], &ip].concat();
        assert!(dissect(LinkType::Loop, &f).is_ok());
        let v6 = ipv6_udp(b"udp");
        for hdr in [[30, 0, 0, 0], [0, 0, 0, 24], [10, 0, 0, 0]] {
            let f = [&hdr[..], &v6].concat();
            assert!(
                matches!(dissect(LinkType::Null, &f).unwrap().transport, Transport::Udp(u) if u.payload == b"udp")
            );
        }
        assert_eq!(
            dissect(LinkType::Null, &[7, 0, 0, 0, 1]),
            Err(Skipped::NotIp { ethertype: 7 })
        );
        assert_eq!(
            dissect(LinkType::Unknown(147), &ip),
            Err(Skipped::UnknownLink(LinkType::Unknown(147)))
        );
    }

    #[test]
    fn ipv6_extension_headers_are_skipped() {
        let inner = ipv6_udp(b"payload");
        let udp = &inner[40..];
        // hop-by-hop (8 bytes) -> destination options (16 bytes) -> atomic fragment (8 bytes) -> UDP
        let mut ext = vec![60, 0, 1, 4, 0, 0, 0, 0];
        ext.extend_from_slice(&[44, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        ext.extend_from_slice(&[17, 0, 0, 0, 0, 0, 0, 1]);
        let mut p = inner[..40].to_vec();
        p[6] = 0; // next header: hop-by-hop
        let len = (ext.len() + udp.len()) as u16;
        p[4..6].copy_from_slice(&len.to_be_bytes());
        p.extend_from_slice(&ext);
        p.extend_from_slice(udp);
        let d = dissect(LinkType::Ipv6, &p).unwrap();
        assert_eq!(d.src, IpAddr::from([1u8; 16]));
        match d.transport {
            Transport::Udp(u) => assert_eq!(
                (u.src_port, u.dst_port, u.payload),
                (6969, 1234, &b"payload"[..])
            ),
            Transport::Tcp(_) => panic!(),
        }
        // A real fragment (offset 0, more fragments) is skipped.
        let last = 40 + 24 + 3;
        p[last] = 1;
        assert_eq!(dissect(LinkType::Ipv6, &p), Err(Skipped::Fragment));
    }

    #[test]
    fn ipv4_fragments_other_protocols_and_non_ip() {
        let mut ip = ipv4_tcp(b"data");
        ip[6] = 0x20; // more fragments
        assert_eq!(dissect(LinkType::Raw, &ip), Err(Skipped::Fragment));
        let mut ip = ipv4_tcp(b"data");
        ip[6] = 0x40; // don't fragment only: fine
        assert!(dissect(LinkType::Raw, &ip).is_ok());
        ip[9] = 1; // ICMP
        assert_eq!(
            dissect(LinkType::Raw, &ip),
            Err(Skipped::OtherProtocol { protocol: 1 })
        );
        let mut arp = vec![0xff; 12];
        arp.extend_from_slice(&[0x08, 0x06, 0, 1]);
        assert_eq!(
            dissect(LinkType::Ethernet, &arp),
            Err(Skipped::NotIp { ethertype: 0x0806 })
        );
    }

    #[test]
    fn snaplen_cut_frames() {
        let ip = ipv4_tcp(&[9u8; 100]);
        let hdr = ip.len() - 100;
        let d = dissect(LinkType::Raw, &ip[..hdr + 30]).unwrap();
        assert!(d.truncated);
        assert_eq!(tcp(&d).payload, &[9u8; 30]);
        assert_eq!(
            dissect(LinkType::Raw, &ip[..hdr - 1]),
            Err(Skipped::Truncated { layer: "TCP" })
        );
        assert_eq!(
            dissect(LinkType::Raw, &ip[..10]),
            Err(Skipped::Truncated { layer: "IPv4" })
        );
        // TSO: total length 0 means "whatever was captured".
        let mut tso = ip.clone();
        tso[2] = 0;
        tso[3] = 0;
        let d = dissect(LinkType::Raw, &tso).unwrap();
        assert_eq!((tcp(&d).payload.len(), d.truncated), (100, false));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_frames_never_panic(data in proptest::collection::vec(proptest::num::u8::ANY, 0..200), code in 0u32..300) {
            for lt in [LinkType::from_code(code), LinkType::Ethernet, LinkType::LinuxSll, LinkType::LinuxSll2, LinkType::Raw, LinkType::Null, LinkType::Loop, LinkType::Ipv6] {
                let _ = dissect(lt, &data);
            }
        }

        #[test]
        fn mutated_ip_headers_never_panic(flips in proptest::collection::vec((0usize..64, proptest::num::u8::ANY), 1..6), cut in 0usize..80) {
            for mut p in [ipv4_tcp(b"0123456789"), ipv6_udp(b"0123456789")] {
                for (at, v) in &flips {
                    let n = p.len();
                    p[at % n] = *v;
                }
                let n = p.len();
                let _ = dissect(LinkType::Raw, &p[..cut.min(n)]);
                let _ = dissect(LinkType::Raw, &p);
            }
        }
    }
}
