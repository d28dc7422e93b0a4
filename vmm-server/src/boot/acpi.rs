//! The ACPI tables a Linux guest reads to find its processors and
//! interrupt controllers (ACPI 6.4, chapter 5): [`build`] lays out one
//! contiguous blob for a guest-physical address, RSDP first.
//!
//! | table | revision | what it says |
//! | --- | --- | --- |
//! | RSDP | 2 | where the XSDT is (no RSDT) |
//! | XSDT | 1 | where the FADT and the MADT are |
//! | FADT | 6.4 | the fixed hardware ([`FixedHardware`]), where the DSDT (and FACS) are |
//! | FACS | 2 | only with PC fixed hardware, which requires it: no waking vector, no global lock owner |
//! | DSDT | 2 | with PC fixed hardware, `_S5` (soft off, [`S5_AML`]); the virtio-mmio devices ([`VirtioMmioWindow`], `LNRO0005`, [`virtio_device_aml`]) |
//! | MADT | 5 | one local APIC per CPU (APIC IDs 0..n), the I/O APIC at GSI 0, ISA IRQ 0 on GSI 2, the SCI's override, NMI on every LINT1 |
//!
//! Every table's bytes sum to 0 mod 256 (the RSDP's first 20 bytes and
//! all 36 of them), and each starts 16-byte aligned (the FACS 64-byte
//! aligned, as it must be). The RSDP at offset 0 is found both through
//! `boot_params.acpi_rsdp_addr` and, with the blob inside
//! 0xE0000..0x100000 as `linux` places it, by the legacy scan of older
//! kernels.
//!
//! # Fixed hardware
//!
//! A PC FADT ([`FixedHardware::Pc`]) describes ACPI's fixed registers:
//! the PM1a event block (4 bytes: status, enable) and control block (2
//! bytes), the optional PM timer (24 bits, 3.579545 MHz), and the SCI on
//! an ISA IRQ (level-triggered, active high: the I/O APIC's inputs are
//! electrical levels, idle low). The VMM must then emulate those
//! ports: a Linux that finds them missing fails to start its ACPI
//! interpreter (it still uses the MADT). With no SMI command port, the
//! platform is always in ACPI mode. A hardware-reduced FADT
//! ([`FixedHardware::Reduced`]) has none of them; Linux then also
//! treats the platform as having no 8259A and sets up no PIT or HPET
//! timer, so it suits a platform with neither.
//!
//! # Sleep states
//!
//! With PC fixed hardware the DSDT declares one sleep state, `_S5` (soft
//! off), so that Linux powers the guest off through ACPI: it writes
//! [`S5_SLEEP_TYPE`] into PM1 control's SLP_TYP with SLP_EN
//! (`platform::acpi_pm`). There is no `_S1`..`_S4`, so Linux offers no
//! suspend. A hardware-reduced platform would need a sleep control
//! register for `_S5` to mean anything; it has none, and no `_S5`.

/// The most bytes [`build`] produces: enough for [`MAX_CPUS`].
pub const MAX_TABLES_BYTES: usize = 4096;
/// Where the RSDP is in the blob.
pub const RSDP_OFFSET: u64 = 0;
/// The most processors: xAPIC IDs 0..=254 (0xFF is the broadcast ID).
pub const MAX_CPUS: u16 = 255;
/// The local APICs' address (the platform's).
pub const LOCAL_APIC_ADDRESS: u32 = 0xfee0_0000;
/// The I/O APIC's address (the platform's).
pub const IO_APIC_ADDRESS: u32 = 0xfec0_0000;
/// The I/O APIC's inputs (the platform's).
pub const IO_APIC_INPUTS: u8 = 24;
/// The PM registers of the PC platform's default shape: ICH9's layout
/// (PM1a event at 0x600, control at 0x604, timer at 0x608) and the SCI
/// on IRQ 9, as PC chipsets have it.
pub const PC_PM_REGISTERS: PmRegisters =
    PmRegisters { event_port: 0x600, control_port: 0x604, timer_port: Some(0x608), sci_irq: 9 };

/// The sleep type (SLP_TYPa and SLP_TYPb) the DSDT's `_S5` declares: the
/// value Linux writes into PM1 control's SLP_TYP, with SLP_EN, to power
/// off (`platform::acpi_pm` acts on it).
pub const S5_SLEEP_TYPE: u8 = 5;

/// AML opcodes and prefixes the DSDT uses (ACPI 6.4, section 20.2).
pub mod aml {
    /// ZeroOp: the integer 0.
    pub const ZERO_OP: u8 = 0x00;
    /// OneOp: the integer 1.
    pub const ONE_OP: u8 = 0x01;
    /// NameOp: `Name (NameString, DataRefObject)`.
    pub const NAME_OP: u8 = 0x08;
    /// BytePrefix: an 8-bit integer follows.
    pub const BYTE_PREFIX: u8 = 0x0a;
    /// PackageOp: `PkgLength NumElements PackageElementList`.
    pub const PACKAGE_OP: u8 = 0x12;
    /// StringPrefix: a NUL-terminated ASCII string follows.
    pub const STRING_PREFIX: u8 = 0x0d;
    /// ScopeOp: `PkgLength NameString TermList`.
    pub const SCOPE_OP: u8 = 0x10;
    /// BufferOp: `PkgLength BufferSize ByteList`.
    pub const BUFFER_OP: u8 = 0x11;
    /// ExtOpPrefix: the next byte is an extended opcode.
    pub const EXT_OP_PREFIX: u8 = 0x5b;
    /// DeviceOp (after ExtOpPrefix): `PkgLength NameString TermList`.
    pub const DEVICE_OP: u8 = 0x82;
    /// RootChar: a name path from the namespace's root.
    pub const ROOT_CHAR: u8 = 0x5c;
    /// The largest PkgLength the one-byte encoding holds (bits 5..0 of
    /// the lead byte, bits 7..6 zero: no bytes follow).
    pub const ONE_BYTE_PKG_LENGTH_MAX: usize = 63;
}

/// The body of `_S5`'s package: NumElements, then SLP_TYPa, SLP_TYPb and
/// two reserved zeros.
const S5_PACKAGE_BODY: [u8; 7] =
    [4, aml::BYTE_PREFIX, S5_SLEEP_TYPE, aml::BYTE_PREFIX, S5_SLEEP_TYPE, aml::ZERO_OP, aml::ZERO_OP];
/// `_S5`'s PkgLength: it counts the body and the PkgLength byte itself;
/// below 64, one byte encodes it (bits 7..6 zero).
const S5_PKG_LENGTH: u8 = 8;
const _: () = assert!(S5_PKG_LENGTH as usize == S5_PACKAGE_BODY.len() + 1);
const _: () = assert!(S5_PKG_LENGTH as usize <= aml::ONE_BYTE_PKG_LENGTH_MAX);

/// How many bytes [`S5_AML`] has: NameOp, the name, PackageOp and the
/// package.
pub const S5_AML_BYTES: usize = 1 + 4 + 1 + S5_PKG_LENGTH as usize;

/// `Name (_S5, Package () { 5, 5, 0, 0 })` ([`S5_SLEEP_TYPE`]) in AML, as
/// the DSDT of a PC carries it at the root: NameOp, the NameSeg `_S5_`,
/// PackageOp, a one-byte PkgLength (8), NumElements (4), two BytePrefix
/// values and two ZeroOps.
pub const S5_AML: [u8; S5_AML_BYTES] = s5_aml();

const fn s5_aml() -> [u8; S5_AML_BYTES] {
    let mut bytes = [0; S5_AML_BYTES];
    let head = [aml::NAME_OP, b'_', b'S', b'5', b'_', aml::PACKAGE_OP, S5_PKG_LENGTH];
    let mut index = 0;
    while index < head.len() {
        bytes[index] = head[index];
        index += 1;
    }
    let mut body = 0;
    while body < S5_PACKAGE_BODY.len() {
        bytes[head.len() + body] = S5_PACKAGE_BODY[body];
        body += 1;
    }
    bytes
}

/// ACPI's fixed-hardware registers of a PC, all in I/O space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PmRegisters {
    /// PM1a_EVT_BLK: PM1 status (2 bytes) then PM1 enable (2 bytes).
    pub event_port: u16,
    /// PM1a_CNT_BLK: PM1 control (2 bytes).
    pub control_port: u16,
    /// PM_TMR_BLK: the 24-bit PM timer (4 bytes), if the platform has one.
    pub timer_port: Option<u16>,
    /// The ISA IRQ the SCI is wired to (level, active high): one whose
    /// 8259A ELCR bit exists (3..=7, 9..=12, 14, 15).
    pub sci_irq: u8,
}

/// Which fixed hardware the FADT describes (module documentation,
/// "Fixed hardware").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FixedHardware {
    /// HW_REDUCED_ACPI: no fixed registers, no SCI, no FACS.
    Reduced,
    /// A PC's PM registers and SCI, with a FACS.
    Pc(PmRegisters),
}

/// The platform the tables describe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlatformShape {
    /// How many processors: APIC IDs and ACPI processor UIDs 0..cpus.
    pub cpus: u16,
    /// The local APICs' address.
    pub local_apic_address: u32,
    /// The I/O APIC's address.
    pub io_apic_address: u32,
    /// The I/O APIC's ID.
    pub io_apic_id: u8,
    /// The I/O APIC's inputs: GSIs 0..inputs.
    pub io_apic_inputs: u8,
    /// Whether the dual 8259A PICs are there (the MADT's PCAT_COMPAT).
    pub dual_8259: bool,
    /// The FADT's fixed hardware.
    pub fixed_hardware: FixedHardware,
    /// The virtio-mmio devices the DSDT declares (`LNRO0005` under
    /// `\_SB`), in order; the first `None` ends the list.
    /// (The length is written out: a named constant here makes rustc
    /// 1.95 fail with an internal error on struct updates in closures.)
    pub virtio_mmio: [Option<VirtioMmioWindow>; 8],
}

const _: () = assert!(MAX_VIRTIO_MMIO == 8);

/// How many virtio-mmio devices a DSDT declares at most.
pub const MAX_VIRTIO_MMIO: usize = 8;

/// One virtio-mmio device: its register window and its interrupt, an ISA
/// IRQ (GSI of the same number) driven as a level, active high.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VirtioMmioWindow {
    /// The window's guest-physical base (4 KiB aligned, below 4 GiB).
    pub base: u32,
    /// The window's bytes (the registers and the config space: 0x200 at
    /// least).
    pub bytes: u32,
    /// The interrupt's GSI.
    pub irq: u8,
}

impl PlatformShape {
    /// The same platform with the virtio-mmio device `window` declared
    /// after the ones it has; unchanged if it has [`MAX_VIRTIO_MMIO`].
    #[must_use]
    pub const fn with_virtio_mmio(mut self, window: VirtioMmioWindow) -> PlatformShape {
        let mut index = 0;
        while index < MAX_VIRTIO_MMIO {
            if self.virtio_mmio[index].is_none() {
                self.virtio_mmio[index] = Some(window);
                return self;
            }
            index += 1;
        }
        self
    }

    /// The emulated PC (`crate::platform`) with `cpus` processors: the
    /// local APICs at 0xFEE0_0000, a 24-input I/O APIC at 0xFEC0_0000
    /// with ID 0 (its ID register's reset value), the 8259A pair, and
    /// [`PC_PM_REGISTERS`].
    #[must_use]
    pub const fn pc(cpus: u16) -> PlatformShape {
        PlatformShape {
            cpus,
            local_apic_address: LOCAL_APIC_ADDRESS,
            io_apic_address: IO_APIC_ADDRESS,
            io_apic_id: 0,
            io_apic_inputs: IO_APIC_INPUTS,
            dual_8259: true,
            fixed_hardware: FixedHardware::Pc(PC_PM_REGISTERS),
            virtio_mmio: [None; MAX_VIRTIO_MMIO],
        }
    }
}

/// Why a platform's tables cannot be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcpiError {
    /// No processors, or more than [`MAX_CPUS`].
    CpuCount {
        /// The count asked for.
        cpus: u16,
    },
    /// The I/O APIC's ID does not fit its four-bit ID register.
    IoApicId {
        /// The ID.
        id: u8,
    },
    /// The I/O APIC has fewer than the 16 inputs the ISA IRQs need.
    IoApicInputs {
        /// The inputs.
        inputs: u8,
    },
    /// The SCI is not an ISA IRQ the 8259A's ELCR can make
    /// level-triggered (3..=7, 9..=12, 14, 15).
    SciIrq {
        /// The IRQ.
        irq: u8,
    },
    /// A PM register block runs past port 0xFFFF.
    PortBlock {
        /// The block's first port.
        port: u16,
    },
    /// The blob's address is not 16-byte aligned (the RSDP must be).
    Misaligned {
        /// The address.
        at: u64,
    },
    /// The blob would not end below 4 GiB (the FADT's DSDT and FACS
    /// fields are 32-bit).
    Above4GiB {
        /// The address.
        at: u64,
    },
}

/// OEM ID of every table.
const OEM_ID: [u8; 6] = *b"BLKHED";
/// OEM table ID of every table.
const OEM_TABLE_ID: [u8; 8] = *b"BULKHEAD";
/// OEM revision of every table.
const OEM_REVISION: u32 = 1;
/// Creator ID of every table.
const CREATOR_ID: [u8; 4] = *b"BLKH";
/// Creator revision of every table.
const CREATOR_REVISION: u32 = 1;

/// A table header's bytes.
pub const HEADER_BYTES: usize = 36;
/// The RSDP's bytes (revision 2).
pub const RSDP_BYTES: usize = 36;
/// The RSDP's bytes its first checksum covers (the revision-0 part).
pub const RSDP_V1_BYTES: usize = 20;
/// The FADT's bytes (ACPI 6.0 and later).
pub const FADT_BYTES: usize = 276;
/// The FACS's bytes.
pub const FACS_BYTES: usize = 64;
/// The MADT's fixed part: header, local APIC address, flags.
pub const MADT_FIXED_BYTES: usize = 44;

/// The reset control register's port (the FADT's RESET_REG).
pub const RESET_CONTROL_PORT: u16 = 0xcf9;
/// The FADT's RESET_VALUE: SYS_RST and RST_CPU, a hard reset.
pub const RESET_VALUE: u8 = 0x06;

/// FADT `Flags` bits.
pub mod fadt_flags {
    /// WBINVD works.
    pub const WBINVD: u32 = 1 << 0;
    /// C1 (HLT) works on every processor.
    pub const PROC_C1: u32 = 1 << 2;
    /// The power button is not a fixed feature.
    pub const PWR_BUTTON: u32 = 1 << 4;
    /// The sleep button is not a fixed feature.
    pub const SLP_BUTTON: u32 = 1 << 5;
    /// The PM timer is 32 bits (clear: 24).
    pub const TMR_VAL_EXT: u32 = 1 << 8;
    /// RESET_REG resets the machine.
    pub const RESET_REG_SUP: u32 = 1 << 10;
    /// There is no fixed hardware.
    pub const HW_REDUCED_ACPI: u32 = 1 << 20;
}

/// FADT `IAPC_BOOT_ARCH` bits.
pub mod boot_arch {
    /// Legacy devices (PIT, RTC, ...) on the LPC or ISA bus.
    pub const LEGACY_DEVICES: u16 = 1 << 0;
    /// An 8042 keyboard controller.
    pub const I8042: u16 = 1 << 1;
    /// No VGA: the OS must not probe it.
    pub const VGA_NOT_PRESENT: u16 = 1 << 2;
}

/// MADT entry types.
mod madt_entry {
    /// A processor's local APIC (8 bytes).
    pub(super) const LOCAL_APIC: u8 = 0;
    /// An I/O APIC (12 bytes).
    pub(super) const IO_APIC: u8 = 1;
    /// An interrupt source override (10 bytes).
    pub(super) const SOURCE_OVERRIDE: u8 = 2;
    /// A local APIC's NMI input (6 bytes).
    pub(super) const LOCAL_APIC_NMI: u8 = 4;
}

/// MPS INTI flags: polarity in bits 0..2, trigger mode in bits 2..4.
pub mod inti {
    /// Active high, edge-triggered.
    pub const EDGE_HIGH: u16 = 0b01 | 0b01 << 2;
    /// Active high, level-triggered: the SCI as the VMM drives it (the
    /// I/O APIC's inputs are electrical levels, idle low, so an
    /// active-low declaration would read as asserted from reset).
    pub const LEVEL_HIGH: u16 = 0b01 | 0b11 << 2;
}

/// The CMOS byte holding the century, for the FADT's CENTURY field.
const CMOS_CENTURY: u8 = 0x32;

/// The I/O address space in a Generic Address Structure.
const SYSTEM_IO: u8 = 1;

/// The blob's tables: each one's offset and length.
struct Layout {
    xsdt: usize,
    fadt: usize,
    facs: Option<usize>,
    dsdt: usize,
    dsdt_bytes: usize,
    madt: usize,
    madt_bytes: usize,
    total: usize,
}

const fn align_up(value: usize, alignment: usize) -> usize {
    value.div_ceil(alignment) * alignment
}

/// The XSDT's bytes: the header and two pointers (FADT, MADT).
const XSDT_BYTES: usize = HEADER_BYTES + 2 * 8;

fn layout(platform: &PlatformShape, at: u64) -> Layout {
    let xsdt = align_up(RSDP_BYTES, 16);
    let fadt = align_up(xsdt + XSDT_BYTES, 16);
    let after_fadt = fadt + FADT_BYTES;
    let facs = match platform.fixed_hardware {
        FixedHardware::Reduced => None,
        FixedHardware::Pc(_) => {
            // 64-byte aligned in guest-physical terms; `at` is 16-byte
            // aligned, so the padding is under 64.
            let misalignment = usize::try_from((at.wrapping_add(after_fadt as u64)) % 64).unwrap_or(0);
            Some(after_fadt + (64 - misalignment) % 64)
        }
    };
    let dsdt = align_up(facs.map_or(after_fadt, |facs| facs + FACS_BYTES), 16);
    let dsdt_bytes = HEADER_BYTES + dsdt_aml(platform).len();
    let madt = align_up(dsdt + dsdt_bytes, 16);
    let overrides = if matches!(platform.fixed_hardware, FixedHardware::Pc(_)) { 2 } else { 1 };
    let madt_bytes = MADT_FIXED_BYTES + 8 * usize::from(platform.cpus) + 12 + 10 * overrides + 6;
    Layout { xsdt, fadt, facs, dsdt, dsdt_bytes, madt, madt_bytes, total: madt + madt_bytes }
}

/// The DSDT's AML (module documentation, "Sleep states" and "Devices"):
/// `_S5` with PC fixed hardware, then the virtio-mmio devices in a
/// `\_SB` scope.
fn dsdt_aml(platform: &PlatformShape) -> heapless::Vec<u8, MAX_DSDT_AML_BYTES> {
    let mut bytes = heapless::Vec::new();
    if let FixedHardware::Pc(_) = platform.fixed_hardware {
        let _ = bytes.extend_from_slice(&S5_AML);
    }
    let mut devices: heapless::Vec<u8, { MAX_VIRTIO_MMIO * VIRTIO_DEVICE_AML_BYTES }> = heapless::Vec::new();
    for (index, window) in (0_u8..).zip(platform.virtio_mmio.iter().map_while(|window| *window)) {
        let _ = devices.extend_from_slice(&virtio_device_aml(index, window));
    }
    if !devices.is_empty() {
        // ScopeOp PkgLength `\_SB_` devices: a two-byte PkgLength (the
        // body is more than 63 bytes and less than 4,096).
        let length = 2 + 5 + devices.len();
        let _ = bytes.extend_from_slice(&[aml::SCOPE_OP]);
        let _ = bytes.extend_from_slice(&two_byte_pkg_length(length));
        let _ = bytes.extend_from_slice(&[aml::ROOT_CHAR, b'_', b'S', b'B', b'_']);
        let _ = bytes.extend_from_slice(&devices);
    }
    bytes
}

/// The most AML bytes a DSDT body holds.
const MAX_DSDT_AML_BYTES: usize = S5_AML_BYTES + 3 + 5 + MAX_VIRTIO_MMIO * VIRTIO_DEVICE_AML_BYTES;
const _: () = assert!(3 + 5 + MAX_VIRTIO_MMIO * VIRTIO_DEVICE_AML_BYTES < 4096);

/// A PkgLength of `length` (at most 4,095) in two bytes: the lead byte's
/// bits 7..6 say one byte follows, bits 3..0 are the length's low
/// nibble, the next byte its bits 11..4.
fn two_byte_pkg_length(length: usize) -> [u8; 2] {
    let [low, high, ..] = (length & 0xfff).to_le_bytes();
    [0x40 | (low & 0xf), low >> 4 | high << 4]
}

/// The bytes of one virtio-mmio device's AML.
pub const VIRTIO_DEVICE_AML_BYTES: usize = 61;
/// Its DeviceOp's PkgLength: everything after the two opcode bytes.
const DEVICE_PKG_LENGTH: u8 = 59;
const _: () = assert!(DEVICE_PKG_LENGTH as usize == VIRTIO_DEVICE_AML_BYTES - 2);

/// `Device (VRnn) { Name (_HID, "LNRO0005") Name (_UID, n) Name (_CRS,
/// ResourceTemplate () { Memory32Fixed (ReadWrite, base, bytes)
/// Interrupt (ResourceConsumer, Level, ActiveHigh, Exclusive) { irq }
/// }) }`: the name Linux's virtio_mmio driver matches (its ACPI ID), the
/// window and the interrupt (`nn` is the index in hexadecimal).
#[must_use]
pub fn virtio_device_aml(index: u8, window: VirtioMmioWindow) -> [u8; VIRTIO_DEVICE_AML_BYTES] {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut bytes = [0; VIRTIO_DEVICE_AML_BYTES];
    let mut at = 0;
    let mut put = |piece: &[u8]| {
        for byte in piece {
            if let Some(slot) = bytes.get_mut(at) {
                *slot = *byte;
            }
            at += 1;
        }
    };
    // DeviceOp, PkgLength (the body and itself: 59), the name.
    let name = [b'V', b'R', HEX[usize::from(index >> 4)], HEX[usize::from(index & 0xf)]];
    put(&[aml::EXT_OP_PREFIX, aml::DEVICE_OP, DEVICE_PKG_LENGTH]);
    put(&name);
    // Name (_HID, "LNRO0005")
    put(&[aml::NAME_OP, b'_', b'H', b'I', b'D', aml::STRING_PREFIX]);
    put(b"LNRO0005\0");
    // Name (_UID, index)
    put(&[aml::NAME_OP, b'_', b'U', b'I', b'D', aml::BYTE_PREFIX, index]);
    // Name (_CRS, Buffer (23) { ... })
    put(&[aml::NAME_OP, b'_', b'C', b'R', b'S', aml::BUFFER_OP, 26, aml::BYTE_PREFIX, 23]);
    // Memory32Fixed: large item 0x86, length 9, read-write.
    put(&[0x86, 0x09, 0x00, 0x01]);
    put(&window.base.to_le_bytes());
    put(&window.bytes.to_le_bytes());
    // Extended interrupt: large item 0x89, length 6, consumer, level,
    // active high, exclusive; one interrupt.
    put(&[0x89, 0x06, 0x00, 0x01, 0x01]);
    put(&u32::from(window.irq).to_le_bytes());
    // End tag, checksum 0 (none).
    put(&[0x79, 0x00]);
    bytes
}

fn check(platform: &PlatformShape, at: u64) -> Result<(), AcpiError> {
    if platform.cpus == 0 || platform.cpus > MAX_CPUS {
        return Err(AcpiError::CpuCount { cpus: platform.cpus });
    }
    // The I/O APIC's ID register holds four bits (`platform::ioapic`).
    if platform.io_apic_id > 0xf {
        return Err(AcpiError::IoApicId { id: platform.io_apic_id });
    }
    if platform.io_apic_inputs < 16 {
        return Err(AcpiError::IoApicInputs { inputs: platform.io_apic_inputs });
    }
    if let FixedHardware::Pc(registers) = platform.fixed_hardware {
        // A level SCI on the 8259A needs a line its ELCR can make
        // level-triggered (`platform::pic`): not 0, 1, 2, 8 or 13.
        if !matches!(registers.sci_irq, 3..=7 | 9..=12 | 14 | 15) {
            return Err(AcpiError::SciIrq { irq: registers.sci_irq });
        }
        let blocks = [(registers.event_port, 4), (registers.control_port, 2)];
        for (port, bytes) in blocks.into_iter().chain(registers.timer_port.map(|port| (port, 4))) {
            if port == 0 || port.checked_add(bytes - 1).is_none() {
                return Err(AcpiError::PortBlock { port });
            }
        }
    }
    if !at.is_multiple_of(16) {
        return Err(AcpiError::Misaligned { at });
    }
    Ok(())
}

/// Builds the tables of `platform` for the guest-physical address `at`
/// (RSDP at [`RSDP_OFFSET`]).
///
/// # Errors
///
/// [`AcpiError`]: what about the platform or the address the tables
/// cannot express.
pub fn build(platform: &PlatformShape, at: u64) -> Result<heapless::Vec<u8, MAX_TABLES_BYTES>, AcpiError> {
    check(platform, at)?;
    let layout = layout(platform, at);
    if at.checked_add(layout.total as u64).is_none_or(|end| end > u64::from(u32::MAX)) {
        return Err(AcpiError::Above4GiB { at });
    }
    // Below 4 GiB, so every address in the blob fits 32 bits.
    let address32 = |offset: usize| u32::try_from(at + offset as u64).unwrap_or(u32::MAX);

    let mut blob = Blob::default();
    if blob.0.resize(layout.total, 0).is_err() {
        // MAX_CPUS' tables fit MAX_TABLES_BYTES (a test checks).
        return Err(AcpiError::CpuCount { cpus: platform.cpus });
    }

    // RSDP.
    blob.put(0, b"RSD PTR ");
    blob.put(9, &OEM_ID);
    blob.put(15, &[2]);
    blob.put(20, &u32::try_from(RSDP_BYTES).unwrap_or(0).to_le_bytes());
    blob.put(24, &(at + layout.xsdt as u64).to_le_bytes());
    blob.checksum(0, RSDP_V1_BYTES, 8);
    blob.checksum(0, RSDP_BYTES, 32);

    // XSDT.
    blob.header(layout.xsdt, *b"XSDT", XSDT_BYTES, 1);
    blob.put(layout.xsdt + HEADER_BYTES, &(at + layout.fadt as u64).to_le_bytes());
    blob.put(layout.xsdt + HEADER_BYTES + 8, &(at + layout.madt as u64).to_le_bytes());
    blob.checksum(layout.xsdt, XSDT_BYTES, 9);

    build_fadt(&mut blob, platform, &layout, address32);

    if let Some(facs) = layout.facs {
        blob.put(facs, b"FACS");
        blob.put(facs + 4, &u32::try_from(FACS_BYTES).unwrap_or(0).to_le_bytes());
        // Version 2 (ACPI 4.0 on); everything else zero: no hardware
        // signature, no waking vector, no global lock owner.
        blob.put(facs + 32, &[2]);
    }

    // DSDT: revision 2, for 64-bit AML integers; `_S5` with PC fixed
    // hardware.
    blob.header(layout.dsdt, *b"DSDT", layout.dsdt_bytes, 2);
    blob.put(layout.dsdt + HEADER_BYTES, &dsdt_aml(platform));
    blob.checksum(layout.dsdt, layout.dsdt_bytes, 9);

    build_madt(&mut blob, platform, &layout);
    Ok(blob.0)
}

fn build_fadt(blob: &mut Blob, platform: &PlatformShape, layout: &Layout, address32: impl Fn(usize) -> u32) {
    let fadt = layout.fadt;
    blob.header(fadt, *b"FACP", FADT_BYTES, 6);
    // Only one of FIRMWARE_CTRL and X_FIRMWARE_CTRL may be set: the
    // 32-bit one, the FACS being below 4 GiB.
    if let Some(facs) = layout.facs {
        blob.put(fadt + 36, &address32(facs).to_le_bytes());
    }
    blob.put(fadt + 40, &address32(layout.dsdt).to_le_bytes());
    blob.put(fadt + 140, &u64::from(address32(layout.dsdt)).to_le_bytes());
    // FADT minor version: 6.4.
    blob.put(fadt + 131, &[4]);
    let mut flags = fadt_flags::WBINVD | fadt_flags::PROC_C1 | fadt_flags::SLP_BUTTON;
    let mut arch = boot_arch::VGA_NOT_PRESENT;
    match platform.fixed_hardware {
        // No fixed power button without fixed hardware.
        FixedHardware::Reduced => flags |= fadt_flags::HW_REDUCED_ACPI | fadt_flags::PWR_BUTTON,
        FixedHardware::Pc(registers) => {
            arch |= boot_arch::LEGACY_DEVICES;
            blob.put(fadt + 46, &u16::from(registers.sci_irq).to_le_bytes());
            // SMI_CMD stays 0: no mode switch, always in ACPI mode.
            let blocks = [
                (56, 88, 148, Some(registers.event_port), 4, 2),
                (64, 89, 172, Some(registers.control_port), 2, 2),
                (76, 91, 208, registers.timer_port, 4, 3),
            ];
            for (field, length_field, extended_field, port, bytes, access_size) in blocks {
                let Some(port) = port else { continue };
                blob.put(fadt + field, &u32::from(port).to_le_bytes());
                blob.put(fadt + length_field, &[bytes]);
                blob.put(fadt + extended_field, &[SYSTEM_IO, bytes * 8, 0, access_size]);
                blob.put(fadt + extended_field + 4, &u64::from(port).to_le_bytes());
            }
        }
    }
    if matches!(platform.fixed_hardware, FixedHardware::Pc(_)) {
        // No C2 or C3: a latency above 100 (C2) or 1,000 (C3)
        // microseconds says the state is not supported.
        blob.put(fadt + 96, &101u16.to_le_bytes());
        blob.put(fadt + 98, &1001u16.to_le_bytes());
        // The RTC keeps the century in CMOS byte 0x32 (`platform::rtc`).
        blob.put(fadt + 108, &[CMOS_CENTURY]);
        // RESET_REG: the reset control register (`platform::pc`), a byte in
        // I/O space; RESET_VALUE: a hard reset (SYS_RST | RST_CPU).
        blob.put(fadt + 116, &[SYSTEM_IO, 8, 0, 1]);
        blob.put(fadt + 120, &u64::from(RESET_CONTROL_PORT).to_le_bytes());
        blob.put(fadt + 128, &[RESET_VALUE]);
        flags |= fadt_flags::RESET_REG_SUP;
    }
    blob.put(fadt + 109, &arch.to_le_bytes());
    blob.put(fadt + 112, &flags.to_le_bytes());
    blob.checksum(fadt, FADT_BYTES, 9);
}

fn build_madt(blob: &mut Blob, platform: &PlatformShape, layout: &Layout) {
    let madt = layout.madt;
    blob.header(madt, *b"APIC", layout.madt_bytes, 5);
    blob.put(madt + 36, &platform.local_apic_address.to_le_bytes());
    blob.put(madt + 40, &u32::from(platform.dual_8259).to_le_bytes());
    let mut next = madt + MADT_FIXED_BYTES;
    for cpu in 0..platform.cpus {
        // `check` kept cpus at most 255: the ID fits a byte.
        let id = u8::try_from(cpu).unwrap_or(u8::MAX);
        blob.put(next, &[madt_entry::LOCAL_APIC, 8, id, id, 1, 0, 0, 0]);
        next += 8;
    }
    blob.put(next, &[madt_entry::IO_APIC, 12, platform.io_apic_id, 0]);
    blob.put(next + 4, &platform.io_apic_address.to_le_bytes());
    blob.put(next + 8, &0u32.to_le_bytes());
    next += 12;
    let mut source_override = |irq: u8, gsi: u32, flags: u16| {
        blob.put(next, &[madt_entry::SOURCE_OVERRIDE, 10, 0, irq]);
        blob.put(next + 4, &gsi.to_le_bytes());
        blob.put(next + 8, &flags.to_le_bytes());
        next += 10;
    };
    // The PIT's IRQ 0 is the I/O APIC's input 2, as on every PC.
    source_override(0, 2, inti::EDGE_HIGH);
    if let FixedHardware::Pc(registers) = platform.fixed_hardware {
        source_override(registers.sci_irq, u32::from(registers.sci_irq), inti::LEVEL_HIGH);
    }
    // LINT1 of every processor (UID 0xFF) is NMI, edge, active high.
    blob.put(next, &[madt_entry::LOCAL_APIC_NMI, 6, 0xff]);
    blob.put(next + 3, &inti::EDGE_HIGH.to_le_bytes());
    blob.put(next + 5, &[1]);
    blob.checksum(madt, layout.madt_bytes, 9);
}

/// The blob being built, every offset checked.
#[derive(Default)]
struct Blob(heapless::Vec<u8, MAX_TABLES_BYTES>);

impl Blob {
    /// Copies `bytes` to `offset` (the layout keeps every piece inside the
    /// blob; one that is not is dropped rather than panicking).
    fn put(&mut self, offset: usize, bytes: &[u8]) {
        if let Some(to) = self.0.get_mut(offset..).and_then(|rest| rest.get_mut(..bytes.len())) {
            to.copy_from_slice(bytes);
        }
    }

    /// Writes a table header at `offset` with a zero checksum.
    fn header(&mut self, offset: usize, signature: [u8; 4], length: usize, revision: u8) {
        self.put(offset, &signature);
        self.put(offset + 4, &u32::try_from(length).unwrap_or(u32::MAX).to_le_bytes());
        self.put(offset + 8, &[revision, 0]);
        self.put(offset + 10, &OEM_ID);
        self.put(offset + 16, &OEM_TABLE_ID);
        self.put(offset + 24, &OEM_REVISION.to_le_bytes());
        self.put(offset + 28, &CREATOR_ID);
        self.put(offset + 32, &CREATOR_REVISION.to_le_bytes());
    }

    /// Sets the byte at `offset + field` so that the `length` bytes from
    /// `offset` sum to zero.
    fn checksum(&mut self, offset: usize, length: usize, field: usize) {
        self.put(offset + field, &[0]);
        let bytes = self.0.get(offset..).and_then(|rest| rest.get(..length)).unwrap_or(&[]);
        let sum = bytes.iter().fold(0u8, |sum, byte| sum.wrapping_add(*byte));
        self.put(offset + field, &[sum.wrapping_neg()]);
    }
}

#[cfg(test)]
mod tests {
    use std::vec;
    use std::vec::Vec;

    use proptest::prelude::*;

    use super::*;

    const AT: u64 = 0xe_0000;

    fn u16_at(bytes: &[u8], at: usize) -> u16 {
        u16::from_le_bytes(bytes[at..at + 2].try_into().unwrap())
    }

    fn u32_at(bytes: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
    }

    fn u64_at(bytes: &[u8], at: usize) -> u64 {
        u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
    }

    fn sums_to_zero(bytes: &[u8]) -> bool {
        bytes.iter().fold(0u8, |sum, byte| sum.wrapping_add(*byte)) == 0
    }

    /// The tables as a guest finds them, parsed back from the blob.
    struct Parsed<'b> {
        blob: &'b [u8],
        at: u64,
    }

    impl<'b> Parsed<'b> {
        /// The blob offset of guest-physical `address`.
        fn offset(&self, address: u64) -> usize {
            usize::try_from(address - self.at).unwrap()
        }

        /// The table at `address`, checked: signature, length inside the
        /// blob, checksum, the common header fields.
        fn table(&self, address: u64, signature: &[u8; 4]) -> &'b [u8] {
            let offset = self.offset(address);
            assert_eq!(offset % 16, 0, "{} aligned", std::str::from_utf8(signature).unwrap());
            let header = &self.blob[offset..offset + HEADER_BYTES];
            assert_eq!(&header[..4], signature);
            let length = u32_at(header, 4) as usize;
            let table = &self.blob[offset..offset + length];
            assert!(sums_to_zero(table), "{} checksum", std::str::from_utf8(signature).unwrap());
            assert_eq!(&table[10..16], b"BLKHED");
            assert_eq!(&table[16..24], b"BULKHEAD");
            assert_eq!(&table[28..32], b"BLKH");
            table
        }

        fn rsdp(&self) -> &'b [u8] {
            let rsdp = &self.blob[..RSDP_BYTES];
            assert_eq!(&rsdp[..8], b"RSD PTR ");
            assert!(sums_to_zero(&rsdp[..RSDP_V1_BYTES]), "RSDP checksum");
            assert!(sums_to_zero(rsdp), "RSDP extended checksum");
            assert_eq!(rsdp[15], 2, "revision");
            assert_eq!(u32_at(rsdp, 16), 0, "no RSDT");
            assert_eq!(u32_at(rsdp, 20), 36, "length");
            rsdp
        }

        /// The XSDT's pointers.
        fn xsdt(&self) -> Vec<u64> {
            let xsdt = self.table(u64_at(self.rsdp(), 24), b"XSDT");
            assert_eq!(xsdt[8], 1, "revision");
            assert_eq!((xsdt.len() - HEADER_BYTES) % 8, 0);
            xsdt[HEADER_BYTES..]
                .chunks_exact(8)
                .map(|pointer| u64::from_le_bytes(pointer.try_into().unwrap()))
                .collect()
        }

        fn fadt(&self) -> &'b [u8] {
            let fadt = self.table(self.xsdt()[0], b"FACP");
            assert_eq!(fadt.len(), 276);
            assert_eq!((fadt[8], fadt[131]), (6, 4), "revision 6.4");
            fadt
        }

        /// The DSDT's AML, the table checked: revision 2, and nothing
        /// after the AML's objects.
        fn dsdt(&self) -> Vec<AmlName> {
            let fadt = self.fadt();
            let x_dsdt = u64_at(fadt, 140);
            assert_eq!(u64::from(u32_at(fadt, 40)), x_dsdt);
            let dsdt = self.table(x_dsdt, b"DSDT");
            assert!(dsdt.len() >= HEADER_BYTES);
            assert_eq!(dsdt[8], 2);
            decode_term_list(&dsdt[HEADER_BYTES..])
        }

        fn madt(&self) -> &'b [u8] {
            let madt = self.table(self.xsdt()[1], b"APIC");
            assert_eq!(madt[8], 5);
            madt
        }
    }

    /// A `Name (NameSeg, Package () { integers })`, decoded from AML.
    #[derive(Debug, PartialEq, Eq)]
    struct AmlName {
        name: [u8; 4],
        package: Vec<u64>,
    }

    /// A PkgLength at the start of `bytes`: its value and how many bytes
    /// encode it. The lead byte's bits 7..6 count the bytes that follow;
    /// with none, bits 5..0 are the length, else bits 3..0 are its low
    /// nibble and each following byte the next eight bits.
    fn decode_pkg_length(bytes: &[u8]) -> (usize, usize) {
        let lead = bytes[0];
        let follow = usize::from(lead >> 6);
        if follow == 0 {
            return (usize::from(lead & 0x3f), 1);
        }
        assert_eq!(lead & 0x30, 0, "bits 5..4 of a multi-byte PkgLength are zero");
        let length = bytes[1..=follow]
            .iter()
            .enumerate()
            .fold(usize::from(lead & 0x0f), |length, (index, byte)| length | usize::from(*byte) << (4 + 8 * index));
        (length, 1 + follow)
    }

    /// A package element that is an integer constant, and its bytes.
    fn decode_integer(bytes: &[u8]) -> (u64, usize) {
        match bytes[0] {
            aml::ZERO_OP => (0, 1),
            aml::ONE_OP => (1, 1),
            0xff => (u64::MAX, 1),
            aml::BYTE_PREFIX => (u64::from(bytes[1]), 2),
            0x0b => (u64::from(u16_at(bytes, 1)), 3),
            0x0c => (u64::from(u32_at(bytes, 1)), 5),
            0x0e => (u64_at(bytes, 1), 9),
            other => panic!("not an integer constant: {other:#04x}"),
        }
    }

    /// A term list made only of `Name (NameSeg, Package)` objects: each
    /// decoded, every byte accounted for.
    fn decode_term_list(mut aml: &[u8]) -> Vec<AmlName> {
        let mut names = Vec::new();
        while !aml.is_empty() {
            assert_eq!(aml[0], aml::NAME_OP);
            let name: [u8; 4] = aml[1..5].try_into().unwrap();
            assert!(name.iter().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == b'_'));
            assert!(!name[0].is_ascii_digit(), "a NameSeg starts with a letter or _");
            assert_eq!(aml[5], aml::PACKAGE_OP);
            let (length, length_bytes) = decode_pkg_length(&aml[6..]);
            // The PkgLength counts itself and what follows it.
            let package = &aml[6..6 + length];
            let count = usize::from(package[length_bytes]);
            let mut elements = &package[length_bytes + 1..];
            let mut values = Vec::new();
            while !elements.is_empty() {
                let (value, bytes) = decode_integer(elements);
                values.push(value);
                elements = &elements[bytes..];
            }
            assert_eq!(values.len(), count, "NumElements");
            names.push(AmlName { name, package: values });
            aml = &aml[6 + length..];
        }
        names
    }

    /// A MADT entry, decoded.
    #[derive(Debug, PartialEq, Eq)]
    enum Entry {
        LocalApic { uid: u8, id: u8, flags: u32 },
        IoApic { id: u8, address: u32, gsi_base: u32 },
        Override { bus: u8, irq: u8, gsi: u32, flags: u16 },
        LocalApicNmi { uid: u8, flags: u16, lint: u8 },
    }

    fn entries(madt: &[u8]) -> Vec<Entry> {
        let mut entries = Vec::new();
        let mut rest = &madt[MADT_FIXED_BYTES..];
        while !rest.is_empty() {
            let (kind, length) = (rest[0], usize::from(rest[1]));
            let entry = &rest[..length];
            entries.push(match (kind, length) {
                (0, 8) => Entry::LocalApic { uid: entry[2], id: entry[3], flags: u32_at(entry, 4) },
                (1, 12) => Entry::IoApic { id: entry[2], address: u32_at(entry, 4), gsi_base: u32_at(entry, 8) },
                (2, 10) => {
                    Entry::Override { bus: entry[2], irq: entry[3], gsi: u32_at(entry, 4), flags: u16_at(entry, 8) }
                }
                (4, 6) => Entry::LocalApicNmi { uid: entry[2], flags: u16_at(entry, 3), lint: entry[5] },
                other => panic!("unexpected MADT entry {other:?}"),
            });
            rest = &rest[length..];
        }
        entries
    }

    #[test]
    fn the_pc_tables_parse_back() {
        let blob = build(&PlatformShape::pc(4), AT).unwrap();
        let parsed = Parsed { blob: &blob, at: AT };
        let pointers = parsed.xsdt();
        assert_eq!(pointers.len(), 2);

        let fadt = parsed.fadt();
        assert_eq!(u16_at(fadt, 46), 9, "SCI_INT");
        assert_eq!(u32_at(fadt, 48), 0, "SMI_CMD: always in ACPI mode");
        assert_eq!((u32_at(fadt, 56), fadt[88]), (0x600, 4), "PM1a_EVT_BLK");
        assert_eq!((u32_at(fadt, 64), fadt[89]), (0x604, 2), "PM1a_CNT_BLK");
        assert_eq!((u32_at(fadt, 76), fadt[91]), (0x608, 4), "PM_TMR_BLK");
        assert_eq!((u32_at(fadt, 60), u32_at(fadt, 68), u32_at(fadt, 72), u32_at(fadt, 80)), (0, 0, 0, 0));
        // The extended blocks say the same, as I/O-space GAS.
        assert_eq!((&fadt[148..152], u64_at(fadt, 152)), (&[1, 32, 0, 2][..], 0x600));
        assert_eq!((&fadt[172..176], u64_at(fadt, 176)), (&[1, 16, 0, 2][..], 0x604));
        assert_eq!((&fadt[208..212], u64_at(fadt, 212)), (&[1, 32, 0, 3][..], 0x608));
        let flags = u32_at(fadt, 112);
        assert_eq!(flags & fadt_flags::HW_REDUCED_ACPI, 0);
        // The power button is the fixed one (`platform::acpi_pm`'s
        // PWRBTN_STS), so Linux enables PWRBTN_EN.
        assert_eq!(flags & fadt_flags::PWR_BUTTON, 0);
        assert_eq!(flags & fadt_flags::TMR_VAL_EXT, 0, "24-bit PM timer");
        assert_ne!(flags & fadt_flags::WBINVD, 0);
        assert_eq!(u16_at(fadt, 109), boot_arch::LEGACY_DEVICES | boot_arch::VGA_NOT_PRESENT);
        assert_eq!(fadt[108], 0x32, "CENTURY: the RTC's CMOS byte");
        assert_eq!((u16_at(fadt, 96), u16_at(fadt, 98)), (101, 1001), "no C2, no C3");

        // The FACS: 64-byte aligned, through the 32-bit pointer only.
        let facs_address = u64::from(u32_at(fadt, 36));
        assert_eq!(u64_at(fadt, 132), 0, "X_FIRMWARE_CTRL");
        assert_eq!(facs_address % 64, 0);
        let facs = &blob[parsed.offset(facs_address)..][..64];
        assert_eq!(&facs[..4], b"FACS");
        assert_eq!(u32_at(facs, 4), 64);
        assert_eq!(facs[32], 2);

        assert_eq!(parsed.dsdt(), [AmlName { name: *b"_S5_", package: vec![5, 5, 0, 0] }]);

        let madt = parsed.madt();
        assert_eq!(u32_at(madt, 36), 0xfee0_0000);
        assert_eq!(u32_at(madt, 40), 1, "PCAT_COMPAT");
        assert_eq!(
            entries(madt),
            [
                Entry::LocalApic { uid: 0, id: 0, flags: 1 },
                Entry::LocalApic { uid: 1, id: 1, flags: 1 },
                Entry::LocalApic { uid: 2, id: 2, flags: 1 },
                Entry::LocalApic { uid: 3, id: 3, flags: 1 },
                Entry::IoApic { id: 0, address: 0xfec0_0000, gsi_base: 0 },
                Entry::Override { bus: 0, irq: 0, gsi: 2, flags: 0b0101 },
                Entry::Override { bus: 0, irq: 9, gsi: 9, flags: 0b1101 },
                Entry::LocalApicNmi { uid: 0xff, flags: 0b0101, lint: 1 },
            ]
        );
        // Nothing is left over after the last table.
        assert_eq!(parsed.offset(pointers[1]) + madt.len(), blob.len());
    }

    #[test]
    fn s5_is_the_aml_iasl_makes_for_it() {
        // Name (_S5, Package () { 0x05, 0x05, 0x00, 0x00 }): NameOp, "_S5_",
        // PackageOp, PkgLength 8 (itself, NumElements, 2 + 2 + 1 + 1),
        // NumElements 4, BytePrefix 5 twice, ZeroOp twice.
        assert_eq!(S5_AML, [0x08, 0x5f, 0x53, 0x35, 0x5f, 0x12, 0x08, 0x04, 0x0a, 0x05, 0x0a, 0x05, 0x00, 0x00]);
        assert_eq!(S5_AML_BYTES, 14);
        assert_eq!(decode_pkg_length(&S5_AML[6..]), (8, 1));
        assert_eq!(6 + 8, S5_AML.len(), "the package ends where the AML does");
        assert_eq!(
            decode_term_list(&S5_AML),
            [AmlName { name: *b"_S5_", package: vec![S5_SLEEP_TYPE.into(), S5_SLEEP_TYPE.into(), 0, 0] }]
        );
    }

    #[test]
    fn the_test_decoder_reads_every_pkg_length_encoding() {
        // The decoder the DSDT tests trust, on the spec's four forms.
        assert_eq!(decode_pkg_length(&[0x3f]), (63, 1));
        assert_eq!(decode_pkg_length(&[0x00]), (0, 1));
        assert_eq!(decode_pkg_length(&[0x40 | 0x0a, 0x12]), (0x12a, 2));
        assert_eq!(decode_pkg_length(&[0x80 | 0x01, 0x23, 0x45]), (0x45231, 3));
        assert_eq!(decode_pkg_length(&[0xc0 | 0x0f, 0xff, 0xff, 0xff]), ((1 << 28) - 1, 4));
        assert_eq!(decode_integer(&[0x0b, 0x34, 0x12]), (0x1234, 3));
        assert_eq!(decode_integer(&[aml::ONE_OP]), (1, 1));
    }

    #[test]
    fn the_dsdt_with_s5_sums_to_zero_and_the_madt_follows_it() {
        let blob = build(&PlatformShape::pc(2), AT).unwrap();
        let parsed = Parsed { blob: &blob, at: AT };
        let dsdt_address = u64_at(parsed.fadt(), 140);
        let dsdt = parsed.table(dsdt_address, b"DSDT");
        assert_eq!(dsdt.len(), HEADER_BYTES + S5_AML_BYTES);
        assert_eq!(u32_at(dsdt, 4), 50);
        assert_eq!(&dsdt[HEADER_BYTES..], &S5_AML);
        // The MADT starts at the next 16-byte boundary after the AML.
        let madt_offset = parsed.offset(parsed.xsdt()[1]);
        assert_eq!(madt_offset, align_up(parsed.offset(dsdt_address) + dsdt.len(), 16));
        assert!(blob[parsed.offset(dsdt_address) + dsdt.len()..madt_offset].iter().all(|byte| *byte == 0));
    }

    #[test]
    fn the_hardware_reduced_tables_have_no_fixed_hardware() {
        let shape = PlatformShape { fixed_hardware: FixedHardware::Reduced, dual_8259: false, ..PlatformShape::pc(2) };
        let blob = build(&shape, AT).unwrap();
        let parsed = Parsed { blob: &blob, at: AT };
        let fadt = parsed.fadt();
        assert_ne!(u32_at(fadt, 112) & fadt_flags::HW_REDUCED_ACPI, 0);
        assert_eq!(u16_at(fadt, 109) & boot_arch::LEGACY_DEVICES, 0);
        assert_eq!((u32_at(fadt, 36), u64_at(fadt, 132)), (0, 0), "no FACS");
        assert_eq!(u16_at(fadt, 46), 0, "no SCI");
        assert!(fadt[48..109].iter().all(|byte| *byte == 0), "no SMI command, PM blocks or lengths");
        assert!(fadt[148..244].iter().all(|byte| *byte == 0), "no extended PM blocks");
        assert_eq!(parsed.dsdt(), [], "no _S5 without a sleep control register");
        let madt = parsed.madt();
        assert_eq!(u32_at(madt, 40), 0, "no PCAT_COMPAT");
        let entries = entries(madt);
        assert_eq!(entries.len(), 2 + 1 + 1 + 1);
        assert!(entries.contains(&Entry::Override { bus: 0, irq: 0, gsi: 2, flags: 0b0101 }));
        assert!(!entries.iter().any(|entry| matches!(entry, Entry::Override { irq: 9, .. })));
    }

    #[test]
    fn a_pm_block_without_a_timer_and_another_sci() {
        let registers = PmRegisters { timer_port: None, sci_irq: 11, ..PC_PM_REGISTERS };
        let shape = PlatformShape { fixed_hardware: FixedHardware::Pc(registers), ..PlatformShape::pc(1) };
        let blob = build(&shape, AT).unwrap();
        let parsed = Parsed { blob: &blob, at: AT };
        let fadt = parsed.fadt();
        assert_eq!((u32_at(fadt, 76), fadt[91], u64_at(fadt, 212)), (0, 0, 0));
        assert_eq!(u16_at(fadt, 46), 11);
        assert!(entries(parsed.madt()).contains(&Entry::Override { bus: 0, irq: 11, gsi: 11, flags: 0b1101 }));
    }

    #[test]
    fn the_facs_is_64_byte_aligned_wherever_the_blob_is() {
        for at in (0xe_0000..0xe_0040).step_by(16) {
            let blob = build(&PlatformShape::pc(1), at).unwrap();
            let parsed = Parsed { blob: &blob, at };
            assert_eq!(u32_at(parsed.fadt(), 36) % 64, 0, "{at:#x}");
        }
    }

    #[test]
    fn the_most_cpus_fit() {
        let blob = build(&PlatformShape::pc(MAX_CPUS), AT).unwrap();
        let parsed = Parsed { blob: &blob, at: AT };
        let entries = entries(parsed.madt());
        assert_eq!(entries.iter().filter(|entry| matches!(entry, Entry::LocalApic { .. })).count(), 255);
        assert!(entries.contains(&Entry::LocalApic { uid: 254, id: 254, flags: 1 }));
        assert!(blob.len() <= MAX_TABLES_BYTES);
    }

    #[test]
    fn impossible_platforms_and_addresses_are_refused() {
        let pc = PlatformShape::pc(1);
        let with_pm = |registers: PmRegisters| PlatformShape { fixed_hardware: FixedHardware::Pc(registers), ..pc };
        let cases = [
            (PlatformShape::pc(0), AT, AcpiError::CpuCount { cpus: 0 }),
            (PlatformShape::pc(256), AT, AcpiError::CpuCount { cpus: 256 }),
            (PlatformShape { io_apic_id: 0xff, ..pc }, AT, AcpiError::IoApicId { id: 0xff }),
            (PlatformShape { io_apic_id: 0x10, ..pc }, AT, AcpiError::IoApicId { id: 0x10 }),
            (PlatformShape { io_apic_inputs: 8, ..pc }, AT, AcpiError::IoApicInputs { inputs: 8 }),
            (with_pm(PmRegisters { sci_irq: 0, ..PC_PM_REGISTERS }), AT, AcpiError::SciIrq { irq: 0 }),
            (with_pm(PmRegisters { sci_irq: 1, ..PC_PM_REGISTERS }), AT, AcpiError::SciIrq { irq: 1 }),
            (with_pm(PmRegisters { sci_irq: 2, ..PC_PM_REGISTERS }), AT, AcpiError::SciIrq { irq: 2 }),
            (with_pm(PmRegisters { sci_irq: 8, ..PC_PM_REGISTERS }), AT, AcpiError::SciIrq { irq: 8 }),
            (with_pm(PmRegisters { sci_irq: 13, ..PC_PM_REGISTERS }), AT, AcpiError::SciIrq { irq: 13 }),
            (with_pm(PmRegisters { sci_irq: 16, ..PC_PM_REGISTERS }), AT, AcpiError::SciIrq { irq: 16 }),
            (with_pm(PmRegisters { event_port: 0xfffe, ..PC_PM_REGISTERS }), AT, AcpiError::PortBlock { port: 0xfffe }),
            (with_pm(PmRegisters { control_port: 0, ..PC_PM_REGISTERS }), AT, AcpiError::PortBlock { port: 0 }),
            (
                with_pm(PmRegisters { timer_port: Some(0xfffd), ..PC_PM_REGISTERS }),
                AT,
                AcpiError::PortBlock { port: 0xfffd },
            ),
            (pc, AT + 8, AcpiError::Misaligned { at: AT + 8 }),
            (pc, 0xffff_ff00, AcpiError::Above4GiB { at: 0xffff_ff00 }),
            (pc, u64::MAX - 15, AcpiError::Above4GiB { at: u64::MAX - 15 }),
        ];
        for (shape, at, error) in cases {
            assert_eq!(build(&shape, at), Err(error));
        }
    }

    proptest! {
        #[test]
        fn any_valid_platform_builds_consistent_tables(
            cpus in 1u16..=MAX_CPUS,
            sixteenths in 0u64..(0xffff_f000 / 16),
            reduced in any::<bool>(),
            sci_irq in prop_oneof![3u8..=7, 9u8..=12, Just(14u8), Just(15u8)],
            io_apic_id in 0u8..=0xf,
        ) {
            let at = sixteenths * 16;
            let fixed_hardware = if reduced {
                FixedHardware::Reduced
            } else {
                FixedHardware::Pc(PmRegisters { sci_irq, ..PC_PM_REGISTERS })
            };
            let shape = PlatformShape { io_apic_id, fixed_hardware, ..PlatformShape::pc(cpus) };
            let blob = build(&shape, at).unwrap();
            let parsed = Parsed { blob: &blob, at };
            parsed.fadt();
            let expected = if reduced { vec![] } else { vec![AmlName { name: *b"_S5_", package: vec![5, 5, 0, 0] }] };
            prop_assert_eq!(parsed.dsdt(), expected);
            let entries = entries(parsed.madt());
            let local_apics = entries.iter().filter(|entry| matches!(entry, Entry::LocalApic { .. })).count();
            prop_assert_eq!(local_apics, usize::from(cpus));
            let io_apic = Entry::IoApic { id: io_apic_id, address: 0xfec0_0000, gsi_base: 0 };
            prop_assert!(entries.contains(&io_apic));
        }
    }
}

#[cfg(test)]
mod virtio_tests {
    use super::*;

    const DISK: VirtioMmioWindow = VirtioMmioWindow { base: 0xfeb0_0000, bytes: 0x1000, irq: 5 };

    /// The DSDT body with two virtio-mmio devices, as ACPICA's `iasl -d`
    /// (20200925) disassembled it without a warning: `_S5`, then
    /// `Scope (\_SB) { Device (VR00) { Name (_HID, "LNRO0005") Name
    /// (_UID, 0x00) Name (_CRS, ResourceTemplate () { Memory32Fixed
    /// (ReadWrite, 0xFEB00000, 0x00001000) Interrupt (ResourceConsumer,
    /// Level, ActiveHigh, Exclusive) { 5 } }) } Device (VR01) { ... 0xFEB01000
    /// ... { 6 } } }`.
    const TWO_DEVICES: &str = "085f53355f1208040a050a0500001041085c5f53425f5b823b56523030085f48\
        49440d4c4e524f3030303500085f5549440a00085f435253111a0a1786090001\
        0000b0fe0010000089060001010500000079005b823b56523031085f4849440d\
        4c4e524f3030303500085f5549440a01085f435253111a0a17860900010010b0\
        fe001000008906000101060000007900";

    fn hex(text: &str) -> std::vec::Vec<u8> {
        let digits: std::vec::Vec<u8> = text.bytes().filter(u8::is_ascii_hexdigit).collect();
        digits.chunks(2).map(|pair| u8::from_str_radix(core::str::from_utf8(pair).unwrap(), 16).unwrap()).collect()
    }

    #[test]
    fn the_dsdt_declares_virtio_mmio_devices_for_linux() {
        let shape = PlatformShape::pc(1).with_virtio_mmio(DISK).with_virtio_mmio(VirtioMmioWindow {
            base: 0xfeb0_1000,
            bytes: 0x1000,
            irq: 6,
        });
        assert_eq!(dsdt_aml(&shape).as_slice(), hex(TWO_DEVICES).as_slice());
        let blob = build(&shape, 0xe_0000).unwrap();
        let layout = layout(&shape, 0xe_0000);
        assert_eq!(&blob[layout.dsdt + HEADER_BYTES..layout.dsdt + layout.dsdt_bytes], hex(TWO_DEVICES).as_slice());
        let sum =
            blob[layout.dsdt..layout.dsdt + layout.dsdt_bytes].iter().fold(0_u8, |sum, byte| sum.wrapping_add(*byte));
        assert_eq!(sum, 0, "the DSDT's checksum");
    }

    #[test]
    fn a_pc_s_fadt_names_the_reset_register_and_a_reduced_one_none() {
        let fadt_of = |shape: &PlatformShape| {
            let blob = build(shape, 0xe_0000).unwrap();
            let at = layout(shape, 0xe_0000).fadt;
            blob[at..at + FADT_BYTES].to_vec()
        };
        let pc = fadt_of(&PlatformShape::pc(1));
        let flags = u32::from_le_bytes(pc[112..116].try_into().unwrap());
        assert_ne!(flags & fadt_flags::RESET_REG_SUP, 0);
        // A byte in system I/O at 0xCF9, value 6.
        assert_eq!(&pc[116..120], &[1, 8, 0, 1]);
        assert_eq!(u64::from_le_bytes(pc[120..128].try_into().unwrap()), 0xcf9);
        assert_eq!(pc[128], 6);
        let reduced = fadt_of(&PlatformShape { fixed_hardware: FixedHardware::Reduced, ..PlatformShape::pc(1) });
        let flags = u32::from_le_bytes(reduced[112..116].try_into().unwrap());
        assert_eq!(flags & fadt_flags::RESET_REG_SUP, 0);
        assert!(reduced[116..129].iter().all(|byte| *byte == 0));
    }

    #[test]
    fn without_virtio_devices_the_dsdt_has_no_scope() {
        assert_eq!(dsdt_aml(&PlatformShape::pc(1)).as_slice(), &S5_AML);
    }

    #[test]
    fn at_most_eight_devices_are_declared() {
        let mut shape = PlatformShape::pc(1);
        for index in 0..10_u32 {
            shape = shape.with_virtio_mmio(VirtioMmioWindow { base: 0xfeb0_0000 + index * 0x1000, ..DISK });
        }
        assert!(shape.virtio_mmio.iter().all(Option::is_some));
        assert_eq!(shape.virtio_mmio[7].map(|window| window.base), Some(0xfeb0_7000));
        let aml = dsdt_aml(&shape);
        assert_eq!(aml.len(), S5_AML_BYTES + 3 + 5 + 8 * VIRTIO_DEVICE_AML_BYTES);
        assert!(build(&shape, 0xe_0000).is_ok());
        // Device names are the index in hexadecimal.
        assert_eq!(&virtio_device_aml(0x1b, DISK)[3..7], b"VR1B");
    }
}
