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

/// What the input ended with when it could not be read to its end. The messages say their
/// cause and there is no error `source`, so a `{:#}` chain prints it once.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("read error at byte offset {offset}: {error}")]
    Io { offset: u64, error: io::Error },
    #[error("cannot open {path}: {error}")]
    Open { path: String, error: io::Error },
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
    /// Divide by this (resolution 10^-n with n > 9); 0 when 10^(n-9) overflows (every value rounds to 0).
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
            TsUnit::Div(10u64.checked_pow(n - 9).unwrap_or(0))
        }
    }

    #[inline]
    fn to_ns(self, raw: u64, offset_ns: i64) -> i64 {
        let ns: i128 = match self {
            TsUnit::Mul(m) => i128::from(raw) * i128::from(m),
            TsUnit::Div(d) => i128::from(raw.checked_div(d).unwrap_or(0)),
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
            let f = std::fs::File::open(path).map_err(|error| CaptureError::Open {
                path: path.display().to_string(),
                error,
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
                Err(error) => {
                    return Err(CaptureError::Io {
                        offset: self.pos + (self.end - self.start) as u64,
                        error,
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds capture files in memory for tests.
    pub(crate) struct Builder {
        pub le: bool,
        pub out: Vec<u8>,
    }

    impl Builder {
        pub fn new(le: bool) -> Builder {
            Builder {
                le,
                out: Vec::new(),
            }
        }
        pub fn u16(&mut self, v: u16) -> &mut Self {
            self.out.extend_from_slice(&if self.le {
                v.to_le_bytes()
            } else {
                v.to_be_bytes()
            });
            self
        }
        pub fn u32(&mut self, v: u32) -> &mut Self {
            self.out.extend_from_slice(&if self.le {
                v.to_le_bytes()
            } else {
                v.to_be_bytes()
            });
            self
        }
        pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
            self.out.extend_from_slice(b);
            self
        }
        fn pad(&mut self) {
            while self.out.len() % 4 != 0 {
                self.out.push(0);
            }
        }
        /// pcap global header.
        pub fn pcap_header(&mut self, magic: u32, link: u32) -> &mut Self {
            self.u32(magic)
                .u16(2)
                .u16(4)
                .u32(0)
                .u32(0)
                .u32(65535)
                .u32(link)
        }
        pub fn pcap_record(&mut self, sec: u32, frac: u32, data: &[u8], orig: u32) -> &mut Self {
            self.u32(sec)
                .u32(frac)
                .u32(data.len() as u32)
                .u32(orig)
                .bytes(data)
        }
        /// One pcapng block: `body` is written by the closure, padding and lengths are added.
        pub fn block(&mut self, btype: u32, body: impl FnOnce(&mut Self)) -> &mut Self {
            let at = self.out.len();
            self.u32(btype).u32(0);
            body(self);
            self.pad();
            let len = (self.out.len() - at + 4) as u32;
            self.u32(len);
            let lb = if self.le {
                len.to_le_bytes()
            } else {
                len.to_be_bytes()
            };
            self.out[at + 4..at + 8].copy_from_slice(&lb);
            self
        }
        pub fn shb(&mut self) -> &mut Self {
            self.block(PCAPNG_SHB, |b| {
                b.u32(PCAPNG_BYTE_ORDER_MAGIC)
                    .u16(1)
                    .u16(0)
                    .u32(u32::MAX)
                    .u32(u32::MAX);
            })
        }
        /// IDB with optional if_tsresol and if_tsoffset options.
        pub fn idb(&mut self, link: u16, tsresol: Option<u8>, tsoffset: Option<i64>) -> &mut Self {
            let le = self.le;
            self.block(PCAPNG_IDB, |b| {
                b.u16(link).u16(0).u32(0);
                b.u16(2).u16(3).bytes(b"lo\0\0");
                if let Some(r) = tsresol {
                    b.u16(9).u16(1).bytes(&[r, 0, 0, 0]);
                }
                if let Some(o) = tsoffset {
                    b.u16(14)
                        .u16(8)
                        .bytes(&if le { o.to_le_bytes() } else { o.to_be_bytes() });
                }
                b.u16(0).u16(0);
            })
        }
        pub fn epb(&mut self, iface: u32, ts: u64, data: &[u8], orig: u32) -> &mut Self {
            self.block(PCAPNG_EPB, |b| {
                b.u32(iface)
                    .u32((ts >> 32) as u32)
                    .u32(ts as u32)
                    .u32(data.len() as u32)
                    .u32(orig)
                    .bytes(data);
                b.pad();
                b.u16(1).u16(4).u32(0).u16(0).u16(0); // epb_flags option, then end of options
            })
        }
        pub fn spb(&mut self, data: &[u8]) -> &mut Self {
            self.block(PCAPNG_SPB, |b| {
                b.u32(data.len() as u32).bytes(data);
            })
        }
        pub fn opb(&mut self, iface: u16, ts: u64, data: &[u8]) -> &mut Self {
            self.block(PCAPNG_OPB, |b| {
                b.u16(iface)
                    .u16(0)
                    .u32((ts >> 32) as u32)
                    .u32(ts as u32)
                    .u32(data.len() as u32);
                b.u32(data.len() as u32).bytes(data);
            })
        }
    }

    #[derive(Debug, PartialEq)]
    struct Owned {
        frame_no: u64,
        ts_ns: i64,
        link: LinkType,
        iface: u32,
        data: Vec<u8>,
        orig_len: u32,
    }

    fn read_all_from<R: Read>(r: R) -> (Vec<Owned>, Option<CaptureError>) {
        let mut rd = match CaptureReader::with_buffer_len(r, 64) {
            Ok(r) => r,
            Err(e) => return (Vec::new(), Some(e)),
        };
        let mut out = Vec::new();
        loop {
            match rd.next_packet() {
                Ok(Some(p)) => out.push(Owned {
                    frame_no: p.frame_no,
                    ts_ns: p.ts_ns,
                    link: p.link_type,
                    iface: p.interface,
                    data: p.data.to_vec(),
                    orig_len: p.orig_len,
                }),
                Ok(None) => return (out, None),
                Err(e) => {
                    assert!(
                        matches!(rd.next_packet(), Ok(None)),
                        "after an error the reader stops"
                    );
                    return (out, Some(e));
                }
            }
        }
    }

    fn read_all(bytes: &[u8]) -> (Vec<Owned>, Option<CaptureError>) {
        read_all_from(bytes)
    }

    /// Hands out one byte per `read` call, like a slow pipe.
    struct Trickle<'a>(&'a [u8]);
    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match (self.0.split_first(), buf.first_mut()) {
                (Some((b, rest)), Some(d)) => {
                    *d = *b;
                    self.0 = rest;
                    Ok(1)
                }
                _ => Ok(0),
            }
        }
    }

    #[test]
    fn pcap_both_byte_orders_and_resolutions() {
        for (le, magic, nanos) in [
            (true, PCAP_MAGIC_US, false),
            (false, PCAP_MAGIC_NS, true),
            (false, PCAP_MAGIC_US, false),
        ] {
            let mut b = Builder::new(le);
            b.pcap_header(magic, 113)
                .pcap_record(10, 5, b"abc", 3)
                .pcap_record(11, 0, b"", 60);
            let mut rd = CaptureReader::new(&b.out[..]).unwrap();
            let endian = if le { Endian::Little } else { Endian::Big };
            assert_eq!(
                rd.format(),
                CaptureFormat::Pcap {
                    endian,
                    nanos,
                    modified: false
                }
            );
            assert_eq!(rd.link_type(), Some(LinkType::LinuxSll));
            let (pkts, err) = read_all(&b.out);
            assert!(err.is_none());
            assert_eq!(pkts.len(), 2);
            let frac = if nanos { 5 } else { 5000 };
            assert_eq!(
                pkts[0],
                Owned {
                    frame_no: 1,
                    ts_ns: 10_000_000_000 + frac,
                    link: LinkType::LinuxSll,
                    iface: 0,
                    data: b"abc".to_vec(),
                    orig_len: 3
                }
            );
            assert_eq!(
                (pkts[1].frame_no, pkts[1].orig_len, pkts[1].data.len()),
                (2, 60, 0)
            );
            assert!(rd.next_packet().unwrap().is_some());
        }
    }

    #[test]
    fn pcap_modified_records() {
        let mut b = Builder::new(true);
        b.pcap_header(PCAP_MAGIC_MODIFIED, 1);
        b.u32(1).u32(2).u32(2).u32(2).u32(7).u32(0).bytes(b"hi");
        let (pkts, err) = read_all(&b.out);
        assert!(err.is_none());
        assert_eq!(pkts[0].data, b"hi");
        assert_eq!(pkts[0].ts_ns, 1_000_002_000);
    }

    #[test]
    fn pcapng_interfaces_resolutions_and_block_kinds() {
        let mut b = Builder::new(true);
        b.shb()
            .idb(1, None, None) // microseconds
            .idb(113, Some(9), Some(-2)) // nanoseconds, 2 s earlier
            .idb(101, Some(0x80 | 10), None) // 2^-10 s
            .block(0x0bad, |b| {
                b.bytes(b"an unknown block");
            })
            .epb(0, 1_500_000, b"eth", 100)
            .epb(1, 5_000_000_123, b"sll", 3)
            .epb(2, 3 * 1024 + 512, b"raw", 3)
            .spb(b"simple")
            .opb(1, 7, b"old");
        let (pkts, err) = read_all(&b.out);
        assert!(err.is_none(), "{err:?}");
        let got: Vec<_> = pkts
            .iter()
            .map(|p| (p.frame_no, p.ts_ns, p.link, p.iface, p.data.as_slice()))
            .collect();
        assert_eq!(
            got,
            vec![
                (1, 1_500_000_000, LinkType::Ethernet, 0, &b"eth"[..]),
                (2, 3_000_000_123, LinkType::LinuxSll, 1, &b"sll"[..]),
                (3, 3_500_000_000, LinkType::Raw, 2, &b"raw"[..]),
                (4, 3_500_000_000, LinkType::Ethernet, 0, &b"simple"[..]),
                (5, -1_999_999_993, LinkType::LinuxSll, 1, &b"old"[..]),
            ]
        );
        assert_eq!(pkts[0].orig_len, 100);
    }

    #[test]
    fn pcapng_sections_with_different_byte_orders() {
        let mut b = Builder::new(true);
        b.shb().idb(1, None, None).epb(0, 1, b"first", 5);
        let mut be = Builder::new(false);
        be.shb().idb(276, Some(3), None).epb(0, 2, b"second", 6);
        b.out.extend_from_slice(&be.out);
        let mut rd = CaptureReader::new(&b.out[..]).unwrap();
        assert_eq!(
            rd.format(),
            CaptureFormat::PcapNg {
                endian: Endian::Little
            }
        );
        assert_eq!(rd.next_packet().unwrap().unwrap().data, b"first");
        let p = rd.next_packet().unwrap().unwrap();
        assert_eq!(
            (p.frame_no, p.link_type, p.ts_ns, p.data),
            (2, LinkType::LinuxSll2, 2_000_000, &b"second"[..])
        );
        assert_eq!(
            rd.format(),
            CaptureFormat::PcapNg {
                endian: Endian::Big
            }
        );
        assert!(rd.next_packet().unwrap().is_none());
    }

    #[test]
    fn packet_on_undescribed_interface_warns() {
        let mut b = Builder::new(true);
        b.shb().idb(1, None, None).epb(3, 0, b"x", 1);
        let mut rd = CaptureReader::new(&b.out[..]).unwrap();
        let p = rd.next_packet().unwrap().unwrap();
        assert!(matches!(p.link_type, LinkType::Unknown(_)));
        let (w, _) = rd.take_warnings();
        assert_eq!(w.len(), 1);
        assert!(w[0].message.contains("interface 3"), "{}", w[0].message);
    }

    fn sample_pcapng() -> (Vec<u8>, Vec<usize>, [usize; 2]) {
        let mut b = Builder::new(true);
        b.shb();
        let header_ends = [b.out.len(), b.idb(1, None, None).out.len()];
        let mut ends = Vec::new();
        for i in 0..5u8 {
            b.epb(0, u64::from(i), &vec![i; 10 + usize::from(i)], 100);
            ends.push(b.out.len());
        }
        (b.out, ends, header_ends)
    }

    #[test]
    fn truncated_input_returns_packets_then_error_with_offset() {
        let (full, ends, header_ends) = sample_pcapng();
        for cut in 0..full.len() {
            let (pkts, err) = read_all(&full[..cut]);
            let complete = ends.iter().filter(|&&e| e <= cut).count();
            assert_eq!(pkts.len(), complete, "cut at {cut}");
            let at_boundary = ends.contains(&cut) || header_ends.contains(&cut);
            if !at_boundary {
                let e = err.unwrap_or_else(|| panic!("cut at {cut} must be an error"));
                assert!(e.offset().is_some());
            }
        }
        let mut b = Builder::new(false);
        b.pcap_header(PCAP_MAGIC_US, 1)
            .pcap_record(1, 1, b"abcdef", 6);
        let (pkts, err) = read_all(&b.out[..b.out.len() - 2]);
        assert!(pkts.is_empty());
        match err {
            Some(CaptureError::Truncated {
                offset: 24,
                needed: 22,
                available: 20,
                ..
            }) => {}
            e => panic!("{e:?}"),
        }
    }

    #[test]
    fn huge_or_inconsistent_lengths_are_rejected() {
        let (mut full, ends, _) = sample_pcapng();
        // A block claiming 1 GiB: refused before any allocation.
        full[ends[1] + 4..ends[1] + 8].copy_from_slice(&(1u32 << 30).to_le_bytes());
        let (pkts, err) = read_all(&full);
        assert_eq!(pkts.len(), 2);
        assert!(
            matches!(err, Some(CaptureError::TooLarge { offset, .. }) if offset == ends[1] as u64),
            "{err:?}"
        );

        let (mut full, ends, _) = sample_pcapng();
        let t = ends[2] - 4;
        full[t] ^= 0x10; // trailing length differs
        let (pkts, err) = read_all(&full);
        assert_eq!(pkts.len(), 2);
        assert!(matches!(err, Some(CaptureError::Corrupt { .. })), "{err:?}");

        let mut b = Builder::new(true);
        b.pcap_header(PCAP_MAGIC_US, 1)
            .u32(0)
            .u32(0)
            .u32(u32::MAX)
            .u32(0);
        let (_, err) = read_all(&b.out);
        assert!(
            matches!(err, Some(CaptureError::TooLarge { offset: 24, .. })),
            "{err:?}"
        );
    }

    #[test]
    fn unknown_formats() {
        assert!(matches!(
            read_all(b"").1,
            Some(CaptureError::UnknownFormat { .. })
        ));
        assert!(matches!(
            read_all(b"GET / HTTP/1.1").1,
            Some(CaptureError::UnknownFormat { .. })
        ));
        assert!(matches!(
            read_all(&[0xd4, 0xc3, 0xb2, 0xa1, 2, 0]).1,
            Some(CaptureError::Truncated { .. })
        ));
    }

    #[test]
    fn slow_reader_and_big_blocks() {
        let mut b = Builder::new(true);
        let big = vec![7u8; 200_000]; // larger than the initial buffer: it grows
        b.shb()
            .idb(1, None, None)
            .epb(0, 0, b"a", 1)
            .epb(0, 0, &big, 200_000)
            .epb(0, 0, b"b", 1);
        let (fast, e1) = read_all(&b.out);
        let (slow, e2) = read_all_from(Trickle(&b.out));
        assert!(e1.is_none() && e2.is_none());
        assert_eq!(fast, slow);
        assert_eq!(fast[1].data, big);
    }

    #[test]
    fn tsresol_units() {
        assert_eq!(TsUnit::from_tsresol(6).to_ns(1, 0), 1000);
        assert_eq!(TsUnit::from_tsresol(12).to_ns(5000, 0), 5);
        assert_eq!(TsUnit::from_tsresol(0x80).to_ns(3, 0), 3_000_000_000);
        assert_eq!(
            TsUnit::from_tsresol(0x80 | 30).to_ns(1 << 30, 7),
            1_000_000_007
        );
        assert_eq!(TsUnit::from_tsresol(0x7f).to_ns(u64::MAX, 0), 0);
        assert_eq!(TsUnit::from_tsresol(0).to_ns(u64::MAX, i64::MAX), i64::MAX);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(proptest::num::u8::ANY, 0..2048)) {
            let _ = read_all(&data);
        }

        #[test]
        fn mutated_pcapng_never_panics(flips in proptest::collection::vec((0usize..400, proptest::num::u8::ANY), 1..8)) {
            let (mut full, _, _) = sample_pcapng();
            for (at, v) in flips {
                let n = full.len();
                full[at % n] = v;
            }
            let _ = read_all(&full);
        }
    }
}
