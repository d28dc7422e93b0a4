//! Typed capability handles: a `Cap<Endpoint>` can only be used where an
//! endpoint is expected. The manifest compiler will generate the constants
//! (`caps::LOG: Cap<Endpoint>`); until then servers name them by hand.

use core::marker::PhantomData;

/// A capability address in the protection domain's CSpace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CPtr(pub u64);

/// A capability address known to name a capability of type `T`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Cap<T> {
    cptr: CPtr,
    kind: PhantomData<T>,
}

impl<T> Clone for Cap<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Cap<T> {}

impl<T> Cap<T> {
    /// A handle for the capability at `cptr` (the manifest says its type).
    #[must_use]
    pub const fn new(cptr: u64) -> Cap<T> {
        Cap { cptr: CPtr(cptr), kind: PhantomData }
    }

    /// Its address.
    #[must_use]
    pub const fn cptr(self) -> CPtr {
        self.cptr
    }
}

/// Capability types (markers for [`Cap`]).
pub mod kind {
    /// An IPC endpoint.
    #[derive(Debug, PartialEq, Eq, Hash)]
    pub enum Endpoint {}
    /// A notification.
    #[derive(Debug, PartialEq, Eq, Hash)]
    pub enum Notification {}
    /// A reply object.
    #[derive(Debug, PartialEq, Eq, Hash)]
    pub enum Reply {}
    /// A thread.
    #[derive(Debug, PartialEq, Eq, Hash)]
    pub enum Tcb {}
    /// A CNode.
    #[derive(Debug, PartialEq, Eq, Hash)]
    pub enum CNode {}
    /// Untyped memory.
    #[derive(Debug, PartialEq, Eq, Hash)]
    pub enum Untyped {}
    /// A frame.
    #[derive(Debug, PartialEq, Eq, Hash)]
    pub enum Frame {}
    /// A scheduling context.
    #[derive(Debug, PartialEq, Eq, Hash)]
    pub enum SchedContext {}
    /// The authority to give scheduling contexts budgets.
    #[derive(Debug, PartialEq, Eq, Hash)]
    pub enum SchedControl {}
    /// A paging structure below the PML4: a PDPT, a page directory or a
    /// page table (one type: `PageTable::Map` takes all three).
    #[derive(Debug, PartialEq, Eq, Hash)]
    pub enum PageTable {}
    /// A PML4: an address space (VSpace) once it has an ASID.
    #[derive(Debug, PartialEq, Eq, Hash)]
    pub enum Pml4 {}
    /// The authority to make ASID pools.
    #[derive(Debug, PartialEq, Eq, Hash)]
    pub enum AsidControl {}
    /// An ASID pool: gives PML4s their ASIDs.
    #[derive(Debug, PartialEq, Eq, Hash)]
    pub enum AsidPool {}
    /// The authority to make interrupt handler capabilities.
    #[derive(Debug, PartialEq, Eq, Hash)]
    pub enum IrqControl {}
    /// The handler of one interrupt line.
    #[derive(Debug, PartialEq, Eq, Hash)]
    pub enum IrqHandler {}
    /// The authority to issue I/O port ranges.
    #[derive(Debug, PartialEq, Eq, Hash)]
    pub enum IoPortControl {}
    /// A range of I/O ports.
    #[derive(Debug, PartialEq, Eq, Hash)]
    pub enum IoPorts {}
    /// A guest's physical address space (an NPT or EPT root), once it has
    /// an ASID.
    #[derive(Debug, PartialEq, Eq, Hash)]
    pub enum GuestSpace {}
    /// A guest's virtual CPU.
    #[derive(Debug, PartialEq, Eq, Hash)]
    pub enum VCpu {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_are_plain_addresses() {
        let endpoint: Cap<kind::Endpoint> = Cap::new(7);
        let copy = endpoint;
        assert_eq!(copy.cptr(), CPtr(7));
        assert_eq!(size_of::<Cap<kind::Frame>>(), 8);
    }
}
