//! Exit accounting: how many exits of each kind the guest made, and what
//! the VMM did about them. A flood of exits costs the guest its own time
//! (the kernel charges the VMM's budget) and shows up here; nothing in
//! the VMM grows with it.

use kernel_core::virt::ExitKind;

/// The counters of one vCPU. Every count saturates instead of wrapping.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Exits by kind: index 0 for a kind the runtime does not know, else
    /// the kind's ABI number.
    exits: [u64; ExitKind::ALL.len() + 1],
    total_exits: u64,
    /// Injected exceptions by vector.
    injected: [u64; 32],
    refused_msr_accesses: u64,
    unclaimed_port_accesses: u64,
    string_io_elements: u64,
    mmio_accesses: u64,
    open_bus_accesses: u64,
    deferred_exits: u64,
}

fn bump(counter: &mut u64, by: u64) {
    *counter = counter.saturating_add(by);
}

impl Counters {
    /// Counts an exit of `kind`.
    pub(crate) fn count_exit(&mut self, kind: Option<ExitKind>) {
        bump(&mut self.exits[kind.map_or(0, |kind| kind as usize)], 1);
        bump(&mut self.total_exits, 1);
    }

    pub(crate) fn count_injected(&mut self, vector: u8) {
        if let Some(counter) = self.injected.get_mut(usize::from(vector)) {
            bump(counter, 1);
        }
    }

    pub(crate) fn count_refused_msr(&mut self) {
        bump(&mut self.refused_msr_accesses, 1);
    }

    pub(crate) fn count_unclaimed_port(&mut self) {
        bump(&mut self.unclaimed_port_accesses, 1);
    }

    pub(crate) fn count_string_elements(&mut self, elements: u64) {
        bump(&mut self.string_io_elements, elements);
    }

    pub(crate) fn count_mmio(&mut self) {
        bump(&mut self.mmio_accesses, 1);
    }

    pub(crate) fn count_open_bus(&mut self) {
        bump(&mut self.open_bus_accesses, 1);
    }

    pub(crate) fn count_deferred(&mut self) {
        bump(&mut self.deferred_exits, 1);
    }

    /// Exits of `kind` (`None`: kinds the runtime does not know).
    #[must_use]
    pub fn exits(&self, kind: Option<ExitKind>) -> u64 {
        self.exits[kind.map_or(0, |kind| kind as usize)]
    }

    /// Exits of every kind.
    #[must_use]
    pub const fn total_exits(&self) -> u64 {
        self.total_exits
    }

    /// Exceptions of `vector` the VMM injected (#GP is 13, #UD 6).
    #[must_use]
    pub fn injected(&self, vector: u8) -> u64 {
        self.injected.get(usize::from(vector)).copied().unwrap_or(0)
    }

    /// RDMSR and WRMSR answered with #GP.
    #[must_use]
    pub const fn refused_msr_accesses(&self) -> u64 {
        self.refused_msr_accesses
    }

    /// IN and OUT (and string elements) to ports no device claims.
    #[must_use]
    pub const fn unclaimed_port_accesses(&self) -> u64 {
        self.unclaimed_port_accesses
    }

    /// Elements INS and OUTS moved.
    #[must_use]
    pub const fn string_io_elements(&self) -> u64 {
        self.string_io_elements
    }

    /// Accesses emulated on MMIO devices.
    #[must_use]
    pub const fn mmio_accesses(&self) -> u64 {
        self.mmio_accesses
    }

    /// Accesses outside every device and outside the guest's memory.
    #[must_use]
    pub const fn open_bus_accesses(&self) -> u64 {
        self.open_bus_accesses
    }

    /// Instruction exits left for later because an event was being
    /// delivered (the instruction runs, and exits again, after it).
    #[must_use]
    pub const fn deferred_exits(&self) -> u64 {
        self.deferred_exits
    }
}

#[cfg(test)]
mod tests;
