//! The compiler: turns a validated manifest into a [`SystemSpec`], the
//! plain data that tells the loader exactly which kernel objects to
//! create, which capabilities to put in which slot of each protection
//! domain's CNode, and which regions to map where. The spec travels as a
//! postcard blob ([`to_blob`], [`from_blob`]); [`generated_names`] gives
//! each PD Rust constants for its slots and regions, so that a PD names
//! `caps::LOG` and never a slot number.
//!
//! Everything here is deterministic: objects, slots and mappings follow
//! the manifest's declaration order, and nothing iterates a hash map, so
//! one manifest always compiles to the same bytes.

use std::collections::BTreeMap;
use std::fmt::Write as _;

pub use bulkhead_capdl_spec::{
    ATTRIBUTE_CACHE_SHIFT, ATTRIBUTE_EXECUTABLE, BlobError, CNODE_SLOT, Cache, CapSpec, ChannelSpec, DebugPort,
    DomainSpec, FaultHandlerSpec, GuestDiskSpec, GuestMemorySpec, GuestSpec, GuestVmxSpec, MAX_CNODE_RADIX, MapRights,
    MappingSpec, ObjectId, ObjectKind, ObjectSpec, RIGHT_GRANT, RIGHT_GRANT_REPLY, RIGHT_READ, RIGHT_WRITE, RegionSpec,
    SCHED_CONTEXT_SIZE_BITS, SPEC_VERSION, SystemSpec, from_blob, to_blob,
};

use crate::ast::{CapRights, ConnectionKind, Item, Manifest, MemoryRights, Name};
use crate::diagnostic::{Diagnostic, Span};
use crate::graph::FlowGraph;
use crate::validate::{Model, PAGE_SIZES, device_channel, guest_memory_layout};

/// Mapping rights from a manifest's memory rights.
fn map_rights(rights: MemoryRights) -> MapRights {
    MapRights { read: rights.read, write: rights.write, execute: rights.execute }
}

/// The kernel's rights bits of capability rights.
pub fn cap_rights_bits(rights: CapRights) -> u64 {
    [
        (rights.read, RIGHT_READ),
        (rights.write, RIGHT_WRITE),
        (rights.grant, RIGHT_GRANT),
        (rights.grant_reply, RIGHT_GRANT_REPLY),
    ]
    .iter()
    .filter(|(held, _)| *held)
    .fold(0, |bits, (_, bit)| bits | bit)
}

/// Compiles a validated manifest (`graph` is what [`crate::validate`]
/// returned for it) into the spec the loader follows.
///
/// Objects: per PD a TCB, a scheduling context, a CNode and a VSpace (in
/// PD order), then per item in declaration order a region's frames, a
/// channel's endpoint (if it has `call` or `send`) and notification (if
/// it has `notify`), a device's IRQ handlers and I/O port ranges, and a
/// reply object for each PD the first time it serves a `call`.
///
/// Then per guest a GuestSpace and its VCpus.
///
/// Capabilities: slot 0 is the PD's own CNode; from slot 1 up, densely,
/// in declaration order, each PD gets the sender's capability of every
/// connection it sends on (the connection's rights and badge), a READ
/// capability to the endpoint or notification of every connection it
/// receives on, its reply object when it first serves a call, and the
/// IRQ handler and I/O port capabilities of every device it owns; last, a
/// guest's VMM gets its VCpus (which its info page points to, so they
/// are not among its generated names). A guest's `debug` device is one
/// the VMM owns: its I/O port capability is the VMM's like any device's,
/// and its slot goes on the VMM's info page ([`GuestSpec::debug_port`]),
/// not among its generated names either.
///
/// # Errors
///
/// Errors that validation does not catch: a PD that would hold two
/// different capabilities to one object (both ends of an endpoint, or two
/// badges on it), capability names that collide once turned into Rust
/// constants, more capabilities than a CNode of radix
/// [`MAX_CNODE_RADIX`] holds, a time in nanoseconds above 2^64, and a
/// field missing or out of range (a manifest that was not validated).
pub fn compile(manifest: &Manifest, graph: &FlowGraph) -> Result<SystemSpec, Vec<Diagnostic>> {
    let mut compiler = Compiler::new(manifest);
    compiler.domains(graph);
    for item in &manifest.items {
        match item {
            Item::Region(region) => compiler.region(region),
            Item::Channel(channel) => compiler.channel(channel),
            Item::Device(device) => compiler.device(device),
            Item::ProtectionDomain(_) | Item::Guest(_) | Item::Flow(_) => {}
        }
    }
    for item in &manifest.items {
        if let Item::Guest(guest) = item {
            compiler.guest(guest);
        }
    }
    compiler.finish()
}

/// A PD's state while compiling: its spec and where each cap name came from.
struct DomainState {
    spec: DomainSpec,
    span: Span,
    /// The constant name of each cap, with the line that made it.
    names: BTreeMap<String, (String, Span)>,
    /// The constant name of each region mapped, likewise.
    region_names: BTreeMap<String, (String, Span)>,
    /// The index in `spec.caps` of the capability to each object held.
    held: BTreeMap<ObjectId, usize>,
    reply: Option<ObjectId>,
}

struct Compiler<'a> {
    model: Model<'a>,
    objects: Vec<ObjectSpec>,
    domains: Vec<DomainState>,
    index: BTreeMap<String, usize>,
    channels: Vec<ChannelSpec>,
    regions: Vec<RegionSpec>,
    guests: Vec<GuestSpec>,
    /// Each device's I/O port ranges: the object and the first port.
    device_ports: BTreeMap<String, Vec<(ObjectId, u16)>>,
    errors: Vec<Diagnostic>,
}

impl<'a> Compiler<'a> {
    fn new(manifest: &'a Manifest) -> Self {
        Self {
            model: Model::new(manifest),
            objects: Vec::new(),
            domains: Vec::new(),
            index: BTreeMap::new(),
            channels: Vec::new(),
            regions: Vec::new(),
            guests: Vec::new(),
            device_ports: BTreeMap::new(),
            errors: Vec::new(),
        }
    }

    fn object(&mut self, name: String, kind: ObjectKind) -> ObjectId {
        let id = ObjectId(u32::try_from(self.objects.len()).unwrap_or(u32::MAX));
        self.objects.push(ObjectSpec { name, kind });
        id
    }

    fn missing(&mut self, span: &Span, what: &str) {
        self.errors.push(Diagnostic::new(
            span,
            format!("{what} is missing or out of range"),
            "run the validator first: the compiler takes validated manifests",
        ));
    }

    fn nanoseconds(&mut self, time: Option<&crate::ast::Located<u64>>, span: &Span, what: &str) -> u64 {
        match time {
            None => {
                self.missing(span, what);
                0
            }
            Some(time) => time.value.checked_mul(1000).unwrap_or_else(|| {
                self.errors.push(Diagnostic::new(
                    &time.span,
                    format!("{what} of {}us does not fit 64 bits in nanoseconds", time.value),
                    "the spec counts times in nanoseconds: write a time below 584 years",
                ));
                0
            }),
        }
    }

    fn domains(&mut self, graph: &FlowGraph) {
        let domains: Vec<_> = self.model.domains().collect();
        for name in &graph.domains {
            let Some(domain) = domains.iter().find(|domain| domain.name.text == *name) else { continue };
            let span = domain.name.span.clone();
            let priority = domain.priority.as_ref().and_then(|priority| u8::try_from(priority.value).ok());
            let core = domain.core.as_ref().and_then(|core| u32::try_from(core.value).ok());
            let (Some(priority), Some(core), Some(image)) = (priority, core, domain.image.as_ref()) else {
                self.missing(&span, &format!("the image, priority or core of `{name}`"));
                continue;
            };
            let budget_ns = self.nanoseconds(domain.budget.as_ref(), &span, "budget");
            let period_ns = self.nanoseconds(domain.period.as_ref(), &span, "period");
            let tcb = self.object(format!("{name}.tcb"), ObjectKind::Tcb { priority, core });
            let sched_context =
                self.object(format!("{name}.sched_context"), ObjectKind::SchedContext { budget_ns, period_ns });
            let cnode = self.object(format!("{name}.cnode"), ObjectKind::CNode { radix: 1 });
            let vspace = self.object(format!("{name}.vspace"), ObjectKind::VSpace);
            let mut state = DomainState {
                spec: DomainSpec {
                    name: name.clone(),
                    image: image.value.clone(),
                    tcb,
                    sched_context,
                    cnode,
                    vspace,
                    stack_bytes: domain.stack.as_ref().map_or(0, |stack| stack.value),
                    heap_bytes: domain.heap.as_ref().map_or(0, |heap| heap.value),
                    passive: domain.passive.is_some(),
                    caps: Vec::new(),
                    mappings: Vec::new(),
                    fault_handler: None,
                },
                span: span.clone(),
                names: BTreeMap::new(),
                region_names: BTreeMap::new(),
                held: BTreeMap::from([(cnode, 0)]),
                reply: None,
            };
            state.spec.caps.push(CapSpec {
                slot: CNODE_SLOT,
                name: "cnode".to_owned(),
                object: cnode,
                rights: cap_rights_bits(CapRights::ALL),
                badge: 0,
            });
            state.names.insert(constant_name("cnode"), (format!("`{name}.cnode`"), span));
            self.index.insert(name.clone(), self.domains.len());
            self.domains.push(state);
        }
    }

    /// Gives the PD `domain` a capability, unless it holds the same one
    /// already.
    fn grant(&mut self, domain: &Name, name: String, object: ObjectId, rights: u64, badge: u64, span: &Span) {
        let Some(&index) = self.index.get(&domain.text) else {
            self.missing(&domain.span, &format!("protection domain `{}`", domain.text));
            return;
        };
        let state = &mut self.domains[index];
        if let Some(held) = state.held.get(&object).map(|&index| &state.spec.caps[index]) {
            if held.rights != rights || held.badge != badge {
                let object_name = &self.objects[usize::try_from(object.0).unwrap_or(usize::MAX)].name;
                self.errors.push(Diagnostic::new(
                    span,
                    format!(
                        "`{}` would hold two different capabilities to `{object_name}` (rights {:#x} badge {} and rights {rights:#x} badge {badge})",
                        domain.text, held.rights, held.badge
                    ),
                    "a PD holds one capability per endpoint or notification: give each end or each badge its own channel",
                ));
            }
            return;
        }
        let what = format!("`{}`", self.objects[usize::try_from(object.0).unwrap_or(usize::MAX)].name);
        if let Some(error) = claim(&mut state.names, &name, what, &domain.text, span) {
            self.errors.push(error);
        }
        state.held.insert(object, state.spec.caps.len());
        let slot = u64::try_from(state.spec.caps.len()).unwrap_or(u64::MAX);
        state.spec.caps.push(CapSpec { slot, name, object, rights, badge });
    }

    fn region(&mut self, region: &crate::ast::Region) {
        let page_size = region.page_size.as_ref().map_or(PAGE_SIZES[0], |page| page.value);
        let Some(size) =
            region.size.as_ref().map(|size| size.value).filter(|size| page_size != 0 && size % page_size == 0)
        else {
            self.missing(&region.name.span, &format!("the size of region `{}`", region.name.text));
            return;
        };
        let physical = region.physical.as_ref().map(|physical| physical.value);
        let name = &region.name.text;
        let frames =
            self.object(format!("{name}.frames"), ObjectKind::Frames { page_size, count: size / page_size, physical });
        let rights = map_rights(
            region
                .rights
                .as_ref()
                .map_or(MemoryRights { read: true, write: true, execute: false }, |rights| rights.value),
        );
        let index = u32::try_from(self.regions.len()).unwrap_or(u32::MAX);
        let contents = region.contents.as_ref().map(|contents| contents.value.clone());
        self.regions.push(RegionSpec { name: name.clone(), frames, size, rights, contents });
        let cache = if physical.is_some() { Cache::Uncacheable } else { Cache::WriteBack };
        for mapping in &region.mappings {
            let Some(&domain) = self.index.get(&mapping.domain.text) else {
                self.missing(&mapping.domain.span, &format!("protection domain `{}`", mapping.domain.text));
                continue;
            };
            let state = &mut self.domains[domain];
            let what = format!("region `{name}`");
            if let Some(error) = claim(&mut state.region_names, name, what, &mapping.domain.text, &mapping.span) {
                self.errors.push(error);
            }
            state.spec.mappings.push(MappingSpec {
                region: index,
                address: mapping.address.value,
                rights: map_rights(mapping.rights.value),
                cache,
            });
        }
    }

    fn channel(&mut self, channel: &crate::ast::Channel) {
        let name = &channel.name.text;
        let has = |wanted: &dyn Fn(ConnectionKind) -> bool| channel.connections.iter().any(|c| wanted(c.kind));
        let endpoint = has(&|kind| kind != ConnectionKind::Notify)
            .then(|| self.object(format!("{name}.endpoint"), ObjectKind::Endpoint));
        let notification = has(&|kind| kind == ConnectionKind::Notify)
            .then(|| self.object(format!("{name}.notification"), ObjectKind::Notification));
        let granted = channel.rights.as_ref().map_or(CapRights::ALL, |rights| rights.value);
        self.channels.push(ChannelSpec {
            name: name.clone(),
            endpoint,
            notification,
            rights: cap_rights_bits(granted),
        });
        for connection in &channel.connections {
            let (object, cap_name) = match connection.kind {
                ConnectionKind::Notify => (notification, format!("{name}_notification")),
                ConnectionKind::Call | ConnectionKind::Send | ConnectionKind::Faults => (endpoint, name.clone()),
            };
            let Some(object) = object else { continue };
            if connection.kind == ConnectionKind::Faults {
                // The faulting PD holds no capability: its TCB's fault slot
                // gets one, which the handler receives on like a call.
                let badge = connection.badge.as_ref().map_or(0, |badge| badge.value);
                if let Some(&index) = self.index.get(&connection.from.text) {
                    self.domains[index].spec.fault_handler = Some(FaultHandlerSpec { endpoint: object, badge });
                }
                self.grant(&connection.to, cap_name, object, RIGHT_READ, 0, &connection.span);
                self.reply(&connection.to, &connection.span);
                continue;
            }
            let default =
                CapRights { write: true, grant_reply: connection.kind == ConnectionKind::Call, ..CapRights::default() };
            let rights = connection.rights.as_ref().map_or(default, |rights| rights.value);
            let badge = connection.badge.as_ref().map_or(0, |badge| badge.value);
            let span = &connection.span;
            self.grant(&connection.from, cap_name.clone(), object, cap_rights_bits(rights), badge, span);
            self.grant(&connection.to, cap_name, object, RIGHT_READ, 0, span);
            if connection.kind == ConnectionKind::Call {
                self.reply(&connection.to, span);
            }
        }
    }

    /// Gives the server `domain` its reply object the first time it
    /// serves a call.
    fn reply(&mut self, domain: &Name, span: &Span) {
        let Some(&index) = self.index.get(&domain.text) else { return };
        if self.domains[index].reply.is_some() {
            return;
        }
        let reply = self.object(format!("{}.reply", domain.text), ObjectKind::Reply);
        self.domains[index].reply = Some(reply);
        self.grant(domain, "reply".to_owned(), reply, cap_rights_bits(CapRights::ALL), 0, span);
    }

    fn device(&mut self, device: &crate::ast::Device) {
        let name = &device.name.text;
        let mut granted = Vec::new();
        // One notification per device with interrupts: its owners wait on
        // it, and each line signals its own bit.
        let notification = (!device.irqs.is_empty())
            .then(|| self.object(format!("{name}.irq_notification"), ObjectKind::Notification));
        for irq in &device.irqs {
            let Ok(line) = u8::try_from(irq.value) else {
                self.missing(&irq.span, "an IRQ line");
                continue;
            };
            let cap_name = if device.irqs.len() == 1 { format!("{name}_irq") } else { format!("{name}_irq_{line}") };
            let Some(notification) = notification.filter(|_| line < 64) else {
                self.missing(&irq.span, "an IRQ line");
                continue;
            };
            let object = self.object(format!("{name}.irq{line}"), ObjectKind::IrqHandler { line, notification });
            granted.push((cap_name, object, irq.span.clone(), cap_rights_bits(CapRights::ALL)));
        }
        if let Some(notification) = notification {
            let span = device.irqs.first().map_or_else(|| device.name.span.clone(), |irq| irq.span.clone());
            granted.push((format!("{name}_irq_notification"), notification, span, RIGHT_READ));
        }
        for (number, ports) in device.io_ports.iter().enumerate() {
            let (Ok(first), Ok(last)) = (u16::try_from(ports.value.0), u16::try_from(ports.value.1)) else {
                self.missing(&ports.span, "an I/O port range");
                continue;
            };
            let cap_name =
                if device.io_ports.len() == 1 { format!("{name}_ioports") } else { format!("{name}_ioports_{number}") };
            let object = self.object(format!("{name}.ioports{number}"), ObjectKind::IoPorts { first, last });
            self.device_ports.entry(name.clone()).or_default().push((object, first));
            granted.push((cap_name, object, ports.span.clone(), cap_rights_bits(CapRights::ALL)));
        }
        for owner in &device.owners {
            for (cap_name, object, span, rights) in &granted {
                self.grant(owner, cap_name.clone(), *object, *rights, 0, span);
            }
        }
    }

    /// A guest's GuestSpace and VCpus; its VMM gets a capability to each
    /// VCpu, in its last slots.
    fn guest(&mut self, guest: &crate::ast::Guest) {
        let name = &guest.name.text;
        let (Some(vmm), Some(vcpus)) = (&guest.vmm, guest.vcpus.as_ref().map(|vcpus| vcpus.value)) else {
            self.missing(&guest.name.span, &format!("the VMM or vCPUs of guest `{name}`"));
            return;
        };
        let Some(&vmm_index) = self.index.get(&vmm.text) else {
            self.missing(&vmm.span, &format!("protection domain `{}`", vmm.text));
            return;
        };
        let mut memory = Vec::new();
        for (region, guest_physical) in guest_memory_layout(&self.model, guest) {
            let index = self.regions.iter().position(|spec| spec.name == region.name.text);
            let mapping = region.mappings.iter().find(|mapping| mapping.domain.text == vmm.text);
            let (Some(index), Some(mapping)) = (index.and_then(|index| u32::try_from(index).ok()), mapping) else {
                self.missing(&region.name.span, &format!("the VMM's mapping of memory `{}`", region.name.text));
                continue;
            };
            memory.push(GuestMemorySpec { region: index, guest_physical, vmm_address: mapping.address.value });
        }
        // The PD that serves its devices: its VMX, else its VMM.
        let server = guest.vmx.as_ref().unwrap_or(vmm);
        let mut disks = Vec::new();
        for (disk, region_name) in &guest.region_disks {
            let index = self.regions.iter().position(|spec| spec.name == region_name.text);
            let region = self.model.region(&region_name.text);
            let mapping = region.and_then(|region| region.mappings.iter().find(|map| map.domain.text == server.text));
            let server_index = self.index.get(&server.text).and_then(|index| u32::try_from(*index).ok());
            let (Some(region), Some(mapping), Some(server)) =
                (index.and_then(|index| u32::try_from(index).ok()), mapping, server_index)
            else {
                self.missing(&region_name.span, &format!("the serving PD's mapping of disk `{}`", disk.text));
                continue;
            };
            disks.push(GuestDiskSpec { name: disk.text.clone(), region, server, address: mapping.address.value });
        }
        // The debug port: the VMM's capability to the device's one range.
        let debug_port = guest.debug.as_ref().and_then(|device| {
            let port = match self.device_ports.get(&device.text).map(Vec::as_slice) {
                Some([(object, first_port)]) => self.domains[vmm_index]
                    .held
                    .get(object)
                    .and_then(|index| self.domains[vmm_index].spec.caps.get(*index))
                    .map(|cap| DebugPort { slot: cap.slot, first_port: *first_port }),
                _ => None,
            };
            if port.is_none() {
                self.missing(&device.span, &format!("the VMM's I/O ports of debug port `{}`", device.text));
            }
            port
        });
        let space = self.object(format!("{name}.space"), ObjectKind::GuestSpace);
        let vcpus: Vec<ObjectId> =
            (0..vcpus).map(|number| self.object(format!("{name}.vcpu{number}"), ObjectKind::VCpu)).collect();
        let first_vcpu_slot = u64::try_from(self.domains[vmm_index].spec.caps.len()).unwrap_or(u64::MAX);
        let all = cap_rights_bits(CapRights::ALL);
        for (number, vcpu) in vcpus.iter().enumerate() {
            self.grant(vmm, format!("{name}_vcpu{number}"), *vcpu, all, 0, &guest.name.span);
        }
        self.guests.push(GuestSpec {
            name: name.clone(),
            vmm: u32::try_from(vmm_index).unwrap_or(u32::MAX),
            space,
            vcpus,
            first_vcpu_slot,
            memory,
            image: guest.image.as_ref().map(|image| image.value.clone()),
            kernel: guest.kernel.as_ref().map(|kernel| kernel.value.clone()),
            initrd: guest.initrd.as_ref().map(|initrd| initrd.value.clone()),
            cmdline: guest.cmdline.as_ref().map(|cmdline| cmdline.value.clone()),
            disks,
            vmx: guest.vmx.as_ref().and_then(|vmx| self.vmx(guest, vmm, vmx)),
            debug_port,
        });
    }

    /// What the info pages of guest `guest`'s VMM `vmm` and VMX `vmx` say
    /// about each other: where the VMX maps the guest's memory and the
    /// slots of the device channel's capabilities (0 where there is none:
    /// the validator insists on the channel, and on the memory for a VMX
    /// that serves disks).
    fn vmx(&self, guest: &crate::ast::Guest, vmm: &Name, vmx: &Name) -> Option<GuestVmxSpec> {
        let (vmm_state, vmx_state) = (&self.domains[*self.index.get(&vmm.text)?], self.index.get(&vmx.text)?);
        let vmx_state = &self.domains[*vmx_state];
        let memory_address = guest_memory_layout(&self.model, guest)
            .first()
            .and_then(|(region, guest_physical)| {
                let mapping = region.mappings.iter().find(|mapping| mapping.domain.text == vmx.text)?;
                Some(mapping.address.value.wrapping_sub(*guest_physical))
            })
            .unwrap_or(0);
        let slot_of = |state: &DomainState, object: Option<ObjectId>| {
            object
                .and_then(|object| state.held.get(&object))
                .and_then(|index| state.spec.caps.get(*index))
                .map_or(0, |cap| cap.slot)
        };
        let endpoint = device_channel(&self.model, &vmm.text, &vmx.text)
            .and_then(|channel| self.channels.iter().find(|spec| spec.name == channel.name.text))
            .and_then(|channel| channel.endpoint);
        Some(GuestVmxSpec {
            domain: u32::try_from(*self.index.get(&vmx.text)?).ok()?,
            memory_address,
            vmm_slot: slot_of(vmm_state, endpoint),
            vmx_slot: slot_of(vmx_state, endpoint),
            reply_slot: slot_of(vmx_state, vmx_state.reply),
        })
    }

    fn finish(mut self) -> Result<SystemSpec, Vec<Diagnostic>> {
        let mut domains = Vec::new();
        let spans: Vec<Span> = self.domains.iter().map(|state| state.span.clone()).collect();
        for state in self.domains {
            let slots = state.spec.caps.len();
            // The smallest radix whose CNode holds every slot (at least 1).
            let radix = (1..=MAX_CNODE_RADIX).find(|radix| (1_usize << radix) >= slots);
            match radix {
                Some(radix) => {
                    if let Some(object) = usize::try_from(state.spec.cnode.0).ok().and_then(|i| self.objects.get_mut(i))
                    {
                        object.kind = ObjectKind::CNode { radix };
                    }
                }
                None => self.errors.push(Diagnostic::new(
                    &state.span,
                    format!(
                        "`{}` needs {slots} capability slots, more than a CNode of radix {MAX_CNODE_RADIX} holds ({})",
                        state.spec.name,
                        1_u32 << MAX_CNODE_RADIX
                    ),
                    "split the protection domain, or merge its channels",
                )),
            }
            domains.push(state.spec);
        }
        let spec = SystemSpec {
            version: SPEC_VERSION,
            objects: self.objects,
            domains,
            channels: self.channels,
            regions: self.regions,
            guests: self.guests,
        };
        // A program image is built once with one PD's names: every PD that
        // runs it must have the same ones.
        for (index, domain) in spec.domains.iter().enumerate() {
            let Some(first) = spec.domains[..index].iter().find(|other| other.image == domain.image) else { continue };
            if let Some(span) = spans.get(index)
                && names_body(&spec, &first.name) != names_body(&spec, &domain.name)
            {
                self.errors.push(Diagnostic::new(
                    span,
                    format!(
                        "`{}` and `{}` run image `{}` but their capability slots or regions differ",
                        first.name, domain.name, domain.image
                    ),
                    "a program names its capabilities at build time: give the PDs the same channels, devices and regions in the same order, or each its own image",
                ));
            }
        }
        if !self.errors.is_empty() {
            self.errors.sort_by_key(|error| (error.span.line, error.span.column));
            return Err(self.errors);
        }
        Ok(spec)
    }
}

/// Records that `what` (e.g. "`log.notification`", "region `dma_buffer`")
/// takes the constant made from `name` in PD `domain`; an error if
/// something else already has that constant.
fn claim(
    names: &mut BTreeMap<String, (String, Span)>,
    name: &str,
    what: String,
    domain: &str,
    span: &Span,
) -> Option<Diagnostic> {
    let constant = constant_name(name);
    if !constant.chars().any(|character| character.is_ascii_alphanumeric()) {
        return Some(Diagnostic::new(
            span,
            format!("{what} would be the constant `{constant}` of `{domain}`, which Rust does not allow"),
            "rename it to contain a letter or a digit",
        ));
    }
    if let Some((other, _)) = names.get(&constant) {
        return Some(Diagnostic::new(
            span,
            format!("{other} and {what} would both be the constant `{constant}` of `{domain}`"),
            "rename one of them so that their SCREAMING_SNAKE_CASE forms differ",
        ));
    }
    names.insert(constant, (what, span.clone()));
    None
}

/// A manifest name in SCREAMING_SNAKE_CASE: `dma_buffer` and `dmaBuffer`
/// both become `DMA_BUFFER`.
pub fn constant_name(name: &str) -> String {
    let mut constant = String::with_capacity(name.len() + 4);
    let mut previous: Option<char> = None;
    for character in name.chars() {
        if character.is_ascii_uppercase() && previous.is_some_and(|p| p.is_ascii_lowercase() || p.is_ascii_digit()) {
            constant.push('_');
        }
        constant.push(character.to_ascii_uppercase());
        previous = Some(character);
    }
    constant
}

/// The code of `pd`'s names without comments: what PDs sharing an image
/// must agree on.
fn names_body(spec: &SystemSpec, pd: &str) -> Option<String> {
    // Comments (each capability's badge, say) may differ; the code may not.
    generated_names(spec, pd)
        .map(|text| text.lines().filter(|line| !line.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n"))
}

/// The Rust source of the names of program image `image`: those of every
/// PD that runs it (the compiler has checked they are the same), with a
/// header naming the image. `None` if no PD runs it.
pub fn generated_image_names(spec: &SystemSpec, image: &str) -> Option<String> {
    let first = spec.domains.iter().find(|domain| domain.image == image)?;
    let text = generated_names(spec, &first.name)?;
    let runners: Vec<&str> =
        spec.domains.iter().filter(|domain| domain.image == image).map(|domain| domain.name.as_str()).collect();
    let body: Vec<&str> = text.lines().skip(2).collect();
    Some(format!(
        "// The capability slots and regions of program image `{image}` (run by {}),\n// generated by bulkhead-capdl from the system manifest: do not edit.\n{}\n",
        runners.join(", "),
        body.join("\n")
    ))
}

/// The Rust source of PD `pd`'s names: a `Region` type, `pub mod caps`
/// with a `u64` slot constant per capability and `pub mod regions` with a
/// `Region` constant per mapped region, in SCREAMING_SNAKE_CASE. The text
/// is a module's body, to be `include!`d inside a `mod`. `None` for a PD
/// the spec does not have.
pub fn generated_names(spec: &SystemSpec, pd: &str) -> Option<String> {
    let domain = spec.domain(pd)?;
    let mut text = String::new();
    let _ = writeln!(text, "// The capability slots and regions of protection domain `{pd}`,");
    let _ = writeln!(text, "// generated by bulkhead-capdl from the system manifest: do not edit.");
    text.push_str(concat!(
        "\n",
        "/// A region mapped into this protection domain.\n",
        "#[derive(Clone, Copy, Debug, PartialEq, Eq)]\n",
        "pub struct Region {\n",
        "    /// Its first virtual address.\n",
        "    pub address: u64,\n",
        "    /// Its size in bytes.\n",
        "    pub size: u64,\n",
        "    /// The size of its pages in bytes.\n",
        "    pub page_size: u64,\n",
        "    /// Mapped writable.\n",
        "    pub writable: bool,\n",
        "    /// Mapped executable.\n",
        "    pub executable: bool,\n",
        "    /// Device memory (mapped uncached).\n",
        "    pub device: bool,\n",
        "}\n",
        "\n",
        "/// The slots of this protection domain's capabilities in its CNode.\n",
        "pub mod caps {\n",
    ));
    let domain_index = spec.domains.iter().position(|other| other.name == domain.name);
    let is = |index: u32| usize::try_from(index).ok() == domain_index;
    // The device channel's capabilities and the VMX's reply object are on
    // the VMM's and the VMX's info pages (`PdInfo::device_link`), so the
    // servers of guests with channels of different names share an image.
    // (Slot 0 is the CNode's own, never a link's: a 0 in the spec means
    // "none" and must not hide the CNode.)
    let on_link = |slot: u64| {
        slot != 0
            && spec.guests.iter().filter_map(|guest| Some((guest.vmm, guest.vmx?))).any(|(vmm, vmx)| {
                (is(vmm) && slot == vmx.vmm_slot)
                    || (is(vmx.domain) && (slot == vmx.vmx_slot || slot == vmx.reply_slot))
            })
    };
    for cap in &domain.caps {
        // A VMM finds its VCpus and its guest's debug port through its info
        // page: VMMs of guests with different vCPU counts, with and without
        // a debugger, can then share one image.
        let debug_port =
            spec.guests.iter().any(|guest| is(guest.vmm) && guest.debug_port.is_some_and(|port| port.slot == cap.slot));
        if debug_port
            || spec.object(cap.object).is_some_and(|object| object.kind == ObjectKind::VCpu)
            || on_link(cap.slot)
        {
            continue;
        }
        let what = spec.object(cap.object).map_or("an object", |object| object.name.as_str());
        let _ = writeln!(text, "    /// `{what}`, rights {:#x}, badge {}.", cap.rights, cap.badge);
        let _ = writeln!(text, "    pub const {}: u64 = {};", constant_name(&cap.name), cap.slot);
    }
    text.push_str("}\n\n/// The regions this protection domain maps.\npub mod regions {\n");
    // Likewise its guest's memory (a VMM's, or a VMX's), and the disks a
    // VMM or VMX serves: they are on its info page, so servers of
    // different guests share an image.
    let on_info_page = |mapping: &MappingSpec| {
        spec.guests.iter().any(|guest| {
            let serves_memory = is(guest.vmm) || guest.vmx.is_some_and(|vmx| is(vmx.domain));
            (serves_memory && guest.memory.iter().any(|memory| memory.region == mapping.region))
                || guest.disks.iter().any(|disk| is(disk.server) && disk.region == mapping.region)
        })
    };
    if domain.mappings.iter().any(|mapping| !on_info_page(mapping)) {
        text.push_str("    use super::Region;\n\n");
    }
    for mapping in domain.mappings.iter().filter(|mapping| !on_info_page(mapping)) {
        let region = usize::try_from(mapping.region).ok().and_then(|index| spec.regions.get(index))?;
        let (page_size, device) = match spec.object(region.frames).map(|object| &object.kind) {
            Some(ObjectKind::Frames { page_size, physical, .. }) => (*page_size, physical.is_some()),
            _ => return None,
        };
        let _ = writeln!(text, "    /// Region `{}`.", region.name);
        let _ = writeln!(
            text,
            "    pub const {}: Region = Region {{ address: {:#x}, size: {:#x}, page_size: {page_size:#x}, writable: {}, executable: {}, device: {device} }};",
            constant_name(&region.name),
            mapping.address,
            region.size,
            mapping.rights.write,
            mapping.rights.execute,
        );
    }
    text.push_str("}\n");
    Some(text)
}
