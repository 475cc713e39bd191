//! The tunnel's two ends as eBPF programs, for kernels that have neither
//! ip6_tunnel nor seg6 lightweight tunnels but do have `LWTUNNEL_BPF` and
//! `cls_bpf` (both in most distribution kernels).
//!
//! - Encapsulation: a route `encap bpf xmit` whose program pushes a fixed
//!   40-octet IPv6 header (own address → peer, next header 41, payload
//!   length from the packet) with `bpf_lwt_push_encap` and asks the kernel
//!   to route the result again (`BPF_LWT_REROUTE`): on the wire the same
//!   IPv6-in-IPv6 framing as RFC 5213's tunnel, at kernel speed.
//! - Decapsulation: a `cls_bpf` filter on the ingress of the device
//!   holding the own address, in direct-action mode: a packet to the own
//!   address with next header 41 from a tunnel peer loses its outer header
//!   (`bpf_skb_adjust_room`) and goes on as the inner packet, marked
//!   [`DECAP_MARK`] so that nftables can count it (the outer packet never
//!   reaches nftables' prerouting hook).
//!
//! The programs are a few dozen instructions written here, with each
//! address as an immediate: no compiler, no object file, and one program
//! per tunnel peer (and one filter per node, replaced when its peers
//! change).

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::Ipv6Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use futures::StreamExt;
use rtnetlink::packet_core::{NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_REPLACE, NLM_F_REQUEST};
use rtnetlink::packet_route::route::{RouteAttribute, RouteLwEnCapType, RouteLwTunnelEncap, RouteMessage};
use rtnetlink::packet_route::tc::{TcAttribute, TcBpfFlags, TcFilterBpfOption, TcHandle, TcMessage, TcOption};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::Handle;

/// The mark a decapsulated packet carries into nftables' prerouting hook,
/// where the counter takes it off again.
pub const DECAP_MARK: u32 = 0x153f_0041;
/// Outer hop limit of an encapsulated packet (RFC 2473 §6.3 leaves it to
/// the tunnel entry point; the default hop limit of this kernel).
const OUTER_HOP_LIMIT: i32 = 64;
/// The filter's priority and handle on the ingress hook.
const FILTER_PRIO: u16 = 1;
const FILTER_HANDLE: u32 = 1;

// Instruction classes, sizes, modes and operations of linux/bpf.h.
const LD: u8 = 0x00;
const LDX: u8 = 0x01;
const ST: u8 = 0x02;
const STX: u8 = 0x03;
const ALU: u8 = 0x04;
const JMP: u8 = 0x05;
const ALU64: u8 = 0x07;
const W: u8 = 0x00;
const H: u8 = 0x08;
const B: u8 = 0x10;
const DW: u8 = 0x18;
const MEM: u8 = 0x60;
const IMM: u8 = 0x00;
const K: u8 = 0x00;
const X: u8 = 0x08;
const MOV: u8 = 0xb0;
const ADD: u8 = 0x00;
const END: u8 = 0xd0;
const TO_BE: u8 = 0x08;
const JA: u8 = 0x00;
const JEQ: u8 = 0x10;
const JNE: u8 = 0x50;
const CALL: u8 = 0x80;
const EXIT: u8 = 0x90;
const FP: u8 = 10;

// Helpers (linux/bpf.h's function list) and their arguments.
const SKB_LOAD_BYTES: i32 = 26;
const SKB_ADJUST_ROOM: i32 = 50;
const LWT_PUSH_ENCAP: i32 = 73;
const LWT_ENCAP_IP: i32 = 2;
const ADJ_ROOM_MAC: i32 = 1;
// Return codes.
const LWT_DROP: i32 = 2;
const LWT_REROUTE: i32 = 128;
const TC_ACT_OK: i32 = 0;
const TC_ACT_SHOT: i32 = 2;
// Offsets in `struct __sk_buff`.
const SKB_LEN: i16 = 0;
const SKB_MARK: i16 = 8;

/// One eBPF instruction, as the kernel reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

impl Insn {
    fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
        Insn { code, regs: (src << 4) | (dst & 0x0f), off, imm }
    }

    pub fn to_bytes(self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[0] = self.code;
        b[1] = self.regs;
        b[2..4].copy_from_slice(&self.off.to_le_bytes());
        b[4..8].copy_from_slice(&self.imm.to_le_bytes());
        b
    }
}

/// A jump target, resolved when the program is finished.
#[derive(Clone, Copy)]
struct Label(usize);

/// A tiny assembler: instructions, labels and the jumps to patch.
#[derive(Default)]
struct Asm {
    insns: Vec<Insn>,
    labels: Vec<Option<usize>>,
    jumps: Vec<(usize, Label)>,
}

impl Asm {
    fn label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }
    fn here(&mut self, l: Label) {
        self.labels[l.0] = Some(self.insns.len());
    }
    fn push(&mut self, i: Insn) {
        self.insns.push(i);
    }
    fn mov_imm(&mut self, dst: u8, imm: i32) {
        self.push(Insn::new(ALU64 | MOV | K, dst, 0, 0, imm));
    }
    fn mov_reg(&mut self, dst: u8, src: u8) {
        self.push(Insn::new(ALU64 | MOV | X, dst, src, 0, 0));
    }
    fn add_imm(&mut self, dst: u8, imm: i32) {
        self.push(Insn::new(ALU64 | ADD | K, dst, 0, 0, imm));
    }
    /// `dst = imm64`: the wide load, two instruction slots.
    fn ld_imm64(&mut self, dst: u8, v: u64) {
        self.push(Insn::new(LD | DW | IMM, dst, 0, 0, v as u32 as i32));
        self.push(Insn::new(0, 0, 0, 0, (v >> 32) as u32 as i32));
    }
    fn load(&mut self, size: u8, dst: u8, src: u8, off: i16) {
        self.push(Insn::new(LDX | size | MEM, dst, src, off, 0));
    }
    fn store_imm(&mut self, size: u8, dst: u8, off: i16, imm: i32) {
        self.push(Insn::new(ST | size | MEM, dst, 0, off, imm));
    }
    fn store(&mut self, size: u8, dst: u8, src: u8, off: i16) {
        self.push(Insn::new(STX | size | MEM, dst, src, off, 0));
    }
    fn swap_to_be16(&mut self, dst: u8) {
        self.push(Insn::new(ALU | END | TO_BE, dst, 0, 0, 16));
    }
    fn jump(&mut self, code: u8, dst: u8, src: u8, imm: i32, to: Label) {
        self.jumps.push((self.insns.len(), to));
        self.push(Insn::new(JMP | code, dst, src, 0, imm));
    }
    fn call(&mut self, helper: i32) {
        self.push(Insn::new(JMP | CALL, 0, 0, 0, helper));
    }
    fn exit_with(&mut self, r0: i32) {
        self.mov_imm(0, r0);
        self.push(Insn::new(JMP | EXIT, 0, 0, 0, 0));
    }
    fn finish(mut self) -> Vec<Insn> {
        for (at, l) in std::mem::take(&mut self.jumps) {
            let target = self.labels[l.0].expect("every label is placed before the program is finished");
            self.insns[at].off = (target as i64 - at as i64 - 1) as i16;
        }
        self.insns
    }
}

/// The two halves of an address as the program compares and stores them:
/// 64-bit words read from memory in the machine's order.
fn halves(a: Ipv6Addr) -> (u64, u64) {
    let o = a.octets();
    let word = |s: &[u8]| u64::from_ne_bytes(s.try_into().unwrap_or([0; 8]));
    (word(&o[..8]), word(&o[8..]))
}

/// The encapsulating program of the tunnel `own` → `peer` (an LWT xmit
/// program: the packet starts at its IPv6 header).
pub fn encap_program(own: Ipv6Addr, peer: Ipv6Addr) -> Vec<Insn> {
    let mut a = Asm::default();
    let drop = a.label();
    a.mov_reg(6, 1);
    // The outer header at fp-40: version 6, payload length, next header
    // 41, hop limit, own address, peer address.
    a.load(W, 2, 6, SKB_LEN);
    a.swap_to_be16(2);
    a.store_imm(W, FP, -40, 0x60);
    a.store(H, FP, 2, -36);
    a.store_imm(B, FP, -34, 41);
    a.store_imm(B, FP, -33, OUTER_HOP_LIMIT);
    let (s0, s1) = halves(own);
    let (d0, d1) = halves(peer);
    for (v, off) in [(s0, -32), (s1, -24), (d0, -16), (d1, -8)] {
        a.ld_imm64(1, v);
        a.store(DW, FP, 1, off);
    }
    a.mov_reg(1, 6);
    a.mov_imm(2, LWT_ENCAP_IP);
    a.mov_reg(3, FP);
    a.add_imm(3, -40);
    a.mov_imm(4, 40);
    a.call(LWT_PUSH_ENCAP);
    a.jump(JNE | K, 0, 0, 0, drop);
    a.exit_with(LWT_REROUTE);
    a.here(drop);
    a.exit_with(LWT_DROP);
    a.finish()
}

/// The decapsulating program of `own` for tunnels from `peers` (a tc
/// classifier in direct-action mode: the packet starts at its Ethernet
/// header). Anything else passes untouched.
pub fn decap_program(own: Ipv6Addr, peers: &BTreeSet<Ipv6Addr>) -> Vec<Insn> {
    let mut a = Asm::default();
    if peers.is_empty() {
        // The verifier refuses code no path reaches: with no peer, the
        // decapsulation would be.
        a.exit_with(TC_ACT_OK);
        return a.finish();
    }
    let (pass, decap, shot) = (a.label(), a.label(), a.label());
    a.mov_reg(6, 1);
    // The IPv6 header, after 14 octets of Ethernet, to fp-40.
    a.mov_reg(1, 6);
    a.mov_imm(2, 14);
    a.mov_reg(3, FP);
    a.add_imm(3, -40);
    a.mov_imm(4, 40);
    a.call(SKB_LOAD_BYTES);
    a.jump(JNE | K, 0, 0, 0, pass);
    a.load(B, 1, FP, -34);
    a.jump(JNE | K, 1, 0, 41, pass);
    let (o0, o1) = halves(own);
    for (v, off) in [(o0, -16), (o1, -8)] {
        a.load(DW, 1, FP, off);
        a.ld_imm64(2, v);
        a.jump(JNE | X, 1, 2, 0, pass);
    }
    a.load(DW, 1, FP, -32);
    a.load(DW, 2, FP, -24);
    for p in peers {
        let next = a.label();
        let (p0, p1) = halves(*p);
        a.ld_imm64(3, p0);
        a.jump(JNE | X, 1, 3, 0, next);
        a.ld_imm64(3, p1);
        a.jump(JEQ | X, 2, 3, 0, decap);
        a.here(next);
    }
    a.jump(JA, 0, 0, 0, pass);
    a.here(decap);
    a.mov_reg(1, 6);
    a.mov_imm(2, -40);
    a.mov_imm(3, ADJ_ROOM_MAC);
    a.mov_imm(4, 0);
    a.call(SKB_ADJUST_ROOM);
    a.jump(JNE | K, 0, 0, 0, shot);
    a.mov_imm(1, DECAP_MARK as i32);
    a.store(W, 6, 1, SKB_MARK);
    a.exit_with(TC_ACT_OK);
    a.here(pass);
    a.exit_with(TC_ACT_OK);
    a.here(shot);
    a.exit_with(TC_ACT_SHOT);
    a.finish()
}

/// Program types of linux/bpf.h.
#[derive(Debug, Clone, Copy)]
pub enum ProgType {
    SchedCls = 3,
    LwtXmit = 12,
}

/// The head of `union bpf_attr` for `BPF_PROG_LOAD`.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

const BPF_PROG_LOAD: libc::c_long = 5;

/// Loads `insns` into the kernel; the verifier's log is in the error.
pub fn load(kind: ProgType, insns: &[Insn], name: &str) -> io::Result<OwnedFd> {
    let code: Vec<u8> = insns.iter().flat_map(|i| i.to_bytes()).collect();
    let license = c"GPL";
    let attempt = |log: Option<&mut Vec<u8>>| {
        let mut attr = ProgLoadAttr {
            prog_type: kind as u32,
            insn_cnt: insns.len() as u32,
            insns: code.as_ptr() as u64,
            license: license.as_ptr() as u64,
            ..Default::default()
        };
        for (d, s) in attr.prog_name.iter_mut().zip(name.bytes().take(15)) {
            *d = s;
        }
        if let Some(buf) = log {
            attr.log_level = 1;
            attr.log_size = buf.len() as u32;
            attr.log_buf = buf.as_mut_ptr() as u64;
        }
        // SAFETY: `attr` is a valid BPF_PROG_LOAD attribute whose pointers
        // (code, license, log buffer) outlive the call; the kernel writes
        // only into the log buffer, within its size.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_PROG_LOAD,
                &attr as *const ProgLoadAttr,
                std::mem::size_of::<ProgLoadAttr>(),
            )
        };
        if fd < 0 {
            Err(io::Error::last_os_error())
        } else {
            // SAFETY: the kernel returned a new descriptor that nothing else owns.
            Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
        }
    };
    match attempt(None) {
        Ok(fd) => Ok(fd),
        Err(e) => {
            let mut log = vec![0u8; 64 * 1024];
            let _ = attempt(Some(&mut log));
            let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
            let text = String::from_utf8_lossy(&log[..end]);
            let tail: Vec<&str> = text.lines().rev().take(6).collect::<Vec<_>>().into_iter().rev().collect();
            Err(io::Error::new(e.kind(), format!("the kernel refused the {name} program: {e}; {}", tail.join(" | "))))
        }
    }
}

/// Encodes one netlink attribute (type, value, padding to 4 octets).
fn nla(kind: u16, value: &[u8]) -> Vec<u8> {
    let len = 4 + value.len();
    let mut v = Vec::with_capacity(len.next_multiple_of(4));
    v.extend_from_slice(&(len as u16).to_ne_bytes());
    v.extend_from_slice(&kind.to_ne_bytes());
    v.extend_from_slice(value);
    v.resize(len.next_multiple_of(4), 0);
    v
}

// linux/lwtunnel.h: the xmit hook of an `encap bpf` route and its program.
const LWT_BPF_XMIT: u16 = 3;
const LWT_BPF_XMIT_HEADROOM: u16 = 4;
const LWT_BPF_PROG_FD: u16 = 1;
const LWT_BPF_PROG_NAME: u16 = 2;
const NLA_F_NESTED: u16 = 1 << 15;

/// Makes `route` an `encap bpf xmit <name>` route running `prog`.
pub fn set_encap(route: &mut RouteMessage, prog: &OwnedFd, name: &str) {
    let mut inner = nla(LWT_BPF_PROG_FD, &(prog.as_raw_fd() as u32).to_ne_bytes());
    let mut cname = name.as_bytes().to_vec();
    cname.push(0);
    inner.extend(nla(LWT_BPF_PROG_NAME, &cname));
    let xmit = rtnetlink::packet_core::DefaultNla::new(LWT_BPF_XMIT | NLA_F_NESTED, inner);
    let headroom = rtnetlink::packet_core::DefaultNla::new(LWT_BPF_XMIT_HEADROOM, 40u32.to_ne_bytes().to_vec());
    route.attributes.push(RouteAttribute::EncapType(RouteLwEnCapType::Bpf));
    route
        .attributes
        .push(RouteAttribute::Encap(vec![RouteLwTunnelEncap::Other(xmit), RouteLwTunnelEncap::Other(headroom)]));
}

/// The route name of the tunnel to `peer`, as `ip route` shows it.
pub fn encap_name(peer: Ipv6Addr) -> String {
    format!("pmip6-to-{peer}")
}

async fn tc_request(h: &Handle, msg: RouteNetlinkMessage, flags: u16, what: &str) -> io::Result<()> {
    let mut req = NetlinkMessage::from(msg);
    req.header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
    let mut h = h.clone();
    let mut resp = h.request(req).map_err(|e| io::Error::other(format!("{what}: {e}")))?;
    while let Some(m) = resp.next().await {
        if let NetlinkPayload::Error(e) = m.payload {
            if e.code.is_some() {
                return Err(io::Error::other(format!("{what}: {}", e.to_io())));
            }
        }
    }
    Ok(())
}

/// The ingress qdisc of `dev` (so filters can hang on its ingress hook).
fn ingress_qdisc(dev: u32) -> TcMessage {
    let mut m = TcMessage::with_index(dev as i32);
    m.header.parent = TcHandle::INGRESS;
    m.header.handle = TcHandle::from(0xffff_0000);
    m.attributes.push(TcAttribute::Kind("ingress".into()));
    m
}

/// Puts `prog` on the ingress of `dev` (creating the hook if need be), in
/// place of what was there: one filter, replaced as the peers change.
pub async fn attach_decap(h: &Handle, dev: u32, prog: &OwnedFd) -> io::Result<()> {
    let q = ingress_qdisc(dev);
    // An ingress hook left by another daemon, or made earlier, is reused.
    let _ = tc_request(h, RouteNetlinkMessage::NewQueueDiscipline(q), NLM_F_CREATE, "adding the ingress hook").await;
    let mut f = TcMessage::with_index(dev as i32);
    f.header.parent = TcHandle { major: 0xffff, minor: TcHandle::MIN_INGRESS };
    f.header.handle = TcHandle::from(FILTER_HANDLE);
    f.header.info = (u32::from(FILTER_PRIO) << 16) | u32::from(0x86ddu16.to_be());
    f.attributes.push(TcAttribute::Kind("bpf".into()));
    f.attributes.push(TcAttribute::Options(vec![
        TcOption::Bpf(TcFilterBpfOption::ProgFd(prog.as_raw_fd() as u32)),
        TcOption::Bpf(TcFilterBpfOption::ProgName("pmip6-decap".into())),
        TcOption::Bpf(TcFilterBpfOption::Flags(TcBpfFlags::DirectAction)),
    ]));
    tc_request(
        h,
        RouteNetlinkMessage::NewTrafficFilter(f),
        NLM_F_CREATE | NLM_F_REPLACE,
        "attaching the decapsulation filter",
    )
    .await
}

/// Removes the ingress hook of `dev` with its filters; whether there was one.
pub async fn detach(h: &Handle, dev: u32) -> bool {
    tc_request(h, RouteNetlinkMessage::DelQueueDiscipline(ingress_qdisc(dev)), 0, "removing the ingress hook")
        .await
        .is_ok()
}

/// The programs of one node: one encapsulating program per peer, made
/// when first needed and kept while the node runs (its routes hold the
/// kernel's own reference).
#[derive(Default)]
pub struct Programs {
    encap: BTreeMap<Ipv6Addr, OwnedFd>,
}

impl Programs {
    pub fn encap(&mut self, own: Ipv6Addr, peer: Ipv6Addr) -> io::Result<&OwnedFd> {
        match self.encap.entry(peer) {
            std::collections::btree_map::Entry::Occupied(e) => Ok(e.into_mut()),
            std::collections::btree_map::Entry::Vacant(e) => {
                Ok(e.insert(load(ProgType::LwtXmit, &encap_program(own, peer), "pmip6_encap")?))
            }
        }
    }
}

/// Whether this kernel loads both programs (the verifier accepts them and
/// the helpers exist).
pub fn probe(own: Ipv6Addr) -> Result<(), String> {
    load(ProgType::LwtXmit, &encap_program(own, own), "pmip6_probe").map_err(|e| e.to_string())?;
    load(ProgType::SchedCls, &decap_program(own, &BTreeSet::from([own])), "pmip6_probe").map_err(|e| e.to_string())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instruction_is_laid_out_as_the_kernel_reads_it() {
        // r3 += -40: ALU64|ADD|K, dst 3, imm -40.
        let i = Insn::new(ALU64 | ADD | K, 3, 0, 0, -40);
        assert_eq!(i.to_bytes(), [0x07, 0x03, 0, 0, 0xd8, 0xff, 0xff, 0xff]);
        // *(u16 *)(r10 - 36) = r2: STX|H|MEM, dst 10, src 2.
        let i = Insn::new(STX | H | MEM, FP, 2, -36, 0);
        assert_eq!(i.to_bytes(), [0x6b, 0x2a, 0xdc, 0xff, 0, 0, 0, 0]);
    }

    #[test]
    fn jumps_land_on_their_labels() {
        let mut a = Asm::default();
        let l = a.label();
        a.jump(JNE | K, 0, 0, 0, l);
        a.ld_imm64(1, 7);
        a.here(l);
        a.exit_with(0);
        let p = a.finish();
        // Over the two slots of the wide load.
        assert_eq!(p[0].off, 2);
    }

    #[test]
    fn the_encapsulating_program_carries_both_addresses_and_next_header_41() {
        let own: Ipv6Addr = "2001:db8:cafe::1".parse().unwrap();
        let peer: Ipv6Addr = "2001:db8:cafe::2".parse().unwrap();
        let p = encap_program(own, peer);
        // The stored header, rebuilt from the immediates.
        let mut header = [0u8; 40];
        let mut wide = None;
        for (n, i) in p.iter().enumerate() {
            if i.code == LD | DW | IMM {
                let lo = i.imm as u32 as u64;
                let hi = p[n + 1].imm as u32 as u64;
                wide = Some(lo | (hi << 32));
            }
            if i.code == STX | DW | MEM && (i.regs & 0x0f) == FP {
                let at = (40 + i32::from(i.off)) as usize;
                header[at..at + 8].copy_from_slice(&wide.unwrap().to_ne_bytes());
            }
            if i.code == ST | B | MEM {
                header[(40 + i32::from(i.off)) as usize] = i.imm as u8;
            }
        }
        assert_eq!(header[6], 41, "next header");
        assert_eq!(&header[8..24], &own.octets());
        assert_eq!(&header[24..40], &peer.octets());
        assert!(p.iter().any(|i| i.code == JMP | CALL && i.imm == LWT_PUSH_ENCAP));
    }

    #[test]
    fn the_decapsulating_program_checks_every_peer() {
        let own: Ipv6Addr = "2001:db8:cafe::1".parse().unwrap();
        let peers: BTreeSet<Ipv6Addr> =
            ["2001:db8:cafe::2", "2001:db8:cafe::3"].iter().map(|p| p.parse().unwrap()).collect();
        let p = decap_program(own, &peers);
        let wide: Vec<u64> = p
            .iter()
            .enumerate()
            .filter(|(_, i)| i.code == LD | DW | IMM)
            .map(|(n, i)| (i.imm as u32 as u64) | ((p[n + 1].imm as u32 as u64) << 32))
            .collect();
        for a in std::iter::once(own).chain(peers.iter().copied()) {
            let (h0, h1) = halves(a);
            assert!(wide.contains(&h0) && wide.contains(&h1), "{a} is compared");
        }
        // Every jump stays inside the program.
        for (n, i) in p.iter().enumerate() {
            if i.code & 0x07 == JMP && i.code != JMP | CALL && i.code != JMP | EXIT {
                let to = n as i64 + 1 + i64::from(i.off);
                assert!((0..p.len() as i64).contains(&to), "jump at {n} to {to}");
            }
        }
    }
}
