//! The checker against the example manifest's spec: a dump made from the
//! spec as a correct loader would leave the system passes, and each kind
//! of deviation is reported.

use super::*;
use bulkhead_capdl::compile::DomainSpec;

const EXAMPLE: &str = include_str!("../../capdl/examples/system.capdl");
/// The TSC rate of the machine the test dumps come from (2 GHz).
const TSC_KHZ: u64 = 2_000_000;

fn spec() -> SystemSpec {
    let manifest = bulkhead_capdl::parse("system.capdl", EXAMPLE).expect("parses");
    let graph = bulkhead_capdl::check("system.capdl", EXAMPLE).expect("valid");
    bulkhead_capdl::compile(&manifest, &graph).expect("compiles")
}

/// Where the made-up kernel put spec object `id`.
fn address(id: ObjectId) -> u64 {
    0x1_0000_0000 + u64::from(id.0) * 0x10_0000
}

/// The frame of page `page` of region `region`.
fn region_frame(spec: &SystemSpec, region: u32, page: u64) -> u64 {
    let frames = spec.regions[region as usize].frames;
    match spec.object(frames).map(|object| &object.kind) {
        Some(ObjectKind::Frames { page_size, physical: Some(base), .. }) => base + page * page_size,
        Some(ObjectKind::Frames { page_size, .. }) => {
            0x40_0000_0000 + u64::from(region) * 0x1_0000_0000 + page * page_size
        }
        _ => panic!("region {region} without frames"),
    }
}

/// The frame of the `index`th private page of PD `pd`.
fn private_frame(pd: usize, index: u64) -> u64 {
    0x3_0000_0000 + pd as u64 * 0x10_0000 + index * 0x1000
}

fn map(pd: &str, vaddr: u64, paddr: u64, size: u64, write: u8, exec: u8, cache: u8) -> String {
    format!(
        "map thread={pd} vaddr={vaddr:#x} paddr={paddr:#x} size={size} write={write} exec={exec} user=1 cache={cache}"
    )
}

/// The private pages of PD number `pd`: an image text and data page, a
/// stack page, the IPC buffer, the info page and a heap page if it has one.
fn private_pages(pd: usize, domain: &DomainSpec) -> Vec<String> {
    let name = &domain.name;
    let mut pages = vec![
        map(name, 0x40_0000, private_frame(pd, 0), 4096, 0, 1, 0),
        map(name, 0x40_1000, private_frame(pd, 1), 4096, 1, 0, 0),
        map(name, 0x400f_f000, private_frame(pd, 2), 4096, 1, 0, 0),
        map(name, 0x4010_1000, private_frame(pd, 3), 4096, 1, 0, 0),
        map(name, 0x4010_2000, private_frame(pd, 4), 4096, 0, 0, 0),
    ];
    if domain.heap_bytes > 0 {
        pages.push(map(name, 0x4100_0000, private_frame(pd, 5), 4096, 1, 0, 0));
    }
    pages
}

/// The snapshot lines (without prefix and end) of a system built exactly
/// as `spec` says, with the loader's own thread first.
fn correct(spec: &SystemSpec) -> Vec<String> {
    let mut lines = vec![
        format!("machine tsc_khz={TSC_KHZ}"),
        "thread name=? tcb=0x800000 priority=255 state=inactive cnode=0x100000 radix=8 guard=56:0x0 vspace=0x900000 ipc_buffer=0x901000 fault=none sched=none passive=0".to_owned(),
        "cap thread=? slot=0 type=cnode object=0x100000 rights=0xf badge=0x0".to_owned(),
        format!("cap thread=? slot=10 type=tcb object={:#x} rights=0xf badge=0x0", address(spec.domains[0].tcb)),
        "map thread=? vaddr=0x400000 paddr=0x902000 size=4096 write=0 exec=1 user=1 cache=0".to_owned(),
    ];
    for (pd, domain) in spec.domains.iter().enumerate() {
        let Some(ObjectKind::Tcb { priority, .. }) = spec.object(domain.tcb).map(|object| &object.kind) else {
            panic!("a TCB")
        };
        let Some(ObjectKind::CNode { radix }) = spec.object(domain.cnode).map(|object| &object.kind) else {
            panic!("a CNode")
        };
        let Some(ObjectKind::SchedContext { budget_ns, period_ns }) =
            spec.object(domain.sched_context).map(|object| &object.kind)
        else {
            panic!("a scheduling context")
        };
        let ticks = |nanoseconds: u64| nanoseconds * TSC_KHZ / 1_000_000;
        let name = &domain.name;
        lines.push(format!(
            "thread name={name} tcb={:#x} priority={priority} state=blocked_on_receive cnode={:#x} radix={radix} guard={}:0x0 vspace={:#x} ipc_buffer={:#x} fault=none sched={:#x}:{:#x} passive={}",
            address(domain.tcb),
            address(domain.cnode),
            64 - radix,
            address(domain.vspace),
            private_frame(pd, 3),
            ticks(*budget_ns),
            ticks(*period_ns),
            u8::from(domain.passive),
        ));
        for cap in &domain.caps {
            let kind = &spec.object(cap.object).expect("object").kind;
            let object = fixed_object(kind).unwrap_or_else(|| format!("{:#x}", address(cap.object)));
            let bound = match kind {
                ObjectKind::IrqHandler { line, notification } => {
                    format!(" bound={:#x}:{:#x}", address(*notification), 1_u64 << line)
                }
                _ => String::new(),
            };
            lines.push(format!(
                "cap thread={name} slot={} type={} object={object} rights={:#x} badge={:#x}{bound}",
                cap.slot,
                type_of(kind),
                cap.rights,
                cap.badge
            ));
        }
        for mapping in &domain.mappings {
            let region = &spec.regions[mapping.region as usize];
            let Some(ObjectKind::Frames { page_size, count, .. }) = spec.object(region.frames).map(|o| &o.kind) else {
                panic!("frames")
            };
            let cache = if matches!(mapping.cache, Cache::Uncacheable) { 3 } else { 0 };
            for page in 0..*count {
                lines.push(map(
                    name,
                    mapping.address + page * page_size,
                    region_frame(spec, mapping.region, page),
                    *page_size,
                    u8::from(mapping.rights.write),
                    u8::from(mapping.rights.execute),
                    cache,
                ));
            }
        }
        lines.extend(private_pages(pd, domain));
    }
    lines
}

/// A console log with the snapshot `lines` among other output, closed by
/// an end line that counts them.
fn log(lines: &[String]) -> String {
    let count = |kind: &str| lines.iter().filter(|line| line.starts_with(kind)).count();
    let mut text = String::from("kernel: root task exited\n");
    for line in lines {
        text.push_str(&format!("{PREFIX}{line}\n"));
    }
    text.push_str(&format!(
        "{PREFIX}end threads={} caps={} maps={}\nkernel: halting\n",
        count("thread "),
        count("cap "),
        count("map ")
    ));
    text
}

fn mismatches(lines: &[String]) -> Vec<Mismatch> {
    let spec = spec();
    check(&spec, &parse(&log(lines)).expect("parses"))
}

/// The index of the first line that starts with `start`.
fn find(lines: &[String], start: &str) -> usize {
    lines.iter().position(|line| line.starts_with(start)).unwrap_or_else(|| panic!("no line `{start}`"))
}

fn replace(lines: &mut [String], start: &str, from: &str, to: &str) {
    let index = find(lines, start);
    assert!(lines[index].contains(from), "`{}` lacks `{from}`", lines[index]);
    lines[index] = lines[index].replacen(from, to, 1);
}

/// The only mismatch of `lines`.
fn only(lines: &[String]) -> Mismatch {
    let found = mismatches(lines);
    assert_eq!(found.len(), 1, "{}", found.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"));
    found.into_iter().next().expect("one")
}

#[test]
fn the_system_built_as_the_manifest_says_passes() {
    let spec = spec();
    let lines = correct(&spec);
    assert!(lines.len() > 500, "linux_ram alone is 256 pages in each of two PDs");
    let snapshot = parse(&log(&lines)).expect("parses");
    assert_eq!(snapshot.threads.len(), spec.domains.len() + 1);
    let found = check(&spec, &snapshot);
    assert!(found.is_empty(), "{}", found.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"));
}

#[test]
fn a_wrong_badge_or_wrong_rights_are_reported() {
    let mut lines = correct(&spec());
    // disk_driver slot 1: `log` with badge 2, WRITE.
    replace(&mut lines, "cap thread=disk_driver slot=1 ", "badge=0x2", "badge=0x5");
    let found = only(&lines);
    assert_eq!(found, Mismatch::WrongBadge { pd: "disk_driver".into(), slot: 1, expected: 2, found: 5 });
    assert_eq!(found.to_string(), "`disk_driver` slot 1: badge 0x5, the manifest says 0x2");

    let mut lines = correct(&spec());
    replace(&mut lines, "cap thread=disk_driver slot=1 ", "rights=0x2", "rights=0x6");
    assert_eq!(only(&lines), Mismatch::WrongRights { pd: "disk_driver".into(), slot: 1, expected: 2, found: 6 });
}

#[test]
fn an_extra_or_a_missing_capability_is_reported() {
    let mut lines = correct(&spec());
    let at = find(&lines, "thread name=disk_driver ");
    lines.insert(at + 1, "cap thread=disk_driver slot=7 type=irq_control object=- rights=0xf badge=0x0".to_owned());
    let found = only(&lines);
    assert!(matches!(found, Mismatch::ExtraCap { ref pd, slot: 7, .. } if pd == "disk_driver"), "{found:?}");
    assert_eq!(
        found.to_string(),
        "`disk_driver` slot 7: holds a irq_control capability to -, which the manifest does not give"
    );

    let mut lines = correct(&spec());
    lines.remove(find(&lines, "cap thread=serial_driver slot=2 "));
    let found = only(&lines);
    assert!(matches!(found, Mismatch::MissingCap { ref pd, slot: 2, .. } if pd == "serial_driver"), "{found:?}");
}

#[test]
fn wrong_types_and_device_objects_are_reported() {
    let mut lines = correct(&spec());
    replace(&mut lines, "cap thread=serial_driver slot=1 ", "type=endpoint", "type=notification");
    assert!(matches!(only(&lines), Mismatch::WrongCapType { slot: 1, .. }));
    let mut lines = correct(&spec());
    let at = find(&lines, "cap thread=serial_driver ");
    let irq = (at..).find(|index| lines[*index].contains("type=irq_handler")).expect("com2's IRQ");
    lines[irq] = lines[irq].replace("object=3 ", "object=4 ");
    assert!(
        matches!(only(&lines), Mismatch::WrongCapObject { ref expected, ref found, .. } if expected == "3" && found == "4")
    );
}

#[test]
fn a_wrongly_shared_or_split_object_is_reported() {
    let spec = spec();
    // disk_driver's reply object made serial_driver's.
    let mut lines = correct(&spec);
    let serial = spec.domain("serial_driver").expect("PD");
    let log_server = spec.domain("log_server").expect("PD");
    let disk = spec.domain("disk_driver").expect("PD");
    let reply = |domain: &DomainSpec| domain.caps.iter().find(|cap| cap.name == "reply").expect("reply").clone();
    let (theirs, ours) = (reply(serial), reply(disk));
    replace(
        &mut lines,
        &format!("cap thread=disk_driver slot={} ", ours.slot),
        &format!("object={:#x}", address(ours.object)),
        &format!("object={:#x}", address(theirs.object)),
    );
    let found = only(&lines);
    assert!(matches!(found, Mismatch::SharedObject { .. }), "{found:?}");
    assert_eq!(
        found.to_string(),
        format!(
            "`serial_driver.reply` and `disk_driver.reply` are one object (reply:{:#x}), the manifest has two",
            address(theirs.object)
        )
    );
    // disk_driver's `log` capability names another endpoint than the
    // others' (a fresh one: only the split).
    let mut lines = correct(&spec);
    replace(&mut lines, "cap thread=disk_driver slot=1 ", "object=0x", "object=0xdead");
    let found = only(&lines);
    assert!(matches!(found, Mismatch::SplitObject { ref object, .. } if object == "log.endpoint"), "{found:?}");
    // Slot 0 must be the PD's own CSpace root.
    let mut lines = correct(&spec);
    let other = address(serial.cnode);
    replace(
        &mut lines,
        "cap thread=log_server slot=0 ",
        &format!("object={:#x}", address(log_server.cnode)),
        &format!("object={other:#x}"),
    );
    let found = mismatches(&lines);
    assert!(found.iter().any(|m| matches!(m, Mismatch::NotOwnCSpace { pd, .. } if pd == "log_server")), "{found:?}");
    assert!(found.iter().any(|m| matches!(m, Mismatch::SharedObject { .. })), "{found:?}");
}

#[test]
fn mappings_beyond_the_manifest_and_writable_code_are_reported() {
    let mut lines = correct(&spec());
    let at = find(&lines, "map thread=log_server ");
    lines.insert(at, map("log_server", 0x50_0000_0000, 0x7_0000_0000, 4096, 1, 0, 0));
    let found = only(&lines);
    assert!(matches!(found, Mismatch::ExtraMapping { vaddr: 0x50_0000_0000, .. }), "{found:?}");
    assert_eq!(
        found.to_string(),
        "`log_server`: page 0x5000000000 (4096 bytes) is at or above 2 GiB and no region of the manifest"
    );

    let mut lines = correct(&spec());
    replace(&mut lines, "map thread=log_server vaddr=0x400000 ", "write=0", "write=1");
    assert_eq!(only(&lines), Mismatch::WritableExecutable { pd: "log_server".into(), vaddr: 0x40_0000 });

    let mut lines = correct(&spec());
    let at = find(&lines, "map thread=log_server ");
    lines.insert(at, map("log_server", 0x6000_0000, 0x7_0000_0000, 4096, 1, 0, 0));
    assert!(matches!(only(&lines), Mismatch::ExtraMapping { vaddr: 0x6000_0000, .. }), "outside the layout");

    let mut lines = correct(&spec());
    replace(&mut lines, "map thread=log_server vaddr=0x40102000 ", "write=0", "write=1");
    assert!(matches!(only(&lines), Mismatch::WrongMapping { vaddr: 0x4010_2000, .. }), "a writable info page");
}

#[test]
fn region_pages_must_be_the_same_frames_everywhere_and_distinct() {
    let spec = spec();
    let vmm_frame = region_frame(&spec, 0, 0);
    let mut lines = correct(&spec);
    replace(
        &mut lines,
        "map thread=linux_vmx vaddr=0x4000000000 ",
        &format!("paddr={vmm_frame:#x}"),
        "paddr=0x7000000000",
    );
    let found = only(&lines);
    assert!(
        matches!(found, Mismatch::RegionFramesDiffer { ref region, page: 0, .. } if region == "linux_ram"),
        "{found:?}"
    );
    // One frame for two pages of the region (in both PDs alike).
    let mut lines = correct(&spec);
    let second = region_frame(&spec, 0, 1);
    for pd in ["linux_vmm", "linux_vmx"] {
        replace(
            &mut lines,
            &format!("map thread={pd} vaddr=0x4000200000 "),
            &format!("paddr={second:#x}"),
            &format!("paddr={vmm_frame:#x}"),
        );
    }
    let found = only(&lines);
    assert!(matches!(found, Mismatch::FrameReused { paddr, .. } if paddr == vmm_frame), "{found:?}");
    // A private page mapping a region's frame.
    let mut lines = correct(&spec);
    replace(
        &mut lines,
        "map thread=log_server vaddr=0x401000 ",
        &format!("paddr={:#x}", private_frame(0, 1)),
        &format!("paddr={vmm_frame:#x}"),
    );
    assert!(matches!(only(&lines), Mismatch::FrameReused { .. }));
    // Device memory at its physical address, uncached.
    let mut lines = correct(&spec);
    replace(&mut lines, "map thread=disk_driver vaddr=0x3000000000 ", "paddr=0xfebf1000", "paddr=0xfebf2000");
    assert!(matches!(only(&lines), Mismatch::WrongMapping { ref problem, .. } if problem.contains("0xfebf1000")));
    let mut lines = correct(&spec);
    replace(&mut lines, "map thread=disk_driver vaddr=0x3000000000 ", "cache=3", "cache=0");
    assert!(matches!(only(&lines), Mismatch::WrongMapping { ref problem, .. } if problem.starts_with("cache=0")));
    // A page left out.
    let mut lines = correct(&spec);
    lines.remove(find(&lines, "map thread=log_server vaddr=0x1000000000 "));
    assert!(matches!(only(&lines), Mismatch::MissingMapping { pages: 1, vaddr: 0x10_0000_0000, .. }));
}

#[test]
fn missing_duplicate_and_extra_threads_are_reported() {
    let spec = spec();
    let mut lines = correct(&spec);
    lines.retain(|line| !line.contains("name=log_server ") && !line.contains("thread=log_server "));
    // Its frames of `log_ring` are gone with it; serial_driver's are now the first.
    assert_eq!(only(&lines), Mismatch::MissingThread { pd: "log_server".into() });

    let mut lines = correct(&spec);
    lines.push("thread name=intruder tcb=0x7700000 priority=1 state=runnable cnode=none radix=0 guard=0:0x0 vspace=none ipc_buffer=none fault=none sched=none passive=0".to_owned());
    assert_eq!(only(&lines), Mismatch::ExtraThread { name: "intruder".into(), tcb: 0x770_0000 });

    let mut lines = correct(&spec);
    lines.push("thread name=log_server tcb=0x7700000 priority=1 state=runnable cnode=none radix=0 guard=0:0x0 vspace=none ipc_buffer=none fault=none sched=none passive=0".to_owned());
    assert_eq!(only(&lines), Mismatch::DuplicateThread { pd: "log_server".into(), count: 2 });

    let mut lines = correct(&spec);
    replace(&mut lines, "thread name=log_server ", "priority=120", "priority=121");
    assert_eq!(only(&lines), Mismatch::WrongPriority { pd: "log_server".into(), expected: 120, found: 121 });

    let mut lines = correct(&spec);
    replace(&mut lines, "thread name=log_server ", "guard=", "guard=1");
    assert!(matches!(only(&lines), Mismatch::WrongCSpace { .. }), "a guard that is not 64 - radix bits");
}

#[test]
fn incomplete_or_malformed_dumps_are_refused() {
    let lines = correct(&spec());
    let text = log(&lines);
    let cut: String = text.lines().filter(|line| !line.contains("end threads=")).collect::<Vec<_>>().join("\n");
    assert_eq!(parse(&cut).unwrap_err().message, "no `end` line: the dump is incomplete");
    assert!(lines[4].starts_with("map "));
    let lost = text.replacen(&format!("{PREFIX}{}\n", lines[4]), "", 1);
    let maps = lines.iter().filter(|line| line.starts_with("map ")).count();
    let expected = format!("the kernel printed {maps} maps but {} arrived", maps - 1);
    assert_eq!(parse(&lost).unwrap_err().message, expected, "a lost line");
    assert!(parse("kernel: nothing here\n").unwrap_err().message.starts_with("no `conformance:` lines"));
    let error =
        parse(&format!("{PREFIX}cap thread=? slot=0 type=cnode object=0x1 rights=0xf badge=0x0\n")).unwrap_err();
    assert_eq!(error.to_string(), "conformance dump, log line 1: a `cap` line before any thread");
    let garbled = text.replacen("priority=255", "priority=lots", 1);
    assert!(parse(&garbled).unwrap_err().message.contains("`priority=lots` is not a number"));
    let twice = format!("{text}{text}");
    assert!(parse(&twice).unwrap_err().message.contains("after the snapshot's end"));
    // Only the kernel's own lines count: a PD that prints the marker (its
    // lines start `user NAME: `) cannot add to the dump.
    let forged = text.replacen("kernel: halting", &format!("user server: {PREFIX}thread name=forged tcb=0x1"), 1);
    assert_eq!(parse(&forged), parse(&text));
}

#[test]
fn a_fault_handler_the_manifest_does_not_give_is_reported() {
    // The example gives no PD a fault handler: one found is a mismatch,
    // and so is one the manifest gives but the thread lacks.
    let mut lines = correct(&spec());
    replace(&mut lines, "thread name=linux_vmx ", "fault=none", "fault=0x7000000:0x3:0x2");
    let found = only(&lines);
    assert_eq!(found, Mismatch::WrongFaultHandler { pd: "linux_vmx".into(), expected: None, found: Some(3) });
    assert_eq!(found.to_string(), "`linux_vmx`: fault handler badge 0x3, the manifest says none");

    let mut spec = spec();
    let endpoint = spec.channels.iter().find(|channel| channel.name == "exits").and_then(|c| c.endpoint);
    let vmx = spec.domains.iter_mut().find(|domain| domain.name == "linux_vmx").expect("linux_vmx");
    vmx.fault_handler =
        Some(bulkhead_capdl::compile::FaultHandlerSpec { endpoint: endpoint.expect("an endpoint"), badge: 7 });
    let snapshot = parse(&log(&correct(&spec))).expect("parses");
    let found = check(&spec, &snapshot);
    assert_eq!(found, [Mismatch::WrongFaultHandler { pd: "linux_vmx".into(), expected: Some(7), found: None }]);
}

#[test]
fn an_unstarted_thread_a_wrong_budget_irq_binding_or_fault_right_is_reported() {
    let spec = spec();
    let mut lines = correct(&spec);
    replace(&mut lines, "thread name=log_server ", "state=blocked_on_receive", "state=inactive");
    assert_eq!(only(&lines), Mismatch::NotStarted { pd: "log_server".into() });

    // log_server: 1ms in 10ms at 2 GHz is 2,000,000 ticks in 20,000,000.
    let mut lines = correct(&spec);
    replace(&mut lines, "thread name=log_server ", "sched=0x1e8480:", "sched=0x1e8481:");
    assert_eq!(
        only(&lines),
        Mismatch::WrongBudget {
            pd: "log_server".into(),
            expected: Some((2_000_000, 20_000_000)),
            found: Some((2_000_001, 20_000_000))
        }
    );
    let mut lines = correct(&spec);
    replace(&mut lines, "thread name=log_server ", "sched=0x1e8480:0x1312d00", "sched=none");
    assert!(matches!(only(&lines), Mismatch::WrongBudget { found: None, .. }));

    // A thread passive without the manifest's word, and the other way round.
    let mut lines = correct(&spec);
    replace(&mut lines, "thread name=log_server ", "passive=0", "passive=1");
    assert_eq!(only(&lines), Mismatch::WrongPassive { pd: "log_server".into(), expected: false });
    let mut lines = correct(&spec);
    replace(&mut lines, "thread name=linux_vmx ", "passive=1", "passive=0");
    assert_eq!(only(&lines), Mismatch::WrongPassive { pd: "linux_vmx".into(), expected: true });

    // serial_driver slot 4: com2's line 3 signals its notification with 0x8.
    let mut lines = correct(&spec);
    replace(&mut lines, "cap thread=serial_driver slot=4 ", ":0x8", ":0x4");
    assert!(matches!(only(&lines), Mismatch::WrongIrqBinding { slot: 4, expected_badge: 8, found: Some((_, 4)), .. }));
    let mut lines = correct(&spec);
    let index = find(&lines, "cap thread=serial_driver slot=4 ");
    let at = lines[index].find(" bound=").expect("bound");
    lines[index] = format!("{} bound=none", &lines[index][..at]);
    assert!(matches!(only(&lines), Mismatch::WrongIrqBinding { found: None, .. }));

    let mut spec = spec;
    let endpoint = spec.channels.iter().find(|channel| channel.name == "exits").and_then(|c| c.endpoint);
    let vmx = spec.domains.iter_mut().find(|domain| domain.name == "linux_vmx").expect("linux_vmx");
    vmx.fault_handler =
        Some(bulkhead_capdl::compile::FaultHandlerSpec { endpoint: endpoint.expect("an endpoint"), badge: 7 });
    let mut lines = correct(&spec);
    let handler = format!("fault={:#x}:0x7:0x6", address(endpoint.expect("an endpoint")));
    replace(&mut lines, "thread name=linux_vmx ", "fault=none", &handler);
    let found = check(&spec, &parse(&log(&lines)).expect("parses"));
    assert_eq!(found, [Mismatch::WrongFaultRights { pd: "linux_vmx".into(), found: 6 }]);
}
