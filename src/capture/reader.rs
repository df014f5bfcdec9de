//! Streaming reader for capture files: libpcap ("pcap") and pcapng.
//!
//! Formats: the pcap savefile (`pcap-savefile(5)`, draft-ietf-opsawg-pcap) in both byte orders, with micro- or
//! nanosecond timestamps (and the "modified" Kuznetzov variant with 24-byte records), and pcapng
//! (draft-ietf-opsawg-pcapng): several sections, each with its own byte order; several interfaces per section,
//! each with its own link type, `if_tsresol` (power of 10 or of 2) and `if_tsoffset`; Enhanced, Simple and
//! obsolete Packet blocks. Other blocks (statistics, name resolution, custom, ...) are skipped.
//!
//! The reader is a pull loop over one read buffer that is reused for the whole file: memory stays constant
//! whatever the file size (the buffer only grows to hold the largest block, which is capped at
//! [`MAX_BLOCK_LEN`] *before* anything is allocated). Packets borrow their bytes from that buffer (zero-copy).
//!
//! Contract: no input makes the reader panic. A truncated or corrupt file yields every packet before the
//! damage, then one [`CaptureError`] that names the byte offset; after an error the reader returns `Ok(None)`.

use std::fmt;
use std::io::{self, Read};
use std::path::Path;

use super::link::LinkType;

/// Largest packet or block accepted (16 MiB of packet data plus room for the block's own fields).
pub const MAX_BLOCK_LEN: usize = 16 * 1024 * 1024 + 1024;
/// Default size of the read buffer.
pub const DEFAULT_BUFFER_LEN: usize = 1 << 20;
/// Interfaces accepted per pcapng section (an Interface Description Block beyond that is ignored).
pub const MAX_INTERFACES: usize = 65_536;
/// Warnings kept by the reader until [`CaptureReader::take_warnings`] collects them.
const MAX_PENDING_WARNINGS: usize = 64;

const PCAP_MAGIC_US: u32 = 0xa1b2_c3d4;
const PCAP_MAGIC_NS: u32 = 0xa1b2_3c4d;
const PCAP_MAGIC_MODIFIED: u32 = 0xa1b2_cd34;
const PCAPNG_SHB: u32 = 0x0a0d_0d0a;
const PCAPNG_BYTE_ORDER_MAGIC: u32 = 0x1a2b_3c4d;
const PCAPNG_IDB: u32 = 1;
const PCAPNG_OPB: u32 = 2;
const PCAPNG_SPB: u32 = 3;
const PCAPNG_EPB: u32 = 6;

/// Byte order of a file (pcap) or of one section (pcapng).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endian {
    Little,
    Big,
}

impl Endian {
    #[inline]
    fn u16(self, b: [u8; 2]) -> u16 {
        match self {
            Endian::Little => u16::from_le_bytes(b),
            Endian::Big => u16::from_be_bytes(b),
        }
    }
    #[inline]
    fn u32(self, b: [u8; 4]) -> u32 {
        match self {
            Endian::Little => u32::from_le_bytes(b),
            Endian::Big => u32::from_be_bytes(b),
        }
    }
}

/// Which kind of file is being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaptureFormat {
    /// libpcap savefile. `nanos`: nanosecond timestamps; `modified`: Kuznetzov's 24-byte record headers.
    Pcap {
        endian: Endian,
        nanos: bool,
        modified: bool,
    },
    /// pcapng; `endian` is the byte order of the current section.
    PcapNg { endian: Endian },
}

impl fmt::Display for CaptureFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = |e: &Endian| {
            if *e == Endian::Little {
                "little-endian"
            } else {
                "big-endian"
            }
        };
        match self {
            CaptureFormat::Pcap {
                endian,
                nanos,
                modified,
            } => write!(
                f,
                "pcap{} ({}, {} timestamps)",
                if *modified { " (modified)" } else { "" },
                e(endian),
                if *nanos { "nanosecond" } else { "microsecond" }
            ),
            CaptureFormat::PcapNg { endian } => write!(f, "pcapng ({})", e(endian)),
        }
    }
}

/// What the input ended with when it could not be read to its end.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("read error at byte offset {offset}: {source}")]
    Io {
        offset: u64,
        #[source]
        source: io::Error,
    },
    #[error("cannot open {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("not a pcap or pcapng file (first bytes: {found:02x?})")]
    UnknownFormat { found: Vec<u8> },
    #[error("file cut short at byte offset {offset}: {what} needs {needed} bytes, only {available} left")]
    Truncated {
        offset: u64,
        what: &'static str,
        needed: u64,
        available: u64,
    },
    #[error("{what} at byte offset {offset} claims {len} bytes, above the limit of {max}")]
    TooLarge {
        offset: u64,
        what: &'static str,
        len: u64,
        max: u64,
    },
    #[error("corrupt {what} at byte offset {offset}: {detail}")]
    Corrupt {
        offset: u64,
        what: &'static str,
        detail: String,
    },
}

impl CaptureError {
    /// Byte offset in the input where the problem was found (`None` for open errors).
    pub fn offset(&self) -> Option<u64> {
        match self {
            CaptureError::Io { offset, .. }
            | CaptureError::Truncated { offset, .. }
            | CaptureError::TooLarge { offset, .. }
            | CaptureError::Corrupt { offset, .. } => Some(*offset),
            CaptureError::UnknownFormat { .. } => Some(0),
            CaptureError::Open { .. } => None,
        }
    }
}

/// Something odd that did not stop the reading (e.g. a packet naming an interface that was never described).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReaderWarning {
    /// Byte offset of the block or record concerned.
    pub offset: u64,
    pub message: String,
}

/// One captured frame, borrowing its bytes from the reader's buffer.
#[derive(Debug, Clone, Copy)]
pub struct Packet<'a> {
    /// 1-based frame number in this file, as Wireshark numbers frames.
    pub frame_no: u64,
    /// Timestamp in nanoseconds since the Unix epoch (a Simple Packet Block has none: it gets the previous one).
    pub ts_ns: i64,
    pub link_type: LinkType,
    /// pcapng interface id within its section (0 for pcap).
    pub interface: u32,
    /// Captured bytes (possibly cut by the snap length).
    pub data: &'a [u8],
    /// Length of the frame on the wire.
    pub orig_len: u32,
    /// Byte offset of the record/block in the input.
    pub offset: u64,
}

/// A pcapng interface as described by its Interface Description Block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceInfo {
    pub link_type: LinkType,
    pub snaplen: u32,
    /// `if_name` option, if present.
    pub name: Option<String>,
    ts: TsUnit,
    ts_offset_ns: i64,
}

/// How raw timestamp units turn into nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TsUnit {
    /// Multiply by this (resolution 10^-n with n <= 9).
    Mul(u64),
    /// Divide by this (resolution 10^-n with n > 9).
    Div(u64),
    /// Resolution 2^-n.
    Pow2(u8),
}

impl TsUnit {
    fn from_tsresol(v: u8) -> TsUnit {
        let n = u32::from(v & 0x7f);
        if v & 0x80 != 0 {
            TsUnit::Pow2(n as u8)
        } else if n <= 9 {
            TsUnit::Mul(10u64.pow(9 - n))
        } else {
            TsUnit::Div(10u64.checked_pow(n - 9).unwrap_or(u64::MAX))
        }
    }

    #[inline]
    fn to_ns(self, raw: u64, offset_ns: i64) -> i64 {
        let ns: i128 = match self {
            TsUnit::Mul(m) => i128::from(raw) * i128::from(m),
            TsUnit::Div(d) => i128::from(raw / d.max(1)),
            TsUnit::Pow2(n) => ((u128::from(raw) * 1_000_000_000) >> n.min(127)) as i128,
        };
        (ns + i128::from(offset_ns)).clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
    }
}

/// Per-format state.
enum Mode {
    Pcap {
        link_type: LinkType,
        nanos: bool,
        record_len: usize,
    },
    PcapNg {
        interfaces: Vec<InterfaceInfo>,
    },
}

/// Where the packet found by the block loop sits in the buffer.
struct Found {
    data_start: usize,
    data_len: usize,
    ts_ns: i64,
    link_type: LinkType,
    interface: u32,
    orig_len: u32,
    offset: u64,
}

/// Streaming pcap/pcapng reader over any [`Read`]; see the module doc.
pub struct CaptureReader<R> {
    src: R,
    buf: Vec<u8>,
    /// First unconsumed byte in `buf`.
    start: usize,
    /// End of the valid bytes in `buf`.
    end: usize,
    eof: bool,
    /// Input offset of `buf[start]`.
    pos: u64,
    endian: Endian,
    format: CaptureFormat,
    mode: Mode,
    frame_no: u64,
    last_ts_ns: i64,
    done: bool,
    warnings: Vec<ReaderWarning>,
    warnings_dropped: u64,
}

impl CaptureReader<Box<dyn Read>> {
    /// Opens a file, or standard input for `-`.
    pub fn open(path: &Path) -> Result<Self, CaptureError> {
        let src: Box<dyn Read> = if path.as_os_str() == "-" {
            Box::new(io::stdin().lock())
        } else {
            let f = std::fs::File::open(path).map_err(|source| CaptureError::Open {
                path: path.display().to_string(),
                source,
            })?;
            Box::new(f)
        };
        CaptureReader::new(src)
    }
}

impl<R: Read> CaptureReader<R> {
    /// Reads the file header (pcap) or first Section Header Block (pcapng).
    pub fn new(src: R) -> Result<Self, CaptureError> {
        Self::with_buffer_len(src, DEFAULT_BUFFER_LEN)
    }

    /// Like [`CaptureReader::new`] with a chosen initial buffer size (it still grows for larger blocks).
    pub fn with_buffer_len(src: R, len: usize) -> Result<Self, CaptureError> {
        let mut r = CaptureReader {
            src,
            buf: vec![0; len.clamp(64, MAX_BLOCK_LEN)],
            start: 0,
            end: 0,
            eof: false,
            pos: 0,
            endian: Endian::Little,
            format: CaptureFormat::PcapNg {
                endian: Endian::Little,
            },
            mode: Mode::PcapNg {
                interfaces: Vec::new(),
            },
            frame_no: 0,
            last_ts_ns: 0,
            done: false,
            warnings: Vec::new(),
            warnings_dropped: 0,
        };
        r.fill(4)?;
        let avail = r.end - r.start;
        if avail < 4 {
            return Err(CaptureError::UnknownFormat {
                found: r.buf[..avail].to_vec(),
            });
        }
        let magic = [r.buf[0], r.buf[1], r.buf[2], r.buf[3]];
        let le = u32::from_le_bytes(magic);
        let be = u32::from_be_bytes(magic);
        if le == PCAPNG_SHB {
            r.read_shb()?;
            return Ok(r);
        }
        let (endian, m) = match (le, be) {
            (PCAP_MAGIC_US | PCAP_MAGIC_NS | PCAP_MAGIC_MODIFIED, _) => (Endian::Little, le),
            (_, PCAP_MAGIC_US | PCAP_MAGIC_NS | PCAP_MAGIC_MODIFIED) => (Endian::Big, be),
            _ => {
                return Err(CaptureError::UnknownFormat {
                    found: magic.to_vec(),
                })
            }
        };
        if !r.fill(24)? {
            return Err(r.truncated("pcap file header", 24));
        }
        r.endian = endian;
        let nanos = m == PCAP_MAGIC_NS;
        let modified = m == PCAP_MAGIC_MODIFIED;
        let link = r.u32_at(20) & 0xffff;
        r.format = CaptureFormat::Pcap {
            endian,
            nanos,
            modified,
        };
        r.mode = Mode::Pcap {
            link_type: LinkType::from_code(link),
            nanos,
            record_len: if modified { 24 } else { 16 },
        };
        r.consume(24);
        Ok(r)
    }

    /// The file format (for pcapng, the byte order of the current section).
    pub fn format(&self) -> CaptureFormat {
        self.format
    }

    /// Link type of a pcap file, or of the first interface of the current pcapng section.
    pub fn link_type(&self) -> Option<LinkType> {
        match &self.mode {
            Mode::Pcap { link_type, .. } => Some(*link_type),
            Mode::PcapNg { interfaces } => interfaces.first().map(|i| i.link_type),
        }
    }

    /// Interfaces of the current pcapng section (empty for pcap).
    pub fn interfaces(&self) -> &[InterfaceInfo] {
        match &self.mode {
            Mode::Pcap { .. } => &[],
            Mode::PcapNg { interfaces } => interfaces,
        }
    }

    /// Input offset of the next unread byte.
    pub fn offset(&self) -> u64 {
        self.pos
    }

    /// True when warnings are waiting to be collected.
    pub fn has_warnings(&self) -> bool {
        !self.warnings.is_empty()
    }

    /// Collects the warnings gathered so far (and how many were dropped because too many piled up).
    pub fn take_warnings(&mut self) -> (Vec<ReaderWarning>, u64) {
        (
            std::mem::take(&mut self.warnings),
            std::mem::take(&mut self.warnings_dropped),
        )
    }

    /// Next packet, `Ok(None)` at the end of the input (or after an error was returned).
    pub fn next_packet(&mut self) -> Result<Option<Packet<'_>>, CaptureError> {
        if self.done {
            return Ok(None);
        }
        let found = match &self.mode {
            Mode::Pcap { .. } => self.next_pcap(),
            Mode::PcapNg { .. } => self.next_pcapng(),
        };
        match found {
            Ok(Some(f)) => {
                self.frame_no += 1;
                self.last_ts_ns = f.ts_ns;
                Ok(Some(Packet {
                    frame_no: self.frame_no,
                    ts_ns: f.ts_ns,
                    link_type: f.link_type,
                    interface: f.interface,
                    data: &self.buf[f.data_start..f.data_start + f.data_len],
                    orig_len: f.orig_len,
                    offset: f.offset,
                }))
            }
            Ok(None) => {
                self.done = true;
                Ok(None)
            }
            Err(e) => {
                self.done = true;
                Err(e)
            }
        }
    }

    // ---- buffer management -------------------------------------------------------------------------------

    /// Makes sure `need` bytes are buffered from `start`; `Ok(false)` if the input ends first.
    /// `need` must already be checked against [`MAX_BLOCK_LEN`].
    fn fill(&mut self, need: usize) -> Result<bool, CaptureError> {
        if self.end - self.start >= need {
            return Ok(true);
        }
        if need > self.buf.len() {
            let new_len = need
                .next_power_of_two()
                .clamp(need, MAX_BLOCK_LEN.max(need));
            self.buf.resize(new_len, 0);
        }
        if self.start + need > self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        while self.end - self.start < need && !self.eof {
            match self.src.read(&mut self.buf[self.end..]) {
                Ok(0) => self.eof = true,
                Ok(n) => self.end += n.min(self.buf.len() - self.end),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(CaptureError::Io {
                        offset: self.pos + (self.end - self.start) as u64,
                        source,
                    })
                }
            }
        }
        Ok(self.end - self.start >= need)
    }

    #[inline]
    fn consume(&mut self, n: usize) {
        self.start += n;
        self.pos += n as u64;
    }

    fn truncated(&self, what: &'static str, needed: usize) -> CaptureError {
        CaptureError::Truncated {
            offset: self.pos,
            what,
            needed: needed as u64,
            available: (self.end - self.start) as u64,
        }
    }

    fn corrupt(&self, what: &'static str, detail: String) -> CaptureError {
        CaptureError::Corrupt {
            offset: self.pos,
            what,
            detail,
        }
    }

    fn warn(&mut self, offset: u64, message: String) {
        if self.warnings.len() < MAX_PENDING_WARNINGS {
            self.warnings.push(ReaderWarning { offset, message });
        } else {
            self.warnings_dropped += 1;
        }
    }

    /// u16 at `start + at` in the current byte order (caller has checked the bounds).
    #[inline]
    fn u16_at(&self, at: usize) -> u16 {
        let i = self.start + at;
        self.endian.u16([self.buf[i], self.buf[i + 1]])
    }

    #[inline]
    fn u32_at(&self, at: usize) -> u32 {
        let i = self.start + at;
        self.endian.u32([
            self.buf[i],
            self.buf[i + 1],
            self.buf[i + 2],
            self.buf[i + 3],
        ])
    }

    // ---- pcap --------------------------------------------------------------------------------------------

    fn next_pcap(&mut self) -> Result<Option<Found>, CaptureError> {
        let Mode::Pcap {
            link_type,
            nanos,
            record_len,
        } = self.mode
        else {
            return Ok(None);
        };
        if !self.fill(record_len)? {
            return if self.end == self.start {
                Ok(None)
            } else {
                Err(self.truncated("pcap record header", record_len))
            };
        }
        let incl = self.u32_at(8) as usize;
        let orig_len = self.u32_at(12);
        if incl > MAX_BLOCK_LEN - record_len {
            return Err(CaptureError::TooLarge {
                offset: self.pos,
                what: "pcap record",
                len: incl as u64,
                max: (MAX_BLOCK_LEN - record_len) as u64,
            });
        }
        let total = record_len + incl;
        if !self.fill(total)? {
            return Err(self.truncated("pcap record", total));
        }
        let secs = i64::from(self.u32_at(0));
        let frac = i64::from(self.u32_at(4));
        let ts_ns = secs * 1_000_000_000 + if nanos { frac } else { frac * 1000 };
        let found = Found {
            data_start: self.start + record_len,
            data_len: incl,
            ts_ns,
            link_type,
            interface: 0,
            orig_len,
            offset: self.pos,
        };
        self.consume(total);
        Ok(Some(found))
    }

    // ---- pcapng ------------------------------------------------------------------------------------------

    /// Reads a Section Header Block at `start`: sets the byte order, forgets the previous section's interfaces.
    fn read_shb(&mut self) -> Result<(), CaptureError> {
        if !self.fill(16)? {
            return Err(self.truncated("pcapng section header", 16));
        }
        let bom = [
            self.buf[self.start + 8],
            self.buf[self.start + 9],
            self.buf[self.start + 10],
            self.buf[self.start + 11],
        ];
        self.endian = if u32::from_le_bytes(bom) == PCAPNG_BYTE_ORDER_MAGIC {
            Endian::Little
        } else if u32::from_be_bytes(bom) == PCAPNG_BYTE_ORDER_MAGIC {
            Endian::Big
        } else {
            return Err(self.corrupt(
                "pcapng section header",
                format!("bad byte-order magic {bom:02x?}"),
            ));
        };
        let len = self.u32_at(4) as usize;
        self.check_block_len(len, 28)?;
        if !self.fill(len)? {
            return Err(self.truncated("pcapng section header", len));
        }
        self.check_trailer(len)?;
        let major = self.u16_at(12);
        if major != 1 {
            return Err(self.corrupt(
                "pcapng section header",
                format!("unsupported version {major}"),
            ));
        }
        self.format = CaptureFormat::PcapNg {
            endian: self.endian,
        };
        self.mode = Mode::PcapNg {
            interfaces: Vec::new(),
        };
        self.consume(len);
        Ok(())
    }

    fn check_block_len(&self, len: usize, min: usize) -> Result<(), CaptureError> {
        if len > MAX_BLOCK_LEN {
            return Err(CaptureError::TooLarge {
                offset: self.pos,
                what: "pcapng block",
                len: len as u64,
                max: MAX_BLOCK_LEN as u64,
            });
        }
        if len < min || len % 4 != 0 {
            return Err(self.corrupt(
                "pcapng block",
                format!("block length {len} is not a multiple of 4 of at least {min}"),
            ));
        }
        Ok(())
    }

    fn check_trailer(&self, len: usize) -> Result<(), CaptureError> {
        let trailer = self.u32_at(len - 4) as usize;
        if trailer != len {
            return Err(self.corrupt(
                "pcapng block",
                format!("leading length {len} and trailing length {trailer} differ"),
            ));
        }
        Ok(())
    }

    fn next_pcapng(&mut self) -> Result<Option<Found>, CaptureError> {
        loop {
            if !self.fill(8)? {
                return if self.end == self.start {
                    Ok(None)
                } else {
                    Err(self.truncated("pcapng block header", 8))
                };
            }
            let btype = self.u32_at(0);
            if btype == PCAPNG_SHB {
                self.read_shb()?;
                continue;
            }
            let len = self.u32_at(4) as usize;
            self.check_block_len(len, 12)?;
            if !self.fill(len)? {
                return Err(self.truncated("pcapng block", len));
            }
            self.check_trailer(len)?;
            let found = match btype {
                PCAPNG_IDB => {
                    self.read_idb(len)?;
                    None
                }
                PCAPNG_EPB => self.read_epb(len)?,
                PCAPNG_SPB => self.read_spb(len)?,
                PCAPNG_OPB => self.read_opb(len)?,
                _ => None,
            };
            self.consume(len);
            if let Some(f) = found {
                return Ok(Some(f));
            }
        }
    }

    fn read_idb(&mut self, len: usize) -> Result<(), CaptureError> {
        if len < 20 {
            return Err(self.corrupt(
                "pcapng interface description",
                format!("block length {len} < 20"),
            ));
        }
        let link_type = LinkType::from_code(u32::from(self.u16_at(8)));
        let snaplen = self.u32_at(12);
        let mut info = InterfaceInfo {
            link_type,
            snaplen,
            name: None,
            ts: TsUnit::Mul(1000),
            ts_offset_ns: 0,
        };
        // Options: code u16, length u16, value padded to 4 bytes; code 0 ends the list.
        let mut at = 16;
        let opt_end = len - 4;
        while at + 4 <= opt_end {
            let code = self.u16_at(at);
            let olen = usize::from(self.u16_at(at + 2));
            let vstart = at + 4;
            if code == 0 || vstart + olen > opt_end {
                break;
            }
            let v = &self.buf[self.start + vstart..self.start + vstart + olen];
            match (code, olen) {
                (2, _) => info.name = Some(String::from_utf8_lossy(v).into_owned()),
                (9, 1) => info.ts = TsUnit::from_tsresol(v[0]),
                (14, 8) => {
                    let secs = self.endian_u64(v);
                    info.ts_offset_ns = (secs as i64).saturating_mul(1_000_000_000);
                }
                _ => {}
            }
            at = vstart + ((olen + 3) & !3);
        }
        let offset = self.pos;
        let Mode::PcapNg { interfaces } = &mut self.mode else {
            return Ok(());
        };
        if interfaces.len() >= MAX_INTERFACES {
            self.warn(
                offset,
                format!("more than {MAX_INTERFACES} interfaces in one section; ignoring this one"),
            );
        } else {
            interfaces.push(info);
        }
        Ok(())
    }

    fn endian_u64(&self, v: &[u8]) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&v[..8]);
        match self.endian {
            Endian::Little => u64::from_le_bytes(b),
            Endian::Big => u64::from_be_bytes(b),
        }
    }

    /// Link type, timestamp unit and snap length of interface `id`, with a warning if it was never described.
    fn interface(&mut self, id: u32) -> (LinkType, TsUnit, i64, u32) {
        if let Mode::PcapNg { interfaces } = &self.mode {
            if let Some(i) = interfaces.get(id as usize) {
                return (i.link_type, i.ts, i.ts_offset_ns, i.snaplen);
            }
        }
        let offset = self.pos;
        self.warn(
            offset,
            format!("packet names interface {id}, which this section never described"),
        );
        (LinkType::Unknown(u32::MAX), TsUnit::Mul(1000), 0, 0)
    }

    fn read_epb(&mut self, len: usize) -> Result<Option<Found>, CaptureError> {
        if len < 32 {
            return Err(self.corrupt("pcapng enhanced packet", format!("block length {len} < 32")));
        }
        let iface = self.u32_at(8);
        let raw_ts = (u64::from(self.u32_at(12)) << 32) | u64::from(self.u32_at(16));
        let caplen = self.u32_at(20) as usize;
        let orig_len = self.u32_at(24);
        if caplen > len - 32 {
            return Err(self.corrupt(
                "pcapng enhanced packet",
                format!("captured length {caplen} does not fit in a block of {len} bytes"),
            ));
        }
        let (link_type, unit, off, _) = self.interface(iface);
        Ok(Some(Found {
            data_start: self.start + 28,
            data_len: caplen,
            ts_ns: unit.to_ns(raw_ts, off),
            link_type,
            interface: iface,
            orig_len,
            offset: self.pos,
        }))
    }

    fn read_spb(&mut self, len: usize) -> Result<Option<Found>, CaptureError> {
        if len < 16 {
            return Err(self.corrupt("pcapng simple packet", format!("block length {len} < 16")));
        }
        let orig_len = self.u32_at(8);
        let (link_type, _, _, snaplen) = self.interface(0);
        let mut caplen = (orig_len as usize).min(len - 16);
        if snaplen != 0 {
            caplen = caplen.min(snaplen as usize);
        }
        Ok(Some(Found {
            data_start: self.start + 12,
            data_len: caplen,
            ts_ns: self.last_ts_ns,
            link_type,
            interface: 0,
            orig_len,
            offset: self.pos,
        }))
    }

    fn read_opb(&mut self, len: usize) -> Result<Option<Found>, CaptureError> {
        if len < 32 {
            return Err(self.corrupt("pcapng packet block", format!("block length {len} < 32")));
        }
        let iface = u32::from(self.u16_at(8));
        let raw_ts = (u64::from(self.u32_at(12)) << 32) | u64::from(self.u32_at(16));
        let caplen = self.u32_at(20) as usize;
        let orig_len = self.u32_at(24);
        if caplen > len - 32 {
            return Err(self.corrupt(
                "pcapng packet block",
                format!("captured length {caplen} does not fit in a block of {len} bytes"),
            ));
        }
        let (link_type, unit, off, _) = self.interface(iface);
        Ok(Some(Found {
            data_start: self.start + 28,
            data_len: caplen,
            ts_ns: unit.to_ns(raw_ts, off),
            link_type,
            interface: iface,
            orig_len,
            offset: self.pos,
        }))
    }
}
