//! ESP in transport mode (RFC 4303) around the Mobility Header, done by
//! the daemon itself since the kernel here has no IPv6 ESP in xfrm: the
//! MAG–LMA signalling protection RFC 5213 §4 asks for. One security
//! association per direction and peer, AES-GCM with a 16-octet ICV
//! (RFC 4106): a 16-octet key and a 4-octet salt, an 8-octet explicit IV
//! (the sequence number, so never reused under a key), the SPI and
//! sequence number as associated data, and a 64-packet anti-replay window
//! (RFC 4303 §3.4.3). No extended sequence numbers: an outbound SA stops
//! at 2^32 - 1 packets rather than wrap.

use std::collections::HashMap;
use std::net::Ipv6Addr;
use std::path::{Path, PathBuf};

use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes128Gcm, KeyInit, Nonce, Tag};
use serde::{Deserialize, Serialize};

/// The protocol number of ESP.
pub const IPPROTO_ESP: i32 = 50;
const ICV: usize = 16;
const IV: usize = 8;
/// SPI, sequence number and IV before the ciphertext.
const HEADER: usize = 8 + IV;
const WINDOW: u32 = 64;

/// One direction of protection between two nodes, as the harness hands
/// it over: `key` is 40 hex digits, the AES-128 key then the salt
/// (RFC 4106 §8.1's keying material, the form Wireshark's ESP table takes).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SaConfig {
    pub spi: u32,
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub key: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EspConfig {
    pub sas: Vec<SaConfig>,
    /// Where the node records, before it uses them, how far its outbound
    /// sequence numbers may go: a restarted node (same keys, no IKE to
    /// make new ones) starts above every number its predecessor may have
    /// sent, so no IV repeats under a key (RFC 4106 §3.1) and its peers'
    /// anti-replay windows take its packets.
    #[serde(default)]
    pub sequence_file: Option<PathBuf>,
}

/// Sequence numbers reserved at a time in the sequence file.
const RESERVE: u32 = 1024;

/// Why an ESP packet was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EspError {
    Short(usize),
    UnknownSpi(u32),
    WrongPeer {
        spi: u32,
        src: Ipv6Addr,
    },
    Replay {
        spi: u32,
        seq: u32,
    },
    Authentication {
        spi: u32,
        seq: u32,
    },
    Padding,
    Exhausted(u32),
    /// The sequence file could not be written: sending could reuse a
    /// sequence number (an IV) after a restart, so nothing is sent.
    Unrecorded {
        spi: u32,
        why: String,
    },
}

impl std::fmt::Display for EspError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EspError::Short(n) => write!(f, "{n} octets is too short for ESP with AES-GCM"),
            EspError::UnknownSpi(s) => write!(f, "no security association has SPI {s:#010x}"),
            EspError::WrongPeer { spi, src } => write!(f, "SPI {spi:#010x} is not for packets from {src}"),
            EspError::Replay { spi, seq } => write!(f, "SPI {spi:#010x} sequence {seq} is a replay or too old"),
            EspError::Authentication { spi, seq } => {
                write!(f, "SPI {spi:#010x} sequence {seq} fails its integrity check")
            }
            EspError::Padding => write!(f, "the padding or trailer is malformed"),
            EspError::Exhausted(s) => write!(f, "SPI {s:#010x} has used up its sequence numbers"),
            EspError::Unrecorded { spi, why } => {
                write!(f, "SPI {spi:#010x}: the sequence reservation could not be recorded ({why}); nothing is sent")
            }
        }
    }
}

impl EspError {
    /// A short name for counting refusals.
    pub fn kind(&self) -> &'static str {
        match self {
            EspError::Short(_) | EspError::Padding => "ESP malformed",
            EspError::UnknownSpi(_) | EspError::WrongPeer { .. } => "ESP unknown SA",
            EspError::Replay { .. } => "ESP replay",
            EspError::Authentication { .. } => "ESP integrity",
            EspError::Exhausted(_) | EspError::Unrecorded { .. } => "ESP exhausted",
        }
    }
}

fn parse_key(hex: &str) -> anyhow::Result<(Aes128Gcm, [u8; 4])> {
    let hex = hex.strip_prefix("0x").unwrap_or(hex);
    anyhow::ensure!(hex.len() == 40, "an ESP key is 40 hex digits (16 octets of key, 4 of salt)");
    let mut b = [0u8; 20];
    for (i, o) in b.iter_mut().enumerate() {
        *o = u8::from_str_radix(hex.get(2 * i..2 * i + 2).unwrap_or("x"), 16)
            .map_err(|_| anyhow::anyhow!("an ESP key holds something that is not a hex digit"))?;
    }
    let cipher = Aes128Gcm::new_from_slice(&b[..16]).map_err(|_| anyhow::anyhow!("bad AES-128 key length"))?;
    Ok((cipher, [b[16], b[17], b[18], b[19]]))
}

struct Outbound {
    spi: u32,
    cipher: Aes128Gcm,
    salt: [u8; 4],
    seq: u32,
    /// The highest sequence number recorded in the sequence file.
    reserved: u32,
}

struct Inbound {
    src: Ipv6Addr,
    cipher: Aes128Gcm,
    salt: [u8; 4],
    window: ReplayWindow,
}

/// RFC 4303 §3.4.3: the highest sequence number seen and which of the 63
/// before it were seen.
#[derive(Debug, Default, Clone, Copy)]
pub struct ReplayWindow {
    top: u32,
    seen: u64,
}

impl ReplayWindow {
    /// May `seq` be accepted (before its ICV is checked)?
    pub fn fresh(&self, seq: u32) -> bool {
        if seq == 0 {
            return false;
        }
        if seq > self.top {
            return true;
        }
        let back = self.top - seq;
        back < WINDOW && self.seen & (1u64 << back) == 0
    }

    /// Records `seq`, once its ICV has been checked.
    pub fn accept(&mut self, seq: u32) {
        if seq > self.top {
            let shift = seq - self.top;
            self.seen = if shift >= WINDOW { 0 } else { self.seen << shift };
            self.seen |= 1;
            self.top = seq;
        } else {
            self.seen |= 1u64 << (self.top - seq);
        }
    }
}

/// The node's security associations.
pub struct Esp {
    outbound: HashMap<Ipv6Addr, Outbound>,
    inbound: HashMap<u32, Inbound>,
    sequence_file: Option<PathBuf>,
}

/// The reservations a sequence file holds: `<spi> <highest>` a line.
fn read_reservations(path: &Path) -> anyhow::Result<HashMap<u32, u32>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HashMap::new()),
        Err(e) => return Err(anyhow::anyhow!("reading {}: {e}", path.display())),
    };
    let mut out = HashMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut words = line.split_whitespace();
        let (Some(spi), Some(top), None) = (words.next(), words.next(), words.next()) else {
            anyhow::bail!("{}: '{line}' is not '<spi> <highest>'", path.display());
        };
        let spi = spi.parse().map_err(|e| anyhow::anyhow!("{}: SPI '{spi}': {e}", path.display()))?;
        let top = top.parse().map_err(|e| anyhow::anyhow!("{}: '{top}': {e}", path.display()))?;
        out.insert(spi, top);
    }
    Ok(out)
}

/// Writes the reservations, never through a symlink. No fsync: what is
/// guarded against is the process dying (a lab's daemons are killed, the
/// machine is not), and the page cache outlives the process; an fsync
/// here cost a loaded machine up to 200 ms on a node's first message.
fn write_reservations(path: &Path, all: &[(u32, u32)]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let text: String = all.iter().map(|(spi, top)| format!("{spi} {top}\n")).collect();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    f.write_all(text.as_bytes())
}

fn nonce(salt: &[u8; 4], iv: &[u8]) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[..4].copy_from_slice(salt);
    n[4..].copy_from_slice(iv);
    n
}

impl Esp {
    /// The SAs of `config` that concern `local`: outbound where it is the
    /// source, inbound where it is the destination.
    pub fn new(local: Ipv6Addr, config: &EspConfig) -> anyhow::Result<Esp> {
        let mut esp =
            Esp { outbound: HashMap::new(), inbound: HashMap::new(), sequence_file: config.sequence_file.clone() };
        let reserved = match &config.sequence_file {
            Some(path) => read_reservations(path)?,
            None => HashMap::new(),
        };
        for sa in &config.sas {
            let (cipher, salt) = parse_key(&sa.key).map_err(|e| anyhow::anyhow!("SA {:#010x}: {e}", sa.spi))?;
            anyhow::ensure!(sa.spi >= 256, "SPI {} is reserved (RFC 4303 §2.1: 1 to 255)", sa.spi);
            if sa.src == local {
                // Above whatever a predecessor may have sent.
                let top = reserved.get(&sa.spi).copied().unwrap_or(0);
                esp.outbound.insert(sa.dst, Outbound { spi: sa.spi, cipher, salt, seq: top, reserved: top });
            } else if sa.dst == local {
                anyhow::ensure!(!esp.inbound.contains_key(&sa.spi), "SPI {:#010x} appears twice", sa.spi);
                esp.inbound.insert(sa.spi, Inbound { src: sa.src, cipher, salt, window: ReplayWindow::default() });
            }
        }
        Ok(esp)
    }

    /// Does signalling from `peer` have to come protected?
    pub fn protects(&self, peer: Ipv6Addr) -> bool {
        self.inbound.values().any(|i| i.src == peer)
    }

    /// ESP payload (header, IV, ciphertext, ICV) carrying `payload` of
    /// protocol `next_header` to `dst`; `None` if no SA goes to `dst`.
    pub fn seal(&mut self, dst: Ipv6Addr, next_header: u8, payload: &[u8]) -> Option<Result<Vec<u8>, EspError>> {
        let (spi, next) = {
            let sa = self.outbound.get(&dst)?;
            (sa.spi, sa.seq.checked_add(1).filter(|s| *s != u32::MAX))
        };
        let Some(seq) = next else {
            return Some(Err(EspError::Exhausted(spi)));
        };
        if let Some(path) = &self.sequence_file {
            let needs = self.outbound.get(&dst).is_some_and(|sa| seq > sa.reserved);
            if needs {
                let top = seq.saturating_add(RESERVE).min(u32::MAX - 1);
                let all: Vec<(u32, u32)> =
                    self.outbound.values().map(|o| (o.spi, if o.spi == spi { top } else { o.reserved })).collect();
                if let Err(e) = write_reservations(path, &all) {
                    return Some(Err(EspError::Unrecorded { spi, why: e.to_string() }));
                }
                if let Some(sa) = self.outbound.get_mut(&dst) {
                    sa.reserved = top;
                }
            }
        }
        let sa = self.outbound.get_mut(&dst)?;
        sa.seq = seq;
        let iv = u64::from(seq).to_be_bytes();
        let mut out = Vec::with_capacity(HEADER + payload.len() + 4 + ICV);
        out.extend_from_slice(&sa.spi.to_be_bytes());
        out.extend_from_slice(&seq.to_be_bytes());
        out.extend_from_slice(&iv);
        // Payload, padding 1, 2, 3…, pad length, next header: a multiple of 4.
        let pad = (4 - (payload.len() + 2) % 4) % 4;
        out.extend_from_slice(payload);
        out.extend((1..=pad as u8).collect::<Vec<_>>());
        out.push(pad as u8);
        out.push(next_header);
        let aad = out[..8].to_vec();
        let n = nonce(&sa.salt, &iv);
        let tag = sa.cipher.encrypt_in_place_detached(Nonce::from_slice(&n), &aad, &mut out[HEADER..]);
        match tag {
            Ok(tag) => {
                out.extend_from_slice(&tag);
                Some(Ok(out))
            }
            Err(_) => Some(Err(EspError::Exhausted(sa.spi))),
        }
    }

    /// Checks and opens an ESP payload from `src`: the next header and the
    /// protected payload.
    pub fn open(&mut self, src: Ipv6Addr, packet: &[u8]) -> Result<(u8, Vec<u8>), EspError> {
        if packet.len() < HEADER + 4 + ICV {
            return Err(EspError::Short(packet.len()));
        }
        let spi = u32::from_be_bytes([packet[0], packet[1], packet[2], packet[3]]);
        let seq = u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]);
        let sa = self.inbound.get_mut(&spi).ok_or(EspError::UnknownSpi(spi))?;
        if sa.src != src {
            return Err(EspError::WrongPeer { spi, src });
        }
        if !sa.window.fresh(seq) {
            return Err(EspError::Replay { spi, seq });
        }
        let (body, icv) = packet[HEADER..].split_at(packet.len() - HEADER - ICV);
        let mut plain = body.to_vec();
        let n = nonce(&sa.salt, &packet[8..HEADER]);
        sa.cipher
            .decrypt_in_place_detached(Nonce::from_slice(&n), &packet[..8], &mut plain, Tag::from_slice(icv))
            .map_err(|_| EspError::Authentication { spi, seq })?;
        sa.window.accept(seq);
        let (&next_header, rest) = plain.split_last().ok_or(EspError::Padding)?;
        let (&pad, rest) = rest.split_last().ok_or(EspError::Padding)?;
        let keep = rest.len().checked_sub(usize::from(pad)).ok_or(EspError::Padding)?;
        if rest[keep..].iter().enumerate().any(|(i, &b)| usize::from(b) != i + 1) {
            return Err(EspError::Padding);
        }
        plain.truncate(keep);
        Ok((next_header, plain))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: &str = "2001:db8::11";
    const L: &str = "2001:db8::1";

    fn pair() -> (Esp, Esp) {
        let (a, b): (Ipv6Addr, Ipv6Addr) = (M.parse().unwrap(), L.parse().unwrap());
        let cfg = EspConfig {
            sas: vec![
                SaConfig { spi: 0x1001, src: a, dst: b, key: "00112233445566778899aabbccddeeff01020304".into() },
                SaConfig { spi: 0x1002, src: b, dst: a, key: "ffeeddccbbaa99887766554433221100a0b0c0d0".into() },
            ],
            sequence_file: None,
        };
        (Esp::new(a, &cfg).unwrap(), Esp::new(b, &cfg).unwrap())
    }

    #[test]
    fn a_restarted_sender_with_a_sequence_file_never_repeats_a_number_and_its_peer_takes_it() {
        let dir = std::env::temp_dir().join(format!("pmip-node-esp-seq-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("mag1.esp-sequence");
        let _ = std::fs::remove_file(&file);
        let (a, b): (Ipv6Addr, Ipv6Addr) = (M.parse().unwrap(), L.parse().unwrap());
        let sas =
            vec![SaConfig { spi: 0x1001, src: a, dst: b, key: "00112233445566778899aabbccddeeff01020304".into() }];
        let with_file = EspConfig { sas: sas.clone(), sequence_file: Some(file.clone()) };
        let seq_of = |p: &[u8]| u32::from_be_bytes([p[4], p[5], p[6], p[7]]);
        let mut peer = Esp::new(b, &EspConfig { sas: sas.clone(), sequence_file: None }).unwrap();
        let mut first = Esp::new(a, &with_file).unwrap();
        let mut used = Vec::new();
        for _ in 0..3 {
            let p = first.seal(b, 135, b"mh").unwrap().unwrap();
            used.push(seq_of(&p));
            assert!(peer.open(a, &p).is_ok());
        }
        // A crash: the same keys, a new process.
        drop(first);
        let mut again = Esp::new(a, &with_file).unwrap();
        let p = again.seal(b, 135, b"mh").unwrap().unwrap();
        assert!(seq_of(&p) > *used.iter().max().unwrap(), "sequence {} was used before the restart", seq_of(&p));
        assert_eq!(peer.open(a, &p).map(|(nh, _)| nh), Ok(135), "the peer takes the restarted sender's packet");
        // Without the file a restarted sender starts at 1 again: the IV
        // repeats under the key and the peer refuses it as a replay.
        let mut bare = Esp::new(a, &EspConfig { sas, sequence_file: None }).unwrap();
        let p = bare.seal(b, 135, b"mh").unwrap().unwrap();
        assert_eq!(seq_of(&p), 1);
        assert!(matches!(peer.open(a, &p), Err(EspError::Replay { .. })));
        // A file that cannot be written stops sending rather than risk it.
        let blocked = EspConfig { sequence_file: Some(dir.join("no-such-dir/x")), ..with_file.clone() };
        let mut stuck = Esp::new(a, &blocked).unwrap();
        assert!(matches!(stuck.seal(b, 135, b"mh"), Some(Err(EspError::Unrecorded { .. }))));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn what_one_side_seals_the_other_opens_once() {
        let (mut mag, mut lma) = pair();
        let (m, l): (Ipv6Addr, Ipv6Addr) = (M.parse().unwrap(), L.parse().unwrap());
        for len in [0, 1, 2, 3, 4, 5, 40, 41] {
            let payload: Vec<u8> = (0..len as u8).collect();
            let sealed = mag.seal(l, 135, &payload).unwrap().unwrap();
            assert_eq!((sealed.len() - HEADER - ICV) % 4, 0);
            assert_eq!(lma.open(m, &sealed).unwrap(), (135, payload));
            // The same packet again is a replay.
            assert!(matches!(lma.open(m, &sealed), Err(EspError::Replay { .. })));
        }
        assert!(lma.protects(m) && !lma.protects(l));
        assert!(lma.seal("2001:db8::99".parse().unwrap(), 135, b"x").is_none());
    }

    #[test]
    fn tampering_a_wrong_source_or_an_unknown_spi_is_refused() {
        let (mut mag, mut lma) = pair();
        let (m, l): (Ipv6Addr, Ipv6Addr) = (M.parse().unwrap(), L.parse().unwrap());
        let sealed = mag.seal(l, 135, b"a proxy binding update").unwrap().unwrap();
        for i in [0usize, 5, 9, 20, sealed.len() - 1] {
            let mut bad = sealed.clone();
            bad[i] ^= 1;
            assert!(lma.open(m, &bad).is_err(), "a flipped bit at {i} went through");
        }
        assert!(matches!(lma.open(l, &sealed), Err(EspError::WrongPeer { .. })));
        assert!(matches!(lma.open(m, &sealed[..10]), Err(EspError::Short(10))));
        assert!(lma.open(m, &sealed).is_ok(), "the good one still opens after the refusals");
    }

    #[test]
    fn the_replay_window_takes_late_packets_once_and_old_ones_never() {
        let mut w = ReplayWindow::default();
        assert!(!w.fresh(0));
        for s in [5, 3, 70, 7, 69] {
            assert!(w.fresh(s), "{s}");
            w.accept(s);
            assert!(!w.fresh(s), "{s} again");
        }
        assert!(!w.fresh(6), "70 - 6 = 64 is outside the window");
        assert!(w.fresh(8));
    }

    #[test]
    fn keys_must_be_forty_hex_digits() {
        let a: Ipv6Addr = "2001:db8::1".parse().unwrap();
        for key in ["00", "zz112233445566778899aabbccddeeff01020304"] {
            let cfg =
                EspConfig { sas: vec![SaConfig { spi: 300, src: a, dst: a, key: key.into() }], sequence_file: None };
            assert!(Esp::new(a, &cfg).is_err(), "{key}");
        }
    }
}
