//! What each protection domain holds and reaches, as text: its mappings,
//! its channel ends, its devices and the PDs information from it can
//! reach through the flow graph.

use std::fmt::Write as _;

use crate::ast::{Item, Manifest};
use crate::graph::FlowGraph;

/// One paragraph per PD, in the order declared:
///
/// ```text
/// serial_driver
///   maps log_ring at 0x1000000000 rw
///   call log -> log_server badge 1
///   serves call console from log_server badge 1
///   device com2: irq 3, ioports 0x2f8..0x2ff
///   reaches disk_driver, linux_vmm, linux_vmx, log_server
/// ```
pub fn domain_report(manifest: &Manifest, graph: &FlowGraph) -> String {
    let reach = graph.reachability();
    let mut text = String::new();
    for item in &manifest.items {
        let Item::ProtectionDomain(domain) = item else { continue };
        let name = domain.name.text.as_str();
        let _ = writeln!(text, "{name}");
        for other in &manifest.items {
            match other {
                Item::Region(region) => {
                    for mapping in region.mappings.iter().filter(|mapping| mapping.domain.text == name) {
                        let _ = writeln!(
                            text,
                            "  maps {} at {:#x} {}",
                            region.name.text, mapping.address.value, mapping.rights.value
                        );
                    }
                }
                Item::Channel(channel) => {
                    for connection in &channel.connections {
                        let badge = connection
                            .badge
                            .as_ref()
                            .map(|badge| format!(" badge {}", badge.value))
                            .unwrap_or_default();
                        let kind = connection.kind.keyword();
                        if connection.from.text == name {
                            let _ = writeln!(text, "  {kind} {} -> {}{badge}", channel.name.text, connection.to.text);
                        }
                        if connection.to.text == name {
                            let _ = writeln!(
                                text,
                                "  serves {kind} {} from {}{badge}",
                                channel.name.text, connection.from.text
                            );
                        }
                    }
                }
                Item::Device(device) if device.owners.iter().any(|owner| owner.text == name) => {
                    let mut resources: Vec<String> = Vec::new();
                    resources.extend(device.irqs.iter().map(|irq| format!("irq {}", irq.value)));
                    resources.extend(device.io_ports.iter().map(|range| {
                        let (first, last) = range.value;
                        format!("ioports {first:#x}..{last:#x}")
                    }));
                    resources.extend(device.mmio.iter().map(|range| {
                        let (base, size) = range.value;
                        format!("mmio {base:#x} size {size:#x}")
                    }));
                    resources.extend(device.pci.iter().map(|function| {
                        let (bus, slot, number) = function.value;
                        format!("pci {bus:02x}:{slot:02x}.{number}")
                    }));
                    let _ = writeln!(text, "  device {}: {}", device.name.text, resources.join(", "));
                }
                Item::ProtectionDomain(_) | Item::Device(_) | Item::Guest(_) | Item::Flow(_) => {}
            }
        }
        let reached: Vec<&str> =
            reach.get(name).map(|set| set.iter().map(String::as_str).collect()).unwrap_or_default();
        let reached = if reached.is_empty() { "nothing".to_owned() } else { reached.join(", ") };
        let _ = writeln!(text, "  reaches {reached}");
    }
    text
}
