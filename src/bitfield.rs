//! A set of piece indexes, stored the way BEP 3's `bitfield` message carries it: the high bit
//! of the first byte is piece 0, and the spare bits at the end must be zero.

use std::fmt;

#[derive(Clone, PartialEq, Eq, Default)]
pub struct Bitfield {
    bytes: Vec<u8>,
    len: u32,
    ones: u32,
}

/// Why a peer's bitfield message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BitfieldError {
    #[error("bitfield has {found} bytes, expected {expected} for {pieces} pieces")]
    WrongSize {
        found: usize,
        expected: usize,
        pieces: u32,
    },
    #[error("bitfield sets spare bits past piece {pieces}")]
    SpareBitsSet { pieces: u32 },
}

impl Bitfield {
    /// An empty set for `len` pieces.
    pub fn new(len: u32) -> Bitfield {
        Bitfield {
            bytes: vec![0; len.div_ceil(8) as usize],
            len,
            ones: 0,
        }
    }

    /// A full set for `len` pieces (what `have all` means).
    pub fn full(len: u32) -> Bitfield {
        let mut b = Bitfield::new(len);
        for i in 0..len {
            b.set(i);
        }
        b
    }

    /// Validates a received bitfield payload: exact size, spare bits zero.
    pub fn from_bytes(bytes: &[u8], len: u32) -> Result<Bitfield, BitfieldError> {
        let expected = len.div_ceil(8) as usize;
        if bytes.len() != expected {
            return Err(BitfieldError::WrongSize {
                found: bytes.len(),
                expected,
                pieces: len,
            });
        }
        if len % 8 != 0 {
            let spare_mask = 0xffu8 >> (len % 8);
            if bytes[expected - 1] & spare_mask != 0 {
                return Err(BitfieldError::SpareBitsSet { pieces: len });
            }
        }
        let ones = bytes.iter().map(|b| b.count_ones()).sum();
        Ok(Bitfield {
            bytes: bytes.to_vec(),
            len,
            ones,
        })
    }

    /// Number of pieces the set can hold.
    pub fn len(&self) -> u32 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of pieces in the set.
    pub fn count(&self) -> u32 {
        self.ones
    }

    pub fn is_full(&self) -> bool {
        self.ones == self.len
    }

    pub fn get(&self, i: u32) -> bool {
        i < self.len && self.bytes[(i / 8) as usize] & (0x80 >> (i % 8)) != 0
    }

    /// Adds piece `i`; returns false when `i` is out of range.
    pub fn set(&mut self, i: u32) -> bool {
        if i >= self.len {
            return false;
        }
        let byte = &mut self.bytes[(i / 8) as usize];
        let bit = 0x80 >> (i % 8);
        if *byte & bit == 0 {
            *byte |= bit;
            self.ones += 1;
        }
        true
    }

    pub fn clear(&mut self, i: u32) {
        if i < self.len {
            let byte = &mut self.bytes[(i / 8) as usize];
            let bit = 0x80 >> (i % 8);
            if *byte & bit != 0 {
                *byte &= !bit;
                self.ones -= 1;
            }
        }
    }

    /// The wire form, as sent in a `bitfield` message.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Indexes of the pieces in the set, ascending.
    pub fn iter_ones(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.len).filter(move |&i| self.get(i))
    }
}

impl fmt::Debug for Bitfield {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Bitfield({}/{} {})",
            self.ones,
            self.len,
            hex::encode(&self.bytes)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_layout_high_bit_first() {
        let mut b = Bitfield::new(10);
        b.set(0);
        b.set(9);
        assert_eq!(b.as_bytes(), &[0x80, 0x40]);
        assert_eq!(b.count(), 2);
        assert!(!b.set(10));
        assert_eq!(Bitfield::from_bytes(&[0x80, 0x40], 10).unwrap(), b);
    }

    #[test]
    fn rejects_wrong_size_and_spare_bits() {
        assert!(matches!(
            Bitfield::from_bytes(&[0xff], 10),
            Err(BitfieldError::WrongSize { .. })
        ));
        assert_eq!(
            Bitfield::from_bytes(&[0xff, 0xe0], 10),
            Err(BitfieldError::SpareBitsSet { pieces: 10 })
        );
        assert!(Bitfield::from_bytes(&[0xff, 0xc0], 10).unwrap().is_full());
        assert!(Bitfield::full(16).is_full());
    }
}
