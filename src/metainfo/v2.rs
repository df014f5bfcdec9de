//! BitTorrent v2 fields of a torrent (BEP 52): the `file tree` inside `info`, the top-level
//! `piece layers`, and the check that a hybrid's v1 and v2 file lists describe the same files.
//!
//! A v2 torrent has `meta version` 2 and a `file tree`: nested dictionaries keyed by path
//! component, each file a dictionary under the empty key `""` with its `length` and its
//! `pieces root` (the root of the file's SHA-256 merkle tree over 16 KiB blocks; absent for an
//! empty file). Pieces never span files. `piece layers` (outside `info`, so not part of the
//! metadata peers exchange) maps each `pieces root` of a file larger than one piece to the
//! concatenated SHA-256 of each of its pieces' subtrees.
//!
//! Owns reading those fields and their length checks. Parsing checks a piece layer for its
//! length only (`info` shows a torrent whatever its layers hash to); a download asks
//! [`PieceLayers::checked`] for a file's layer, which is checked against its `pieces root`
//! (the hashing itself is `crate::merkle`'s).

use super::{
    missing, non_negative, sanitize_path, sanitized_warning, text, wrong, FileEntry, MetainfoError,
    Result, Symlink,
};
use crate::bencode::Value;
use std::collections::BTreeMap;

/// Smallest v2 piece length: one 16 KiB block, the leaf size of the merkle trees.
pub const MIN_PIECE_LENGTH: u64 = 16 * 1024;

/// The v2 part of an `info` dictionary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V2Info {
    /// SHA-256 of the raw `info` bytes. Its first 20 bytes are what a v2-only torrent uses in
    /// handshakes, trackers and DHT.
    pub info_hash: [u8; 32],
    /// The files of `file tree` in its order (bencode keys are sorted), empty files included.
    pub files: Vec<V2File>,
    /// True when the tree is one file at its top level (a single-file torrent).
    pub single_file: bool,
}

/// One file of a v2 `file tree`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V2File {
    /// Sanitized path components, relative to the torrent's root (`[name]` for a single file).
    pub path: Vec<String>,
    pub length: u64,
    /// Root of the file's merkle tree; `None` for an empty file (or a symlink).
    pub pieces_root: Option<[u8; 32]>,
    /// BEP 47 letters from the file's `attr`.
    pub attr: String,
    /// `symlink path` of a file with `attr` `l`.
    pub symlink: Option<Vec<String>>,
}

impl V2File {
    /// Number of v2 pieces of this file: pieces never span files.
    pub fn num_pieces(&self, piece_length: u64) -> u64 {
        self.length.div_ceil(piece_length)
    }

    /// Bytes of piece layer this file needs: one SHA-256 a piece when it has more than one
    /// piece, none otherwise (its `pieces root` is then the piece's own hash).
    pub fn layer_len(&self, piece_length: u64) -> u64 {
        if self.length > piece_length {
            self.num_pieces(piece_length) * 32
        } else {
            0
        }
    }
}

impl V2Info {
    /// Reads `info.file tree`.
    pub(super) fn parse(
        tree: &Value,
        info_hash: [u8; 32],
        warnings: &mut Vec<String>,
    ) -> Result<V2Info> {
        let mut files = Vec::new();
        walk(
            tree,
            "info.file tree",
            &mut Vec::new(),
            &mut files,
            warnings,
        )?;
        if files.is_empty() {
            return Err(MetainfoError::Invalid {
                field: "info.file tree".into(),
                why: "it holds no file".into(),
            });
        }
        let single_file = files.len() == 1 && files[0].path.len() == 1;
        Ok(V2Info {
            info_hash,
            files,
            single_file,
        })
    }

    /// The 20-byte truncation of the v2 info hash used on the wire.
    pub fn truncated_hash(&self) -> [u8; 20] {
        let mut h = [0u8; 20];
        h.copy_from_slice(&self.info_hash[..20]);
        h
    }

    /// Number of v2 pieces (each file rounded up to whole pieces).
    pub fn num_pieces(&self, piece_length: u64) -> u64 {
        self.files.iter().map(|f| f.num_pieces(piece_length)).sum()
    }

    /// The files in a v1-like byte space, as libtorrent lays out a v2 torrent: every file
    /// starts at a piece boundary, each non-empty file followed by a padding entry up to the
    /// next one (`.pad/<length>`).
    pub(super) fn byte_space(&self, piece_length: u64) -> Result<Vec<FileEntry>> {
        let mut out = Vec::with_capacity(self.files.len() * 2);
        let mut offset = 0u64;
        for f in &self.files {
            let entry = FileEntry {
                path: f.path.clone(),
                length: f.length,
                offset,
                padding: false,
                executable: f.attr.contains('x'),
                hidden: f.attr.contains('h'),
                symlink: f.symlink.clone().map(|given| Symlink {
                    given,
                    target: None,
                }),
            };
            let pad = (piece_length - f.length % piece_length) % piece_length;
            let end = offset
                .checked_add(f.length)
                .and_then(|e| e.checked_add(pad));
            let Some(end) = end else {
                return Err(MetainfoError::Invalid {
                    field: "info.file tree".into(),
                    why: "the total length overflows 64 bits".into(),
                });
            };
            out.push(entry);
            if pad > 0 {
                out.push(FileEntry {
                    path: vec![".pad".into(), pad.to_string()],
                    length: pad,
                    offset: offset + f.length,
                    padding: true,
                    executable: false,
                    hidden: false,
                    symlink: None,
                });
            }
            offset = end;
        }
        Ok(out)
    }

    /// A hybrid's v1 `files` (or `length`) must list the same files as the `file tree`, in
    /// the same order with the same lengths; v1 padding files are not compared. libtorrent
    /// refuses a hybrid whose lists disagree, and so do we.
    pub(super) fn check_hybrid(&self, v1: &[FileEntry]) -> Result<()> {
        let v1: Vec<&FileEntry> = v1.iter().filter(|f| !f.padding).collect();
        let mismatch = |why: String| MetainfoError::HybridMismatch { why };
        if v1.len() != self.files.len() {
            return Err(mismatch(format!(
                "v1 lists {} file(s), the v2 file tree {}",
                v1.len(),
                self.files.len()
            )));
        }
        for (i, (a, b)) in v1.iter().zip(&self.files).enumerate() {
            if a.path != b.path || a.length != b.length {
                return Err(mismatch(format!(
                    "file {i} is {:?} ({} bytes) in v1 but {:?} ({} bytes) in the v2 file tree",
                    a.path.join("/"),
                    a.length,
                    b.path.join("/"),
                    b.length
                )));
            }
        }
        Ok(())
    }
}

/// Reads one node of the file tree at `prefix`: a file (the key `""`) or a directory.
fn walk(
    node: &Value,
    field: &str,
    prefix: &mut Vec<String>,
    out: &mut Vec<V2File>,
    warnings: &mut Vec<String>,
) -> Result<()> {
    let d = node
        .as_dict()
        .ok_or_else(|| wrong(field, "a dictionary", node))?;
    if let Some(leaf) = d.get(&b""[..]) {
        if prefix.is_empty() || d.len() > 1 {
            return Err(MetainfoError::Invalid {
                field: field.into(),
                why: if prefix.is_empty() {
                    "the root of the tree is a file, not a directory".into()
                } else {
                    "is both a file (key \"\") and a directory".into()
                },
            });
        }
        out.push(file(leaf, &format!("{field}[\"\"]"), prefix, warnings)?);
        return Ok(());
    }
    for (k, child) in d {
        let name = String::from_utf8_lossy(k).into_owned();
        let child_field = format!("{field}[{name:?}]");
        prefix.push(name);
        let r = walk(child, &child_field, prefix, out, warnings);
        prefix.pop();
        r?;
    }
    Ok(())
}

/// Reads a file's `""` dictionary at `given` (the path as the tree spells it).
fn file(leaf: &Value, field: &str, given: &[String], warnings: &mut Vec<String>) -> Result<V2File> {
    let d = leaf
        .as_dict()
        .ok_or_else(|| wrong(field, "a dictionary", leaf))?;
    let attr = d
        .get(&b"attr"[..])
        .and_then(Value::as_bytes)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .unwrap_or_default();
    let symlink = if attr.contains('l') {
        let f = format!("{field}.symlink path");
        let v = d.get(&b"symlink path"[..]).ok_or_else(|| missing(&f))?;
        let comps = v.as_list().ok_or_else(|| wrong(&f, "a list", v))?;
        Some(
            comps
                .iter()
                .enumerate()
                .map(|(j, c)| text(c, &format!("{f}[{j}]")))
                .collect::<Result<Vec<_>>>()?,
        )
    } else {
        None
    };
    let length = match (d.get(&b"length"[..]), &symlink) {
        (_, Some(_)) => 0,
        (Some(v), None) => non_negative(v, &format!("{field}.length"))?,
        (None, None) => return Err(missing(&format!("{field}.length"))),
    };
    let rfield = format!("{field}.pieces root");
    let pieces_root = match d.get(&b"pieces root"[..]) {
        _ if length == 0 => None,
        None => return Err(missing(&rfield)),
        Some(v) => {
            let b = v
                .as_bytes()
                .ok_or_else(|| wrong(&rfield, "a byte string", v))?;
            Some(<[u8; 32]>::try_from(b).map_err(|_| MetainfoError::Invalid {
                field: rfield,
                why: format!("is {} bytes long, not 32 (one SHA-256)", b.len()),
            })?)
        }
    };
    let path = sanitize_path(given);
    if path != given {
        let pfield = format!("info.file tree[{:?}]", given.join("/"));
        warnings.push(sanitized_warning(&pfield, given, &path));
    }
    Ok(V2File {
        path,
        length,
        pieces_root,
        attr,
        symlink,
    })
}

/// The top-level `piece layers`: per `pieces root`, the concatenated SHA-256 of each piece.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PieceLayers {
    /// The layers as given, keyed by `pieces root`.
    pub layers: BTreeMap<[u8; 32], Vec<u8>>,
    /// Files that need a layer (more than one piece).
    pub needed: usize,
    /// Of those, how many have one.
    pub present: usize,
    /// Missing and unused layers, one line each.
    pub warnings: Vec<String>,
}

impl PieceLayers {
    /// Reads `piece layers` (absent: empty) and checks it against the file tree: a file larger
    /// than one piece needs `ceil(length / piece length) * 32` bytes under its `pieces root`.
    /// A missing layer is only a warning (peers can send it with `hash request`), a layer of
    /// the wrong length is an error, a layer no file uses is ignored with a warning.
    pub(super) fn parse(v: Option<&Value>, v2: &V2Info, piece_length: u64) -> Result<PieceLayers> {
        let mut warnings = Vec::new();
        let mut layers = BTreeMap::new();
        if let Some(v) = v {
            let d = v
                .as_dict()
                .ok_or_else(|| wrong("piece layers", "a dictionary", v))?;
            for (k, layer) in d {
                let field = format!("piece layers[{}]", hex::encode(k));
                let root =
                    <[u8; 32]>::try_from(k.as_slice()).map_err(|_| MetainfoError::Invalid {
                        field: field.clone(),
                        why: format!("the key is {} bytes long, not 32 (a pieces root)", k.len()),
                    })?;
                let bytes = layer
                    .as_bytes()
                    .ok_or_else(|| wrong(&field, "a byte string", layer))?;
                layers.insert(root, bytes.to_vec());
            }
        }
        let (mut needed, mut present) = (0, 0);
        let mut used = std::collections::HashSet::new();
        for f in &v2.files {
            let want = f.layer_len(piece_length);
            let Some(root) = f.pieces_root.filter(|_| want > 0) else {
                continue;
            };
            needed += 1;
            used.insert(root);
            match layers.get(&root) {
                None => warnings.push(format!(
                    "`piece layers` has no layer for {:?} ({} pieces): its piece hashes would \
                     have to come from peers",
                    f.path.join("/"),
                    f.num_pieces(piece_length)
                )),
                Some(l) if l.len() as u64 != want => {
                    return Err(MetainfoError::Invalid {
                        field: format!("piece layers[{}]", hex::encode(root)),
                        why: format!(
                            "is {} bytes long; {:?} has {} bytes in pieces of {piece_length}, \
                             so its layer is {} SHA-256 hashes ({want} bytes)",
                            l.len(),
                            f.path.join("/"),
                            f.length,
                            want / 32
                        ),
                    })
                }
                Some(_) => present += 1,
            }
        }
        let unused = layers.keys().filter(|k| !used.contains(*k)).count();
        if unused > 0 {
            warnings.push(format!(
                "{unused} layer(s) of `piece layers` belong to no file larger than one piece: \
                 ignored"
            ));
        }
        Ok(PieceLayers {
            layers,
            needed,
            present,
            warnings,
        })
    }
}

impl PieceLayers {
    /// The piece hashes of `file` for a download: its layer split into hashes, checked to hash
    /// up to its `pieces root` (the layer padded with the roots of all-zero pieces to a power
    /// of two). Empty for a file of at most one piece (its root is its only piece's hash). An
    /// error names the file when the layer is missing or does not match its root.
    pub fn checked(&self, file: &V2File, piece_length: u64) -> Result<Vec<[u8; 32]>> {
        let Some(root) = file
            .pieces_root
            .filter(|_| file.layer_len(piece_length) > 0)
        else {
            return Ok(Vec::new());
        };
        let name = file.path.join("/");
        let field = format!("piece layers[{}]", hex::encode(root));
        let Some(bytes) = self.layers.get(&root) else {
            return Err(MetainfoError::Invalid {
                field: "piece layers".into(),
                why: format!(
                    "has no layer for {name:?} ({} pieces)",
                    file.num_pieces(piece_length)
                ),
            });
        };
        let layer = crate::merkle::split_hashes(bytes);
        let height = (piece_length / crate::merkle::BLOCK_SIZE as u64).trailing_zeros();
        if layer.len() as u64 != file.num_pieces(piece_length)
            || crate::merkle::merkle_root(&layer, height) != Some(root)
        {
            return Err(MetainfoError::Invalid {
                field,
                why: format!(
                    "does not hash to the `pieces root` of {name:?}: refusing the torrent"
                ),
            });
        }
        Ok(layer)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Info, InfoHashes, Torrent};
    use crate::bencode::Value;
    use sha2::{Digest, Sha256};

    const PL: i64 = 16384;

    fn b(s: &str) -> Value {
        Value::bytes(s)
    }

    fn leaf(len: i64, root: u8) -> Value {
        let mut f = vec![("length", Value::Int(len))];
        if len > 0 {
            f.push(("pieces root", Value::Bytes(vec![root; 32])));
        }
        Value::dict([("", Value::dict(f))])
    }

    /// A v2 info dictionary: `a` (2.5 pieces, root 1), `d/e` (empty), `d/f` (3 bytes, root 2).
    fn tree() -> Value {
        Value::dict([
            ("a", leaf(PL * 2 + PL / 2, 1)),
            ("d", Value::dict([("e", leaf(0, 0)), ("f", leaf(3, 2))])),
        ])
    }

    fn info(tree: Value) -> Value {
        Value::dict([
            ("file tree", tree),
            ("meta version", Value::Int(2)),
            ("name", b("dir")),
            ("piece length", Value::Int(PL)),
        ])
    }

    fn layers(n: usize) -> Value {
        Value::Dict([(vec![1u8; 32], Value::Bytes(vec![9; 32 * n]))].into())
    }

    fn torrent(info: Value, layers: Option<Value>) -> Vec<u8> {
        let mut t = vec![("announce", b("http://t/a")), ("info", info)];
        if let Some(l) = layers {
            t.push(("piece layers", l));
        }
        Value::dict(t).encode()
    }

    fn err(bytes: &[u8]) -> String {
        Torrent::parse(bytes).unwrap_err().to_string()
    }

    #[test]
    fn v2_only_hashes_layout_and_layers() {
        let bytes = torrent(info(tree()), Some(layers(3)));
        let t = Torrent::parse(&bytes).unwrap();
        let raw = t.info.raw_bytes();
        let sha256: [u8; 32] = Sha256::digest(raw).into();
        let v2 = t.info.v2.as_ref().unwrap();
        assert_eq!(v2.info_hash, sha256);
        assert_eq!(t.info_hash, v2.truncated_hash());
        assert_eq!(t.info_hash[..], sha256[..20]);
        assert!(!t.info.has_v1() && t.info.multi_file && t.info.meta_version() == 2);
        let paths: Vec<String> = t.info.files.iter().map(|f| f.display_path()).collect();
        // every file starts at a piece boundary, as libtorrent lays it out
        assert_eq!(paths, ["a", ".pad/8192", "d/e", "d/f", ".pad/16381"]);
        assert_eq!(t.info.total_length as i64, PL * 4);
        assert_eq!(t.info.piece_count(), 4);
        assert_eq!(v2.num_pieces(t.info.piece_length), 4);
        assert_eq!((t.piece_layers.needed, t.piece_layers.present), (1, 1));
        assert!(t.warnings().is_empty(), "{:?}", t.warnings());
        // the metadata of a v2-only torrent is checked against its SHA-256 (a `btmh` link)
        let v2_link = InfoHashes::V2(sha256);
        assert_eq!(v2_link.wire(), t.info_hash);
        assert!(Info::from_metadata(raw, &v2_link).is_ok());
    }

    #[test]
    fn piece_layer_lengths_are_checked() {
        let e = err(&torrent(info(tree()), Some(layers(2))));
        assert!(
            e.starts_with(&format!(
                "field `piece layers[{}]`: is 64 bytes",
                "01".repeat(32)
            )),
            "{e}"
        );
        assert!(e.contains("3 SHA-256 hashes (96 bytes)"), "{e}");
        // missing: a warning, the torrent is still shown
        let t = Torrent::parse(&torrent(info(tree()), None)).unwrap();
        assert_eq!((t.piece_layers.needed, t.piece_layers.present), (1, 0));
        assert!(
            t.warnings()[0].contains("no layer for \"a\""),
            "{:?}",
            t.warnings()
        );
        let bad_key = Value::Dict([(vec![1u8; 5], Value::Bytes(vec![]))].into());
        assert!(err(&torrent(info(tree()), Some(bad_key))).contains("not 32 (a pieces root)"));
    }

    #[test]
    fn errors_name_the_field() {
        let with = |k: &str, v: Value| {
            let mut i = info(tree());
            if let Value::Dict(d) = &mut i {
                d.insert(k.as_bytes().to_vec(), v);
            }
            torrent(i, None)
        };
        assert_eq!(
            err(&with("piece length", Value::Int(3 * PL))),
            "field `info.piece length`: 49152 is not a power of two of at least 16384 (BEP 52)"
        );
        assert_eq!(
            err(&with("meta version", Value::Int(3))),
            "field `info.meta version`: 3 is not a version we know (1 or 2)"
        );
        assert_eq!(
            err(&with("file tree", Value::dict::<&str>([]))),
            "field `info.file tree`: it holds no file"
        );
        let no_root = Value::dict([(
            "x",
            Value::dict([("", Value::dict([("length", Value::Int(5))]))]),
        )]);
        assert_eq!(
            err(&with("file tree", no_root)),
            "missing field `info.file tree[\"x\"][\"\"].pieces root`"
        );
        let both = Value::dict([(
            "x",
            Value::dict([
                ("", Value::dict([("length", Value::Int(0))])),
                ("y", leaf(1, 1)),
            ]),
        )]);
        assert_eq!(
            err(&with("file tree", both)),
            "field `info.file tree[\"x\"]`: is both a file (key \"\") and a directory"
        );
        let wrong = Value::dict([("x", Value::dict([("", Value::dict([("length", b("5"))]))]))]);
        assert_eq!(
            err(&with("file tree", wrong)),
            "field `info.file tree[\"x\"][\"\"].length` should be an integer, found a byte string"
        );
        let mut i = info(tree());
        if let Value::Dict(d) = &mut i {
            d.remove(&b"file tree"[..]);
        }
        assert_eq!(err(&torrent(i, None)), "missing field `info.file tree`");
    }

    /// v1 fields for the files of [`tree`], with padding files as libtorrent writes them.
    fn hybrid(files: Vec<(&[&str], i64, bool)>) -> Vec<u8> {
        let list: Vec<Value> = files
            .iter()
            .map(|(p, len, pad)| {
                let mut f = vec![
                    ("length", Value::Int(*len)),
                    ("path", Value::List(p.iter().map(|c| b(c)).collect())),
                ];
                if *pad {
                    f.push(("attr", b("p")));
                }
                Value::dict(f)
            })
            .collect();
        let total: i64 = files.iter().map(|f| f.1).sum();
        let mut i = info(tree());
        if let Value::Dict(d) = &mut i {
            d.insert(b"files".to_vec(), Value::List(list));
            let n = (total + PL - 1) / PL;
            d.insert(b"pieces".to_vec(), Value::Bytes(vec![7; n as usize * 20]));
        }
        torrent(i, Some(layers(3)))
    }

    #[test]
    fn hybrids_must_list_the_same_files() {
        let good: Vec<(&[&str], i64, bool)> = vec![
            (&["a"], PL * 2 + PL / 2, false),
            (&[".pad", "8192"], PL / 2, true),
            (&["d", "e"], 0, false),
            (&["d", "f"], 3, false),
        ];
        let t = Torrent::parse(&hybrid(good.clone())).unwrap();
        assert!(t.info.has_v1() && t.info.v2.is_some());
        assert_eq!(t.info_hash, t.info.info_hash());
        assert_eq!(t.info.num_pieces(), 4);
        // its metadata must match both hashes of a hybrid magnet link
        let raw = t.info.raw_bytes();
        let (v1, v2) = (t.info.info_hash(), t.info.v2.as_ref().unwrap().info_hash);
        assert!(Info::from_metadata(raw, &InfoHashes::Hybrid(v1, v2)).is_ok());
        assert_eq!(InfoHashes::Hybrid(v1, v2).wire(), v1);
        let mut other = v2;
        other[31] ^= 1;
        let e = Info::from_metadata(raw, &InfoHashes::Hybrid(v1, other)).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "info dictionary's SHA-256 is {}, expected {}",
                hex::encode(v2),
                hex::encode(other)
            )
        );
        let e = Info::from_metadata(raw, &InfoHashes::Hybrid([0; 20], v2)).unwrap_err();
        assert!(
            e.to_string().starts_with("info dictionary's SHA-1 is "),
            "{e}"
        );
        let mut renamed = good.clone();
        renamed[3].0 = &["d", "g"];
        assert_eq!(
            err(&hybrid(renamed)),
            "hybrid torrent refused: its v1 and v2 file lists disagree: file 2 is \"d/g\" \
             (3 bytes) in v1 but \"d/f\" (3 bytes) in the v2 file tree"
        );
        let mut longer = good.clone();
        longer[3].1 = 4;
        assert!(err(&hybrid(longer)).contains("(4 bytes) in v1 but \"d/f\" (3 bytes)"));
        assert!(err(&hybrid(good[..3].to_vec())).contains("v1 lists 2 file(s), the v2 file tree 3"));
    }
}
