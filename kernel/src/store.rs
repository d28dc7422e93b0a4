//! Where kernel objects live.
//!
//! The kernel keeps every object in the memory it was retyped from, as
//! seL4 does; the hardware-free code reaches objects only through these
//! traits, so the host tests and the invariant harness can keep them in
//! ordinary maps instead ([`MapStore`]).

use crate::cap::SlotStore;
use crate::ipc::{Endpoint, Notification, Reply, Tcb, ThreadId};
use crate::memory::PhysAddr;
use crate::sched::SchedContext;
use crate::vcpu::VCpu;
use crate::vspace::AsidPool;

/// Thread, endpoint, notification and reply state, by object address. A
/// never-written object reads as its fresh (default) state.
pub trait ObjectStore: SlotStore {
    /// A thread.
    fn tcb(&self, thread: ThreadId) -> &Tcb;
    /// A thread, for writing.
    fn tcb_mut(&mut self, thread: ThreadId) -> &mut Tcb;
    /// An endpoint.
    fn endpoint(&self, at: PhysAddr) -> &Endpoint;
    /// An endpoint, for writing.
    fn endpoint_mut(&mut self, at: PhysAddr) -> &mut Endpoint;
    /// A notification.
    fn notification(&self, at: PhysAddr) -> &Notification;
    /// A notification, for writing.
    fn notification_mut(&mut self, at: PhysAddr) -> &mut Notification;
    /// A reply object.
    fn reply(&self, at: PhysAddr) -> &Reply;
    /// A reply object, for writing.
    fn reply_mut(&mut self, at: PhysAddr) -> &mut Reply;
    /// A scheduling context.
    fn sched_context(&self, at: PhysAddr) -> &SchedContext;
    /// A scheduling context, for writing.
    fn sched_context_mut(&mut self, at: PhysAddr) -> &mut SchedContext;
    /// Entry `index` (0..512) of the paging structure at `table`.
    fn table_entry(&self, table: PhysAddr, index: usize) -> u64;
    /// Writes entry `index` of the paging structure at `table` (the MMU
    /// may read it at any time after).
    fn set_table_entry(&mut self, table: PhysAddr, index: usize, value: u64);
    /// An ASID pool.
    fn asid_pool(&self, at: PhysAddr) -> &AsidPool;
    /// An ASID pool, for writing.
    fn asid_pool_mut(&mut self, at: PhysAddr) -> &mut AsidPool;
    /// Makes the page at `at` (untyped memory nothing else uses) a fresh
    /// ASID pool.
    fn init_asid_pool(&mut self, at: PhysAddr);
    /// The record of the VCpu at `at` (the object's address).
    fn vcpu(&self, at: PhysAddr) -> &VCpu;
    /// The record of a VCpu, for writing.
    fn vcpu_mut(&mut self, at: PhysAddr) -> &mut VCpu;
}

#[cfg(any(test, feature = "alloc"))]
pub use map_store::MapStore;

#[cfg(any(test, feature = "alloc"))]
mod map_store {
    extern crate alloc;

    use alloc::boxed::Box;
    use alloc::collections::BTreeMap;

    use super::ObjectStore;
    use crate::cap::{ObjectKind, Slot, SlotRef, SlotStore};
    use crate::ipc::{Endpoint, Notification, Reply, Tcb, ThreadId};
    use crate::memory::PhysAddr;
    use crate::sched::SchedContext;
    use crate::vcpu::VCpu;
    use crate::vspace::AsidPool;

    static FRESH_VCPU: VCpu = VCpu::FRESH;
    static EMPTY_SLOT: Slot = Slot::EMPTY;
    static FRESH_ENDPOINT: Endpoint = Endpoint::FRESH;
    static FRESH_NOTIFICATION: Notification = Notification::FRESH;
    static FRESH_REPLY: Reply = Reply::FRESH;
    static FRESH_SCHED_CONTEXT: SchedContext = SchedContext::FRESH;

    /// Kernel objects in ordered maps, for host tests and the invariant
    /// harness.
    #[derive(Clone, Debug, Default)]
    pub struct MapStore {
        slots: BTreeMap<SlotRef, Slot>,
        tcbs: BTreeMap<ThreadId, Box<Tcb>>,
        endpoints: BTreeMap<PhysAddr, Endpoint>,
        notifications: BTreeMap<PhysAddr, Notification>,
        replies: BTreeMap<PhysAddr, Reply>,
        sched_contexts: BTreeMap<PhysAddr, SchedContext>,
        table_entries: BTreeMap<(PhysAddr, usize), u64>,
        asid_pools: BTreeMap<PhysAddr, Box<AsidPool>>,
        vcpus: BTreeMap<PhysAddr, VCpu>,
        fresh_tcb: Box<Tcb>,
        fresh_asid_pool: Box<AsidPool>,
    }

    impl MapStore {
        /// An empty store.
        #[must_use]
        pub fn new() -> MapStore {
            MapStore::default()
        }

        /// Every non-empty slot, in address order.
        pub fn occupied(&self) -> impl Iterator<Item = (SlotRef, &Slot)> {
            self.slots.iter().filter(|(_, slot)| !slot.cap.is_null()).map(|(at, slot)| (*at, slot))
        }

        /// The non-zero entries of the paging structure at `table`, by
        /// index (what [`ObjectStore::table_entry`] reads one at a time).
        pub fn table_entries(&self, table: PhysAddr) -> impl Iterator<Item = (usize, u64)> {
            self.table_entries
                .range((table, 0)..(table, crate::vspace::ENTRIES))
                .filter(|(_, value)| **value != 0)
                .map(|((_, index), value)| (*index, *value))
        }
    }

    /// Two stores are equal when they hold the same objects: an entry that
    /// only holds an object's fresh state (which reading an absent entry
    /// also gives) counts as absent, so the comparison does not depend on
    /// which objects a path happened to reach for writing.
    impl PartialEq for MapStore {
        fn eq(&self, other: &MapStore) -> bool {
            fn same<K: Ord, V: PartialEq>(a: &BTreeMap<K, V>, b: &BTreeMap<K, V>, fresh: &V) -> bool {
                let live_a = a.iter().filter(|(_, value)| *value != fresh);
                live_a.eq(b.iter().filter(|(_, value)| *value != fresh))
            }
            same(&self.slots, &other.slots, &EMPTY_SLOT)
                && same(&self.tcbs, &other.tcbs, &self.fresh_tcb)
                && same(&self.endpoints, &other.endpoints, &FRESH_ENDPOINT)
                && same(&self.notifications, &other.notifications, &FRESH_NOTIFICATION)
                && same(&self.replies, &other.replies, &FRESH_REPLY)
                && same(&self.sched_contexts, &other.sched_contexts, &FRESH_SCHED_CONTEXT)
                && same(&self.table_entries, &other.table_entries, &0)
                && same(&self.asid_pools, &other.asid_pools, &self.fresh_asid_pool)
                && same(&self.vcpus, &other.vcpus, &FRESH_VCPU)
        }
    }

    fn in_region(address: u64, base: PhysAddr, size_bits: u8) -> bool {
        let start = u128::from(base.as_u64());
        (start..start + (1_u128 << size_bits)).contains(&u128::from(address))
    }

    impl SlotStore for MapStore {
        fn slot(&self, at: SlotRef) -> &Slot {
            self.slots.get(&at).unwrap_or(&EMPTY_SLOT)
        }

        fn slot_mut(&mut self, at: SlotRef) -> &mut Slot {
            self.slots.entry(at).or_insert(Slot::EMPTY)
        }

        fn init_object(&mut self, _kind: ObjectKind, base: PhysAddr, size_bits: u8) {
            // Absent entries read as fresh objects: forgetting is enough.
            self.slots.retain(|at, _| !in_region(at.address().as_u64(), base, size_bits));
            self.tcbs.retain(|at, _| !in_region(at.address().as_u64(), base, size_bits));
            self.endpoints.retain(|at, _| !in_region(at.as_u64(), base, size_bits));
            self.notifications.retain(|at, _| !in_region(at.as_u64(), base, size_bits));
            self.replies.retain(|at, _| !in_region(at.as_u64(), base, size_bits));
            self.sched_contexts.retain(|at, _| !in_region(at.as_u64(), base, size_bits));
            self.table_entries.retain(|(at, _), _| !in_region(at.as_u64(), base, size_bits));
            self.asid_pools.retain(|at, _| !in_region(at.as_u64(), base, size_bits));
            self.vcpus.retain(|at, _| !in_region(at.as_u64(), base, size_bits));
        }
    }

    impl ObjectStore for MapStore {
        fn tcb(&self, thread: ThreadId) -> &Tcb {
            self.tcbs.get(&thread).map_or(&self.fresh_tcb, |tcb| tcb)
        }

        fn tcb_mut(&mut self, thread: ThreadId) -> &mut Tcb {
            self.tcbs.entry(thread).or_default()
        }

        fn endpoint(&self, at: PhysAddr) -> &Endpoint {
            self.endpoints.get(&at).unwrap_or(&FRESH_ENDPOINT)
        }

        fn endpoint_mut(&mut self, at: PhysAddr) -> &mut Endpoint {
            self.endpoints.entry(at).or_insert(Endpoint::FRESH)
        }

        fn notification(&self, at: PhysAddr) -> &Notification {
            self.notifications.get(&at).unwrap_or(&FRESH_NOTIFICATION)
        }

        fn notification_mut(&mut self, at: PhysAddr) -> &mut Notification {
            self.notifications.entry(at).or_insert(Notification::FRESH)
        }

        fn reply(&self, at: PhysAddr) -> &Reply {
            self.replies.get(&at).unwrap_or(&FRESH_REPLY)
        }

        fn reply_mut(&mut self, at: PhysAddr) -> &mut Reply {
            self.replies.entry(at).or_insert(Reply::FRESH)
        }

        fn sched_context(&self, at: PhysAddr) -> &SchedContext {
            self.sched_contexts.get(&at).unwrap_or(&FRESH_SCHED_CONTEXT)
        }

        fn sched_context_mut(&mut self, at: PhysAddr) -> &mut SchedContext {
            self.sched_contexts.entry(at).or_insert(SchedContext::FRESH)
        }

        fn table_entry(&self, table: PhysAddr, index: usize) -> u64 {
            assert!(index < crate::vspace::ENTRIES, "entry {index} of a paging structure");
            self.table_entries.get(&(table, index)).copied().unwrap_or(0)
        }

        fn set_table_entry(&mut self, table: PhysAddr, index: usize, value: u64) {
            assert!(index < crate::vspace::ENTRIES, "entry {index} of a paging structure");
            if value == 0 {
                self.table_entries.remove(&(table, index));
            } else {
                self.table_entries.insert((table, index), value);
            }
        }

        fn asid_pool(&self, at: PhysAddr) -> &AsidPool {
            self.asid_pools.get(&at).map_or(&self.fresh_asid_pool, |pool| pool)
        }

        fn asid_pool_mut(&mut self, at: PhysAddr) -> &mut AsidPool {
            self.asid_pools.entry(at).or_default()
        }

        fn init_asid_pool(&mut self, at: PhysAddr) {
            self.asid_pools.remove(&at);
        }

        fn vcpu(&self, at: PhysAddr) -> &VCpu {
            self.vcpus.get(&at).unwrap_or(&FRESH_VCPU)
        }

        fn vcpu_mut(&mut self, at: PhysAddr) -> &mut VCpu {
            self.vcpus.entry(at).or_insert(VCpu::FRESH)
        }
    }
}
