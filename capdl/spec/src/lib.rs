//! The compiled system spec: what the loader creates for a manifest.
//!
//! The manifest compiler (`bulkhead-capdl`, on the host) writes a
//! [`SystemSpec`] and the loader (`components/loader`, the root task, in
//! ring 3 without `std`) reads it back; both use these types, so the two
//! sides cannot disagree on the encoding. [`Bundle`] is what the loader's
//! image carries: the spec, the program image of every protection domain
//! and the files Linux guests boot from. [`layout`] fixes where the loader
//! puts each PD's own pages and [`PdInfo`] is the page of facts it hands
//! every PD at start; [`linux`] where it stages a Linux guest's kernel,
//! initramfs and command line; [`contents`] how it fills a region with a
//! file (a guest's disk image).

#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod contents;
pub mod linux;

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use serde::{Deserialize, Serialize};

/// The page sizes a region may use: 4 KiB, 2 MiB and 1 GiB.
pub const PAGE_SIZES: [u64; 3] = [1 << 12, 1 << 21, 1 << 30];

/// The layout version of [`SystemSpec`]; [`from_blob`] refuses others.
pub const SPEC_VERSION: u32 = 8;
/// The largest CNode radix the kernel creates (docs/abi.md, object types).
pub const MAX_CNODE_RADIX: u8 = 16;
/// The slot of a PD's own CNode in that CNode.
pub const CNODE_SLOT: u64 = 0;
/// log2 of the bytes of each scheduling context (the kernel takes 8..12).
pub const SCHED_CONTEXT_SIZE_BITS: u8 = 8;

/// Capability right READ (docs/abi.md, "Conventions").
pub const RIGHT_READ: u64 = 1 << 0;
/// Capability right WRITE.
pub const RIGHT_WRITE: u64 = 1 << 1;
/// Capability right GRANT.
pub const RIGHT_GRANT: u64 = 1 << 2;
/// Capability right GRANT_REPLY.
pub const RIGHT_GRANT_REPLY: u64 = 1 << 3;

/// Frame::Map attribute bit 0: executable.
pub const ATTRIBUTE_EXECUTABLE: u64 = 1 << 0;
/// The shift of Frame::Map's memory-type field (bits 1..2).
pub const ATTRIBUTE_CACHE_SHIFT: u32 = 1;

/// Everything the loader builds for one system.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemSpec {
    /// [`SPEC_VERSION`].
    pub version: u32,
    /// Every kernel object, in creation order; [`ObjectId`] indexes it.
    pub objects: Vec<ObjectSpec>,
    /// The protection domains, in declaration order.
    pub domains: Vec<DomainSpec>,
    /// The channels, in declaration order.
    pub channels: Vec<ChannelSpec>,
    /// The regions, in declaration order.
    pub regions: Vec<RegionSpec>,
    /// The guests, in declaration order.
    pub guests: Vec<GuestSpec>,
}

impl SystemSpec {
    /// The protection domain called `name`.
    pub fn domain(&self, name: &str) -> Option<&DomainSpec> {
        self.domains.iter().find(|domain| domain.name == name)
    }

    /// The object `id` names.
    pub fn object(&self, id: ObjectId) -> Option<&ObjectSpec> {
        usize::try_from(id.0).ok().and_then(|index| self.objects.get(index))
    }
}

/// An index into [`SystemSpec::objects`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ObjectId(pub u32);

/// One kernel object (or, for [`ObjectKind::Frames`], a run of frames).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectSpec {
    /// A name for logs and errors: `log_server.tcb`, `log.endpoint`.
    pub name: String,
    /// What to create.
    pub kind: ObjectKind,
}

/// What kind of kernel object to create, with its parameters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ObjectKind {
    /// A thread: its priority (TCB::SetPriority) and the core it runs on.
    Tcb {
        /// 0 (lowest) to 255.
        priority: u8,
        /// The core.
        core: u32,
    },
    /// A scheduling context of 2^[`SCHED_CONTEXT_SIZE_BITS`] bytes, given
    /// `budget_ns` of CPU time in every `period_ns` (nanoseconds: the
    /// loader converts them to the kernel's ticks for
    /// SchedControl::Configure).
    SchedContext {
        /// The budget in nanoseconds.
        budget_ns: u64,
        /// The period in nanoseconds.
        period_ns: u64,
    },
    /// A CNode of 2^`radix` slots.
    CNode {
        /// log2 of its slot count (1..=16).
        radix: u8,
    },
    /// An address space: a PML4, assigned an ASID.
    VSpace,
    /// An IPC endpoint.
    Endpoint,
    /// A notification.
    Notification,
    /// A reply object, for a PD that serves calls.
    Reply,
    /// `count` frames of `page_size` bytes; at `physical` for device
    /// memory (from a device untyped, mapped uncached), else from RAM.
    Frames {
        /// 4 KiB, 2 MiB or 1 GiB.
        page_size: u64,
        /// How many.
        count: u64,
        /// The first frame's physical address, for device memory.
        physical: Option<u64>,
    },
    /// The handler of a legacy PIC interrupt line (IrqControl::Get).
    IrqHandler {
        /// The line.
        line: u8,
        /// The notification the loader binds it to (the device's
        /// `DEVICE_IRQ_NOTIFICATION`); each interrupt signals the badge
        /// `1 << line`.
        notification: ObjectId,
    },
    /// An I/O port range (IoPortControl::Issue), inclusive.
    IoPorts {
        /// The first port.
        first: u16,
        /// The last port.
        last: u16,
    },
    /// A guest's second-level address space (EPT or NPT root), assigned
    /// an ASID.
    GuestSpace,
    /// A guest's virtual CPU.
    VCpu,
}

impl ObjectKind {
    /// The kernel's Untyped::Retype type (docs/abi.md, object types); `None`
    /// for objects made by a control capability (IRQ handlers, I/O ports).
    pub fn retype_type(&self) -> Option<u64> {
        match self {
            Self::CNode { .. } => Some(1),
            Self::Tcb { .. } => Some(2),
            Self::SchedContext { .. } => Some(3),
            Self::Endpoint => Some(4),
            Self::Notification => Some(5),
            Self::Reply => Some(6),
            Self::Frames { page_size, .. } => match *page_size {
                size if size == PAGE_SIZES[0] => Some(7),
                size if size == PAGE_SIZES[1] => Some(8),
                size if size == PAGE_SIZES[2] => Some(9),
                _ => None,
            },
            Self::VSpace => Some(13),
            Self::VCpu => Some(14),
            Self::GuestSpace => Some(15),
            Self::IrqHandler { .. } | Self::IoPorts { .. } => None,
        }
    }
}

/// A guest: its second-level address space, its vCPUs, its memory and
/// the VMM that runs it.
///
/// The loader maps every memory region into the GuestSpace at its
/// guest-physical address, loads the guest's image (if it names one)
/// into that memory, puts each VCpu in the GuestSpace and binds vCPU 0 to
/// the VMM's thread; the VMM holds a capability to every VCpu (its last
/// CNode slots) and learns where its guest is from its info page
/// ([`PdInfo`]'s guest fields).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestSpec {
    /// Its name in the manifest.
    pub name: String,
    /// The index of its VMM in [`SystemSpec::domains`].
    pub vmm: u32,
    /// Its GuestSpace ([`ObjectKind::GuestSpace`]).
    pub space: ObjectId,
    /// Its VCpus ([`ObjectKind::VCpu`]), vCPU 0 first.
    pub vcpus: Vec<ObjectId>,
    /// The VMM's CNode slot of vCPU 0; the others follow.
    pub first_vcpu_slot: u64,
    /// Its memory, in guest-physical order.
    pub memory: Vec<GuestMemorySpec>,
    /// The program image the loader puts into its memory, if any: an ELF
    /// executable whose segments' physical addresses are guest-physical.
    pub image: Option<String>,
    /// The Linux kernel (a bzImage in the bundle's [`Bundle::guest_files`])
    /// the loader stages into its memory for the VMM to boot, if any
    /// ([`linux::Staging`]).
    pub kernel: Option<String>,
    /// The initramfs staged with the kernel, if any.
    pub initrd: Option<String>,
    /// The kernel's command line, if any (printable ASCII, at most 2,047
    /// bytes: the validator checks).
    pub cmdline: Option<String>,
    /// Its disks held in regions (`disk NAME from REGION`), in the order
    /// of their lines, at most [`MAX_GUEST_DISKS`]: disk n is the one the
    /// serving PD's [`PdInfo`] lists n-th.
    pub disks: Vec<GuestDiskSpec>,
    /// Its VMX, if it has one: the PD that serves its devices.
    pub vmx: Option<GuestVmxSpec>,
    /// The serial port on which its VMM serves gdb (`debug DEVICE`), if
    /// any: its VMM's [`PdInfo`] names the capability's slot.
    pub debug_port: Option<DebugPort>,
}

/// A guest's VMX and the channel its VMM forwards device accesses on:
/// what the two PDs' info pages say ([`PdInfo::guest_ram`],
/// [`PdInfo::device_link`]), so that VMXs (and VMMs) of different guests
/// share their program images.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestVmxSpec {
    /// The VMX's index in [`SystemSpec::domains`].
    pub domain: u32,
    /// Where the VMX maps guest-physical 0 (0: it maps none of the guest's
    /// memory).
    pub memory_address: u64,
    /// The device channel (the first channel with a `call VMM -> VMX`
    /// line): the VMM's slot of its capability to call the VMX (0: none).
    pub vmm_slot: u64,
    /// The VMX's slot of the endpoint it receives those calls on (0:
    /// none).
    pub vmx_slot: u64,
    /// The VMX's slot of its reply object (0: none).
    pub reply_slot: u64,
}

/// A guest's debug serial port: the VMM's capability to its eight I/O
/// ports (a 16550 UART's registers), which the VMM polls to serve gdb's
/// remote protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DebugPort {
    /// The VMM's CNode slot of the I/O-port capability (never 0, the
    /// CNode's own slot).
    pub slot: u64,
    /// The first of its eight ports.
    pub first_port: u16,
}

/// A guest's disk whose bytes are a region of RAM (until a storage server
/// serves disks): the PD that emulates the guest's devices (its VMX, or
/// its VMM when it has none) maps the region and serves it as a virtio
/// block device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestDiskSpec {
    /// Its name in the manifest.
    pub name: String,
    /// The region's index in [`SystemSpec::regions`].
    pub region: u32,
    /// The index in [`SystemSpec::domains`] of the PD that serves it.
    pub server: u32,
    /// Where that PD maps the region's first byte.
    pub address: u64,
}

/// One region of a guest's memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestMemorySpec {
    /// The region's index in [`SystemSpec::regions`].
    pub region: u32,
    /// Its first guest-physical address.
    pub guest_physical: u64,
    /// Where the VMM maps its first byte.
    pub vmm_address: u64,
}

/// One protection domain: its objects, capabilities and mappings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainSpec {
    /// Its name in the manifest.
    pub name: String,
    /// The program image.
    pub image: String,
    /// Its thread ([`ObjectKind::Tcb`]).
    pub tcb: ObjectId,
    /// Its scheduling context.
    pub sched_context: ObjectId,
    /// Its CSpace root ([`ObjectKind::CNode`]), in its own slot 0.
    pub cnode: ObjectId,
    /// Its address space.
    pub vspace: ObjectId,
    /// Bytes of stack the loader maps (0: the loader's default).
    pub stack_bytes: u64,
    /// Bytes of heap the loader maps (0: none).
    pub heap_bytes: u64,
    /// A passive server (TCB::SetPassive): Calls delivered to it run on
    /// their callers' scheduling contexts.
    pub passive: bool,
    /// Its capabilities, by slot: slot 0 its CNode, then from 1 up densely.
    pub caps: Vec<CapSpec>,
    /// Its mappings, in the order the regions are declared.
    pub mappings: Vec<MappingSpec>,
    /// Where its faults go (a `faults` connection), if anywhere.
    pub fault_handler: Option<FaultHandlerSpec>,
}

/// A PD's fault handler: the endpoint its faults are sent on and the badge
/// the handler sees (TCB::SetFaultHandler with a WRITE capability).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultHandlerSpec {
    /// The endpoint.
    pub endpoint: ObjectId,
    /// The badge (0: none).
    pub badge: u64,
}

/// One capability in a PD's CNode.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapSpec {
    /// The slot in the PD's CNode.
    pub slot: u64,
    /// Its name, from which [`generated_names`] makes the constant:
    /// `log`, `exits_notification`, `com2_irq`.
    pub name: String,
    /// The object it points to.
    pub object: ObjectId,
    /// The kernel's rights bits ([`RIGHT_READ`] ...).
    pub rights: u64,
    /// The badge (0: none), set by CNode::Mint.
    pub badge: u64,
}

/// A channel's objects.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelSpec {
    /// Its name.
    pub name: String,
    /// Its endpoint, if it has a `call` or `send` connection.
    pub endpoint: Option<ObjectId>,
    /// Its notification, if it has a `notify` connection.
    pub notification: Option<ObjectId>,
    /// The most any sender's capability may have (rights bits).
    pub rights: u64,
}

/// A region's frames.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionSpec {
    /// Its name.
    pub name: String,
    /// Its frames ([`ObjectKind::Frames`]).
    pub frames: ObjectId,
    /// Its size in bytes.
    pub size: u64,
    /// The most any mapping may have.
    pub rights: MapRights,
    /// The guest file ([`Bundle::guest_files`]) the loader copies into the
    /// region's first bytes before any PD runs, if any ([`contents`]).
    pub contents: Option<String>,
}

/// Rights of a mapping: Frame::Map takes READ and WRITE as rights and
/// execute as an attribute.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapRights {
    /// Readable.
    pub read: bool,
    /// Writable.
    pub write: bool,
    /// Executable.
    pub execute: bool,
}

impl MapRights {
    /// The kernel's rights bits (READ, WRITE) for Frame::Map.
    pub fn bits(self) -> u64 {
        (if self.read { RIGHT_READ } else { 0 }) | (if self.write { RIGHT_WRITE } else { 0 })
    }

    /// Whether every right of `self` is also in `other`.
    pub fn within(self, other: Self) -> bool {
        (!self.read || other.read) && (!self.write || other.write) && (!self.execute || other.execute)
    }
}

/// The memory type of a mapping (Frame::Map attribute bits 1..2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Cache {
    /// RAM: write-back (0).
    WriteBack,
    /// Device memory: uncacheable (3).
    Uncacheable,
}

/// One region mapped into a PD.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MappingSpec {
    /// The region's index in [`SystemSpec::regions`].
    pub region: u32,
    /// The first virtual address.
    pub address: u64,
    /// The mapping's rights.
    pub rights: MapRights,
    /// Write-back for RAM, uncacheable for device memory.
    pub cache: Cache,
}

impl MappingSpec {
    /// Frame::Map's `attributes` word: executable and memory type.
    pub fn attributes(&self) -> u64 {
        let executable = if self.rights.execute { ATTRIBUTE_EXECUTABLE } else { 0 };
        let cache = match self.cache {
            Cache::WriteBack => 0,
            Cache::Uncacheable => 3,
        };
        executable | (cache << ATTRIBUTE_CACHE_SHIFT)
    }
}

/// Encodes the spec as a postcard blob.
pub fn to_blob(spec: &SystemSpec) -> Vec<u8> {
    postcard::to_allocvec(spec).expect("plain data serialises into a growing vector")
}

/// Why a blob could not be read back.
#[derive(Debug)]
pub enum BlobError {
    /// The bytes are not a postcard-encoded [`SystemSpec`].
    Decode(postcard::Error),
    /// The blob was written for another [`SPEC_VERSION`].
    Version(u32),
}

impl fmt::Display for BlobError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Decode(error) => write!(formatter, "not a system spec blob: {error}"),
            Self::Version(version) => {
                write!(formatter, "system spec version {version}, expected {SPEC_VERSION}")
            }
        }
    }
}

impl core::error::Error for BlobError {}

/// Decodes a blob written by [`to_blob`].
///
/// # Errors
///
/// [`BlobError::Decode`] for bytes that are no spec (or have bytes left
/// over), [`BlobError::Version`] for a spec of another version.
pub fn from_blob(bytes: &[u8]) -> Result<SystemSpec, BlobError> {
    let (spec, rest): (SystemSpec, &[u8]) = postcard::take_from_bytes(bytes).map_err(BlobError::Decode)?;
    if !rest.is_empty() {
        return Err(BlobError::Decode(postcard::Error::DeserializeUnexpectedEnd));
    }
    if spec.version != SPEC_VERSION {
        return Err(BlobError::Version(spec.version));
    }
    Ok(spec)
}

/// One program image in a [`Bundle`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Program<'a> {
    /// The name PDs give in their `image` statement.
    pub name: &'a str,
    /// The static ELF executable.
    pub elf: &'a [u8],
}

/// One guest file in a [`Bundle`]: a Linux kernel or initramfs a guest
/// boots from ([`GuestSpec::kernel`], [`GuestSpec::initrd`]) or a region's
/// contents ([`RegionSpec::contents`], a guest's disk image).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestFile<'a> {
    /// The name a guest's `kernel` or `initrd` or a region's `contents`
    /// statement gives.
    pub name: &'a str,
    /// Its bytes.
    pub bytes: &'a [u8],
}

/// What the loader's image carries: a whole system.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bundle<'a> {
    /// The spec, as [`to_blob`] wrote it.
    pub spec: &'a [u8],
    /// Every program image a PD or guest names, each once, sorted by name.
    #[serde(borrow)]
    pub programs: Vec<Program<'a>>,
    /// Every kernel, initramfs and region contents the spec names, each
    /// once (guests and regions that name the same file share it), sorted
    /// by name.
    #[serde(borrow)]
    pub guest_files: Vec<GuestFile<'a>>,
}

impl<'a> Bundle<'a> {
    /// The image called `name`.
    pub fn program(&self, name: &str) -> Option<&'a [u8]> {
        self.programs.iter().find(|program| program.name == name).map(|program| program.elf)
    }

    /// The guest file called `name`.
    pub fn guest_file(&self, name: &str) -> Option<&'a [u8]> {
        self.guest_files.iter().find(|file| file.name == name).map(|file| file.bytes)
    }

    /// Encodes the bundle with postcard.
    pub fn to_bytes(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("plain data serialises into a growing vector")
    }

    /// Decodes a bundle, borrowing the spec and the images from `bytes`.
    ///
    /// # Errors
    ///
    /// [`BlobError::Decode`] for bytes that are no bundle or have bytes
    /// left over.
    pub fn from_bytes(bytes: &'a [u8]) -> Result<Bundle<'a>, BlobError> {
        let (bundle, rest): (Bundle<'a>, &[u8]) = postcard::take_from_bytes(bytes).map_err(BlobError::Decode)?;
        if !rest.is_empty() {
            return Err(BlobError::Decode(postcard::Error::DeserializeUnexpectedEnd));
        }
        Ok(bundle)
    }
}

/// Where the loader puts a protection domain's own pages. Everything
/// below [`RESERVED_END`] belongs to this layout; a manifest maps its
/// regions at or above it (the validator checks).
///
/// A PD's thread starts at its image's entry point with RSP at
/// [`STACK_TOP`](layout::STACK_TOP) (16-byte aligned, nothing pushed) and
/// RDI holding [`INFO_PAGE`](layout::INFO_PAGE).
pub mod layout {
    /// Where a PD's image may lie: `[IMAGE_BASE, IMAGE_END)` (the same
    /// range as the root task's).
    pub const IMAGE_BASE: u64 = 0x40_0000;
    /// The end of the image range (1 GiB).
    pub const IMAGE_END: u64 = 0x4000_0000;
    /// The top of the stack; the page below the stack stays unmapped.
    pub const STACK_TOP: u64 = 0x4010_0000;
    /// The stack a PD gets when its manifest gives no `stack` size.
    pub const DEFAULT_STACK_BYTES: u64 = 16 * 1024;
    /// The largest stack (it must stay above the image range).
    pub const MAX_STACK_BYTES: u64 = STACK_TOP - IMAGE_END - 4096;
    /// The IPC buffer (one page).
    pub const IPC_BUFFER: u64 = 0x4010_1000;
    /// The read-only page holding [`PdInfo`](super::PdInfo).
    pub const INFO_PAGE: u64 = 0x4010_2000;
    /// The heap's first byte (its size is the manifest's `heap`).
    pub const HEAP_BASE: u64 = 0x4100_0000;
    /// The end of the layout: region mappings start here or above.
    pub const RESERVED_END: u64 = 0x8000_0000;
    /// The largest heap.
    pub const MAX_HEAP_BYTES: u64 = RESERVED_END - HEAP_BASE;

    const _: () = {
        assert!(IPC_BUFFER > STACK_TOP && INFO_PAGE > IPC_BUFFER && HEAP_BASE > INFO_PAGE);
        assert!(STACK_TOP - MAX_STACK_BYTES > IMAGE_END);
    };
}

/// [`PdInfo::magic`]: "BULKPD01" in little-endian bytes.
pub const PD_INFO_MAGIC: u64 = u64::from_le_bytes(*b"BULKPD01");
/// [`PdInfo::version`] of this layout (3 added the staged Linux files, 4
/// the disks, 5 the TSC's rate, 6 the device link and a VMX's guest RAM,
/// 7 the guest's debug port).
pub const PD_INFO_VERSION: u64 = 7;
/// The most disks held in regions a guest may have ([`PdInfo::guest_disks`]).
pub const MAX_GUEST_DISKS: usize = 4;
/// [`PdInfo::guest_entry`] of a guest without an image.
pub const NO_GUEST_ENTRY: u64 = u64::MAX;
/// The bytes of a PD name in [`PdInfo`] (longer names are cut).
pub const PD_NAME_BYTES: usize = 32;

/// The facts the loader gives a protection domain, in a read-only page
/// at [`layout::INFO_PAGE`]. Every field is a `u64` so the layout is the
/// same for every compiler.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PdInfo {
    /// [`PD_INFO_MAGIC`].
    pub magic: u64,
    /// [`PD_INFO_VERSION`].
    pub version: u64,
    /// The first byte of the heap ([`layout::HEAP_BASE`]).
    pub heap_base: u64,
    /// The heap's bytes (0: none).
    pub heap_bytes: u64,
    /// The stack's bytes, below [`layout::STACK_TOP`].
    pub stack_bytes: u64,
    /// The PD's name in the manifest, NUL-padded UTF-8.
    pub name: [u64; PD_NAME_BYTES / 8],
    /// For a guest's VMM, or a VMX that maps its guest's memory: the
    /// address in this PD where guest-physical 0 is mapped (0: none).
    pub guest_memory: u64,
    /// The bytes of guest-physical memory from 0 (the guest's regions lie
    /// end to end, each aligned to its page size).
    pub guest_memory_bytes: u64,
    /// The VMM's CNode slot of vCPU 0's capability; the others follow.
    pub guest_vcpu_slot: u64,
    /// How many vCPUs the guest has (0: none, and for a VMX).
    pub guest_vcpus: u64,
    /// The entry point of the guest's ELF image ([`NO_GUEST_ENTRY`]: no
    /// image, as for a Linux guest).
    pub guest_entry: u64,
    /// The guest-physical address of the staged Linux kernel: the bzImage
    /// file as it is, page-aligned ([`linux::Staging`]; 0: no kernel).
    pub guest_kernel: u64,
    /// The staged kernel's bytes (0: no kernel).
    pub guest_kernel_bytes: u64,
    /// The guest-physical address of the staged initramfs (0: none).
    pub guest_initrd: u64,
    /// The staged initramfs's bytes (0: none).
    pub guest_initrd_bytes: u64,
    /// The guest-physical address of the staged command line (0: none).
    pub guest_cmdline: u64,
    /// The command line's bytes, without the NUL that follows them (0:
    /// none).
    pub guest_cmdline_bytes: u64,
    /// For the PD that serves a guest's disks (its VMX, or its VMM when it
    /// has none): where disk n's region is mapped in this PD (0: no disk
    /// n). The PD serves disk n as the guest's virtio-mmio device n.
    pub guest_disks: [u64; MAX_GUEST_DISKS],
    /// Disk n's bytes (0: no disk n).
    pub guest_disk_bytes: [u64; MAX_GUEST_DISKS],
    /// The TSC's rate in kHz, as the kernel measured it (`RootInfo`): what
    /// a VMM keeps its guest's time by (0: not known).
    pub tsc_khz: u64,
    /// The device link between a guest's VMM and VMX: for the VMM, the
    /// slot of its capability to call its VMX; for the VMX, the slot of
    /// the endpoint it receives those calls on (0: none: a VMM without a
    /// VMX serves its guest's devices itself).
    pub guest_device_endpoint: u64,
    /// For a VMX: the slot of its reply object (0 for a VMM).
    pub guest_device_reply: u64,
    /// For a guest's VMM: the CNode slot of its capability to the guest's
    /// debug serial port ([`DebugPort`]; 0: no debug port).
    pub guest_debug_port_slot: u64,
    /// That port's first I/O port (0: no debug port).
    pub guest_debug_port: u64,
}

/// The two ends of a guest's device link, as [`PdInfo::device_link`]
/// reads them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceLink {
    /// The endpoint capability's slot: called by a VMM, received on by a
    /// VMX.
    pub endpoint: u64,
    /// The reply object's slot (a VMX; `None` for a VMM).
    pub reply: Option<u64>,
}

/// Where a PD maps its guest's RAM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MappedRam {
    /// The address of guest-physical 0 in the PD.
    pub address: u64,
    /// The bytes of guest-physical memory from 0.
    pub bytes: u64,
}

/// What a VMM's [`PdInfo`] says about its guest.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GuestInfo {
    /// [`PdInfo::guest_memory`].
    pub memory: u64,
    /// [`PdInfo::guest_memory_bytes`].
    pub memory_bytes: u64,
    /// [`PdInfo::guest_vcpu_slot`].
    pub vcpu_slot: u64,
    /// [`PdInfo::guest_vcpus`].
    pub vcpus: u64,
    /// [`PdInfo::guest_entry`].
    pub entry: u64,
    /// [`PdInfo::guest_kernel`] and [`PdInfo::guest_kernel_bytes`].
    pub kernel: Option<Staged>,
    /// [`PdInfo::guest_initrd`] and [`PdInfo::guest_initrd_bytes`].
    pub initrd: Option<Staged>,
    /// [`PdInfo::guest_cmdline`] and [`PdInfo::guest_cmdline_bytes`]
    /// (the NUL after them not counted).
    pub cmdline: Option<Staged>,
    /// [`PdInfo::guest_disks`] and [`PdInfo::guest_disk_bytes`]: the
    /// disks this VMM serves (none when the guest's VMX serves them).
    pub disks: [Option<MappedDisk>; MAX_GUEST_DISKS],
    /// [`PdInfo::guest_debug_port_slot`] and [`PdInfo::guest_debug_port`].
    pub debug_port: Option<DebugPort>,
}

impl DebugPort {
    /// The two words of the info page: slot and first port, 0 and 0 for
    /// none.
    fn to_words(port: Option<DebugPort>) -> [u64; 2] {
        port.map_or([0, 0], |port| [port.slot, u64::from(port.first_port)])
    }

    /// Read back: none for slot 0 (the CNode's own) or a first port that
    /// leaves no room for eight below 0x10000.
    fn from_words(slot: u64, first_port: u64) -> Option<DebugPort> {
        let first_port = u16::try_from(first_port).ok().filter(|first| *first <= u16::MAX - 7)?;
        (slot != 0).then_some(DebugPort { slot, first_port })
    }
}

/// A guest's disk held in a region that the serving PD maps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MappedDisk {
    /// Where the region's first byte is in the PD.
    pub address: u64,
    /// The disk's bytes: the region's size.
    pub bytes: u64,
}

impl MappedDisk {
    /// Disk by disk, the words of [`PdInfo::guest_disks`] and
    /// [`PdInfo::guest_disk_bytes`]: 0 and 0 for none.
    fn to_words(disks: &[Option<MappedDisk>; MAX_GUEST_DISKS]) -> ([u64; MAX_GUEST_DISKS], [u64; MAX_GUEST_DISKS]) {
        let mut addresses = [0; MAX_GUEST_DISKS];
        let mut bytes = [0; MAX_GUEST_DISKS];
        for ((address, length), disk) in addresses.iter_mut().zip(&mut bytes).zip(disks) {
            if let Some(disk) = disk {
                (*address, *length) = (disk.address, disk.bytes);
            }
        }
        (addresses, bytes)
    }

    /// Read back: none where the length is 0.
    fn from_words(
        addresses: &[u64; MAX_GUEST_DISKS],
        bytes: &[u64; MAX_GUEST_DISKS],
    ) -> [Option<MappedDisk>; MAX_GUEST_DISKS] {
        let mut disks = [None; MAX_GUEST_DISKS];
        for ((disk, address), length) in disks.iter_mut().zip(addresses).zip(bytes) {
            *disk = (*length != 0).then_some(MappedDisk { address: *address, bytes: *length });
        }
        disks
    }
}

/// Bytes the loader staged into a guest's memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Staged {
    /// Where they start, guest-physical (page-aligned).
    pub guest_physical: u64,
    /// How many.
    pub bytes: u64,
}

impl Staged {
    /// The two words of the info page: address and length, 0 and 0 for
    /// none.
    fn to_words(staged: Option<Staged>) -> [u64; 2] {
        staged.map_or([0, 0], |staged| [staged.guest_physical, staged.bytes])
    }

    /// Read back from the two words: none for a length of 0.
    fn from_words(guest_physical: u64, bytes: u64) -> Option<Staged> {
        (bytes != 0).then_some(Staged { guest_physical, bytes })
    }
}

impl PdInfo {
    /// The words of the page, in declaration order.
    pub const WORDS: usize = 5 + PD_NAME_BYTES / 8 + 5 + 6 + 2 * MAX_GUEST_DISKS + 5;

    /// A description of PD `name`, which runs no guest.
    pub fn new(name: &str, heap_bytes: u64, stack_bytes: u64) -> PdInfo {
        let mut bytes = [0_u8; PD_NAME_BYTES];
        // Cut at a character boundary so that the name stays UTF-8.
        let mut length = name.len().min(PD_NAME_BYTES);
        while !name.is_char_boundary(length) {
            length -= 1;
        }
        bytes[..length].copy_from_slice(&name.as_bytes()[..length]);
        let mut words = [0_u64; PD_NAME_BYTES / 8];
        for (word, chunk) in words.iter_mut().zip(bytes.chunks_exact(8)) {
            let mut eight = [0_u8; 8];
            eight.copy_from_slice(chunk);
            *word = u64::from_le_bytes(eight);
        }
        PdInfo {
            magic: PD_INFO_MAGIC,
            version: PD_INFO_VERSION,
            heap_base: layout::HEAP_BASE,
            heap_bytes,
            stack_bytes,
            name: words,
            guest_memory: 0,
            guest_memory_bytes: 0,
            guest_vcpu_slot: 0,
            guest_vcpus: 0,
            guest_entry: NO_GUEST_ENTRY,
            guest_kernel: 0,
            guest_kernel_bytes: 0,
            guest_initrd: 0,
            guest_initrd_bytes: 0,
            guest_cmdline: 0,
            guest_cmdline_bytes: 0,
            guest_disks: [0; MAX_GUEST_DISKS],
            guest_disk_bytes: [0; MAX_GUEST_DISKS],
            tsc_khz: 0,
            guest_device_endpoint: 0,
            guest_device_reply: 0,
            guest_debug_port_slot: 0,
            guest_debug_port: 0,
        }
    }

    /// The same PD, told the TSC's rate.
    #[must_use]
    pub fn with_tsc_khz(self, tsc_khz: u64) -> PdInfo {
        PdInfo { tsc_khz, ..self }
    }

    /// The same PD as the VMM of a guest described by `guest`.
    pub fn with_guest(self, guest: GuestInfo) -> PdInfo {
        let [guest_kernel, guest_kernel_bytes] = Staged::to_words(guest.kernel);
        let [guest_initrd, guest_initrd_bytes] = Staged::to_words(guest.initrd);
        let [guest_cmdline, guest_cmdline_bytes] = Staged::to_words(guest.cmdline);
        let (guest_disks, guest_disk_bytes) = MappedDisk::to_words(&guest.disks);
        let [guest_debug_port_slot, guest_debug_port] = DebugPort::to_words(guest.debug_port);
        PdInfo {
            guest_memory: guest.memory,
            guest_memory_bytes: guest.memory_bytes,
            guest_vcpu_slot: guest.vcpu_slot,
            guest_vcpus: guest.vcpus,
            guest_entry: guest.entry,
            guest_kernel,
            guest_kernel_bytes,
            guest_initrd,
            guest_initrd_bytes,
            guest_cmdline,
            guest_cmdline_bytes,
            guest_disks,
            guest_disk_bytes,
            guest_debug_port_slot,
            guest_debug_port,
            ..self
        }
    }

    /// The same PD as the server of these disks of a guest it is not the
    /// VMM of (its VMX).
    pub fn with_disks(self, disks: &[Option<MappedDisk>; MAX_GUEST_DISKS]) -> PdInfo {
        let (guest_disks, guest_disk_bytes) = MappedDisk::to_words(disks);
        PdInfo { guest_disks, guest_disk_bytes, ..self }
    }

    /// The same PD as a guest's VMX: where it maps the guest's RAM (if it
    /// does) and the slots of its end of the device link.
    pub fn with_vmx(self, ram: Option<MappedRam>, endpoint: u64, reply: u64) -> PdInfo {
        let (guest_memory, guest_memory_bytes) = ram.map_or((0, 0), |ram| (ram.address, ram.bytes));
        PdInfo { guest_memory, guest_memory_bytes, guest_device_endpoint: endpoint, guest_device_reply: reply, ..self }
    }

    /// The same PD with `endpoint` as the slot of the capability by which
    /// it, a guest's VMM, calls its VMX.
    pub fn with_device_server(self, endpoint: u64) -> PdInfo {
        PdInfo { guest_device_endpoint: endpoint, ..self }
    }

    /// This PD's end of its guest's device link, if it has one.
    pub fn device_link(&self) -> Option<DeviceLink> {
        (self.guest_device_endpoint != 0).then_some(DeviceLink {
            endpoint: self.guest_device_endpoint,
            reply: (self.guest_device_reply != 0).then_some(self.guest_device_reply),
        })
    }

    /// Where this PD (a guest's VMM, or a VMX that maps its guest's
    /// memory) maps its guest's RAM.
    pub fn guest_ram(&self) -> Option<MappedRam> {
        (self.guest_memory != 0).then_some(MappedRam { address: self.guest_memory, bytes: self.guest_memory_bytes })
    }

    /// The guest disks this PD serves, disk n at index n.
    pub fn disks(&self) -> [Option<MappedDisk>; MAX_GUEST_DISKS] {
        MappedDisk::from_words(&self.guest_disks, &self.guest_disk_bytes)
    }

    /// The guest this PD runs as its VMM, if any (a VMX, which runs no
    /// vCPU, has none).
    pub fn guest(&self) -> Option<GuestInfo> {
        (self.guest_memory != 0 && self.guest_vcpus != 0).then_some(GuestInfo {
            memory: self.guest_memory,
            memory_bytes: self.guest_memory_bytes,
            vcpu_slot: self.guest_vcpu_slot,
            vcpus: self.guest_vcpus,
            entry: self.guest_entry,
            kernel: Staged::from_words(self.guest_kernel, self.guest_kernel_bytes),
            initrd: Staged::from_words(self.guest_initrd, self.guest_initrd_bytes),
            cmdline: Staged::from_words(self.guest_cmdline, self.guest_cmdline_bytes),
            disks: self.disks(),
            debug_port: DebugPort::from_words(self.guest_debug_port_slot, self.guest_debug_port),
        })
    }

    /// The page's words, as the loader writes them.
    pub fn to_words(&self) -> [u64; Self::WORDS] {
        let mut words = [0; Self::WORDS];
        words[..5].copy_from_slice(&[self.magic, self.version, self.heap_base, self.heap_bytes, self.stack_bytes]);
        words[5..5 + PD_NAME_BYTES / 8].copy_from_slice(&self.name);
        let disks = Self::WORDS - 5 - 2 * MAX_GUEST_DISKS;
        words[5 + PD_NAME_BYTES / 8..disks].copy_from_slice(&[
            self.guest_memory,
            self.guest_memory_bytes,
            self.guest_vcpu_slot,
            self.guest_vcpus,
            self.guest_entry,
            self.guest_kernel,
            self.guest_kernel_bytes,
            self.guest_initrd,
            self.guest_initrd_bytes,
            self.guest_cmdline,
            self.guest_cmdline_bytes,
        ]);
        words[disks..disks + MAX_GUEST_DISKS].copy_from_slice(&self.guest_disks);
        words[disks + MAX_GUEST_DISKS..Self::WORDS - 5].copy_from_slice(&self.guest_disk_bytes);
        words[Self::WORDS - 5..].copy_from_slice(&[
            self.tsc_khz,
            self.guest_device_endpoint,
            self.guest_device_reply,
            self.guest_debug_port_slot,
            self.guest_debug_port,
        ]);
        words
    }

    /// The name's bytes without the padding.
    pub fn name_bytes(&self) -> [u8; PD_NAME_BYTES] {
        let mut bytes = [0_u8; PD_NAME_BYTES];
        for (chunk, word) in bytes.chunks_exact_mut(8).zip(self.name) {
            chunk.copy_from_slice(&word.to_le_bytes());
        }
        bytes
    }

    /// The name, up to its first NUL (`"?"` if it is not UTF-8).
    pub fn name_str(bytes: &[u8; PD_NAME_BYTES]) -> &str {
        let end = bytes.iter().position(|byte| *byte == 0).unwrap_or(PD_NAME_BYTES);
        core::str::from_utf8(&bytes[..end]).unwrap_or("?")
    }
}

// All u64s in declaration order: `to_words` and the PD's reader rely on it.
const _: () = assert!(size_of::<PdInfo>() == PdInfo::WORDS * 8);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pd_info_words_follow_the_declaration_order() {
        let info = PdInfo::new("serial_driver", 0x1_0000, 0x4000);
        let words = info.to_words();
        assert_eq!(&words[..5], &[PD_INFO_MAGIC, PD_INFO_VERSION, layout::HEAP_BASE, 0x1_0000, 0x4000]);
        assert_eq!(words[5], u64::from_le_bytes(*b"serial_d"));
        assert_eq!(PdInfo::name_str(&info.name_bytes()), "serial_driver");
        assert_eq!(&words[9..20], &[0, 0, 0, 0, NO_GUEST_ENTRY, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&words[20..28], &[0; 2 * MAX_GUEST_DISKS]);
        assert_eq!(words[28], 0, "no TSC rate told");
        assert_eq!(&words[29..31], &[0, 0], "no device link");
        assert_eq!(&words[31..33], &[0, 0], "no debug port");
        assert_eq!(info.disks(), [None; MAX_GUEST_DISKS]);
        assert_eq!(info.guest(), None);
        assert_eq!(info.with_tsc_khz(2_000_000).to_words()[28], 2_000_000);
        assert_eq!(words.len(), 33);
        assert_eq!((info.device_link(), info.guest_ram()), (None, None));
    }

    #[test]
    fn the_device_link_and_a_vmx_s_guest_ram_come_last() {
        let guest = GuestInfo { memory: 0x10_0000_0000, memory_bytes: 128 << 20, vcpus: 1, ..GuestInfo::default() };
        let vmm = PdInfo::new("linux_vmm", 0, 0).with_guest(guest).with_device_server(3);
        assert_eq!(&vmm.to_words()[29..], &[3, 0, 0, 0]);
        assert_eq!(vmm.device_link(), Some(DeviceLink { endpoint: 3, reply: None }));
        assert_eq!(vmm.guest_ram(), Some(MappedRam { address: 0x10_0000_0000, bytes: 128 << 20 }));
        let ram = MappedRam { address: 0x30_0000_0000, bytes: 128 << 20 };
        let vmx = PdInfo::new("linux_vmx", 0, 0).with_vmx(Some(ram), 1, 2);
        assert_eq!(&vmx.to_words()[9..13], &[0x30_0000_0000, 128 << 20, 0, 0]);
        assert_eq!(&vmx.to_words()[29..], &[1, 2, 0, 0]);
        assert_eq!(vmx.device_link(), Some(DeviceLink { endpoint: 1, reply: Some(2) }));
        assert_eq!(vmx.guest_ram(), Some(ram));
        assert_eq!(vmx.guest(), None, "a VMX runs no vCPU");
        assert_eq!(PdInfo::new("vmx", 0, 0).with_vmx(None, 1, 2).guest_ram(), None);
    }

    #[test]
    fn a_vmm_info_page_carries_its_guest() {
        let guest = GuestInfo {
            memory: 0x40_0000_0000,
            memory_bytes: 0x20_0000,
            vcpu_slot: 7,
            vcpus: 2,
            entry: 0x8000,
            ..GuestInfo::default()
        };
        let info = PdInfo::new("guest_vmm", 0, 0x4000).with_guest(guest);
        assert_eq!(&info.to_words()[9..20], &[0x40_0000_0000, 0x20_0000, 7, 2, 0x8000, 0, 0, 0, 0, 0, 0]);
        assert_eq!(info.guest(), Some(guest));
    }

    #[test]
    fn a_linux_vmm_info_page_says_where_the_files_are_staged() {
        let guest = GuestInfo {
            memory: 0x40_0000_0000,
            memory_bytes: 128 << 20,
            vcpu_slot: 5,
            vcpus: 1,
            entry: NO_GUEST_ENTRY,
            kernel: Some(Staged { guest_physical: 0x700_0000, bytes: 14_186_432 }),
            initrd: Some(Staged { guest_physical: 0x7de_0000, bytes: 2_182_152 }),
            cmdline: Some(Staged { guest_physical: 0x6ff_f000, bytes: 28 }),
            disks: [None; MAX_GUEST_DISKS],
            debug_port: None,
        };
        let info = PdInfo::new("linux_vmm", 1 << 20, 0x1_0000).with_guest(guest);
        assert_eq!(
            &info.to_words()[13..20],
            &[NO_GUEST_ENTRY, 0x700_0000, 14_186_432, 0x7de_0000, 2_182_152, 0x6ff_f000, 28]
        );
        assert_eq!(info.guest(), Some(guest));
        // A kernel without initrd or command line: those read back as none.
        let bare = GuestInfo { initrd: None, cmdline: None, ..guest };
        assert_eq!(PdInfo::new("linux_vmm", 0, 0).with_guest(bare).guest(), Some(bare));
    }

    #[test]
    fn the_disks_follow_the_staged_files_address_words_then_length_words() {
        let disk = |address, bytes| Some(MappedDisk { address, bytes });
        let guest = GuestInfo {
            memory: 0x10_0000_0000,
            memory_bytes: 128 << 20,
            vcpus: 1,
            entry: NO_GUEST_ENTRY,
            // Disks 0 and 2: the info page keeps the numbering.
            disks: [disk(0x20_0000_0000, 8 << 20), None, disk(0x21_0000_0000, 4096), None],
            ..GuestInfo::default()
        };
        let info = PdInfo::new("linux_vmm", 0, 0).with_guest(guest);
        let words = info.to_words();
        assert_eq!(words.len(), PdInfo::WORDS);
        assert_eq!(&words[20..28], &[0x20_0000_0000, 0, 0x21_0000_0000, 0, 8 << 20, 0, 4096, 0]);
        assert_eq!(info.guest(), Some(guest));
        assert_eq!(info.disks(), guest.disks);
        // A VMX serves the disks of a guest it is not the VMM of.
        let vmx = PdInfo::new("linux_vmx", 0, 0).with_disks(&guest.disks);
        assert_eq!(vmx.guest(), None);
        assert_eq!(vmx.disks(), guest.disks);
        // A disk of no bytes is no disk.
        let empty = PdInfo::new("vmx", 0, 0).with_disks(&[disk(0x20_0000_0000, 0), None, None, None]);
        assert_eq!(empty.disks(), [None; MAX_GUEST_DISKS]);
    }

    #[test]
    fn a_vmm_info_page_names_its_guest_s_debug_port_last() {
        let port = DebugPort { slot: 1, first_port: 0x2f8 };
        let guest = GuestInfo {
            memory: 0x10_0000_0000,
            memory_bytes: 128 << 20,
            vcpu_slot: 2,
            vcpus: 1,
            entry: NO_GUEST_ENTRY,
            debug_port: Some(port),
            ..GuestInfo::default()
        };
        let info = PdInfo::new("linux_vmm", 0, 0).with_tsc_khz(2_000_000).with_guest(guest);
        let words = info.to_words();
        assert_eq!(words.len(), 33);
        assert_eq!(
            &words[28..],
            &[2_000_000, 0, 0, 1, 0x2f8],
            "the TSC's rate, no device link, then the port's slot and first port"
        );
        assert_eq!(info.guest(), Some(guest));
        // Slot 0 (the CNode's own) is no port, nor is a first port without
        // eight ports above it.
        for (slot, first_port) in [(0, 0x2f8), (1, 0xfff9), (1, 0x1_0000), (1, u64::MAX)] {
            let odd = PdInfo { guest_debug_port_slot: slot, guest_debug_port: first_port, ..info };
            assert_eq!(odd.guest().map(|guest| guest.debug_port), Some(None), "slot {slot} port {first_port:#x}");
        }
        let last = PdInfo { guest_debug_port: 0xfff8, ..info };
        assert_eq!(last.guest().and_then(|guest| guest.debug_port), Some(DebugPort { slot: 1, first_port: 0xfff8 }));
        // A VMX's page has none.
        assert_eq!(&PdInfo::new("linux_vmx", 0, 0).to_words()[31..], &[0, 0]);
    }

    #[test]
    fn long_names_are_cut_at_a_character_boundary() {
        let name = "a".repeat(31) + "é";
        let info = PdInfo::new(&name, 0, 0);
        assert_eq!(PdInfo::name_str(&info.name_bytes()), "a".repeat(31));
    }

    #[test]
    fn bundles_round_trip_and_refuse_trailing_bytes() {
        let elf = [0x7f, b'E', b'L', b'F'];
        let kernel = [0x4d, 0x5a, 1, 2];
        let bundle = Bundle {
            spec: &[1, 2, 3],
            programs: alloc::vec![Program { name: "ping", elf: &elf }],
            guest_files: alloc::vec![GuestFile { name: "debian-cloud", bytes: &kernel }],
        };
        let mut bytes = bundle.to_bytes();
        let back = Bundle::from_bytes(&bytes).expect("round trip");
        assert_eq!(back, bundle);
        assert_eq!(back.program("ping"), Some(&elf[..]));
        assert_eq!(back.program("pong"), None);
        assert_eq!(back.guest_file("debian-cloud"), Some(&kernel[..]));
        assert_eq!(back.guest_file("ping"), None);
        bytes.push(0);
        assert!(Bundle::from_bytes(&bytes).is_err());
    }
}
