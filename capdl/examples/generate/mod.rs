//! A large, valid manifest generated in memory, for the benchmark
//! (`examples/bench.rs`) and its test (`tests/bench_manifest.rs`).
//!
//! The shape is that of a big system rather than of a stress pattern:
//! every PD has private memory and serves and calls others over channels
//! (calls, one-way sends, notifications, some with a notification back),
//! groups of four PDs share a ring that one writes and three read,
//! drivers own devices with I/O ports, MMIO (and a region for their
//! registers), PCI functions and the IRQ lines there are, a few devices
//! are shared by two drivers, and guests are served by a VMM and a VMX.
//! The `flow` lines are exactly the flows all of that creates, so the
//! manifest validates.

use std::collections::BTreeSet;
use std::fmt::Write as _;

/// The interrupt lines a device may have (0..=15 except the cascade, 2).
const IRQ_LINES: [u64; 15] = [0, 1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];

/// A manifest of `domains` PDs and `channels` channels.
///
/// It validates for `domains` a multiple of 32 from 32 to 256 (four
/// cores, each below full utilisation) and `channels` at least
/// `domains` (the guests are served over the first channels). Channel
/// `k` connects PD `k % domains` to the PD `k / domains + 1` after it, so
/// the channels spread evenly: with 256 PDs and 4,096 channels every PD
/// calls, sends or signals on 16 and is served on 16.
pub(crate) fn manifest(domains: usize, channels: usize) -> String {
    let mut text = String::with_capacity(channels * 96 + domains * 256);
    let mut flows = BTreeSet::new();
    let _ = writeln!(text, "# A generated system: {domains} protection domains, {channels} channels.\n");
    for pd in 0..domains {
        let budget = 50 + (pd % 5) * 10;
        let heap = if pd % 2 == 0 { "    heap 64KiB\n" } else { "" };
        let _ = write!(
            text,
            "pd pd{pd} {{\n    image \"worker{pd}\"\n    priority {}\n    budget {budget}us\n    period 10ms\n    core {}\n    stack 16KiB\n{heap}}}\n\n",
            (pd * 7) % 255,
            pd % 4,
        );
        let _ = write!(text, "region pd{pd}_data {{\n    size 64KiB\n    map pd{pd} at 0x1_0000_0000 rw\n}}\n\n");
    }
    for channel in 0..channels {
        let client = channel % domains;
        let server = (client + channel / domains % (domains - 1) + 1) % domains;
        let badge = channel + 1;
        let _ = writeln!(text, "# Channel {channel}.\nchannel ch{channel} {{");
        match channel % 8 {
            5 => {
                let _ = writeln!(text, "    rights write\n    send pd{client} -> pd{server} badge {badge}");
                flows.insert((client, server));
            }
            6 => {
                let _ = writeln!(text, "    notify pd{client} -> pd{server} badge {badge}");
                flows.insert((client, server));
            }
            7 => {
                let _ = writeln!(text, "    call pd{client} -> pd{server} badge {badge}");
                let _ = writeln!(text, "    notify pd{server} -> pd{client} badge 1");
                flows.extend([(client, server), (server, client)]);
            }
            _ => {
                let _ = writeln!(text, "    call pd{client} -> pd{server} badge {badge}");
                flows.extend([(client, server), (server, client)]);
            }
        }
        text.push_str("}\n\n");
    }
    for ring in 0..domains / 4 {
        let writer = ring * 4;
        let readers = [writer + 1, (writer + domains / 2) % domains, (writer + domains / 2 + 1) % domains];
        let address = 0x20_0000_0000_u64 + ring as u64 * 0x10_0000;
        let _ =
            write!(text, "region ring{ring} {{\n    size 16KiB\n    shared\n    map pd{writer} at {address:#x} rw\n");
        for reader in readers {
            let _ = writeln!(text, "    map pd{reader} at {address:#x} r");
            flows.insert((writer, reader));
        }
        text.push_str("}\n\n");
    }
    for device in 0..(domains / 4).min(64) {
        let owner = (device * 4 + 2) % domains;
        let shared = device % 16 == 15;
        let mmio = 0xfe00_0000_u64 + device as u64 * 0x4000;
        let _ = writeln!(text, "device dev{device} {{\n    owner pd{owner}");
        if shared {
            let _ = writeln!(text, "    shared\n    owner pd{}", owner + 1);
            flows.extend([(owner, owner + 1), (owner + 1, owner)]);
        }
        if let Some(line) = IRQ_LINES.get(device) {
            let _ = writeln!(text, "    irq {line}");
        }
        let ports = 0x1000 + device * 0x10;
        let _ = writeln!(text, "    ioports {ports:#x}..{:#x}", ports + 0xf);
        let _ = writeln!(
            text,
            "    mmio {mmio:#x} size 16KiB\n    pci \"{:02x}:{:02x}.0\"\n}}\n",
            device / 32,
            device % 32
        );
        let address = 0x30_0000_0000_u64 + device as u64 * 0x1000;
        let _ = write!(
            text,
            "region dev{device}_registers {{\n    size 4KiB\n    physical {mmio:#x}\n    map pd{owner} at {address:#x} rw\n}}\n\n"
        );
    }
    for guest in 0..domains / 32 {
        // Channel `vmm` connects the VMM to the PD after it, its VMX.
        let (vmm, vmx) = (guest * 32 + 16, guest * 32 + 17);
        let _ = write!(
            text,
            "region guest{guest}_ram {{\n    size 64MiB\n    page 2MiB\n    shared\n    map pd{vmm} at 0x40_0000_0000 rw\n    map pd{vmx} at 0x40_0000_0000 rw\n}}\n\n"
        );
        let _ = write!(
            text,
            "guest guest{guest} {{\n    memory guest{guest}_ram\n    vcpus 2\n    vmm pd{vmm}\n    vmx pd{vmx}\n    disk root via ch{vmm}\n}}\n\n"
        );
        flows.extend([(vmm, vmx), (vmx, vmm)]);
    }
    text.push_str("# The flows the channels, rings and shared devices make.\n");
    for &(from, to) in &flows {
        if !flows.contains(&(to, from)) {
            let _ = writeln!(text, "flow pd{from} -> pd{to}");
        } else if from < to {
            let _ = writeln!(text, "flow pd{from} <-> pd{to}");
        }
    }
    text
}
