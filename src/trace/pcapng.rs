//! A pcapng writer for synthesized frames (PCAP Next Generation, draft-ietf-opsawg-pcapng).
//!
//! The file is one section: a Section Header Block naming bt-trace and its version
//! (`shb_userappl`), the OS and the hardware; one Interface Description Block (Ethernet,
//! `if_tsresol` = 9 so timestamps are nanoseconds, `if_name` "bt-trace", the snap length);
//! then one Enhanced Packet Block per frame, with an optional `opt_comment` that Wireshark
//! shows in its packet list ("request piece 7 begin 16384 length 16384").
//!
//! The two header blocks are built and serialized by the pcap-file crate. The Enhanced
//! Packet Blocks are written here by hand, because pcap-file's `EnhancedPacketBlock` wants
//! the frame as one contiguous slice and its options in a `Vec` (an allocation per
//! commented frame), and serializes each block twice (once to measure it). Writing the
//! 28-byte block head, the synthesized headers and the borrowed payload straight into a
//! `BufWriter` copies each payload byte once, allocates nothing per frame, and lets snap
//! length truncation skip the cut bytes entirely. Everything is little-endian, so a given
//! sequence of frames gives the same bytes on every machine.
//!
//! Contract: no panics; errors are the underlying writer's `io::Error`s (or
//! `InvalidInput` for a frame larger than 4 GiB).

use std::io::{self, BufWriter, Write};

use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::blocks::section_header::{SectionHeaderBlock, SectionHeaderOption};
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::{DataLink, Endianness, PcapError};

use super::synth::Frame;

/// Snap length recorded when frames are not truncated (tcpdump's default).
pub const FULL_SNAPLEN: u32 = 262_144;
/// Longest packet comment kept; longer ones are cut at a character boundary (the option
/// length field is 16 bits).
pub const MAX_COMMENT_LEN: usize = 65_535;
/// Capacity of the internal write buffer.
pub const BUFFER_SIZE: usize = 1 << 20;

/// Enhanced Packet Block type code.
const EPB_TYPE: u32 = 6;
/// `opt_comment` option code.
const OPT_COMMENT: u16 = 1;
/// Block head (type, length, interface, timestamp high/low, captured, original length).
const EPB_HEAD_LEN: usize = 28;
const ZEROS: [u8; 4] = [0; 4];

/// What goes into the header blocks, and the snap length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcapngOptions {
    /// Keep at most this many bytes of each frame (like `tcpdump -s N`); the original
    /// length is still recorded. `None` or `Some(0)`: full frames.
    pub snaplen: Option<u32>,
    /// `shb_userappl`.
    pub application: String,
    /// `shb_os`, if any.
    pub os: Option<String>,
    /// `shb_hardware`, if any.
    pub hardware: Option<String>,
    /// `if_name`.
    pub if_name: String,
    /// `if_description`.
    pub if_description: String,
}

impl Default for PcapngOptions {
    /// Full frames, application `bt-trace <version>`, OS and CPU architecture of this build
    /// (compile-time constants, so reproducible traces stay reproducible).
    fn default() -> Self {
        PcapngOptions {
            snaplen: None,
            application: format!("bt-trace {}", env!("CARGO_PKG_VERSION")),
            os: Some(std::env::consts::OS.to_string()),
            hardware: Some(std::env::consts::ARCH.to_string()),
            if_name: "bt-trace".to_string(),
            if_description: "frames synthesized by bt-trace from its own socket I/O".to_string(),
        }
    }
}

impl PcapngOptions {
    /// The effective snap length: `u32::MAX` when frames are kept whole.
    fn effective_snaplen(&self) -> u32 {
        match self.snaplen {
            Some(n) if n > 0 => n,
            _ => u32::MAX,
        }
    }
}

/// Writes a pcapng file: header blocks at creation, then one Enhanced Packet Block per
/// [`write_frame`](Self::write_frame). Buffered internally ([`BUFFER_SIZE`]); pass an
/// unbuffered `File`. Call [`finish`](Self::finish) to flush and see the last error.
pub struct PcapngWriter<W: Write> {
    out: BufWriter<W>,
    snaplen: u32,
    frames: u64,
    bytes: u64,
}

impl<W: Write> PcapngWriter<W> {
    /// Writes the Section Header and Interface Description blocks to `inner`.
    pub fn new(inner: W, opts: &PcapngOptions) -> io::Result<Self> {
        let mut shb_opts = vec![SectionHeaderOption::UserApplication(
            opts.application.clone().into(),
        )];
        if let Some(os) = &opts.os {
            shb_opts.push(SectionHeaderOption::OS(os.clone().into()));
        }
        if let Some(hw) = &opts.hardware {
            shb_opts.push(SectionHeaderOption::Hardware(hw.clone().into()));
        }
        let shb = SectionHeaderBlock {
            endianness: Endianness::Little,
            options: shb_opts,
            ..Default::default()
        };
        let snaplen = opts.effective_snaplen();
        let idb = InterfaceDescriptionBlock {
            linktype: DataLink::ETHERNET,
            snaplen: if snaplen == u32::MAX {
                FULL_SNAPLEN
            } else {
                snaplen
            },
            options: vec![
                InterfaceDescriptionOption::IfName(opts.if_name.clone().into()),
                InterfaceDescriptionOption::IfDescription(opts.if_description.clone().into()),
                InterfaceDescriptionOption::IfTsResol(9),
            ],
        };
        // Serialize the header blocks into memory first, so we know their size.
        let mut head = PcapNgWriter::with_section_header(Vec::new(), shb).map_err(pcap_io)?;
        head.write_pcapng_block(idb).map_err(pcap_io)?;
        let head = head.into_inner();
        let mut out = BufWriter::with_capacity(BUFFER_SIZE, inner);
        out.write_all(&head)?;
        Ok(PcapngWriter {
            out,
            snaplen,
            frames: 0,
            bytes: head.len() as u64,
        })
    }

    /// Writes a synthesized frame with a timestamp in nanoseconds since the Unix epoch and
    /// an optional comment; returns its frame number (1-based, as Wireshark counts).
    pub fn write_frame(
        &mut self,
        ts_ns: u64,
        frame: &Frame<'_>,
        comment: Option<&str>,
    ) -> io::Result<u64> {
        self.write_packet(ts_ns, frame.headers, frame.payload, comment)
    }

    /// Writes a frame keeping its headers and only the first `keep_payload` payload bytes
    /// (and never more than the snap length); the original length is recorded. This is how
    /// piece data can be left out while every other byte stays: keep the 13-byte piece
    /// message header of the frame where a piece starts and nothing of the frames that
    /// only continue it.
    pub fn write_frame_keep(
        &mut self,
        ts_ns: u64,
        frame: &Frame<'_>,
        keep_payload: usize,
        comment: Option<&str>,
    ) -> io::Result<u64> {
        let keep = frame.headers.len().saturating_add(keep_payload);
        let limit = u32::try_from(keep).unwrap_or(u32::MAX).min(self.snaplen);
        self.write_cut(ts_ns, frame.headers, frame.payload, limit, comment)
    }

    /// Writes one packet given as `headers` followed by `payload` (the frame need not be
    /// contiguous). Only the first `snaplen` bytes are stored; bytes past the snap length
    /// are never read. Returns the frame number (1-based).
    pub fn write_packet(
        &mut self,
        ts_ns: u64,
        headers: &[u8],
        payload: &[u8],
        comment: Option<&str>,
    ) -> io::Result<u64> {
        self.write_cut(ts_ns, headers, payload, self.snaplen, comment)
    }

    /// Writes an Enhanced Packet Block storing at most `limit` bytes of the packet.
    fn write_cut(
        &mut self,
        ts_ns: u64,
        headers: &[u8],
        payload: &[u8],
        limit: u32,
        comment: Option<&str>,
    ) -> io::Result<u64> {
        let orig = headers.len() + payload.len();
        let orig32 = u32::try_from(orig)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "packet over 4 GiB"))?;
        let cap32 = orig32.min(limit);
        let cap = cap32 as usize;
        let head_part = &headers[..headers.len().min(cap)];
        let payload_part = &payload[..cap - head_part.len()];
        let pad = pad4(cap);

        let comment = comment.map(|c| truncate_utf8(c, MAX_COMMENT_LEN).as_bytes());
        let opts_len = match comment {
            // opt_comment (4 + text + padding) then opt_endofopt (4).
            Some(c) => 4 + c.len() + pad4(c.len()) + 4,
            None => 0,
        };
        let block_len = EPB_HEAD_LEN + cap + pad + opts_len + 4;
        let block32 = u32::try_from(block_len)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "block over 4 GiB"))?;

        let mut head = [0u8; EPB_HEAD_LEN];
        head[0..4].copy_from_slice(&EPB_TYPE.to_le_bytes());
        head[4..8].copy_from_slice(&block32.to_le_bytes());
        // Interface 0 (bytes 8..12 stay zero).
        head[12..16].copy_from_slice(&((ts_ns >> 32) as u32).to_le_bytes());
        head[16..20].copy_from_slice(&(ts_ns as u32).to_le_bytes());
        head[20..24].copy_from_slice(&cap32.to_le_bytes());
        head[24..28].copy_from_slice(&orig32.to_le_bytes());

        let out = &mut self.out;
        out.write_all(&head)?;
        out.write_all(head_part)?;
        out.write_all(payload_part)?;
        out.write_all(&ZEROS[..pad])?;
        if let Some(c) = comment {
            // `c.len()` ≤ MAX_COMMENT_LEN fits 16 bits.
            out.write_all(&OPT_COMMENT.to_le_bytes())?;
            out.write_all(&(c.len() as u16).to_le_bytes())?;
            out.write_all(c)?;
            out.write_all(&ZEROS[..pad4(c.len())])?;
            out.write_all(&ZEROS)?;
        }
        out.write_all(&block32.to_le_bytes())?;

        self.frames += 1;
        self.bytes += block_len as u64;
        Ok(self.frames)
    }

    /// Frames written so far (also the number of the last one).
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Size of the file so far, in bytes (written or still buffered).
    pub fn bytes_written(&self) -> u64 {
        self.bytes
    }

    /// Pushes buffered blocks to the underlying writer.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// Flushes and returns the underlying writer.
    pub fn finish(self) -> io::Result<W> {
        self.out.into_inner().map_err(|e| e.into_error())
    }
}

/// Padding that brings `len` to a multiple of 4.
fn pad4(len: usize) -> usize {
    (4 - len % 4) % 4
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn pcap_io(e: PcapError) -> io::Error {
    match e {
        PcapError::IoError(e) => e,
        other => io::Error::other(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::synth::{udp_datagram, TcpConversation};
    use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketOption;
    use pcap_file::pcapng::{Block, PcapNgReader};
    use std::time::Duration;

    fn read_back(bytes: &[u8]) -> Vec<Block<'static>> {
        let mut r = PcapNgReader::new(bytes).expect("section header parses");
        let mut blocks = vec![Block::SectionHeader(r.section().clone().into_owned())];
        while let Some(b) = r.next_block() {
            blocks.push(b.expect("block parses").into_owned());
        }
        blocks
    }

    #[test]
    fn header_blocks_name_the_application_and_nanoseconds() {
        let w = PcapngWriter::new(Vec::new(), &PcapngOptions::default()).unwrap();
        let bytes = w.finish().unwrap();
        let blocks = read_back(&bytes);
        let Block::SectionHeader(shb) = &blocks[0] else {
            panic!()
        };
        assert_eq!(shb.endianness, Endianness::Little);
        let app = format!("bt-trace {}", env!("CARGO_PKG_VERSION"));
        assert!(shb
            .options
            .contains(&SectionHeaderOption::UserApplication(app.into())));
        let Block::InterfaceDescription(idb) = &blocks[1] else {
            panic!()
        };
        assert_eq!(idb.linktype, DataLink::ETHERNET);
        assert_eq!(idb.snaplen, FULL_SNAPLEN);
        assert!(idb
            .options
            .contains(&InterfaceDescriptionOption::IfTsResol(9)));
        assert!(idb
            .options
            .contains(&InterfaceDescriptionOption::IfName("bt-trace".into())));
        assert_eq!(blocks.len(), 2);
    }

    #[test]
    fn packets_round_trip_with_comments_and_timestamps() {
        let mut w = PcapngWriter::new(Vec::new(), &PcapngOptions::default()).unwrap();
        let ts = 1_700_000_000_123_456_789u64;
        assert_eq!(w.write_packet(ts, b"abc", b"de", Some("first")).unwrap(), 1);
        assert_eq!(w.write_packet(ts + 1, b"", b"1234", None).unwrap(), 2);
        assert_eq!(
            w.write_packet(ts + 2, b"x", b"", Some("héllo wörld"))
                .unwrap(),
            3
        );
        assert_eq!(w.frames(), 3);
        let size = w.bytes_written();
        let bytes = w.finish().unwrap();
        assert_eq!(size, bytes.len() as u64);
        let blocks = read_back(&bytes);
        let epbs: Vec<_> = blocks
            .iter()
            .filter_map(|b| match b {
                Block::EnhancedPacket(e) => Some(e),
                _ => None,
            })
            .collect();
        assert_eq!(epbs.len(), 3);
        assert_eq!(&*epbs[0].data, b"abcde");
        assert_eq!(epbs[0].original_len, 5);
        assert_eq!(epbs[0].timestamp, Duration::from_nanos(ts));
        assert_eq!(
            epbs[0].options,
            [EnhancedPacketOption::Comment("first".into())]
        );
        assert_eq!(&*epbs[1].data, b"1234");
        assert!(epbs[1].options.is_empty());
        assert_eq!(
            epbs[2].options,
            [EnhancedPacketOption::Comment("héllo wörld".into())]
        );
    }

    #[test]
    fn snaplen_truncates_but_keeps_original_length() {
        let opts = PcapngOptions {
            snaplen: Some(6),
            ..PcapngOptions::default()
        };
        let mut w = PcapngWriter::new(Vec::new(), &opts).unwrap();
        w.write_packet(0, b"head", b"payload", None).unwrap(); // cut inside the payload
        w.write_packet(0, b"headers!", b"payload", None).unwrap(); // cut inside the headers
        w.write_packet(0, b"ab", b"c", Some("short")).unwrap(); // shorter than snaplen
        let blocks = read_back(&w.finish().unwrap());
        let Block::InterfaceDescription(idb) = &blocks[1] else {
            panic!()
        };
        assert_eq!(idb.snaplen, 6);
        let got: Vec<_> = blocks[2..]
            .iter()
            .map(|b| match b {
                Block::EnhancedPacket(e) => (e.data.to_vec(), e.original_len),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            got,
            [
                (b"headpa".to_vec(), 11),
                (b"header".to_vec(), 15),
                (b"abc".to_vec(), 3)
            ]
        );
    }

    #[test]
    fn long_comment_is_cut_on_a_char_boundary() {
        let mut w = PcapngWriter::new(Vec::new(), &PcapngOptions::default()).unwrap();
        let long = "é".repeat(40_000); // 80,000 bytes
        w.write_packet(0, b"x", b"", Some(&long)).unwrap();
        let blocks = read_back(&w.finish().unwrap());
        let Block::EnhancedPacket(e) = &blocks[2] else {
            panic!()
        };
        let [EnhancedPacketOption::Comment(c)] = &e.options[..] else {
            panic!()
        };
        assert_eq!(c.len(), 65_534);
        assert_eq!(truncate_utf8("abc", 2), "ab");
    }

    #[test]
    fn synthesized_frames_round_trip() {
        let c = "127.0.0.1:40000".parse().unwrap();
        let s = "127.0.0.1:6881".parse().unwrap();
        let mut conv = TcpConversation::new(c, s, 1, 2, 1460).unwrap();
        let mut w = PcapngWriter::new(Vec::new(), &PcapngOptions::default()).unwrap();
        let mut expect = Vec::new();
        let mut ts = 0;
        let mut sink = |f: &Frame<'_>| {
            let mut whole = f.headers.to_vec();
            whole.extend_from_slice(f.payload);
            expect.push(whole);
            ts += 1000;
            w.write_frame(ts, f, None).map(|_| ())
        };
        conv.open(&mut sink).unwrap();
        conv.data(true, &[7u8; 4000], &mut sink).unwrap();
        conv.close_fin(true, &mut sink).unwrap();
        let mut buf = Vec::new();
        let f = udp_datagram(&mut buf, c, s, b"udp").unwrap();
        let mut whole = f.headers.to_vec();
        whole.extend_from_slice(f.payload);
        expect.push(whole);
        w.write_frame(9, &f, Some("udp")).unwrap();
        let blocks = read_back(&w.finish().unwrap());
        let got: Vec<_> = blocks[2..]
            .iter()
            .map(|b| match b {
                Block::EnhancedPacket(e) => e.data.to_vec(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(got, expect);
    }

    #[test]
    fn write_errors_surface() {
        struct Full;
        impl Write for Full {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::other("disk full"))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        // Header blocks sit in the buffer; the error shows on finish.
        let w = PcapngWriter::new(Full, &PcapngOptions::default()).unwrap();
        assert!(w.finish().is_err());
    }
}
