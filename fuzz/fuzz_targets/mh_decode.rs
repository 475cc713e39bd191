//! Feeds arbitrary bytes to the strict and lax Mobility Header decoders and
//! checks that whatever parses re-encodes to something that parses the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pmip_wire::{lax, Endpoints, Message, MhPacket, WireConfig};

fuzz_target!(|data: &[u8]| {
    let ends = Endpoints { src: "2001:db8::2".parse().unwrap(), dst: "2001:db8::1".parse().unwrap() };
    let cfg = WireConfig::default();
    let _ = lax::decode(data, Some(&ends), &cfg);
    let _ = lax::decode(data, None, &WireConfig { flow_mobility_mh_type: 200, ..Default::default() });
    // Give the strict decoder a fair chance: fix the checksum first.
    let mut bytes = data.to_vec();
    if let Ok(mut packet) = MhPacket::new_checked(&mut bytes[..]) {
        packet.fill_checksum(&ends);
    }
    if let Ok(m) = Message::parse(&bytes, &ends, &cfg) {
        if m.check_encodable(&cfg).is_ok() {
            let again = m.to_bytes(&ends, &cfg).expect("encodable message encodes");
            let back = Message::parse(&again, &ends, &cfg).expect("re-encoded message parses");
            assert_eq!(back, m);
        }
    }
});
