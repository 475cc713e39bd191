//! Reading ESP-protected signalling (RFC 4303 transport mode, AES-GCM with
//! a 16-octet ICV as in RFC 4106) with a lab's keys, as an observer on the
//! link does: the same keys the lab writes for Wireshark, an SA found by
//! its SPI and its source and destination, the ICV verified. An observer
//! keeps no anti-replay window: it reports what crossed the link, replays
//! included; refusing them is the receiver's business.

use std::collections::HashMap;
use std::net::Ipv6Addr;

use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes128Gcm, KeyInit, Nonce, Tag};

const ICV: usize = 16;
/// SPI, sequence number and the 8-octet explicit IV.
const HEADER: usize = 16;

struct Sa {
    src: Ipv6Addr,
    dst: Ipv6Addr,
    cipher: Aes128Gcm,
    salt: [u8; 4],
}

/// The SAs of a lab, for reading its captures.
#[derive(Default)]
pub struct EspReader {
    sas: HashMap<u32, Sa>,
}

impl std::fmt::Debug for EspReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EspReader").field("spis", &self.sas.keys().collect::<Vec<_>>()).finish()
    }
}

impl EspReader {
    /// Adds the SA `spi` from `src` to `dst`; `key` is 40 hex digits, the
    /// AES-128 key then the salt (RFC 4106 §8.1), as Wireshark's table
    /// takes it. `Err` for a key of another shape.
    pub fn add(&mut self, spi: u32, src: Ipv6Addr, dst: Ipv6Addr, key: &str) -> Result<(), String> {
        let key = key.trim_start_matches("0x");
        if key.len() != 40 || !key.is_ascii() {
            return Err(format!("SA {spi:#010x}: a key is 40 hex digits (AES-128 and a 4-octet salt)"));
        }
        let mut bytes = [0u8; 20];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = u8::from_str_radix(&key[2 * i..2 * i + 2], 16)
                .map_err(|e| format!("SA {spi:#010x}: the key is not hex: {e}"))?;
        }
        let cipher = Aes128Gcm::new_from_slice(&bytes[..16]).map_err(|e| format!("SA {spi:#010x}: {e}"))?;
        let salt = [bytes[16], bytes[17], bytes[18], bytes[19]];
        self.sas.insert(spi, Sa { src, dst, cipher, salt });
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.sas.is_empty()
    }

    /// The next header and payload an ESP packet from `src` to `dst`
    /// protects; `None` when no SA of this lab has its SPI for that pair,
    /// the ICV does not verify, or the trailer is malformed.
    pub fn open(&self, src: Ipv6Addr, dst: Ipv6Addr, packet: &[u8]) -> Option<(u8, Vec<u8>)> {
        if packet.len() < HEADER + 4 + ICV {
            return None;
        }
        let spi = u32::from_be_bytes([packet[0], packet[1], packet[2], packet[3]]);
        let sa = self.sas.get(&spi).filter(|sa| sa.src == src && sa.dst == dst)?;
        let (body, icv) = packet[HEADER..].split_at(packet.len() - HEADER - ICV);
        let mut nonce = [0u8; 12];
        nonce[..4].copy_from_slice(&sa.salt);
        nonce[4..].copy_from_slice(&packet[8..HEADER]);
        let mut plain = body.to_vec();
        sa.cipher
            .decrypt_in_place_detached(Nonce::from_slice(&nonce), &packet[..8], &mut plain, Tag::from_slice(icv))
            .ok()?;
        let (&next_header, rest) = plain.split_last()?;
        let (&pad, rest) = rest.split_last()?;
        let keep = rest.len().checked_sub(usize::from(pad))?;
        plain.truncate(keep);
        Some((next_header, plain))
    }
}

/// The IPv6 source, destination and Mobility Header of an Ethernet frame
/// that carries one directly after the IPv6 header, or inside ESP that
/// `esp` opens; `None` for any other frame.
pub fn mobility_header(frame: &[u8], esp: &EspReader) -> Option<(Ipv6Addr, Ipv6Addr, Vec<u8>)> {
    if let Some((src, dst, mh)) = crate::sequence::mobility_header(frame) {
        return Some((src, dst, mh.to_vec()));
    }
    if esp.is_empty() || frame.len() < 54 || frame[12..14] != [0x86, 0xdd] || frame[20] != 50 {
        return None;
    }
    let ip = &frame[14..];
    let addr = |b: &[u8]| -> Ipv6Addr {
        let mut a = [0u8; 16];
        a.copy_from_slice(&b[..16]);
        a.into()
    };
    let (src, dst) = (addr(&ip[8..24]), addr(&ip[24..40]));
    let len = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
    let payload = ip.get(40..40 + len).unwrap_or(&ip[40..]);
    match esp.open(src, dst, payload)? {
        (135, mh) => Some((src, dst, mh)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // One ESP packet as RFC 4106 builds it, sealed here with the same
    // cipher, to check the reader's framing (the daemons' sealing is
    // checked against tshark in nodes/daemon/tests/netns_esp.rs).
    fn seal(key: &[u8; 20], spi: u32, seq: u32, next_header: u8, payload: &[u8]) -> Vec<u8> {
        let cipher = Aes128Gcm::new_from_slice(&key[..16]).unwrap();
        let iv = u64::from(seq).to_be_bytes();
        let mut out = Vec::new();
        out.extend_from_slice(&spi.to_be_bytes());
        out.extend_from_slice(&seq.to_be_bytes());
        out.extend_from_slice(&iv);
        let pad = (4 - (payload.len() + 2) % 4) % 4;
        out.extend_from_slice(payload);
        out.extend(1..=pad as u8);
        out.push(pad as u8);
        out.push(next_header);
        let mut nonce = [0u8; 12];
        nonce[..4].copy_from_slice(&key[16..]);
        nonce[4..].copy_from_slice(&iv);
        let aad = out[..8].to_vec();
        let tag = cipher.encrypt_in_place_detached(Nonce::from_slice(&nonce), &aad, &mut out[HEADER..]).unwrap();
        out.extend_from_slice(&tag);
        out
    }

    fn frame(src: Ipv6Addr, dst: Ipv6Addr, esp: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
        f.extend_from_slice(&(esp.len() as u16).to_be_bytes());
        f.extend_from_slice(&[50, 64]);
        f.extend_from_slice(&src.octets());
        f.extend_from_slice(&dst.octets());
        f.extend_from_slice(esp);
        f
    }

    #[test]
    fn a_lab_key_opens_its_packets_and_nothing_else() {
        let key: [u8; 20] = core::array::from_fn(|i| i as u8 + 1);
        let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
        let (mag, lma): (Ipv6Addr, Ipv6Addr) =
            ("2001:db8:ffff::11".parse().unwrap(), "2001:db8:ffff::1".parse().unwrap());
        let mut r = EspReader::default();
        r.add(0x1234, mag, lma, &hex).unwrap();
        let mh = [59u8, 1, 5, 0, 0, 0, 0, 0, 0, 1, 0x80, 0, 0, 100, 0, 0];
        let packet = seal(&key, 0x1234, 7, 135, &mh);
        let (s, d, got) = mobility_header(&frame(mag, lma, &packet), &r).unwrap();
        assert_eq!((s, d, got.as_slice()), (mag, lma, &mh[..]));
        // Another pair of addresses, a flipped bit, an unknown SPI: nothing.
        assert!(mobility_header(&frame(lma, mag, &packet), &r).is_none());
        let mut bad = packet.clone();
        bad[20] ^= 1;
        assert!(mobility_header(&frame(mag, lma, &bad), &r).is_none());
        assert!(mobility_header(&frame(mag, lma, &seal(&key, 0x9999, 1, 135, &mh)), &r).is_none());
        assert!(r.add(1, mag, lma, "00").is_err());
    }
}
