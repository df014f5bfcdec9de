//! Client names from BitTorrent peer ids (the 20 bytes of the handshake).
//!
//! No BEP fixes the peer id's format; clients follow a few conventions (BEP 20 lists them):
//! - **Azureus style**: `-` + two letters naming the client + four version characters + `-`,
//!   then random bytes: `-TR3000-` is Transmission 3.00, `-LT2080-` libtorrent 2.0.8,
//!   `-bt0100-` bt-trace 0.1.0.
//! - **Shadow style**: one letter, then up to five version characters, padded with `-`:
//!   `S58B-----` is Shadow 5.8.11; BitTorrent's own "mainline" client writes `M7-4-3--`
//!   (digits separated by dashes).
//! - **aria2**: `A2-1-36-0-` (numbers separated by dashes).
//!
//! Anything else is shown as 40 hex digits. Contract: [`client_name`] accepts any 20 bytes and
//! never panics.

/// Azureus-style client codes (the two letters after the leading dash).
const AZUREUS: &[(&[u8; 2], &str)] = &[
    (b"7T", "aTorrent"),
    (b"AG", "Ares"),
    (b"AZ", "Vuze"),
    (b"BB", "BitBuddy"),
    (b"BC", "BitComet"),
    (b"BI", "BiglyBT"),
    (b"BT", "BitTorrent"),
    (b"BW", "BitWombat"),
    (b"DE", "Deluge"),
    (b"FD", "Free Download Manager"),
    (b"FW", "FrostWire"),
    (b"HL", "Halite"),
    (b"KT", "KTorrent"),
    (b"LT", "libtorrent"),
    (b"lt", "libTorrent (rakshasa)"),
    (b"LW", "LimeWire"),
    (b"MG", "MediaGet"),
    (b"PI", "PicoTorrent"),
    (b"qB", "qBittorrent"),
    (b"RT", "Retriever"),
    (b"SD", "Thunder"),
    (b"ST", "SymTorrent"),
    (b"TL", "Tribler"),
    (b"TR", "Transmission"),
    (b"TT", "TuoTu"),
    (b"TX", "Tixati"),
    (b"UM", "µTorrent Mac"),
    (b"UT", "µTorrent"),
    (b"UW", "µTorrent Web"),
    (b"WD", "WebTorrent Desktop"),
    (b"WW", "WebTorrent"),
    (b"XL", "Xunlei"),
    (b"ZT", "ZipTorrent"),
    (b"bt", "bt-trace"),
];

/// Shadow-style client letters.
const SHADOW: &[(u8, &str)] = &[
    (b'A', "ABC"),
    (b'O', "Osprey Permaseed"),
    (b'Q', "BTQueue"),
    (b'R', "Tribler"),
    (b'S', "Shadow"),
    (b'T', "BitTornado"),
    (b'U', "UPnP NAT BitTorrent"),
];

/// The client name and version a peer id suggests, e.g. `"Transmission 3.00"`,
/// `"aria2 1.36.0"`; the peer id in hex when no convention matches.
pub fn client_name(id: &[u8; 20]) -> String {
    azureus(id)
        .or_else(|| aria2(id))
        .or_else(|| mainline(id))
        .or_else(|| shadow(id))
        .unwrap_or_else(|| hex::encode(id))
}

/// The value of one version character: `0-9`, then `A-Z` = 10..35, `a-z` = 36..61.
fn digit(c: u8) -> Option<u32> {
    match c {
        b'0'..=b'9' => Some(u32::from(c - b'0')),
        b'A'..=b'Z' => Some(u32::from(c - b'A') + 10),
        b'a'..=b'z' => Some(u32::from(c - b'a') + 36),
        _ => None,
    }
}

fn azureus(id: &[u8; 20]) -> Option<String> {
    if id[0] != b'-' || id[7] != b'-' {
        return None;
    }
    let code = [id[1], id[2]];
    let name = AZUREUS.iter().find(|(c, _)| **c == code).map(|(_, n)| *n)?;
    let v = &id[3..7];
    let version = match &code {
        // Transmission: 3.00 from "3000" (before 4.0: major + two-digit minor), 4.0.5 from "4050".
        b"TR" if v[0] < b'4' => {
            let minor = std::str::from_utf8(&v[1..3]).ok()?;
            minor.bytes().all(|b| b.is_ascii_digit()).then_some(())?;
            format!("{}.{minor}", digit(v[0])?)
        }
        // µTorrent: the fourth character is a build type (B beta, S stable...).
        b"UT" | b"UM" | b"UW" => dotted(&v[..3])?,
        _ => {
            let d = dotted(&v[..3])?;
            match v[3] {
                b'0' => d,
                c => match digit(c) {
                    Some(n) => format!("{d}.{n}"),
                    None => d,
                },
            }
        }
    };
    Some(format!("{name} {version}"))
}

/// `a.b.c` from version characters.
fn dotted(v: &[u8]) -> Option<String> {
    let parts: Option<Vec<String>> = v.iter().map(|&c| digit(c).map(|n| n.to_string())).collect();
    Some(parts?.join("."))
}

/// `A2-1-36-0-`: aria2, numbers separated by dashes.
fn aria2(id: &[u8; 20]) -> Option<String> {
    let rest = id.strip_prefix(b"A2-")?;
    dash_numbers(rest).map(|v| format!("aria2 {v}"))
}

/// `M7-4-3--`: BitTorrent mainline, digits separated by dashes.
fn mainline(id: &[u8; 20]) -> Option<String> {
    if id[0] != b'M' {
        return None;
    }
    dash_numbers(&id[1..]).map(|v| format!("BitTorrent {v}"))
}

/// Reads `1-36-0-` (or `7-4-3--`): at least two decimal numbers, each ended by a dash.
fn dash_numbers(b: &[u8]) -> Option<String> {
    let mut parts = Vec::new();
    let mut i = 0;
    while parts.len() < 4 {
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start || b.get(i) != Some(&b'-') {
            break;
        }
        parts.push(std::str::from_utf8(&b[start..i]).ok()?.to_string());
        i += 1;
    }
    (parts.len() >= 2).then(|| parts.join("."))
}

/// `S58B-----`: Shadow style; version characters until the first dash.
fn shadow(id: &[u8; 20]) -> Option<String> {
    let name = SHADOW.iter().find(|(c, _)| *c == id[0]).map(|(_, n)| *n)?;
    let v: Vec<u8> = id[1..6]
        .iter()
        .copied()
        .take_while(|&c| c != b'-')
        .collect();
    // The padding dashes must follow, or this is just random bytes starting with a letter.
    if v.is_empty() || id[1 + v.len()..9].iter().any(|&c| c != b'-') {
        return None;
    }
    Some(format!("{name} {}", dotted(&v)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(prefix: &[u8]) -> [u8; 20] {
        let mut id = [b'x'; 20];
        id[..prefix.len()].copy_from_slice(prefix);
        id
    }

    #[test]
    fn azureus_style() {
        assert_eq!(client_name(&id(b"-TR3000-")), "Transmission 3.00");
        assert_eq!(client_name(&id(b"-TR2940-")), "Transmission 2.94");
        assert_eq!(client_name(&id(b"-TR4050-")), "Transmission 4.0.5");
        assert_eq!(client_name(&id(b"-LT2080-")), "libtorrent 2.0.8");
        assert_eq!(client_name(&id(b"-LT1290-")), "libtorrent 1.2.9");
        assert_eq!(
            client_name(&id(b"-lt0D80-")),
            "libTorrent (rakshasa) 0.13.8"
        );
        assert_eq!(client_name(&id(b"-qB4250-")), "qBittorrent 4.2.5");
        assert_eq!(client_name(&id(b"-UT355W-")), "µTorrent 3.5.5");
        assert_eq!(client_name(&id(b"-DE13F0-")), "Deluge 1.3.15");
        assert_eq!(client_name(&id(b"-bt0100-")), "bt-trace 0.1.0");
        assert_eq!(client_name(&id(b"-AZ5750-")), "Vuze 5.7.5");
    }

    #[test]
    fn aria2_mainline_shadow() {
        assert_eq!(client_name(&id(b"A2-1-36-0-")), "aria2 1.36.0");
        assert_eq!(client_name(&id(b"M7-4-3--")), "BitTorrent 7.4.3");
        assert_eq!(client_name(&id(b"S58B-----")), "Shadow 5.8.11");
        assert_eq!(client_name(&id(b"T03I-----")), "BitTornado 0.3.18");
    }

    #[test]
    fn unknown_is_hex() {
        let raw = [0xabu8; 20];
        assert_eq!(client_name(&raw), "ab".repeat(20));
        // An unknown Azureus code, and a Shadow letter without padding.
        assert_eq!(client_name(&id(b"-ZZ1000-")), hex::encode(id(b"-ZZ1000-")));
        assert_eq!(client_name(&id(b"Sxxxxxxx")), hex::encode(id(b"Sxxxxxxx")));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(bytes in proptest::array::uniform20(proptest::prelude::any::<u8>())) {
            let _ = client_name(&bytes);
        }
    }
}
