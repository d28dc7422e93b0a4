//! The snapshot of a small system that a root thread builds through the
//! system-call layer (two named threads with guarded CNodes, a badged
//! endpoint, a VSpace with two frames), and `DEBUG_NAME_THREAD`'s rules.

use super::*;
use crate::cap::invocation::label as cnode_label;
use crate::cap::object::ObjectKind;
use crate::error::SyscallError;
use crate::platform::RecordingPlatform;
use crate::store::MapStore;
use crate::syscall::{label, name_thread};
use crate::test_fixture::{
    R_SELF, R_UNTYPED, ROOT_TCB, Request, issue, root_cnode_cap, root_kernel, root_slot, root_thread,
};
use crate::vspace::{MemoryType, attribute, label as vspace_label};

// Root CNode slots (a root cptr is the slot index).
const R_ASID_CONTROL: u64 = 2;
const R_ROOT_TCB: u64 = 3;
const R_POOL_UNTYPED: u64 = 4;
const R_POOL: u64 = 5;
const R_TCB: u64 = 10; // 10 alpha, 11 beta
const R_PML4: u64 = 12;
const R_PDPT: u64 = 13;
const R_PD: u64 = 14;
const R_PT: u64 = 15;
const R_FRAME: u64 = 16; // 16, 17
const R_ENDPOINT: u64 = 20;
const R_MINTED: u64 = 21;
const R_CNODE: u64 = 30; // 30, 31 (moved to 40, 41 with their guards)
const R_GUARDED: u64 = 40; // 40, 41
const R_TCB_COPY: u64 = 50;

const CODE: u64 = 0x40_0000;

struct World {
    kernel: Kernel<MapStore>,
    platform: RecordingPlatform,
}

impl World {
    fn call(&mut self, cptr: u64, label: u64, words: &[u64], extra: &[u64]) {
        let (code, _) =
            issue(&mut self.kernel, &mut self.platform, root_thread(), &Request::call(cptr, label, words, extra));
        assert_eq!(code, 0, "invocation {label} on {cptr} failed with {code}");
    }

    fn retype(&mut self, kind: ObjectKind, size_bits: u64, slot: u64, count: u64) {
        self.call(R_UNTYPED, cnode_label::UNTYPED_RETYPE, &[kind as u64, size_bits, 0, 0, slot, count], &[R_SELF]);
    }

    /// Copies root slot `from` into slot `index` of thread `pd`'s CNode.
    fn give(&mut self, pd: u64, index: u64, from: u64, rights: Rights) {
        let words = [index, 64, from, 64, u64::from(rights.bits())];
        self.call(R_GUARDED + pd, cnode_label::CNODE_COPY, &words, &[R_SELF]);
    }

    fn object(&self, slot: u64) -> u64 {
        self.kernel.store.slot(root_slot(slot)).cap.memory_region().expect("an object").0.as_u64()
    }

    fn name(&mut self, cptr: u64, name: &[u8]) -> Result<(), SyscallError> {
        let mut bytes = [0; 32];
        bytes[..name.len()].copy_from_slice(name);
        name_thread(&mut self.kernel.store, root_thread(), cptr, ThreadName(bytes))
    }

    fn lines(&self) -> (Vec<String>, Totals) {
        let mut lines = Vec::new();
        let totals = snapshot(&self.kernel, &root_cnode_cap(), |line| lines.push(line.to_string()));
        (lines, totals)
    }
}

/// Two threads, `alpha` (priority 100, a VSpace with a code page and an
/// uncached data page, a badged endpoint) and `beta` (priority 90, no
/// VSpace, the endpoint to receive on), each with its CNode in its slot 0.
fn world() -> World {
    let originals = [(R_ASID_CONTROL, Cap::AsidControl), (R_ROOT_TCB, Cap::Tcb { object: PhysAddr::new(ROOT_TCB) })];
    let mut world = World { kernel: root_kernel(23, 255, &originals), platform: RecordingPlatform::new() };
    world.retype(ObjectKind::Untyped, 12, R_POOL_UNTYPED, 1);
    world.call(R_ASID_CONTROL, vspace_label::ASID_CONTROL_MAKE_POOL, &[R_POOL, 64], &[R_POOL_UNTYPED, R_SELF]);
    world.retype(ObjectKind::Tcb, 0, R_TCB, 2);
    world.retype(ObjectKind::CNode, 4, R_CNODE, 2);
    world.retype(ObjectKind::Endpoint, 0, R_ENDPOINT, 1);
    world.retype(ObjectKind::Pml4, 0, R_PML4, 1);
    world.retype(ObjectKind::PageDirectoryPointerTable, 0, R_PDPT, 1);
    world.retype(ObjectKind::PageDirectory, 0, R_PD, 1);
    world.retype(ObjectKind::PageTable, 0, R_PT, 1);
    world.retype(ObjectKind::Frame4K, 0, R_FRAME, 2);
    world.call(R_POOL, vspace_label::ASID_POOL_ASSIGN, &[], &[R_PML4]);
    world.call(R_PDPT, vspace_label::PAGE_TABLE_MAP, &[CODE], &[R_PML4]);
    world.call(R_PD, vspace_label::PAGE_TABLE_MAP, &[CODE], &[R_PML4]);
    world.call(R_PT, vspace_label::PAGE_TABLE_MAP, &[CODE], &[R_PML4]);
    world.call(
        R_FRAME,
        vspace_label::FRAME_MAP,
        &[CODE, u64::from(Rights::READ.bits()), attribute::EXECUTE],
        &[R_PML4],
    );
    let uncached = (MemoryType::Uncached as u64) << attribute::MEMORY_TYPE_SHIFT;
    let read_write = u64::from((Rights::READ | Rights::WRITE).bits());
    world.call(R_FRAME + 1, vspace_label::FRAME_MAP, &[CODE + 0x1000, read_write, uncached], &[R_PML4]);
    let minted = [R_MINTED, 64, R_ENDPOINT, 64, u64::from((Rights::WRITE | Rights::GRANT).bits()), 0xc1];
    world.call(R_SELF, cnode_label::CNODE_MINT, &minted, &[R_SELF]);
    for pd in 0..2 {
        // A 60-bit guard: each 16-slot CNode is a whole 64-bit CSpace.
        world.call(R_SELF, cnode_label::CNODE_MUTATE, &[R_GUARDED + pd, 64, R_CNODE + pd, 64, 60], &[R_SELF]);
        world.give(pd, 0, R_GUARDED + pd, Rights::ALL);
    }
    world.give(0, 1, R_MINTED, Rights::ALL);
    world.give(1, 1, R_ENDPOINT, Rights::READ);
    world.call(R_TCB, label::TCB_SET_SPACE, &[], &[R_GUARDED, R_PML4]);
    world.call(R_TCB + 1, label::TCB_SET_SPACE, &[], &[R_GUARDED + 1]);
    world.call(R_TCB, label::TCB_SET_PRIORITY, &[100], &[R_ROOT_TCB]);
    world.call(R_TCB + 1, label::TCB_SET_PRIORITY, &[90], &[R_ROOT_TCB]);
    world.call(R_SELF, cnode_label::CNODE_COPY, &[R_TCB_COPY, 64, R_TCB, 64, 0xf], &[R_SELF]);
    world.name(R_TCB, b"alpha").expect("named");
    world.name(R_TCB + 1, b"beta").expect("named");
    world
}

#[test]
fn the_snapshot_lists_each_thread_once_with_its_caps_and_pages() {
    let world = world();
    let (lines, totals) = world.lines();
    let of = |name: &str| -> Vec<&str> {
        lines.iter().map(String::as_str).filter(|line| line.contains(&format!("thread={name} "))).collect()
    };
    let threads: Vec<&str> = lines.iter().map(String::as_str).filter(|line| line.starts_with("thread ")).collect();
    assert_eq!(threads.len(), 3, "the root thread, alpha and beta (alpha's copy counts once): {threads:#?}");
    let [alpha_cnode, beta_cnode, endpoint, pml4, code, data] =
        [R_GUARDED, R_GUARDED + 1, R_ENDPOINT, R_PML4, R_FRAME, R_FRAME + 1].map(|slot| world.object(slot));
    assert_eq!(
        threads[1],
        format!(
            "thread name=alpha tcb={:#x} priority=100 state=inactive cnode={alpha_cnode:#x} radix=4 guard=60:0x0 vspace={pml4:#x} ipc_buffer=none fault=none sched=none passive=0",
            world.object(R_TCB)
        )
    );
    assert_eq!(
        threads[2],
        format!(
            "thread name=beta tcb={:#x} priority=90 state=inactive cnode={beta_cnode:#x} radix=4 guard=60:0x0 vspace=none ipc_buffer=none fault=none sched=none passive=0",
            world.object(R_TCB + 1)
        )
    );
    assert!(threads[0].starts_with(&format!("thread name=? tcb={ROOT_TCB:#x} priority=255 state=runnable")));
    assert_eq!(
        of("alpha"),
        [
            format!("cap thread=alpha slot=0 type=cnode object={alpha_cnode:#x} rights=0xf badge=0x0"),
            format!("cap thread=alpha slot=1 type=endpoint object={endpoint:#x} rights=0x6 badge=0xc1"),
            format!("map thread=alpha vaddr={CODE:#x} paddr={code:#x} size=4096 write=0 exec=1 user=1 cache=0"),
            format!(
                "map thread=alpha vaddr={:#x} paddr={data:#x} size=4096 write=1 exec=0 user=1 cache=3",
                CODE + 0x1000
            ),
        ]
    );
    assert_eq!(
        of("beta"),
        [
            format!("cap thread=beta slot=0 type=cnode object={beta_cnode:#x} rights=0xf badge=0x0"),
            format!("cap thread=beta slot=1 type=endpoint object={endpoint:#x} rights=0x1 badge=0x0"),
        ]
    );
    // The root thread's CSpace is the root CNode: every original shows.
    let root_caps = of("?");
    assert!(root_caps.contains(&"cap thread=? slot=2 type=asid_control object=- rights=0xf badge=0x0"));
    assert!(
        root_caps.contains(
            &format!("cap thread=? slot={R_FRAME} type=frame object={code:#x} rights=0xf badge=0x0 size=4096 device=0")
                .as_str()
        )
    );
    assert_eq!(totals.threads, 3);
    assert_eq!(totals.maps, 2);
    assert_eq!(totals.caps, 4 + root_caps.len() as u64);
    assert_eq!(
        lines.last().expect("an end line"),
        &format!("end threads=3 caps={} maps=2", totals.caps),
        "the end line closes the snapshot"
    );
}

#[test]
fn large_pages_report_their_size_and_every_level_counts_for_access() {
    let mut world = world();
    world.retype(ObjectKind::Frame2M, 0, 60, 1);
    world.call(R_PD, vspace_label::PAGE_TABLE_UNMAP, &[], &[]);
    // The PD is gone from alpha's VSpace: nothing under it is reachable.
    assert!(world.lines().0.iter().all(|line| !line.starts_with("map ")));
    world.call(R_PD, vspace_label::PAGE_TABLE_MAP, &[0x20_0000], &[R_PML4]);
    let read_write = u64::from((Rights::READ | Rights::WRITE).bits());
    world.call(60, vspace_label::FRAME_MAP, &[0x20_0000, read_write, 0], &[R_PML4]);
    let large = world.object(60);
    let maps: Vec<String> = world.lines().0.into_iter().filter(|line| line.starts_with("map ")).collect();
    assert_eq!(
        maps,
        [format!("map thread=alpha vaddr=0x200000 paddr={large:#x} size=2097152 write=1 exec=0 user=1 cache=0")]
    );
    // A read-only PD entry makes the page read-only, whatever its leaf says.
    let pd = PhysAddr::new(world.object(R_PD));
    let (table, index) = (PhysAddr::new(world.object(R_PDPT)), 0);
    let value = world.kernel.store.table_entry(table, index);
    assert_eq!(value & entry::ADDRESS, pd.as_u64());
    world.kernel.store.set_table_entry(table, index, value & !entry::WRITABLE);
    assert!(world.lines().0.iter().any(|line| line.starts_with("map ") && line.contains(" write=0 ")));
}

#[test]
fn a_thread_is_named_through_a_tcb_capability_only() {
    let mut world = world();
    assert_eq!(world.name(R_ENDPOINT, b"x"), Err(SyscallError::InvalidCapability));
    assert_eq!(world.name(R_GUARDED, b"x"), Err(SyscallError::InvalidCapability));
    assert_eq!(world.name(99, b"x"), Err(SyscallError::FailedLookup), "an empty slot");
    assert_eq!(world.name(1 << 20, b"x"), Err(SyscallError::FailedLookup), "beyond the guard");
    // Through the copy: the same thread.
    world.name(R_TCB_COPY, b"gamma").expect("named");
    assert_eq!(world.kernel.store.tcb(ThreadId::new(PhysAddr::new(world.object(R_TCB)))).name.as_bytes(), b"gamma");
    // A thread names itself through its own CSpace (beta has no TCB
    // capability: refused there).
    let beta = ThreadId::new(PhysAddr::new(world.object(R_TCB + 1)));
    assert_eq!(name_thread(&mut world.kernel.store, beta, 0, ThreadName::NONE), Err(SyscallError::InvalidCapability));
}

#[test]
fn names_are_bytes_printed_lossily_as_one_token() {
    let mut world = world();
    world.name(R_TCB, b"a\xffb c=d").expect("not UTF-8, still stored");
    let full = [b'z'; 32];
    world.name(R_TCB + 1, &full).expect("32 bytes, no NUL");
    let lines = world.lines().0;
    assert!(lines.iter().any(|line| line.starts_with("thread name=a\u{FFFD}b_c_d tcb=")), "{lines:#?}");
    assert!(lines.iter().any(|line| line.starts_with(&format!("thread name={} tcb=", "z".repeat(32)))));
    let name = ThreadName::from_words([u64::from_le_bytes(*b"log_serv"), u64::from_le_bytes(*b"er\0\0\0\0\0\0"), 0, 0]);
    assert_eq!(name.to_string(), "log_server");
    assert_eq!(ThreadName([0xc3; 32]).to_string().chars().filter(|c| *c == '\u{FFFD}').count(), 32);
}

#[test]
fn anything_but_a_cnode_gives_an_empty_snapshot() {
    let world = world();
    let mut lines = Vec::new();
    let totals = snapshot(&world.kernel, &Cap::IrqControl, |line| lines.push(line.to_string()));
    assert_eq!(totals, Totals::default());
    assert_eq!(lines, ["end threads=0 caps=0 maps=0"]);
}
