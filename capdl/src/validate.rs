//! The validator: resolves names and proves the separation properties of
//! a parsed manifest before anything is built from it. Each check is one
//! function; [`validate`] runs them all and returns every error found.

use std::collections::{BTreeMap, BTreeSet};

use crate::ast::{
    CapRights, Channel, ConnectionKind, Device, Guest, Item, Manifest, Mapping, MemoryRights, Name, ProtectionDomain,
    Region,
};
use crate::diagnostic::{Diagnostic, Span};
use crate::graph::{FlowEdge, FlowGraph};

/// The page sizes a region may use: 4 KiB, 2 MiB, 1 GiB.
pub use bulkhead_capdl_spec::PAGE_SIZES;
use bulkhead_capdl_spec::layout;
/// The highest priority a PD may have: the loader runs at 255, and a PD
/// at its priority could share its time before the system is complete.
pub const MAX_PD_PRIORITY: u64 = 254;
/// The end of the user half of an address space (docs/abi.md).
pub const USER_END: u64 = 1 << 47;
/// I/O ports the kernel keeps (docs/abi.md, IoPortControl::Issue).
pub const KERNEL_PORTS: [(u64, u64); 5] = [(0x3f8, 0x3ff), (0x20, 0x21), (0xa0, 0xa1), (0xf4, 0xf4), (0x8900, 0x8900)];
/// The highest interrupt line a device may name: the kernel hands out the
/// legacy PIC lines 0..=15 (docs/abi.md, IrqControl::Get); IOAPIC lines
/// and MSIs are not handed out yet.
pub const MAX_IRQ: u64 = 15;
/// The interrupt line the PICs cascade on, never a device's.
pub const CASCADE_IRQ: u64 = 2;

/// The manifest with names resolved: every named item by name.
pub struct Model<'a> {
    /// The manifest.
    pub manifest: &'a Manifest,
    /// The first item of each name.
    pub items: BTreeMap<&'a str, &'a Item>,
}

impl<'a> Model<'a> {
    /// Builds the name table (the first definition of a name wins).
    pub fn new(manifest: &'a Manifest) -> Self {
        let mut items = BTreeMap::new();
        for item in &manifest.items {
            if let Some(name) = item.name() {
                items.entry(name.text.as_str()).or_insert(item);
            }
        }
        Self { manifest, items }
    }

    /// The protection domains, in order.
    pub fn domains(&self) -> impl Iterator<Item = &'a ProtectionDomain> {
        self.manifest.items.iter().filter_map(|item| match item {
            Item::ProtectionDomain(domain) => Some(domain),
            _ => None,
        })
    }

    /// The regions, in order.
    pub fn regions(&self) -> impl Iterator<Item = &'a Region> {
        self.manifest.items.iter().filter_map(|item| match item {
            Item::Region(region) => Some(region),
            _ => None,
        })
    }

    /// The channels, in order.
    pub fn channels(&self) -> impl Iterator<Item = &'a Channel> {
        self.manifest.items.iter().filter_map(|item| match item {
            Item::Channel(channel) => Some(channel),
            _ => None,
        })
    }

    /// The devices, in order.
    pub fn devices(&self) -> impl Iterator<Item = &'a Device> {
        self.manifest.items.iter().filter_map(|item| match item {
            Item::Device(device) => Some(device),
            _ => None,
        })
    }

    /// The guests, in order.
    pub fn guests(&self) -> impl Iterator<Item = &'a Guest> {
        self.manifest.items.iter().filter_map(|item| match item {
            Item::Guest(guest) => Some(&**guest),
            _ => None,
        })
    }

    /// Whether `name` is a declared protection domain.
    pub fn is_domain(&self, name: &str) -> bool {
        matches!(self.items.get(name), Some(Item::ProtectionDomain(_)))
    }

    /// The region called `name`, if there is one.
    pub fn region(&self, name: &str) -> Option<&'a Region> {
        match self.items.get(name) {
            Some(Item::Region(region)) => Some(region),
            _ => None,
        }
    }

    /// The protection domain called `name`, if one is declared.
    pub fn domain(&self, name: &str) -> Option<&'a ProtectionDomain> {
        match self.items.get(name) {
            Some(Item::ProtectionDomain(domain)) => Some(domain),
            _ => None,
        }
    }
}

/// Runs every check. On success returns the information-flow graph.
///
/// # Errors
///
/// Every error found, sorted by position.
pub fn validate(manifest: &Manifest) -> Result<FlowGraph, Vec<Diagnostic>> {
    let model = Model::new(manifest);
    let mut errors = Vec::new();
    check_duplicate_names(&model, &mut errors);
    check_unknown_names(&model, &mut errors);
    check_domain_fields(&model, &mut errors);
    check_region_layout(&model, &mut errors);
    check_virtual_overlap(&model, &mut errors);
    check_region_owners(&model, &mut errors);
    check_physical_ranges(&model, &mut errors);
    check_device_resources(&model, &mut errors);
    check_rights(&model, &mut errors);
    check_badges(&model, &mut errors);
    check_fault_handlers(&model, &mut errors);
    check_core_budgets(&model, &mut errors);
    check_passive_servers(&model, &mut errors);
    check_guests(&model, &mut errors);
    check_guest_boot(&model, &mut errors);
    check_region_contents(&model, &mut errors);
    check_guest_disks(&model, &mut errors);
    check_guest_debug(&model, &mut errors);
    check_duplicate_flows(&model, &mut errors);
    let graph = flow_graph(&model);
    check_flows(&model, &graph, &mut errors);
    if errors.is_empty() {
        Ok(graph)
    } else {
        errors.sort_by_key(|error| (error.span.line, error.span.column));
        Err(errors)
    }
}

/// Every item name is defined once (PDs, regions, channels, devices and
/// guests share one namespace).
pub fn check_duplicate_names(model: &Model<'_>, errors: &mut Vec<Diagnostic>) {
    for item in &model.manifest.items {
        let Some(name) = item.name() else { continue };
        let Some(first) = model.items.get(name.text.as_str()).and_then(|first| first.name()) else { continue };
        if first.span != name.span {
            errors.push(Diagnostic::new(
                &name.span,
                format!("duplicate name `{}`", name.text),
                format!("`{}` is already defined at line {}; rename one of them", name.text, first.span.line),
            ));
        }
    }
}

/// Every name used resolves to an item of the right kind.
pub fn check_unknown_names(model: &Model<'_>, errors: &mut Vec<Diagnostic>) {
    let mut want = |name: &Name, kind: &str| match model.items.get(name.text.as_str()) {
        Some(item) if item.kind() == kind => {}
        Some(item) => errors.push(Diagnostic::new(
            &name.span,
            format!("`{}` is a {}, not a {kind}", name.text, item.kind()),
            format!("name a {kind} here"),
        )),
        None => {
            let closest = model
                .items
                .iter()
                .filter(|(_, item)| item.kind() == kind)
                .map(|(candidate, _)| (edit_distance(candidate, &name.text), *candidate))
                .min();
            let hint = match closest {
                Some((distance, candidate)) if distance <= 2 => format!("did you mean `{candidate}`?"),
                _ => format!("declare the {kind} or fix the spelling"),
            };
            errors.push(Diagnostic::new(&name.span, format!("unknown {kind} `{}`", name.text), hint));
        }
    };
    for item in &model.manifest.items {
        match item {
            Item::ProtectionDomain(_) => {}
            Item::Region(region) => region.mappings.iter().for_each(|map| want(&map.domain, "protection domain")),
            Item::Channel(channel) => {
                for connection in &channel.connections {
                    want(&connection.from, "protection domain");
                    want(&connection.to, "protection domain");
                }
            }
            Item::Device(device) => device.owners.iter().for_each(|owner| want(owner, "protection domain")),
            Item::Guest(guest) => {
                guest.memory.iter().for_each(|region| want(region, "region"));
                guest.vmm.iter().chain(&guest.vmx).for_each(|domain| want(domain, "protection domain"));
                for (_, channel) in guest.disks.iter().chain(&guest.nics) {
                    want(channel, "channel");
                }
                guest.region_disks.iter().for_each(|(_, region)| want(region, "region"));
                guest.debug.iter().for_each(|device| want(device, "device"));
                for (region, domain) in &guest.exposures {
                    want(region, "region");
                    want(domain, "protection domain");
                }
            }
            Item::Flow(flow) => {
                want(&flow.from, "protection domain");
                want(&flow.to, "protection domain");
            }
        }
    }
}

/// Every PD has an image, a priority up to 255, a core, and a budget that
/// is positive and not above its period.
pub fn check_domain_fields(model: &Model<'_>, errors: &mut Vec<Diagnostic>) {
    for domain in model.domains() {
        let missing = [
            ("image", domain.image.is_none()),
            ("priority", domain.priority.is_none()),
            ("budget", domain.budget.is_none()),
            ("period", domain.period.is_none()),
            ("core", domain.core.is_none()),
        ];
        for (field, absent) in missing {
            if absent {
                errors.push(Diagnostic::new(
                    &domain.name.span,
                    format!("protection domain `{}` has no `{field}`", domain.name.text),
                    format!("add a `{field}` line to the block"),
                ));
            }
        }
        if let Some(priority) = domain.priority.as_ref().filter(|priority| priority.value > MAX_PD_PRIORITY) {
            errors.push(Diagnostic::new(
                &priority.span,
                format!("priority {} is above {MAX_PD_PRIORITY}", priority.value),
                "PD priorities are 0 (lowest) to 254: 255 is the loader's, which must finish before any PD runs",
            ));
        }
        if let (Some(budget), Some(period)) = (&domain.budget, &domain.period) {
            if budget.value == 0 || period.value == 0 {
                errors.push(Diagnostic::new(
                    &budget.span,
                    "budget and period must be above zero",
                    "give the PD some time, e.g. `budget 1ms`",
                ));
            } else if budget.value > period.value {
                errors.push(Diagnostic::new(
                    &budget.span,
                    format!("budget {}us is longer than the period {}us", budget.value, period.value),
                    "a budget is the time used in each period: make it at most the period",
                ));
            }
        }
        let sizes = [("stack", &domain.stack, layout::MAX_STACK_BYTES), ("heap", &domain.heap, layout::MAX_HEAP_BYTES)];
        for (field, size, most) in sizes {
            let Some(size) = size else { continue };
            if size.value % PAGE_SIZES[0] != 0 {
                errors.push(Diagnostic::new(
                    &size.span,
                    format!("{field} size {:#x} is not a whole number of 4KiB pages", size.value),
                    "round the size up to a multiple of 4KiB",
                ));
            } else if size.value > most {
                errors.push(Diagnostic::new(
                    &size.span,
                    format!("{field} size {:#x} is above the layout's {most:#x}", size.value),
                    format!("the loader's layout (docs/capdl.md) leaves room for at most {most:#x} bytes of {field}"),
                ));
            }
        }
    }
}

/// Regions have a size that is a whole number of pages of a supported
/// size, and physical and virtual addresses aligned to those pages below
/// the end of the user half.
pub fn check_region_layout(model: &Model<'_>, errors: &mut Vec<Diagnostic>) {
    for region in model.regions() {
        let page = region.page_size.as_ref().map_or(PAGE_SIZES[0], |page| page.value);
        if let Some(page_size) = &region.page_size
            && !PAGE_SIZES.contains(&page_size.value)
        {
            errors.push(Diagnostic::new(
                &page_size.span,
                format!("page size {} is not supported", page_size.value),
                "pages are 4KiB, 2MiB or 1GiB",
            ));
            continue;
        }
        let Some(size) = &region.size else {
            errors.push(Diagnostic::new(
                &region.name.span,
                format!("region `{}` has no `size`", region.name.text),
                "add a `size` line, e.g. `size 64KiB`",
            ));
            continue;
        };
        if size.value == 0 || size.value % page != 0 {
            errors.push(Diagnostic::new(
                &size.span,
                format!("size {:#x} is not a whole number of {page:#x}-byte pages", size.value),
                "round the size up to the page size",
            ));
        }
        if let Some(physical) = region.physical.as_ref().filter(|physical| physical.value % page != 0) {
            errors.push(Diagnostic::new(
                &physical.span,
                format!("physical address {:#x} is not aligned to {page:#x}", physical.value),
                "align the physical address to the region's page size",
            ));
        }
        for mapping in &region.mappings {
            let address = &mapping.address;
            if address.value % page != 0 {
                errors.push(Diagnostic::new(
                    &address.span,
                    format!("address {:#x} is not aligned to {page:#x}", address.value),
                    "align the mapping to the region's page size",
                ));
            } else if address.value < layout::RESERVED_END {
                errors.push(Diagnostic::new(
                    &address.span,
                    format!(
                        "mapping at {:#x} lies in the PD's own layout, below {:#x}",
                        address.value,
                        layout::RESERVED_END
                    ),
                    "the loader puts the PD's image, stack, IPC buffer, info page and heap below 2GiB: map regions at 0x8000_0000 or above",
                ));
            } else if address.value.checked_add(size.value).is_none_or(|end| end > USER_END) {
                errors.push(Diagnostic::new(
                    &address.span,
                    format!("mapping at {:#x} reaches past the user half ({USER_END:#x})", address.value),
                    "map the region lower",
                ));
            }
        }
    }
}

/// No PD maps two regions over each other.
pub fn check_virtual_overlap(model: &Model<'_>, errors: &mut Vec<Diagnostic>) {
    let mut seen: Vec<(&str, u64, u64, &str)> = Vec::new();
    for region in model.regions() {
        let Some(size) = region.size.as_ref().map(|size| size.value).filter(|&size| size > 0) else { continue };
        for mapping in &region.mappings {
            let start = mapping.address.value;
            let end = start.saturating_add(size - 1);
            let domain = mapping.domain.text.as_str();
            if let Some((_, _, _, other)) =
                seen.iter().find(|(pd, first, last, _)| *pd == domain && start <= *last && *first <= end)
            {
                errors.push(Diagnostic::new(
                    &mapping.address.span,
                    format!("`{domain}` maps `{}` at {start:#x} over `{other}`", region.name.text),
                    "give each mapping its own virtual range",
                ));
            }
            seen.push((domain, start, end, region.name.text.as_str()));
        }
    }
}

/// A region not declared `shared` is mapped by at most one PD: its frames
/// have one owner.
pub fn check_region_owners(model: &Model<'_>, errors: &mut Vec<Diagnostic>) {
    for region in model.regions().filter(|region| region.shared.is_none()) {
        let Some(first) = region.mappings.first() else { continue };
        if let Some(second) = region.mappings.iter().find(|map| map.domain.text != first.domain.text) {
            let what = match &region.physical {
                Some(physical) => format!("frame {:#x}", physical.value),
                None => format!("region `{}`", region.name.text),
            };
            errors.push(Diagnostic::new(
                &second.span,
                format!("{what} has two owners: `{}` and `{}`", first.domain.text, second.domain.text),
                format!("declare region `{}` `shared` if both should map it, or remove a mapping", region.name.text),
            ));
        }
    }
}

/// Physical memory ranges (regions at fixed addresses and device MMIO)
/// do not overlap unless both are declared shared. A region that lies
/// wholly inside a device's MMIO range is that device's memory (how its
/// driver maps the registers) and may be mapped only by the device's
/// owners.
pub fn check_physical_ranges(model: &Model<'_>, errors: &mut Vec<Diagnostic>) {
    struct Range<'a> {
        start: u64,
        end: u64,
        shared: bool,
        span: &'a Span,
        region: Option<&'a Region>,
        device: Option<&'a Device>,
    }
    impl Range<'_> {
        fn owner(&self) -> String {
            match (self.region, self.device) {
                (Some(region), _) => format!("region `{}`", region.name.text),
                (None, Some(device)) => format!("device `{}`", device.name.text),
                (None, None) => String::new(),
            }
        }
    }
    let mut ranges: Vec<Range<'_>> = Vec::new();
    for region in model.regions() {
        if let (Some(physical), Some(size)) = (&region.physical, &region.size)
            && size.value > 0
        {
            let end = physical.value.saturating_add(size.value - 1);
            let shared = region.shared.is_some();
            ranges.push(Range {
                start: physical.value,
                end,
                shared,
                span: &physical.span,
                region: Some(region),
                device: None,
            });
        }
    }
    for device in model.devices() {
        for mmio in &device.mmio {
            let (base, size) = mmio.value;
            if size == 0 {
                errors.push(Diagnostic::new(&mmio.span, "MMIO range of size zero", "give the range its size"));
                continue;
            }
            let end = base.saturating_add(size - 1);
            let shared = device.shared.is_some();
            ranges.push(Range { start: base, end, shared, span: &mmio.span, region: None, device: Some(device) });
        }
    }
    // Report each overlap at whichever range is written later.
    ranges.sort_by_key(|range| (range.span.line, range.span.column));
    for (index, range) in ranges.iter().enumerate() {
        for other in &ranges[..index] {
            if range.end < other.start || other.end < range.start || (range.shared && other.shared) {
                continue;
            }
            let device_memory = match (range.region.or(other.region), range.device.or(other.device)) {
                (Some(region), Some(device)) if range.region.is_some() != other.region.is_some() => {
                    let (inner, outer) = if range.region.is_some() { (range, other) } else { (other, range) };
                    (outer.start <= inner.start && inner.end <= outer.end).then_some((region, device))
                }
                _ => None,
            };
            if let Some((region, device)) = device_memory {
                for mapping in &region.mappings {
                    if !device.owners.iter().any(|owner| owner.text == mapping.domain.text) {
                        errors.push(Diagnostic::new(
                            &mapping.domain.span,
                            format!(
                                "`{}` maps region `{}`, memory of device `{}`, which it does not own",
                                mapping.domain.text, region.name.text, device.name.text
                            ),
                            format!("only the owners of device `{}` may map its MMIO", device.name.text),
                        ));
                    }
                }
                continue;
            }
            errors.push(Diagnostic::new(
                range.span,
                format!(
                    "frame {:#x} has two owners: {} and {}",
                    range.start.max(other.start),
                    other.owner(),
                    range.owner()
                ),
                "give each physical range one owner, or declare both `shared`",
            ));
            break;
        }
    }
}

/// Devices have one owner unless `shared`; no two devices claim the same
/// IRQ line, I/O port or PCI function; ports and lines are ones the kernel
/// hands out.
pub fn check_device_resources(model: &Model<'_>, errors: &mut Vec<Diagnostic>) {
    let mut irqs: Vec<(u64, &str, bool)> = Vec::new();
    let mut ports: Vec<(u64, u64, &str, bool)> = Vec::new();
    let mut functions: Vec<((u64, u64, u64), &str, bool)> = Vec::new();
    for device in model.devices() {
        let name = device.name.text.as_str();
        let shared = device.shared.is_some();
        match device.owners.as_slice() {
            [] => errors.push(Diagnostic::new(
                &device.name.span,
                format!("device `{name}` has no owner"),
                "add `owner PD` naming the driver",
            )),
            [first, rest @ ..] if !shared => {
                if let Some(second) = rest.iter().find(|owner| owner.text != first.text) {
                    errors.push(Diagnostic::new(
                        &second.span,
                        format!("device `{name}` has two owners: `{}` and `{}`", first.text, second.text),
                        "declare the device `shared` if both should drive it, or remove an owner",
                    ));
                }
            }
            _ => {}
        }
        for irq in &device.irqs {
            let line = irq.value;
            if line == CASCADE_IRQ || line > MAX_IRQ {
                errors.push(Diagnostic::new(
                    &irq.span,
                    format!("IRQ {line} cannot be given to a device"),
                    format!("lines are 0..={MAX_IRQ} except {CASCADE_IRQ} (the PICs' cascade)"),
                ));
            } else if let Some((_, other, _)) =
                irqs.iter().find(|(taken, _, other_shared)| *taken == line && !(shared && *other_shared))
            {
                errors.push(Diagnostic::new(
                    &irq.span,
                    format!("IRQ {line} has two owners: device `{other}` and device `{name}`"),
                    "give the line to one device, or declare both `shared`",
                ));
            }
            irqs.push((line, name, shared));
        }
        for range in &device.io_ports {
            let (first, last) = range.value;
            if first > last || last > 0xffff {
                errors.push(Diagnostic::new(
                    &range.span,
                    format!("I/O port range {first:#x}..{last:#x} is not valid"),
                    "ports are 0..0xffff, written FIRST..LAST with FIRST <= LAST",
                ));
                continue;
            }
            if let Some((kernel_first, _)) =
                KERNEL_PORTS.iter().find(|(kernel_first, kernel_last)| first <= *kernel_last && *kernel_first <= last)
            {
                errors.push(Diagnostic::new(
                    &range.span,
                    format!("I/O port {:#x} belongs to the kernel", first.max(*kernel_first)),
                    "the kernel keeps COM1 (0x3f8..0x3ff), the PICs (0x20, 0x21, 0xa0, 0xa1), 0xf4 and 0x8900",
                ));
            } else if let Some((other_first, _, other, _)) =
                ports.iter().find(|(other_first, other_last, _, other_shared)| {
                    first <= *other_last && *other_first <= last && !(shared && *other_shared)
                })
            {
                errors.push(Diagnostic::new(
                    &range.span,
                    format!(
                        "I/O port {:#x} has two owners: device `{other}` and device `{name}`",
                        first.max(*other_first)
                    ),
                    "give each port to one device, or declare both `shared`",
                ));
            }
            ports.push((first, last, name, shared));
        }
        for function in &device.pci {
            let (bus, slot, number) = function.value;
            if let Some((_, other, _)) =
                functions.iter().find(|(taken, _, other_shared)| *taken == function.value && !(shared && *other_shared))
            {
                errors.push(Diagnostic::new(
                    &function.span,
                    format!("PCI function {bus:02x}:{slot:02x}.{number} has two owners: device `{other}` and device `{name}`"),
                    "give the function to one device, or declare both `shared`",
                ));
            }
            functions.push((function.value, name, shared));
        }
    }
}

/// Rights only shrink: a mapping has no right its region does not grant,
/// and a sender's capability no right its channel does not grant; a
/// sender's capability can send (WRITE).
pub fn check_rights(model: &Model<'_>, errors: &mut Vec<Diagnostic>) {
    let read_write = MemoryRights { read: true, write: true, execute: false };
    for region in model.regions() {
        let granted = region.rights.as_ref().map_or(read_write, |rights| rights.value);
        for mapping in &region.mappings {
            if !mapping.rights.value.read {
                errors.push(Diagnostic::new(
                    &mapping.rights.span,
                    format!("`{}` maps `{}` without `r`", mapping.domain.text, region.name.text),
                    "the kernel maps frames only with READ (docs/abi.md, Frame::Map): add `r`",
                ));
            } else if !mapping.rights.value.within(granted) {
                errors.push(Diagnostic::new(
                    &mapping.rights.span,
                    format!(
                        "rights amplification: `{}` maps `{}` with `{}` but the region grants `{granted}`",
                        mapping.domain.text, region.name.text, mapping.rights.value
                    ),
                    "a mapping may only drop rights: lower the mapping's rights or raise the region's `rights`",
                ));
            }
        }
    }
    for channel in model.channels() {
        let granted = channel.rights.as_ref().map_or(CapRights::ALL, |rights| rights.value);
        for connection in &channel.connections {
            let Some(rights) = &connection.rights else { continue };
            if !rights.value.within(granted) {
                errors.push(Diagnostic::new(
                    &rights.span,
                    format!(
                        "rights amplification: `{}` holds `{}` on channel `{}`, which grants `{granted}`",
                        connection.from.text, rights.value, channel.name.text
                    ),
                    "a capability may only drop rights: lower the connection's rights or raise the channel's",
                ));
            } else if !rights.value.write {
                errors.push(Diagnostic::new(
                    &rights.span,
                    format!("`{}` on channel `{}` lacks `write`", connection.kind.keyword(), channel.name.text),
                    "sending, calling and signalling need `write`",
                ));
            }
        }
    }
}

/// On one channel, a receiver can tell its senders apart: no badge is
/// used twice for the same receiver and kind (endpoint or notification).
pub fn check_badges(model: &Model<'_>, errors: &mut Vec<Diagnostic>) {
    for channel in model.channels() {
        let mut seen: Vec<(bool, &str, u64)> = Vec::new();
        for connection in &channel.connections {
            let Some(badge) = &connection.badge else { continue };
            let key = (connection.kind == ConnectionKind::Notify, connection.to.text.as_str(), badge.value);
            if seen.contains(&key) {
                errors.push(Diagnostic::new(
                    &badge.span,
                    format!("badge {} is used twice for `{}` on channel `{}`", badge.value, key.1, channel.name.text),
                    "give each sender its own badge",
                ));
            }
            seen.push(key);
        }
    }
}

/// Each PD has at most one fault handler, another PD; a `faults` line
/// takes no `rights` (the kernel's fault capability is WRITE, GRANT
/// stripped).
pub fn check_fault_handlers(model: &Model<'_>, errors: &mut Vec<Diagnostic>) {
    let mut handled: Vec<(&str, &Span)> = Vec::new();
    for channel in model.channels() {
        for connection in channel.connections.iter().filter(|c| c.kind == ConnectionKind::Faults) {
            let faulting = connection.from.text.as_str();
            if faulting == connection.to.text {
                errors.push(Diagnostic::new(
                    &connection.to.span,
                    format!("`{faulting}` cannot handle its own faults"),
                    "a faulting thread is stopped until its handler replies: name another PD",
                ));
            } else if let Some((_, first)) = handled.iter().find(|(name, _)| *name == faulting) {
                errors.push(Diagnostic::new(
                    &connection.span,
                    format!("`{faulting}` has a second fault handler (the first at line {})", first.line),
                    "a thread has one fault handler: remove one `faults` line",
                ));
            } else {
                handled.push((faulting, &connection.span));
            }
            if let Some(rights) = &connection.rights {
                errors.push(Diagnostic::new(
                    &rights.span,
                    "a `faults` connection takes no `rights`",
                    "the kernel sends faults with WRITE and without GRANT: drop `rights`",
                ));
            }
        }
    }
}

/// On each core, the utilisation (the sum of budget / period over its
/// PDs) is at most 1.
pub fn check_core_budgets(model: &Model<'_>, errors: &mut Vec<Diagnostic>) {
    let mut cores: BTreeMap<u64, (u128, u128)> = BTreeMap::new();
    let mut reported = BTreeSet::new();
    for domain in model.domains() {
        let (Some(core), Some(budget), Some(period)) = (&domain.core, &domain.budget, &domain.period) else {
            continue;
        };
        if period.value == 0 || budget.value > period.value {
            // check_domain_fields reports these.
            continue;
        }
        let (numerator, denominator) = cores.entry(core.value).or_insert((0, 1));
        let (budget, period) = (u128::from(budget.value), u128::from(period.value));
        // numerator/denominator + budget/period, kept in lowest terms.
        let sum = numerator
            .checked_mul(period)
            .and_then(|left| budget.checked_mul(*denominator).and_then(|right| left.checked_add(right)));
        let product = denominator.checked_mul(period);
        let (Some(sum), Some(product)) = (sum, product) else { continue };
        let divisor = gcd(sum, product).max(1);
        (*numerator, *denominator) = (sum / divisor, product / divisor);
        if *numerator > *denominator && reported.insert(core.value) {
            let percent = numerator.saturating_mul(100) / *denominator;
            errors.push(Diagnostic::new(
                &core.span,
                format!(
                    "core {} is over budget: {percent}% with `{}` (budgets over periods above 100%)",
                    core.value, domain.name.text
                ),
                "shorten budgets, lengthen periods or move a PD to another core",
            ));
        }
    }
}

/// A passive PD runs its callers' calls on their scheduling contexts,
/// which belong to their cores: each PD that calls it (a `call` or
/// `faults` line to it) runs on the passive PD's core.
pub fn check_passive_servers(model: &Model<'_>, errors: &mut Vec<Diagnostic>) {
    for channel in model.channels() {
        for connection in &channel.connections {
            if !matches!(connection.kind, ConnectionKind::Call | ConnectionKind::Faults) {
                continue;
            }
            let (Some(caller), Some(server)) = (model.domain(&connection.from.text), model.domain(&connection.to.text))
            else {
                continue;
            };
            let (Some(server_core), Some(caller_core)) = (&server.core, &caller.core) else { continue };
            if server.passive.is_some() && server_core.value != caller_core.value {
                errors.push(Diagnostic::new(
                    &connection.span,
                    format!(
                        "`{}` on core {} calls the passive `{}` on core {}",
                        caller.name.text, caller_core.value, server.name.text, server_core.value
                    ),
                    "a passive server runs on its caller's scheduling context, which is its caller's core's: put both on one core",
                ));
            }
        }
    }
}

/// The most vCPUs a guest may have.
pub const MAX_VCPUS: u64 = 64;

/// Where a guest's memory regions lie in guest-physical space: end to
/// end from address 0 in the order of its `memory` lines, each starting
/// at the next multiple of its page size. Regions that do not exist or
/// have no size are left out (other checks report them).
pub fn guest_memory_layout<'a>(model: &Model<'a>, guest: &Guest) -> Vec<(&'a Region, u64)> {
    let mut next = 0_u64;
    let mut layout = Vec::new();
    for memory in &guest.memory {
        let Some(region) = model.region(&memory.text) else { continue };
        let Some(size) = region.size.as_ref().map(|size| size.value) else { continue };
        let page = region.page_size.as_ref().map_or(PAGE_SIZES[0], |page| page.value).max(1);
        let Some(start) = next.checked_next_multiple_of(page) else { break };
        layout.push((region, start));
        let Some(end) = start.checked_add(size) else { break };
        next = end;
    }
    layout
}

/// A guest's memory as its VMM must see it: RAM (not device memory),
/// mapped writable into the VMM at one offset from its guest-physical
/// addresses, so that the VMM reaches guest-physical `a` at `base + a`;
/// within the 48-bit guest-physical space; and, for a guest with an
/// `image`, of 4 KiB or 2 MiB pages (the pages the loader can fill). A
/// VMX that maps any of the memory maps all of it the same way (its own
/// offset), since its info page, too, gives one address for
/// guest-physical 0.
fn check_guest_memory_layout(model: &Model<'_>, guest: &Guest, errors: &mut Vec<Diagnostic>) {
    let name = guest.name.text.as_str();
    let Some(vmm) = &guest.vmm else { return };
    let mut base: Option<u64> = None;
    for (region, guest_physical) in guest_memory_layout(model, guest) {
        let region_name = region.name.text.as_str();
        if let Some(physical) = &region.physical {
            errors.push(Diagnostic::new(
                &physical.span,
                format!("region `{region_name}` is device memory and memory of guest `{name}`"),
                "a guest's memory is RAM: drop `physical` or the `memory` line",
            ));
        }
        let size = region.size.as_ref().map_or(0, |size| size.value);
        if guest_physical.checked_add(size).is_none_or(|end| end > GUEST_PHYSICAL_END) {
            errors.push(Diagnostic::new(
                &region.name.span,
                format!("memory `{region_name}` of guest `{name}` ends past guest-physical {GUEST_PHYSICAL_END:#x}"),
                "give the guest less memory",
            ));
        }
        let page = region.page_size.as_ref().map_or(PAGE_SIZES[0], |page| page.value);
        if let Some(image) = guest.image.as_ref().filter(|_| page > PAGE_SIZES[1]) {
            errors.push(Diagnostic::new(
                &image.span,
                format!("guest `{name}` has an image but its memory `{region_name}` has pages of {page:#x} bytes"),
                "the loader puts images into memory of 4 KiB or 2 MiB pages: write `page 2MiB`",
            ));
        }
        let mapping = region.mappings.iter().find(|mapping| mapping.domain.text == vmm.text);
        let Some(mapping) = mapping else {
            errors.push(Diagnostic::new(
                &region.name.span,
                format!("memory `{region_name}` of guest `{name}` is not mapped into its VMM `{}`", vmm.text),
                format!("add `map {} at ADDRESS rw` to region `{region_name}`", vmm.text),
            ));
            continue;
        };
        check_server_mapping(guest, "VMM", vmm, mapping, region, guest_physical, &mut base, errors);
    }
    let Some(vmx) = &guest.vmx else { return };
    let layout = guest_memory_layout(model, guest);
    let mapped: Vec<_> = layout
        .iter()
        .map(|(region, guest_physical)| {
            (region, *guest_physical, region.mappings.iter().find(|mapping| mapping.domain.text == vmx.text))
        })
        .collect();
    // A VMX need not map the memory (check_guest_disks asks it to when it
    // serves disks); if it maps some, it maps all, as the VMM does.
    if mapped.iter().all(|(_, _, mapping)| mapping.is_none()) {
        return;
    }
    let mut base = None;
    for (region, guest_physical, mapping) in mapped {
        let region_name = region.name.text.as_str();
        let Some(mapping) = mapping else {
            errors.push(Diagnostic::new(
                &region.name.span,
                format!("memory `{region_name}` of guest `{name}` is not mapped into its VMX `{}`", vmx.text),
                format!("map all of the guest's memory into `{}`, or none of it", vmx.text),
            ));
            continue;
        };
        check_server_mapping(guest, "VMX", vmx, mapping, region, guest_physical, &mut base, errors);
    }
}

/// A VMM's or VMX's mapping of guest memory: `rw`, at the offset from
/// guest-physical addresses that its first mapping set (`base`), since
/// its info page gives one address for guest-physical 0.
#[allow(clippy::too_many_arguments, reason = "one check's context, passed once from each caller")]
fn check_server_mapping(
    guest: &Guest,
    role: &str,
    server: &Name,
    mapping: &Mapping,
    region: &Region,
    guest_physical: u64,
    base: &mut Option<u64>,
    errors: &mut Vec<Diagnostic>,
) {
    let (name, region_name) = (guest.name.text.as_str(), region.name.text.as_str());
    if !mapping.rights.value.read || !mapping.rights.value.write {
        errors.push(Diagnostic::new(
            &mapping.span,
            format!("the {role} `{}` maps memory `{region_name}` of guest `{name}` without `rw`", server.text),
            format!("a {role} reads and writes its guest's memory: map it `rw`"),
        ));
    }
    let offset = mapping.address.value.wrapping_sub(guest_physical);
    match *base {
        None => *base = Some(offset),
        Some(base) if base != offset => errors.push(Diagnostic::new(
            &mapping.span,
            format!(
                "the {role} `{}` maps memory `{region_name}` (guest-physical {guest_physical:#x}) at {:#x}, not at {:#x}",
                server.text,
                mapping.address.value,
                base.wrapping_add(guest_physical)
            ),
            format!("map a guest's regions into its {role} end to end, as they lie in guest-physical memory"),
        )),
        Some(_) => {}
    }
}

/// The channel on which guest's VMM `vmm` forwards device accesses to
/// its VMX `vmx`: the first, in the manifest's order, with a `call vmm ->
/// vmx` line.
pub fn device_channel<'a>(model: &Model<'a>, vmm: &str, vmx: &str) -> Option<&'a Channel> {
    model.channels().find(|channel| {
        channel.connections.iter().any(|connection| {
            connection.kind == ConnectionKind::Call && connection.from.text == vmm && connection.to.text == vmx
        })
    })
}

/// The end of guest-physical space: four levels of second-level tables.
pub const GUEST_PHYSICAL_END: u64 = 1 << 48;

/// Each guest has memory, vCPUs, a VMM and a VMX; its memory is nobody
/// else's guest memory and is mapped only into its VMM and VMX unless an
/// `expose` line says otherwise.
pub fn check_guests(model: &Model<'_>, errors: &mut Vec<Diagnostic>) {
    let mut owners: BTreeMap<&str, &str> = BTreeMap::new();
    let mut vmms: BTreeMap<&str, &str> = BTreeMap::new();
    for guest in model.guests() {
        let name = guest.name.text.as_str();
        // Disks held in regions need no VMX: the VMM serves them until the
        // guest has one.
        let has_devices = !guest.disks.is_empty() || !guest.nics.is_empty();
        for (field, absent) in [
            ("memory", guest.memory.is_empty()),
            ("vcpus", guest.vcpus.is_none()),
            ("vmm", guest.vmm.is_none()),
            ("vmx", guest.vmx.is_none() && has_devices),
        ] {
            if absent {
                errors.push(Diagnostic::new(
                    &guest.name.span,
                    format!("guest `{name}` has no `{field}`"),
                    format!("add a `{field}` line to the block"),
                ));
            }
        }
        if let Some(vcpus) = guest.vcpus.as_ref().filter(|vcpus| vcpus.value == 0 || vcpus.value > MAX_VCPUS) {
            errors.push(Diagnostic::new(
                &vcpus.span,
                format!("a guest has 1 to {MAX_VCPUS} vCPUs"),
                format!("write `vcpus 1` to `vcpus {MAX_VCPUS}`"),
            ));
        }
        if let Some(vmm) = &guest.vmm
            && let Some(other) = vmms.insert(vmm.text.as_str(), name)
        {
            errors.push(Diagnostic::new(
                &vmm.span,
                format!("`{}` is the VMM of guests `{other}` and `{name}`", vmm.text),
                "a VMM runs one guest: give each guest its own VMM protection domain",
            ));
        }
        if guest.vmx.is_some() && guest.vmx.as_ref().map(|vmx| &vmx.text) == guest.vmm.as_ref().map(|vmm| &vmm.text) {
            errors.push(Diagnostic::new(
                &guest.name.span,
                format!("guest `{name}` has one PD as its VMM and its VMX"),
                "the VMM and the VMX are separate protection domains: name two",
            ));
        }
        check_guest_memory_layout(model, guest, errors);
        if let (Some(vmm), Some(vmx)) = (&guest.vmm, &guest.vmx)
            && vmm.text != vmx.text
            && device_channel(model, &vmm.text, &vmx.text).is_none()
        {
            errors.push(Diagnostic::new(
                &vmx.span,
                format!(
                    "guest `{name}` has the VMX `{}` but no channel with `call {} -> {}`",
                    vmx.text, vmm.text, vmx.text
                ),
                format!(
                    "add a channel with `call {} -> {}`: the VMM forwards device accesses over it",
                    vmm.text, vmx.text
                ),
            ));
        }
        let servers: Vec<&str> = guest.vmm.iter().chain(&guest.vmx).map(|domain| domain.text.as_str()).collect();
        for memory in &guest.memory {
            if let Some(other) = owners.insert(memory.text.as_str(), name) {
                errors.push(Diagnostic::new(
                    &memory.span,
                    format!("region `{}` is memory of guests `{other}` and `{name}`", memory.text),
                    "give each guest its own memory regions",
                ));
            }
            // Without a VMM (reported above) there is no rule to hold the
            // mappings to.
            let Some(region) = model.region(&memory.text).filter(|_| guest.vmm.is_some()) else { continue };
            for mapping in &region.mappings {
                let domain = mapping.domain.text.as_str();
                let exposed =
                    guest.exposures.iter().any(|(region, target)| region.text == memory.text && target.text == domain);
                if !servers.contains(&domain) && !exposed {
                    errors.push(Diagnostic::new(
                        &mapping.domain.span,
                        format!(
                            "memory `{}` of guest `{name}` is mapped into `{domain}`, outside its VMM and VMX",
                            memory.text
                        ),
                        format!("add `expose {} to {domain}` to guest `{name}` if this is intended", memory.text),
                    ));
                }
            }
        }
        let mut devices: Vec<&str> = Vec::new();
        let mut named: Vec<&Name> =
            guest.disks.iter().chain(&guest.region_disks).chain(&guest.nics).map(|(device, _)| device).collect();
        named.sort_by_key(|device| (device.span.line, device.span.column));
        for device in named {
            if devices.contains(&device.text.as_str()) {
                errors.push(Diagnostic::new(
                    &device.span,
                    format!("guest `{name}` has two disks or NICs called `{}`", device.text),
                    "give each of the guest's disks and NICs its own name",
                ));
            }
            devices.push(&device.text);
        }
        for (device, channel) in guest.disks.iter().chain(&guest.nics) {
            let Some(Item::Channel(served_by)) = model.items.get(channel.text.as_str()) else { continue };
            let reaches_servers = served_by.connections.iter().any(|connection| {
                servers.contains(&connection.from.text.as_str()) || servers.contains(&connection.to.text.as_str())
            });
            if guest.vmm.is_some() && !reaches_servers {
                errors.push(Diagnostic::new(
                    &channel.span,
                    format!("channel `{}` for `{}` connects neither `{}`", channel.text, device.text, servers.join("` nor `")),
                    format!("a guest's disks and NICs are served over a channel of its VMM or VMX; add a connection to `{}`", channel.text),
                ));
            }
        }
        for (region, _) in &guest.exposures {
            if !guest.memory.iter().any(|memory| memory.text == region.text) {
                errors.push(Diagnostic::new(
                    &region.span,
                    format!("`{}` is not memory of guest `{name}`", region.text),
                    "only the guest's own `memory` regions can be exposed",
                ));
            }
        }
    }
    // A VMX serves one guest and runs none: its info page carries one
    // device link and one guest's RAM, and a VMM's page its own guest's.
    let mut vmxs: BTreeMap<&str, &str> = BTreeMap::new();
    for guest in model.guests() {
        let name = guest.name.text.as_str();
        let Some(vmx) = guest.vmx.as_ref().filter(|vmx| Some(&vmx.text) != guest.vmm.as_ref().map(|vmm| &vmm.text))
        else {
            continue;
        };
        if let Some(other) = vmxs.insert(vmx.text.as_str(), name) {
            errors.push(Diagnostic::new(
                &vmx.span,
                format!("`{}` is the VMX of guests `{other}` and `{name}`", vmx.text),
                "a VMX serves one guest: give each guest its own VMX protection domain",
            ));
        } else if let Some(runs) = vmms.get(vmx.text.as_str()) {
            errors.push(Diagnostic::new(
                &vmx.span,
                format!("`{}` is the VMM of guest `{runs}` and the VMX of guest `{name}`", vmx.text),
                "a guest's VMX is no VMM: give it a protection domain of its own",
            ));
        }
    }
}

/// The longest Linux command line, without its NUL: x86 Linux's
/// `COMMAND_LINE_SIZE` is 2,048 bytes with the NUL.
pub const MAX_CMDLINE_BYTES: usize = 2047;
/// The least memory of a guest that boots a Linux kernel. The x86-64
/// kernel decompresses itself at 16 MiB at the lowest (its
/// `LOAD_PHYSICAL_ADDR`) into `init_size` bytes, 51.5 MiB for Debian's
/// cloud kernel, and the loader stages the kernel and initramfs above
/// that: less than 64 MiB cannot boot a distribution kernel. This is a
/// floor; the exact need depends on the kernel's setup header, which the
/// CLI and the loader check when the system is built.
pub const MIN_LINUX_GUEST_MEMORY: u64 = 64 << 20;

/// How a guest boots: a program `image` or a Linux `kernel`, not both;
/// `initrd` and `cmdline` only with a kernel; a command line of at most
/// [`MAX_CMDLINE_BYTES`] printable ASCII characters; a kernel's guest has
/// at least [`MIN_LINUX_GUEST_MEMORY`] of memory in pages of 4 KiB or
/// 2 MiB (those the loader stages through).
pub fn check_guest_boot(model: &Model<'_>, errors: &mut Vec<Diagnostic>) {
    for guest in model.guests() {
        let name = guest.name.text.as_str();
        if let (Some(kernel), Some(image)) = (&guest.kernel, &guest.image) {
            // At the second of the two lines.
            let later = if (image.span.line, image.span.column) < (kernel.span.line, kernel.span.column) {
                &kernel.span
            } else {
                &image.span
            };
            errors.push(Diagnostic::new(
                later,
                format!("guest `{name}` has both an `image` and a `kernel`"),
                "a guest boots a program image or a Linux kernel: keep one",
            ));
        }
        if guest.kernel.is_none() {
            for (field, value) in [("initrd", &guest.initrd), ("cmdline", &guest.cmdline)] {
                if let Some(value) = value {
                    errors.push(Diagnostic::new(
                        &value.span,
                        format!("guest `{name}` has `{field}` but no `kernel`"),
                        format!("`{field}` goes with a Linux kernel: add `kernel \"NAME\"` or drop the line"),
                    ));
                }
            }
        }
        if let Some(cmdline) = &guest.cmdline {
            let text = cmdline.value.as_str();
            if text.len() > MAX_CMDLINE_BYTES {
                errors.push(Diagnostic::new(
                    &cmdline.span,
                    format!("the command line of guest `{name}` has {} bytes", text.len()),
                    format!("Linux takes at most {MAX_CMDLINE_BYTES}: shorten it"),
                ));
            }
            if let Some((at, character)) = text.char_indices().find(|(_, c)| !(' '..='~').contains(c)) {
                errors.push(Diagnostic::new(
                    &cmdline.span,
                    format!(
                        "the command line of guest `{name}` has {} at byte {at}",
                        format!("{character:?}").trim_matches('\'')
                    ),
                    "a command line is printable ASCII: letters, digits, punctuation and spaces",
                ));
            }
        }
        let Some(kernel) = &guest.kernel else { continue };
        let layout = guest_memory_layout(model, guest);
        let end = layout
            .iter()
            .map(|(region, start)| start.saturating_add(region.size.as_ref().map_or(0, |size| size.value)))
            .max()
            .unwrap_or(0);
        if !guest.memory.is_empty() && end < MIN_LINUX_GUEST_MEMORY {
            errors.push(Diagnostic::new(
                &kernel.span,
                format!("guest `{name}` boots a Linux kernel in {end:#x} bytes of memory"),
                format!(
                    "give it at least {} MiB: Linux decompresses itself at 16 MiB into init_size bytes \
                     (51.5 MiB for Debian's cloud kernel), and its initramfs is staged above that",
                    MIN_LINUX_GUEST_MEMORY >> 20
                ),
            ));
        }
        for (region, _) in &layout {
            let page = region.page_size.as_ref().map_or(PAGE_SIZES[0], |page| page.value);
            if page > PAGE_SIZES[1] {
                errors.push(Diagnostic::new(
                    &kernel.span,
                    format!(
                        "guest `{name}` has a kernel but its memory `{}` has pages of {page:#x} bytes",
                        region.name.text
                    ),
                    "the loader stages a kernel into memory of 4 KiB or 2 MiB pages: write `page 2MiB`",
                ));
            }
        }
    }
}

/// The regions of every guest's memory, by name, with the guest's name.
fn guest_memory_regions<'a>(model: &Model<'a>) -> BTreeMap<&'a str, &'a str> {
    let mut regions = BTreeMap::new();
    for guest in model.guests() {
        for memory in &guest.memory {
            regions.entry(memory.text.as_str()).or_insert(guest.name.text.as_str());
        }
    }
    regions
}

/// A region with `contents` is RAM (no `physical`: the loader fills
/// frames it makes), of 4 KiB or 2 MiB pages (those it can map to fill),
/// and no guest's memory (which holds what the guest boots from, placed by
/// the loader's own rules). Whether the file fits is known only with the
/// file: the CLI checks when it builds the bundle, and the loader again.
pub fn check_region_contents(model: &Model<'_>, errors: &mut Vec<Diagnostic>) {
    let guest_memory = guest_memory_regions(model);
    for region in model.regions() {
        let Some(contents) = &region.contents else { continue };
        let region_name = region.name.text.as_str();
        if region.physical.is_some() {
            errors.push(Diagnostic::new(
                &contents.span,
                format!("region `{region_name}` has `contents` but is device memory"),
                "the loader fills RAM it allocates: drop `physical` or `contents`",
            ));
        }
        let page = region.page_size.as_ref().map_or(PAGE_SIZES[0], |page| page.value);
        if page > PAGE_SIZES[1] {
            errors.push(Diagnostic::new(
                &contents.span,
                format!("region `{region_name}` has `contents` in pages of {page:#x} bytes"),
                "the loader fills regions of 4 KiB or 2 MiB pages: write `page 2MiB`",
            ));
        }
        if let Some(guest) = guest_memory.get(region_name) {
            errors.push(Diagnostic::new(
                &contents.span,
                format!("region `{region_name}` has `contents` and is memory of guest `{guest}`"),
                "a guest's memory gets its `image` or `kernel` staged by the loader: put the file in a region of its own",
            ));
        }
    }
}

/// A guest's `disk NAME from REGION` lines: at most
/// [`MAX_GUEST_DISKS`](bulkhead_capdl_spec::MAX_GUEST_DISKS) per guest;
/// the region is RAM, no guest's memory and no other disk's, mapped `rw`
/// into the PD that serves the guest's devices (its VMX, or its VMM when
/// it has none) and into no PD but the guest's VMM and VMX; a PD serves
/// the disks of one guest (its info page does not say whose); a VMX that
/// serves disks maps the guest's memory (virtio moves data through it).
pub fn check_guest_disks(model: &Model<'_>, errors: &mut Vec<Diagnostic>) {
    let guest_memory = guest_memory_regions(model);
    let mut disks: BTreeMap<&str, (&str, &str)> = BTreeMap::new();
    for guest in model.guests() {
        let name = guest.name.text.as_str();
        if let Some((extra, _)) = guest.region_disks.get(bulkhead_capdl_spec::MAX_GUEST_DISKS) {
            errors.push(Diagnostic::new(
                &extra.span,
                format!("guest `{name}` has more than {} disks held in regions", bulkhead_capdl_spec::MAX_GUEST_DISKS),
                "the serving PD's info page lists four: merge disks or serve the rest over a channel",
            ));
        }
        // Without a VMM (check_guests reports it) there is no server. A PD
        // serves the disks of one guest: check_guests refuses a VMM of two
        // guests, a VMX of two, and a VMM that is another guest's VMX.
        let Some(server) = guest.vmx.as_ref().or(guest.vmm.as_ref()) else { continue };
        // A VMX's virtio devices read and write the guest's RAM.
        if let (Some(vmx), Some((first, _))) = (&guest.vmx, guest.region_disks.first()) {
            let memory = guest.memory.iter().filter_map(|memory| model.region(&memory.text));
            if !memory.flat_map(|region| &region.mappings).any(|mapping| mapping.domain.text == vmx.text) {
                errors.push(Diagnostic::new(
                    &first.span,
                    format!(
                        "`{}` serves disk `{}` of guest `{name}` but maps none of its memory",
                        vmx.text, first.text
                    ),
                    format!("map the guest's memory into `{}` (`rw`, end to end, as into its VMM)", vmx.text),
                ));
            }
        }
        let servers: Vec<&str> = guest.vmm.iter().chain(&guest.vmx).map(|domain| domain.text.as_str()).collect();
        for (disk, region_name) in &guest.region_disks {
            if let Some((other_guest, other_disk)) = disks.insert(&region_name.text, (name, &disk.text)) {
                errors.push(Diagnostic::new(
                    &region_name.span,
                    format!("region `{}` is disk `{other_disk}` of guest `{other_guest}` already", region_name.text),
                    "give each disk a region of its own",
                ));
                continue;
            }
            if let Some(owner) = guest_memory.get(region_name.text.as_str()) {
                errors.push(Diagnostic::new(
                    &region_name.span,
                    format!("disk `{}` of guest `{name}` is memory of guest `{owner}`", disk.text),
                    "a disk is a region of its own, not guest memory",
                ));
                continue;
            }
            // check_unknown_names reports a region that does not exist.
            let Some(region) = model.region(&region_name.text) else { continue };
            if let Some(physical) = &region.physical {
                errors.push(Diagnostic::new(
                    &physical.span,
                    format!(
                        "region `{}` is device memory and disk `{}` of guest `{name}`",
                        region_name.text, disk.text
                    ),
                    "a disk held in a region is RAM: drop `physical`",
                ));
            }
            match region.mappings.iter().find(|mapping| mapping.domain.text == server.text) {
                None => errors.push(Diagnostic::new(
                    &region_name.span,
                    format!(
                        "disk `{}` of guest `{name}`: region `{}` is not mapped into `{}`, which serves its devices",
                        disk.text, region_name.text, server.text
                    ),
                    format!("add `map {} at ADDRESS rw` to region `{}`", server.text, region_name.text),
                )),
                Some(mapping) if !mapping.rights.value.read || !mapping.rights.value.write => {
                    errors.push(Diagnostic::new(
                        &mapping.rights.span,
                        format!("`{}` maps disk `{}` of guest `{name}` without `rw`", server.text, disk.text),
                        "the guest reads and writes its disk through the server: map it `rw`",
                    ));
                }
                Some(_) => {}
            }
            for mapping in &region.mappings {
                let domain = mapping.domain.text.as_str();
                if !servers.contains(&domain) {
                    errors.push(Diagnostic::new(
                        &mapping.domain.span,
                        format!(
                            "disk `{}` of guest `{name}` is mapped into `{domain}`, outside its VMM and VMX",
                            disk.text
                        ),
                        "a guest's disk holds its data: map it into the guest's VMM or VMX alone",
                    ));
                }
            }
        }
    }
}

/// The I/O ports of a guest's debug serial port: a 16550's eight
/// registers.
pub const DEBUG_PORT_COUNT: u64 = 8;

/// A guest's `debug DEVICE` is a serial port its VMM alone owns: one
/// `ioports` range of exactly [`DEBUG_PORT_COUNT`] ports, no interrupt
/// line, MMIO range or PCI function (the VMM polls it, and finds its one
/// capability through its info page rather than its generated names), not
/// `shared` (a device without an owner is check_device_resources's).
pub fn check_guest_debug(model: &Model<'_>, errors: &mut Vec<Diagnostic>) {
    for guest in model.guests() {
        let name = guest.name.text.as_str();
        let Some(debug) = &guest.debug else { continue };
        // check_unknown_names reports a name that is no device, and
        // check_guests a guest without a VMM.
        let Some(Item::Device(device)) = model.items.get(debug.text.as_str()) else { continue };
        let Some(vmm) = &guest.vmm else { continue };
        let what = format!("debug port `{}` of guest `{name}`", debug.text);
        match device.io_ports.as_slice() {
            [range]
                if range.value.1.checked_sub(range.value.0).and_then(|span| span.checked_add(1))
                    == Some(DEBUG_PORT_COUNT) => {}
            [range] => errors.push(Diagnostic::new(
                &range.span,
                format!("{what} has {:#x}..{:#x}, not {DEBUG_PORT_COUNT} I/O ports", range.value.0, range.value.1),
                "a debug port is a 16550 UART: give it its eight ports, e.g. `ioports 0x2f8..0x2ff` (COM2)",
            )),
            _ => errors.push(Diagnostic::new(
                &debug.span,
                format!("{what} must have one `ioports` range, it has {}", device.io_ports.len()),
                "a debug port is a 16550 UART: give it its eight ports, e.g. `ioports 0x2f8..0x2ff` (COM2)",
            )),
        }
        let extra = device
            .irqs
            .first()
            .map(|irq| (&irq.span, "an interrupt line"))
            .or_else(|| device.mmio.first().map(|mmio| (&mmio.span, "an MMIO range")))
            .or_else(|| device.pci.first().map(|pci| (&pci.span, "a PCI function")));
        if let Some((span, resource)) = extra {
            errors.push(Diagnostic::new(
                span,
                format!("{what} has {resource}"),
                "the VMM polls its debug port and holds only its I/O ports: remove the line",
            ));
        }
        if let Some(shared) = &device.shared {
            errors.push(Diagnostic::new(
                shared,
                format!("{what} is `shared`"),
                "the debugger's line carries the guest's memory and registers: give it to the VMM alone",
            ));
        }
        if let Some(owner) = device.owners.iter().find(|owner| owner.text != vmm.text) {
            errors.push(Diagnostic::new(
                &owner.span,
                format!("{what} is owned by `{}`, not by the guest's VMM `{}`", owner.text, vmm.text),
                format!("write `owner {}` in device `{}`, and no other owner", vmm.text, debug.text),
            ));
        }
    }
}

/// The information-flow graph: `call A -> B` flows both ways (request
/// and reply), `send` and `notify` from sender to receiver, a region from
/// each PD that maps it writable to each other PD that maps it readable,
/// and a shared device between its owners both ways. Names that do not
/// resolve to PDs are left out (check_unknown_names reports them).
pub fn flow_graph(model: &Model<'_>) -> FlowGraph {
    let mut graph =
        FlowGraph { domains: model.domains().map(|domain| domain.name.text.clone()).collect(), ..FlowGraph::default() };
    let mut add = |from: &str, to: &str, cause: String, span: &Span| {
        if from != to && model.is_domain(from) && model.is_domain(to) {
            graph.edges.push(FlowEdge { from: from.to_owned(), to: to.to_owned(), cause, span: span.clone() });
        }
    };
    for item in &model.manifest.items {
        match item {
            Item::Channel(channel) => {
                for connection in &channel.connections {
                    let cause = format!("{} {}", connection.kind.keyword(), channel.name.text);
                    add(&connection.from.text, &connection.to.text, cause.clone(), &connection.span);
                    // A fault handler's reply resumes the faulting thread.
                    if matches!(connection.kind, ConnectionKind::Call | ConnectionKind::Faults) {
                        add(
                            &connection.to.text,
                            &connection.from.text,
                            format!("reply {}", channel.name.text),
                            &connection.span,
                        );
                    }
                }
            }
            Item::Region(region) => {
                for (index, later) in region.mappings.iter().enumerate() {
                    for earlier in &region.mappings[..index] {
                        for (writer, reader) in [(earlier, later), (later, earlier)] {
                            if writer.rights.value.write && reader.rights.value.read {
                                let cause = format!("memory {}", region.name.text);
                                add(&writer.domain.text, &reader.domain.text, cause, &later.span);
                            }
                        }
                    }
                }
            }
            Item::Device(device) => {
                for (index, later) in device.owners.iter().enumerate() {
                    for earlier in &device.owners[..index] {
                        let cause = format!("device {}", device.name.text);
                        add(&earlier.text, &later.text, cause.clone(), &later.span);
                        add(&later.text, &earlier.text, cause, &later.span);
                    }
                }
            }
            Item::ProtectionDomain(_) | Item::Guest(_) | Item::Flow(_) => {}
        }
    }
    graph
}

/// No flow is declared twice (`a <-> b` counts as `a -> b` and `b -> a`),
/// so that removing one declaration removes the permission.
pub fn check_duplicate_flows(model: &Model<'_>, errors: &mut Vec<Diagnostic>) {
    let mut declared: BTreeMap<(&str, &str), u32> = BTreeMap::new();
    for item in &model.manifest.items {
        let Item::Flow(flow) = item else { continue };
        let mut pairs = vec![(flow.from.text.as_str(), flow.to.text.as_str())];
        if flow.both_ways {
            pairs.push((flow.to.text.as_str(), flow.from.text.as_str()));
        }
        for (from, to) in pairs {
            if let Some(line) = declared.insert((from, to), flow.span.line) {
                errors.push(Diagnostic::new(
                    &flow.span,
                    format!("flow `{from}` -> `{to}` is already declared"),
                    format!("line {line} declares it; remove one of the two"),
                ));
                break;
            }
        }
    }
}

/// Every flow in the graph is declared by a `flow` statement; each
/// undeclared (from, to) pair is reported once, at its first cause.
pub fn check_flows(model: &Model<'_>, graph: &FlowGraph, errors: &mut Vec<Diagnostic>) {
    let mut declared = BTreeSet::new();
    for item in &model.manifest.items {
        if let Item::Flow(flow) = item {
            declared.insert((flow.from.text.as_str(), flow.to.text.as_str()));
            if flow.both_ways {
                declared.insert((flow.to.text.as_str(), flow.from.text.as_str()));
            }
        }
    }
    let mut reported = BTreeSet::new();
    for edge in &graph.edges {
        let pair = (edge.from.as_str(), edge.to.as_str());
        if !declared.contains(&pair) && reported.insert(pair) {
            errors.push(Diagnostic::new(
                &edge.span,
                format!("undeclared flow `{}` -> `{}` ({})", edge.from, edge.to, edge.cause),
                format!("add `flow {} -> {}` if it is intended, or remove what allows it", edge.from, edge.to),
            ));
        }
    }
}

fn gcd(mut a: u128, mut b: u128) -> u128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// The number of single-character edits between two names.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let current = row[j + 1];
            row[j + 1] = (previous + usize::from(ca != *cb)).min(row[j] + 1).min(current + 1);
            previous = current;
        }
    }
    row[b.len()]
}
