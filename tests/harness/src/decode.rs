//! Operation sequences from arbitrary bytes, for the fuzz target
//! (`tests/harness/fuzz`, `docs/VERIFICATION.md`): a small byte code, so
//! that a fuzzer's mutations of a byte move one argument, and so that seed
//! inputs can be written by hand.
//!
//! # Where an input starts
//!
//! Every input runs from the bare boot state ([`driver::BOOT`]), not from
//! the random strategy's setup: the root thread alone, at priority 255,
//! its TCB capability in root slot 2 ([`driver::ROOT_TCB_SLOT`]), the boot
//! untyped in root slot 1, the 2 GiB untyped for frames and paging
//! structures in root slot 252 ([`driver::PAGING_UNTYPED_SLOT`]),
//! AsidControl in 253 ([`driver::ASID_CONTROL_SLOT`]), IrqControl in 254
//! and SchedControl in root slot 255 ([`driver::SCHED_CONTROL_SLOT`]). For
//! another thread an input makes it itself (Retype a TCB, SetSpace,
//! SetPriority, Resume), or uses tag 22, 23 or 31, which expand to that;
//! for an address space it makes one itself (tags 27 and 30) or uses tag
//! 31, which expands to the strategy's ([`driver::vspace_objects`]).
//!
//! # Operations
//!
//! Each operation is a tag byte, read modulo [`TAGS`] (32, so that every
//! tag had 8 of the 256 byte values; tags 32 to 35, below, took 4 each
//! from tags 0 to 3), followed by its arguments, one byte each (more
//! after an escape, below), in [`Op`]'s field order:
//!
//! | tag | operation | arguments |
//! | --- | --- | --- |
//! | 0 | `Retype` | `slot` untyped, type, size, `slot` root, node, `slot` offset, count |
//! | 1 | `Copy` | `addr` dest, `addr` src, rights |
//! | 2 | `Mint` | `addr` dest, `addr` src, rights, badge |
//! | 3 | `Move` | `addr` dest, `addr` src |
//! | 4 | `Mutate` | `addr` dest, `addr` src, guard |
//! | 5 | `Delete` | `addr` slot |
//! | 6 | `Revoke` | `addr` slot |
//! | 7 | `Raw` | `slot` cptr, raw label, words (`byte % 7`), extra (`byte % 2`) |
//! | 8 | `Tcb` | `slot` TCB, a call byte (`% 8`, below), the call's arguments |
//! | 9 | `Configure` | `slot` scheduling context, budget, period |
//! | 10, 11 | `Send`, NBSend (`Send { blocking: false }`) | `slot` cptr, label, length, grant |
//! | 12 | `IpcCall` (Call) | `slot` cptr, label, length, grant |
//! | 13, 14 | `Recv`, NBRecv (`Recv { blocking: false }`) | `slot` cptr, `slot` reply, receive slot |
//! | 15 | `ReplyRecv` | `slot` cptr, `slot` reply, label, length, receive slot |
//! | 16 | `Signal` | `slot` cptr |
//! | 17, 18 | `Wait`, Poll (`Wait { blocking: false }`) | `slot` cptr |
//! | 19 | `Yield` | none |
//! | 20 | `Syscall` | number, `slot` cptr |
//! | 21 | `Tick` | ticks, slice byte (odd: the round-robin slice ended) |
//! | 22 | setup | thread, priority, budget bytes: [`driver::ipc_objects`], then a thread |
//! | 23 | thread | thread, priority, budget bytes: a thread alone |
//! | 24 | `IrqGet` (IrqControl::Get) | line, `addr` dest |
//! | 25 | `Irq` (an IrqHandler invocation) | `slot` handler, a call byte (`% 3`: SetNotification, Clear, Ack), for SetNotification `slot` notification |
//! | 26 | `Interrupt` | line (`byte % 20`: lines 16 and above name none; never escaped) |
//! | 27 | `VSpace` (a paging-structure, frame or ASID invocation) | `pslot` cptr, a call byte (`% 7`, below), the call's arguments |
//! | 28 | `Tcb` with SetSpace and a VSpace | `slot` TCB, `slot` CNode, optional VSpace (`pslot`) |
//! | 29 | `Tcb` with SetIpcBuffer | `slot` TCB, `pslot` frame |
//! | 30 | `Retype` of a frame or paging structure | `pslot` untyped, paging type, size, `slot` root, node, `pslot` offset, count |
//! | 31 | VSpace setup | thread, priority, budget bytes: [`driver::vspace_objects`], then a thread in that VSpace |
//!
//! | 32 | `VCpu` (a VCpu invocation; byte `% 64` = 32) | `vslot` VCpu, a call byte (`% 4`, below), the call's arguments |
//! | 33 | `Tcb` with BindNotification or UnbindNotification (byte `% 64` = 33) | `slot` TCB, a call byte (even: BindNotification with a `slot` notification; odd: UnbindNotification) |
//! | 34 | `VmEnter` (VMEnter; byte `% 64` = 34) | RIP, RFLAGS and the event, each a value ([`STATE_VALUES`]`[byte % 32]`), then the length word (`byte % 32`, never escaped) whose top three bits `c` give the controls: 0 none and no deadline, else controls `c - 1` (bit 0 `WAIT`, bit 1 `INTERRUPT_WINDOW`, bit 2 an undefined bit) and a deadline value next ([`STATE_VALUES`]`[byte % 32]`); RSP is 0x8000, the other registers 1 to 16 |
//! | 35 | `Tcb` with SetPassive (byte `% 64` = 35) | `slot` TCB, the passive word (`byte % 3`: 0, 1, or 2, which is refused; escaped, any word) |
//!
//! Tag 35 came with scheduling-context donation, as tags 32 to 34 came
//! with the VCpu: bytes 35, 99, 163 and 227 name it, and read as tag 3
//! (Move) before; none of the corpus's inputs used one of them as a tag.
//!
//! Tags 32 to 34 came with the VCpu: a tag byte whose value modulo 64
//! is 32, 33 or 34 names them (bytes 32 to 34, 96 to 98, 160 to 162,
//! 224 to 226); every other byte reads modulo [`TAGS`] as before, so the
//! earlier seeds keep their meaning unless they used one of those twelve
//! bytes as a tag (none of the corpus's did).
//!
//! Tags 27 to 31 came with the address-space operations; before them
//! [`TAGS`] was 27, so a tag byte from 27 up read as `byte % 27` then and
//! reads as `byte % 32` now (the ten seeds in `corpus/ops` written before
//! use no tag byte from 27 up and decode as they did). Tag 8's call 0 is still SetSpace
//! without a VSpace, and tag 0 still makes only the seven types it made:
//! the new operations have tags of their own, so that old inputs keep
//! their meaning.
//!
//! The TCB calls by call byte (`% 8`):
//!
//! | call | [`TcbCall`] | arguments |
//! | --- | --- | --- |
//! | 0 | `SetSpace` | `slot` CNode |
//! | 1 | `SetFaultHandler` | `slot` endpoint |
//! | 2 | `SetPriority` | priority, `slot` authority |
//! | 3 | `SetMaxPriority` | priority, `slot` authority |
//! | 4 | `BindSchedContext` | `slot` scheduling context |
//! | 5 | `Resume` | none |
//! | 6 | `Suspend` | none |
//! | 7 | `WriteRegisters` | rip, rsp, rflags |
//!
//! The address-space calls by call byte (`% 7`, tag 27):
//!
//! | call | [`VSpaceCall`] | arguments |
//! | --- | --- | --- |
//! | 0 | `MapTable` (PageTable::Map) | vaddr, `pslot` VSpace |
//! | 1 | `UnmapTable` (PageTable::Unmap) | none |
//! | 2 | `MapFrame` (Frame::Map) | vaddr, rights, attributes, `pslot` VSpace |
//! | 3 | `UnmapFrame` (Frame::Unmap) | none |
//! | 4 | `GetAddress` (Frame::GetAddress) | none |
//! | 5 | `MakePool` (AsidControl::MakePool) | `pslot` untyped, `addr` dest |
//! | 6 | `Assign` (AsidPool::Assign) | `pslot` VSpace |
//!
//! The VCpu calls by call byte (`% 4`, tag 32):
//!
//! | call | [`VCpuCall`] | arguments |
//! | --- | --- | --- |
//! | 0 | `SetTcb` (VCpu::SetTcb) | `slot` TCB |
//! | 1 | `SetSpace` (VCpu::SetSpace) | `vslot` GuestSpace (37 is the setup's) |
//! | 2 | `ReadState` (VCpu::ReadState) | field (`byte % 64`) |
//! | 3 | `WriteState` (VCpu::WriteState) | field (`byte % 64`), value ([`STATE_VALUES`]`[byte % 32]`) |
//!
//! Tags 22 and 23 expand to several operations, the strategy's setup of a
//! thread ([`thread_setup`]): with thread byte `t`, priority byte `p` and
//! budget byte `b` (plain bytes, never escaped), the TCB slot is
//! `12 + t % 3` (in [`THREAD_SLOTS`]), its scheduling context's 3 slots
//! above (in [`driver::SCHED_CONTEXT_SLOTS`]); the operations are a TCB
//! retyped from the boot untyped into its slot, SetSpace with the root CNode,
//! SetPriority to `p` (mapped as a priority byte, below) with the root TCB
//! as the authority, then, when `b` is 128 or more, a scheduling context
//! (retyped with size 8), Configure with budget `100 + 10 * (b - 128)` and
//! twice that as the period, and BindSchedContext, and last Resume. Tag 22
//! first makes [`driver::ipc_objects`], what every strategy setup starts
//! with: the endpoint in root slot 3 ([`driver::ENDPOINT_SLOT`]), the
//! notification in 4 ([`driver::NOTIFICATION_SLOT`]), reply objects in 5
//! to 7 ([`driver::REPLY_SLOTS`]), the badged capabilities in 22 to 24
//! ([`driver::BADGED_SLOTS`]: the endpoint WRITE only with badge 0x11, the
//! notification with badge 0x22 and with 0x44) and whatever else that
//! function's documentation lists.
//!
//! Tag 31 is the strategy's address-space setup and a thread in it
//! ([`vspace_thread_setup`]): first [`driver::vspace_objects`], from the
//! paging untyped: the ASID pool in root slot 27
//! ([`driver::ASID_POOL_SLOT`], from a 4 KiB untyped in 26), the VSpace,
//! a PML4 with the pool's first ASID, in 28 ([`driver::VSPACE_SLOT`]),
//! its PDPT, page directory and page table in 29 to 31
//! ([`driver::TABLE_SLOTS`], mapped to cover virtual address 0), two
//! 4 KiB frames and a 2 MiB one in 32 to 34 ([`driver::FRAME_SLOTS`], the
//! first mapped read-write at 0x1000), a PML4 without an ASID in 35
//! ([`driver::SPARE_PML4_SLOT`]), an unmapped page table in 36
//! ([`driver::SPARE_TABLE_SLOT`]), the GuestSpace with 2 MiB of guest
//! memory in 37 to 40, a copy of the first frame's capability in 41 and a
//! VCpu running in the GuestSpace in 42 ([`driver::VCPU_SLOT`], reached by
//! tag 32's `vslot`); then the thread of tag 23 with the
//! same three bytes, but its SetSpace names the VSpace too and is followed
//! by SetIpcBuffer with the first frame (as the strategy's threads in the
//! VSpace). Slots 32 to 36 are beyond a `slot` byte's reach: the
//! address-space arguments are `pslot`s (below).
//!
//! # Arguments
//!
//! An argument byte below [`ESCAPE`] maps into the range the random
//! strategy favours; one from [`ESCAPE`] up is followed by the argument as
//! a full little-endian word (8 bytes), unless said otherwise. Missing
//! bytes at the end of the input read as 0.
//!
//! - `slot` (a root cptr): `byte % 32` (the setup's objects, threads and
//!   scheduling contexts, the free slots and the badged capabilities);
//! - `vslot` (a root cptr of the VCpu operations): `byte % 48` (the
//!   setup's GuestSpace is 37, its VCpu 42);
//! - `pslot` (a root cptr of the address-space operations): `byte % 40`,
//!   with 37, 38 and 39 moved up to 252, 253 and 254 (the paging untyped,
//!   AsidControl, IrqControl): the slots of both setups, those of
//!   [`driver::vspace_objects`] (26 to 36) among them, and the boot
//!   capabilities (the free root slots from 37 up need an escape); an
//!   optional VSpace (tag 28) is none below 128, else the `pslot` of
//!   `byte - 128`;
//! - `addr`: a byte below 160 is root slot `byte % 32`; below [`ESCAPE`]
//!   it is `In(3 + byte % 9, index, depth)` with one more byte `i`: index
//!   `i % 8`, depth `1 + (i / 8) % 3`; from [`ESCAPE`] up, `In(slot, word,
//!   word)`;
//! - rights: `byte % 16`; badge: `byte % 4`; guard (Mutate's data): width
//!   `byte % 8`, value `(byte / 8) % 4`;
//! - type: index `byte % 7` into UNTYPED, CNODE, TCB, ENDPOINT,
//!   NOTIFICATION, REPLY, SCHED_CONTEXT; an escaped type word is always
//!   above 13 (words up to 13 become `word + 14`: from before the spec
//!   modelled the type words 7 to 13, and kept so that old inputs keep
//!   their meaning; 14 and 15, the VCpu and the GuestSpace, are known
//!   types now);
//! - paging type (tag 30): `7 + byte % 7`, FRAME_4K, FRAME_2M, FRAME_1G,
//!   PAGE_TABLE, PAGE_DIRECTORY, PDPT, PML4; escaped, as a type;
//! - size: `byte % 16`; count: `byte % 4`; node: an even byte is the root
//!   CNode itself (node 0, depth 0), an odd one root slot `(byte / 2) % 16`
//!   at depth 64, an escaped one a word and a depth byte (`% 71`);
//! - raw label: `byte % 42`, with 21 to 41 moved up to 30 to 50 (the
//!   CNode, Untyped, TCB and SchedControl labels, and some no capability
//!   understands); escaped, a 32-bit word of at least 1000;
//! - IPC label: `byte % 8`; length (a message's word count, never
//!   escaped): a byte below 160 is `byte % 8`, else `100 + (byte - 160) %
//!   28` (up to 127: beyond 120 is refused);
//! - grant and receive slot: a byte below 128 is none, below [`ESCAPE`]
//!   root slot `(byte - 128) % 32` (a receive slot at depth 64); escaped,
//!   a word (for a receive slot, then a depth byte, `% 71`);
//! - priority: the byte below 224, else `byte + 16` (so 238 is 254 and 239
//!   is 255; 224 to 239 need an escape);
//! - budget: `10 * byte`; period: `20 * byte`; ticks: `10 * byte`;
//! - rip: `0x1000 * (byte + 1)`; rsp: `0x1000 * byte`; rflags: the byte;
//! - syscall number: `byte % 24` (the system calls 1 to 10 and unknown
//!   numbers);
//! - line (IrqGet): `byte % 20` (the cascade line 2 and lines 16 to 19
//!   among them);
//! - vaddr: `byte % 32`: below 16 the page `0x1000 * byte` (the setup's
//!   page table covers them: 0x1000 is its mapped frame's), from 16
//!   [`VADDRS`]`[byte % 32 - 16]` (2 MiB, 1 GiB and 512 GiB boundaries,
//!   the last pages below the user half's end, the end itself, misaligned
//!   and kernel-half addresses);
//! - attributes (Frame::Map): `byte % 8` (bit 0 executable, bits 1 and 2
//!   the memory type).
//!
//! Decoding stops when the bytes run out or after [`MAX_OPS`] operations
//! (a setup tag that would pass [`MAX_OPS`] is cut there).

use arbitrary::{Result, Unstructured};

use crate::driver::{
    self, ASID_CONTROL_SLOT, Addr, FRAME_SLOTS, IRQ_CONTROL_SLOT, Op, PAGING_UNTYPED_SLOT, Rights, THREAD_SLOTS,
    TcbCall, Type, VCpuCall, VSPACE_SLOT, VSpaceCall, types,
};

/// Bytes from this value up announce a full word.
pub const ESCAPE: u8 = 240;
/// The most operations one input decodes to.
pub const MAX_OPS: usize = 1_000;
/// How many tags a tag byte reads modulo: 32, except for the VCpu tags
/// ([`VCPU_TAGS`]).
pub const TAGS: u8 = 32;
/// The tags that came with the VCpu: a byte whose value modulo 64 is one
/// of these names it; every other byte is read modulo [`TAGS`], as before.
pub const VCPU_TAGS: std::ops::Range<u8> = 32..35;
/// The tag that came with scheduling-context donation (TCB::SetPassive),
/// named as the VCpu tags are.
pub const PASSIVE_TAG: u8 = 35;

/// The tag a tag byte names.
#[must_use]
pub fn tag_of(byte: u8) -> u8 {
    let wide = byte % 64;
    if VCPU_TAGS.contains(&wide) || wide == PASSIVE_TAG { wide } else { byte % TAGS }
}

/// Guest-state values by a value byte's `byte % 32` (VCpu::WriteState):
/// values some field takes and some field refuses.
pub const STATE_VALUES: [u64; 32] = [
    0,
    1,
    2,
    3,
    0x202,
    0x2_0002,
    0x9b,
    0xa9b,
    0xfff0,
    0xffff,
    0x1000,
    0x7c00,
    0x6000_0010,
    0x8000_0031,
    0x2000_0000,
    0xd01,
    1 << 12,
    1 << 13,
    0x8000_0b0d,
    0x8000_030d,
    0x8000_0030,
    0x8000_0402,
    0xffff_ffff,
    1 << 32,
    1 << 47,
    0xffff_8000_0000_0000,
    (1 << 47) - 1,
    1 << 52,
    0x000f_ffff_ffff_f000,
    0x20,
    0x1_0000,
    u64::MAX,
];

/// The virtual addresses a vaddr byte `b` names from `b % 32 = 16` up:
/// the 2 MiB, 4 MiB, 1 GiB and 2 GiB boundaries (a 2 MiB or 1 GiB frame's
/// or a paging structure's place), 2 MiB plus a page, 512 GiB and three
/// times that (other PML4 entries), the last 4 KiB, 2 MiB and 1 GiB below
/// the user half's end, the end itself, two misaligned addresses, the
/// kernel half's start and its last page, and a non-canonical address.
pub const VADDRS: [u64; 16] = [
    1 << 21,
    2 << 21,
    1 << 30,
    2 << 30,
    (1 << 21) + 0x1000,
    1 << 39,
    3 << 39,
    (1 << 47) - (1 << 12),
    (1 << 47) - (1 << 21),
    (1 << 47) - (1 << 30),
    1 << 47,
    0x1234,
    0x1800,
    0xffff_8000_0000_0000,
    !0xfff,
    (1 << 47) + 0x1000,
];

/// The object types by their index byte (tag 0).
const TYPES: [Type; 7] = [
    types::UNTYPED,
    types::CNODE,
    types::TCB,
    types::ENDPOINT,
    types::NOTIFICATION,
    types::REPLY,
    types::SCHED_CONTEXT,
];

/// The operations `bytes` encode.
#[must_use]
pub fn ops(bytes: &[u8]) -> Vec<Op> {
    let mut input = Unstructured::new(bytes);
    let mut ops = Vec::new();
    while !input.is_empty() && ops.len() < MAX_OPS {
        if op(&mut input, &mut ops).is_err() {
            break;
        }
    }
    ops.truncate(MAX_OPS);
    ops
}

/// A byte below [`ESCAPE`] mapped by `small`, else a full word.
fn word(input: &mut Unstructured<'_>, small: impl Fn(u8) -> u64) -> Result<u64> {
    let byte: u8 = input.arbitrary()?;
    if byte < ESCAPE { Ok(small(byte)) } else { input.arbitrary() }
}

fn slot(input: &mut Unstructured<'_>) -> Result<u64> {
    word(input, |byte| u64::from(byte % 32))
}

/// A root cptr for the address-space operations: `byte % 40`, 37 to 39
/// moved up to the paging untyped, AsidControl and IrqControl.
const fn pslot_of(byte: u8) -> u64 {
    match byte % 40 {
        37 => PAGING_UNTYPED_SLOT,
        38 => ASID_CONTROL_SLOT,
        39 => IRQ_CONTROL_SLOT,
        small => small as u64,
    }
}

fn pslot(input: &mut Unstructured<'_>) -> Result<u64> {
    word(input, pslot_of)
}

/// None below 128, else the [`pslot`] of `byte - 128`, or a full word.
fn optional_pslot(input: &mut Unstructured<'_>) -> Result<Option<u64>> {
    let byte: u8 = input.arbitrary()?;
    Ok(if byte < 128 {
        None
    } else if byte < ESCAPE {
        Some(pslot_of(byte - 128))
    } else {
        Some(input.arbitrary()?)
    })
}

fn vaddr(input: &mut Unstructured<'_>) -> Result<u64> {
    word(input, |byte| {
        let small = byte % 32;
        if small < 16 { 0x1000 * u64::from(small) } else { VADDRS[usize::from(small - 16)] }
    })
}

fn addr(input: &mut Unstructured<'_>) -> Result<Addr> {
    let byte: u8 = input.arbitrary()?;
    if byte < 160 {
        Ok(Addr::R(u64::from(byte % 32)))
    } else if byte < ESCAPE {
        let place: u8 = input.arbitrary()?;
        Ok(Addr::In(3 + u64::from(byte % 9), u64::from(place % 8), 1 + u64::from((place / 8) % 3)))
    } else {
        Ok(Addr::In(slot(input)?, input.arbitrary()?, input.arbitrary()?))
    }
}

/// None below 128, else root slot `(byte - 128) % 32` or a full word.
fn optional_slot(input: &mut Unstructured<'_>) -> Result<Option<u64>> {
    let byte: u8 = input.arbitrary()?;
    Ok(if byte < 128 {
        None
    } else if byte < ESCAPE {
        Some(u64::from((byte - 128) % 32))
    } else {
        Some(input.arbitrary()?)
    })
}

/// A receive slot: as [`optional_slot`], at depth 64 unless escaped.
fn receive_slot(input: &mut Unstructured<'_>) -> Result<Option<(u64, u64)>> {
    let byte: u8 = input.arbitrary()?;
    Ok(if byte < 128 {
        None
    } else if byte < ESCAPE {
        Some((u64::from((byte - 128) % 32), 64))
    } else {
        Some((input.arbitrary()?, u64::from(input.arbitrary::<u8>()? % 71)))
    })
}

fn rights(input: &mut Unstructured<'_>) -> Result<Rights> {
    word(input, |byte| u64::from(byte % 16)).map(Rights)
}

fn ipc_label(input: &mut Unstructured<'_>) -> Result<u64> {
    word(input, |byte| u64::from(byte % 8))
}

/// A message length: mostly short, at times long or beyond 120.
fn length(input: &mut Unstructured<'_>) -> Result<u8> {
    let byte: u8 = input.arbitrary()?;
    Ok(if byte < 160 { byte % 8 } else { 100 + (byte - 160) % 28 })
}

/// A priority byte: itself below 224, else 16 more (240 to 255).
const fn priority_of(byte: u8) -> u64 {
    if byte < 224 { byte as u64 } else { byte as u64 + 16 }
}

fn priority(input: &mut Unstructured<'_>) -> Result<u64> {
    word(input, priority_of)
}

fn tcb_call(input: &mut Unstructured<'_>) -> Result<TcbCall> {
    let call: u8 = input.arbitrary()?;
    Ok(match call % 8 {
        0 => TcbCall::SetSpace { cnode: slot(input)?, vspace: None },
        1 => TcbCall::SetFaultHandler { endpoint: slot(input)? },
        2 => TcbCall::SetPriority { priority: priority(input)?, authority: slot(input)? },
        3 => TcbCall::SetMaxPriority { priority: priority(input)?, authority: slot(input)? },
        4 => TcbCall::BindSchedContext { sched_context: slot(input)? },
        5 => TcbCall::Resume,
        6 => TcbCall::Suspend,
        _ => TcbCall::WriteRegisters {
            rip: word(input, |byte| 0x1000 * (u64::from(byte) + 1))?,
            rsp: word(input, |byte| 0x1000 * u64::from(byte))?,
            rflags: word(input, u64::from)?,
        },
    })
}

fn vspace_call(input: &mut Unstructured<'_>) -> Result<VSpaceCall> {
    let call: u8 = input.arbitrary()?;
    Ok(match call % 7 {
        0 => VSpaceCall::MapTable { vaddr: vaddr(input)?, vspace: pslot(input)? },
        1 => VSpaceCall::UnmapTable,
        2 => VSpaceCall::MapFrame {
            vaddr: vaddr(input)?,
            rights: rights(input)?,
            attributes: word(input, |byte| u64::from(byte % 8))?,
            vspace: pslot(input)?,
        },
        3 => VSpaceCall::UnmapFrame,
        4 => VSpaceCall::GetAddress,
        5 => VSpaceCall::MakePool { untyped: pslot(input)?, dest: addr(input)? },
        _ => VSpaceCall::Assign { vspace: pslot(input)? },
    })
}

/// The strategy's `setup_thread` for thread byte `thread`, priority byte
/// `priority` and budget byte `budget` (see the module documentation).
#[must_use]
pub fn thread_setup(thread: u8, priority: u8, budget: u8) -> Vec<Op> {
    let slot = THREAD_SLOTS.start + u64::from(thread) % (THREAD_SLOTS.end - THREAD_SLOTS.start);
    let budget = (budget >= 128).then(|| {
        let budget = 100 + 10 * u64::from(budget - 128);
        (budget, 2 * budget)
    });
    driver::thread_setup(slot, priority_of(priority), budget)
}

/// [`thread_setup`] in the VSpace of [`driver::vspace_objects`] (tag 31):
/// its SetSpace names [`VSPACE_SLOT`] as well as the root CNode, and
/// SetIpcBuffer with the first of [`FRAME_SLOTS`] follows it.
#[must_use]
pub fn vspace_thread_setup(thread: u8, priority: u8, budget: u8) -> Vec<Op> {
    let mut ops = thread_setup(thread, priority, budget);
    let Op::Tcb { tcb, call: TcbCall::SetSpace { cnode, .. } } = ops[1] else {
        unreachable!("a thread's setup sets its space second")
    };
    ops[1] = Op::Tcb { tcb, call: TcbCall::SetSpace { cnode, vspace: Some(VSPACE_SLOT) } };
    ops.insert(2, Op::Tcb { tcb, call: TcbCall::SetIpcBuffer { frame: FRAME_SLOTS.start } });
    ops
}

/// A root cptr for the VCpu operations: `byte % 48`, which reaches the
/// setup's VCpu (root slot 42) as well as the other setup slots.
fn vslot(input: &mut Unstructured<'_>) -> Result<u64> {
    word(input, |byte| u64::from(byte % 48))
}

/// A VCpu call: a call byte (`% 4`) and its arguments.
fn vcpu_call(input: &mut Unstructured<'_>) -> Result<VCpuCall> {
    let field = |input: &mut Unstructured<'_>| word(input, |byte| u64::from(byte % 64));
    Ok(match input.arbitrary::<u8>()? % 4 {
        0 => VCpuCall::SetTcb { tcb: slot(input)? },
        1 => VCpuCall::SetSpace { space: vslot(input)? },
        2 => VCpuCall::ReadState { field: field(input)? },
        _ => VCpuCall::WriteState {
            field: field(input)?,
            value: word(input, |byte| STATE_VALUES[usize::from(byte % 32)])?,
        },
    })
}

/// A type word: `small` of a byte below [`ESCAPE`], else a full word,
/// moved above 13 if it is not already (see the module documentation).
fn kind(input: &mut Unstructured<'_>, small: impl Fn(u8) -> Type) -> Result<Type> {
    let byte: u8 = input.arbitrary()?;
    Ok(if byte < ESCAPE {
        small(byte)
    } else {
        // Above the spec's type words, as the strategy's unknown types:
        // the spec once refused to model the words up to 13 it did not
        // cover (frames, paging structures, ...); tag 30 reaches them.
        let word: u64 = input.arbitrary()?;
        Type(if word <= 13 { word + 14 } else { word })
    })
}

/// A Retype's arguments after the untyped and the type (tags 0 and 30):
/// size, `slot` root, node, offset (by `offset`), count.
fn retype(
    input: &mut Unstructured<'_>,
    untyped: u64,
    kind: Type,
    offset: impl Fn(&mut Unstructured<'_>) -> Result<u64>,
) -> Result<Op> {
    let size_bits = word(input, |byte| u64::from(byte % 16))?;
    let root = slot(input)?;
    let node_byte: u8 = input.arbitrary()?;
    let (node, node_depth) = if node_byte >= ESCAPE {
        (input.arbitrary()?, u64::from(input.arbitrary::<u8>()? % 71))
    } else if node_byte.is_multiple_of(2) {
        (0, 0)
    } else {
        (u64::from((node_byte / 2) % 16), 64)
    };
    let offset = offset(input)?;
    let count = word(input, |byte| u64::from(byte % 4))?;
    Ok(Op::Retype { untyped, kind, size_bits, root, node, node_depth, offset, count })
}

/// Decodes one tag and its arguments onto `ops`.
fn op(input: &mut Unstructured<'_>, ops: &mut Vec<Op>) -> Result<()> {
    let tag: u8 = input.arbitrary()?;
    let decoded = match tag_of(tag) {
        0 => {
            let untyped = slot(input)?;
            let kind = kind(input, |byte| TYPES[usize::from(byte) % TYPES.len()])?;
            retype(input, untyped, kind, slot)?
        }
        1 => Op::Copy { dest: addr(input)?, src: addr(input)?, rights: rights(input)? },
        2 => Op::Mint {
            dest: addr(input)?,
            src: addr(input)?,
            rights: rights(input)?,
            badge: word(input, |byte| u64::from(byte % 4))?,
        },
        3 => Op::Move { dest: addr(input)?, src: addr(input)? },
        // A small guard: width `byte % 8`, value `(byte / 8) % 4`.
        4 => Op::Mutate {
            dest: addr(input)?,
            src: addr(input)?,
            data: word(input, |byte| (u64::from((byte / 8) % 4) << 6) | u64::from(byte % 8))?,
        },
        5 => Op::Delete { slot: addr(input)? },
        6 => Op::Revoke { slot: addr(input)? },
        7 => {
            let cptr = slot(input)?;
            // Labels as the strategy makes them: the CNode, Untyped, TCB
            // and SchedControl ones and some no capability understands.
            let label_byte: u8 = input.arbitrary()?;
            let label = if label_byte < ESCAPE {
                let small = label_byte % 42;
                u64::from(if small < 21 { small } else { small + 9 })
            } else {
                u64::from(input.int_in_range(1000..=u32::MAX)?)
            };
            let words = input.arbitrary::<u8>()? % 7;
            let extra = input.arbitrary::<u8>()? % 2;
            Op::Raw { cptr, label, words, extra }
        }
        8 => Op::Tcb { tcb: slot(input)?, call: tcb_call(input)? },
        9 => Op::Configure {
            sched_context: slot(input)?,
            budget: word(input, |byte| 10 * u64::from(byte))?,
            period: word(input, |byte| 20 * u64::from(byte))?,
        },
        tag @ (10 | 11) => Op::Send {
            cptr: slot(input)?,
            label: ipc_label(input)?,
            words: length(input)?,
            grant: optional_slot(input)?,
            blocking: tag == 10,
        },
        12 => Op::IpcCall {
            cptr: slot(input)?,
            label: ipc_label(input)?,
            words: length(input)?,
            grant: optional_slot(input)?,
        },
        tag @ (13 | 14) => {
            Op::Recv { cptr: slot(input)?, reply: slot(input)?, slot: receive_slot(input)?, blocking: tag == 13 }
        }
        15 => Op::ReplyRecv {
            cptr: slot(input)?,
            reply: slot(input)?,
            label: ipc_label(input)?,
            words: length(input)?,
            slot: receive_slot(input)?,
        },
        16 => Op::Signal { cptr: slot(input)? },
        tag @ (17 | 18) => Op::Wait { cptr: slot(input)?, blocking: tag == 17 },
        19 => Op::Yield,
        20 => Op::Syscall { number: word(input, |byte| u64::from(byte % 24))?, cptr: slot(input)? },
        21 => Op::Tick {
            ticks: word(input, |byte| 10 * u64::from(byte))?,
            slice_ended: input.arbitrary::<u8>()? % 2 == 1,
        },
        24 => Op::IrqGet { line: word(input, |byte| u64::from(byte % 20))?, dest: addr(input)? },
        25 => {
            let handler = slot(input)?;
            let call = match input.arbitrary::<u8>()? % 3 {
                0 => driver::IrqCall::SetNotification { notification: slot(input)? },
                1 => driver::IrqCall::Clear,
                _ => driver::IrqCall::Ack,
            };
            Op::Irq { handler, call }
        }
        26 => Op::Interrupt { line: input.arbitrary::<u8>()? % 20 },
        27 => Op::VSpace { cptr: pslot(input)?, call: vspace_call(input)? },
        28 => Op::Tcb {
            tcb: slot(input)?,
            call: TcbCall::SetSpace { cnode: slot(input)?, vspace: optional_pslot(input)? },
        },
        29 => Op::Tcb { tcb: slot(input)?, call: TcbCall::SetIpcBuffer { frame: pslot(input)? } },
        32 => Op::VCpu { vcpu: vslot(input)?, call: vcpu_call(input)? },
        33 => {
            let tcb = slot(input)?;
            let call = if input.arbitrary::<u8>()?.is_multiple_of(2) {
                TcbCall::BindNotification { notification: slot(input)? }
            } else {
                TcbCall::UnbindNotification
            };
            Op::Tcb { tcb, call }
        }
        34 => {
            let value = |input: &mut Unstructured<'_>| word(input, |byte| STATE_VALUES[usize::from(byte % 32)]);
            let (rip, rflags, event) = (value(input)?, value(input)?, value(input)?);
            let byte = input.arbitrary::<u8>()?;
            let (length, controls) = (byte % 32, u64::from(byte >> 5));
            let (controls, deadline) = if controls == 0 { (0, 0) } else { (controls - 1, value(input)?) };
            Op::VmEnter { rsp: 0x8000, rip, rflags, event, deadline, controls, length }
        }
        35 => Op::Tcb {
            tcb: slot(input)?,
            call: TcbCall::SetPassive { passive: word(input, |byte| u64::from(byte % 3))? },
        },
        30 => {
            let untyped = pslot(input)?;
            let kind = kind(input, |byte| Type(7 + u64::from(byte % 7)))?;
            retype(input, untyped, kind, pslot)?
        }
        tag => {
            let (thread, priority, budget): (u8, u8, u8) = (input.arbitrary()?, input.arbitrary()?, input.arbitrary()?);
            match tag {
                22 => {
                    ops.extend(driver::ipc_objects());
                    ops.extend(thread_setup(thread, priority, budget));
                }
                23 => ops.extend(thread_setup(thread, priority, budget)),
                _ => {
                    ops.extend(driver::vspace_objects());
                    ops.extend(vspace_thread_setup(thread, priority, budget));
                }
            }
            return Ok(());
        }
    };
    ops.push(decoded);
    Ok(())
}
