//! Driver protection domains: PCI, UART, virtio, e1000, AHCI and NVMe, DMA confined by the IOMMU.
//!
//! Empty for now: this crate exists so that the workspace has its final
//! shape. See `docs/ARCHITECTURE.md` for the issue that fills it.

#![no_std]
#![forbid(unsafe_code)]
