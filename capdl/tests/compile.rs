//! The compiler: the example compiles to a spec whose slots are dense and
//! deterministic, whose rights never exceed what the manifest grants, and
//! which round-trips through its blob; and the errors only it reports.

use std::path::PathBuf;

use bulkhead_capdl::ast::Item;
use bulkhead_capdl::compile::{
    BlobError, Cache, DomainSpec, ObjectId, ObjectKind, RIGHT_GRANT_REPLY, RIGHT_READ, RIGHT_WRITE, SPEC_VERSION,
    constant_name,
};
use bulkhead_capdl::{Diagnostic, SystemSpec, compile, from_blob, generated_names, to_blob};

fn example() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/system.capdl");
    std::fs::read_to_string(path).expect("examples/system.capdl")
}

fn compile_text(text: &str) -> Result<SystemSpec, Vec<Diagnostic>> {
    let manifest = bulkhead_capdl::parse("test.capdl", text).map_err(|error| vec![error])?;
    let graph = bulkhead_capdl::validate(&manifest)?;
    compile(&manifest, &graph)
}

fn compiled_example() -> SystemSpec {
    match compile_text(&example()) {
        Ok(spec) => spec,
        Err(errors) => {
            let rendered: Vec<String> = errors.iter().map(ToString::to_string).collect();
            panic!("the example should compile:\n{}", rendered.join("\n"));
        }
    }
}

/// The errors a manifest that validates is refused with.
fn compile_errors(text: &str) -> Vec<Diagnostic> {
    let manifest = bulkhead_capdl::parse("test.capdl", text).expect("the manifest parses");
    let graph = match bulkhead_capdl::validate(&manifest) {
        Ok(graph) => graph,
        Err(errors) => panic!("the manifest should validate: {errors:?}"),
    };
    compile(&manifest, &graph).expect_err("the compiler should refuse the manifest")
}

fn kind(spec: &SystemSpec, id: ObjectId) -> &ObjectKind {
    &spec.object(id).expect("the object exists").kind
}

#[test]
fn the_example_compiles_to_each_pds_objects() {
    let spec = compiled_example();
    assert_eq!(spec.version, SPEC_VERSION);
    let names: Vec<&str> = spec.domains.iter().map(|domain| domain.name.as_str()).collect();
    assert_eq!(names, ["log_server", "serial_driver", "disk_driver", "linux_vmm", "linux_vmx"]);
    let serial = spec.domain("serial_driver").expect("serial_driver");
    assert_eq!(serial.image, "serial-driver");
    assert_eq!(serial.stack_bytes, 16 * 1024);
    assert_eq!(*kind(&spec, serial.tcb), ObjectKind::Tcb { priority: 200, core: 0 });
    assert!(!serial.passive);
    assert!(spec.domain("linux_vmx").expect("linux_vmx").passive, "`passive` reaches the loader");
    // 500us in every 5ms, in nanoseconds.
    assert_eq!(
        *kind(&spec, serial.sched_context),
        ObjectKind::SchedContext { budget_ns: 500_000, period_ns: 5_000_000 }
    );
    assert_eq!(*kind(&spec, serial.vspace), ObjectKind::VSpace);
    // Seven slots (the CNode, log, console, reply, the IRQ, the IRQ's
    // notification, the ports): radix 3.
    assert_eq!(*kind(&spec, serial.cnode), ObjectKind::CNode { radix: 3 });
    let irq_notification = serial.caps[5].object;
    assert_eq!(*kind(&spec, irq_notification), ObjectKind::Notification);
    assert_eq!((serial.caps[5].name.as_str(), serial.caps[5].rights), ("com2_irq_notification", RIGHT_READ));
    assert_eq!(*kind(&spec, serial.caps[4].object), ObjectKind::IrqHandler { line: 3, notification: irq_notification });
    assert!(matches!(kind(&spec, serial.caps[6].object), ObjectKind::IoPorts { first: 0x2f8, last: 0x2ff }));

    let exits = spec.channels.iter().find(|channel| channel.name == "exits").expect("exits");
    assert_eq!(*kind(&spec, exits.endpoint.expect("a call makes an endpoint")), ObjectKind::Endpoint);
    assert_eq!(*kind(&spec, exits.notification.expect("a notify makes a notification")), ObjectKind::Notification);
    let log = spec.channels.iter().find(|channel| channel.name == "log").expect("log");
    assert_eq!(log.notification, None);

    let frames = |name: &str| {
        let region = spec.regions.iter().find(|region| region.name == name).expect("the region");
        kind(&spec, region.frames).clone()
    };
    assert_eq!(frames("linux_ram"), ObjectKind::Frames { page_size: 2 << 20, count: 256, physical: None });
    assert_eq!(frames("disk_dma"), ObjectKind::Frames { page_size: 4096, count: 64, physical: None });
    assert_eq!(frames("ahci_registers"), ObjectKind::Frames { page_size: 4096, count: 1, physical: Some(0xfebf_1000) });

    let disk = spec.domain("disk_driver").expect("disk_driver");
    let caches: Vec<(u64, Cache, u64)> =
        disk.mappings.iter().map(|mapping| (mapping.address, mapping.cache, mapping.attributes())).collect();
    assert_eq!(caches, [(0x20_0000_0000, Cache::WriteBack, 0), (0x30_0000_0000, Cache::Uncacheable, 6)]);
}

#[test]
fn slots_are_dense_from_the_cnode_in_declaration_order() {
    let spec = compiled_example();
    for domain in &spec.domains {
        assert_eq!(domain.caps[0].object, domain.cnode, "{}: slot 0 is the PD's own CNode", domain.name);
        for (index, cap) in domain.caps.iter().enumerate() {
            assert_eq!(cap.slot, index as u64, "{}: slot numbers are dense", domain.name);
        }
        let ObjectKind::CNode { radix } = *kind(&spec, domain.cnode) else { panic!("not a CNode") };
        assert!(domain.caps.len() <= 1 << radix, "{}: the CNode holds every slot", domain.name);
        assert!(radix == 1 || domain.caps.len() > 1 << (radix - 1), "{}: the radix is the smallest", domain.name);
    }
    let slots = |pd: &str| -> Vec<(String, u64, u64)> {
        let domain = spec.domain(pd).expect("the PD");
        domain.caps.iter().map(|cap| (cap.name.clone(), cap.rights, cap.badge)).collect()
    };
    let owned = |list: &[(&str, u64, u64)]| -> Vec<(String, u64, u64)> {
        list.iter().map(|(name, rights, badge)| ((*name).to_owned(), *rights, *badge)).collect()
    };
    assert_eq!(
        slots("linux_vmx"),
        owned(&[
            ("cnode", 0xf, 0),
            ("exits", RIGHT_READ, 0),
            ("reply", 0xf, 0),
            ("exits_notification", RIGHT_WRITE, 1),
            ("block", RIGHT_WRITE | RIGHT_GRANT_REPLY, 1),
            ("block_notification", RIGHT_READ, 0),
        ])
    );
    assert_eq!(slots("log_server"), owned(&[("cnode", 0xf, 0), ("log", RIGHT_READ, 0), ("console", 0xa, 1)]));
}

#[test]
fn no_capability_or_mapping_exceeds_what_the_manifest_grants() {
    let spec = compiled_example();
    for domain in &spec.domains {
        for cap in &domain.caps {
            let Some(channel) = spec
                .channels
                .iter()
                .find(|channel| channel.endpoint == Some(cap.object) || channel.notification == Some(cap.object))
            else {
                continue;
            };
            if cap.rights == RIGHT_READ {
                // A receiving end: READ alone, unbadged.
                assert_eq!(cap.badge, 0);
            } else {
                assert_eq!(cap.rights & !channel.rights, 0, "{} on {}", domain.name, channel.name);
                assert_ne!(cap.rights & RIGHT_WRITE, 0, "a sender holds WRITE");
            }
        }
        for mapping in &domain.mappings {
            let region = &spec.regions[mapping.region as usize];
            assert!(mapping.rights.within(region.rights), "{} maps {}", domain.name, region.name);
            assert!(mapping.rights.read, "Frame::Map needs READ");
        }
    }
    // `log` grants `write` only: its senders hold nothing more.
    let log = spec.channels.iter().find(|channel| channel.name == "log").expect("log");
    assert_eq!(log.rights, RIGHT_WRITE);
    let serial = spec.domain("serial_driver").expect("serial_driver");
    assert_eq!((serial.caps[1].name.as_str(), serial.caps[1].rights, serial.caps[1].badge), ("log", RIGHT_WRITE, 1));
}

#[test]
fn two_compilations_give_identical_blobs_that_round_trip() {
    let first = to_blob(&compiled_example());
    let second = to_blob(&compiled_example());
    assert_eq!(first, second);
    let spec = from_blob(&first).expect("the blob decodes");
    assert_eq!(spec, compiled_example());
    assert_eq!(to_blob(&spec), first);
}

#[test]
fn damaged_blobs_and_other_versions_are_refused() {
    let mut spec = compiled_example();
    let blob = to_blob(&spec);
    assert!(matches!(from_blob(&blob[..blob.len() / 2]), Err(BlobError::Decode(_))));
    let mut longer = blob.clone();
    longer.push(0);
    assert!(matches!(from_blob(&longer), Err(BlobError::Decode(_))));
    spec.version = SPEC_VERSION + 1;
    assert!(matches!(from_blob(&to_blob(&spec)), Err(BlobError::Version(version)) if version == SPEC_VERSION + 1));
}

#[test]
fn generated_names_give_each_pd_its_slots_and_regions() {
    let spec = compiled_example();
    let text = generated_names(&spec, "disk_driver").expect("disk_driver");
    for line in [
        "pub mod caps {",
        "    pub const CNODE: u64 = 0;",
        "    pub const LOG: u64 = 1;",
        "    pub const BLOCK: u64 = 2;",
        "    pub const REPLY: u64 = 3;",
        "    pub const BLOCK_NOTIFICATION: u64 = 4;",
        "    pub const AHCI_IRQ: u64 = 5;",
        "pub mod regions {",
        "    pub const DISK_DMA: Region = Region { address: 0x2000000000, size: 0x40000, page_size: 0x1000, writable: true, executable: false, device: false };",
        "    pub const AHCI_REGISTERS: Region = Region { address: 0x3000000000, size: 0x1000, page_size: 0x1000, writable: true, executable: false, device: true };",
    ] {
        assert!(text.lines().any(|written| written == line), "missing {line:?} in\n{text}");
    }
    // Every constant is documented (the PDs build with missing_docs).
    let lines: Vec<&str> = text.lines().collect();
    for (index, line) in lines.iter().enumerate() {
        if line.trim_start().starts_with("pub ") {
            assert!(lines[index - 1].trim_start().starts_with("///") || lines[index - 1].starts_with("#["), "{line}");
        }
    }
    let server = generated_names(&spec, "log_server").expect("log_server");
    assert!(server.contains("    pub const LOG_RING: Region = Region { address: 0x1000000000, size: 0x10000, page_size: 0x1000, writable: false,"));
    assert_eq!(generated_names(&spec, "nobody"), None);
}

#[test]
fn the_documentation_shows_the_disk_drivers_names_as_generated() {
    let doc = std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/capdl.md"))
        .expect("docs/capdl.md");
    let start = doc.find("```rust\npub mod caps {").expect("the example's names") + "```rust\n".len();
    let end = start + doc[start..].find("```").expect("the block's end");
    let generated = generated_names(&compiled_example(), "disk_driver").expect("disk_driver");
    assert!(generated.contains(&doc[start..end]), "docs/capdl.md shows other names than\n{generated}");
}

#[test]
fn constant_names_are_screaming_snake_case() {
    assert_eq!(constant_name("dma_buffer"), "DMA_BUFFER");
    assert_eq!(constant_name("dmaBuffer"), "DMA_BUFFER");
    assert_eq!(constant_name("com2Irq"), "COM2_IRQ");
    assert_eq!(constant_name("LOG"), "LOG");
}

const TWO_PDS: &str = "
pd a {
    image \"a\"
    priority 1
    budget 1ms
    period 10ms
    core 0
}

pd b {
    image \"b\"
    priority 1
    budget 1ms
    period 10ms
    core 0
}
";

#[test]
fn names_that_collide_as_constants_are_refused_where_written() {
    let text = format!(
        "{TWO_PDS}
region dma_buffer {{
    size 4KiB
    map a at 0x8000_0000 rw
}}

region dmaBuffer {{
    size 4KiB
    map a at 0x8000_1000 rw
}}
"
    );
    let errors = compile_errors(&text);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!((errors[0].span.line, errors[0].span.column), (25, 5), "{}", errors[0]);
    assert_eq!(
        errors[0].message,
        "region `dma_buffer` and region `dmaBuffer` would both be the constant `DMA_BUFFER` of `a`"
    );

    let text = format!(
        "{TWO_PDS}
channel log {{
    notify a -> b
}}

channel log_notification {{
    send a -> b
}}

flow a -> b
"
    );
    let messages: Vec<(u32, String)> =
        compile_errors(&text).into_iter().map(|error| (error.span.line, error.message)).collect();
    let expected = |pd: &str| {
        format!(
            "`log.notification` and `log_notification.endpoint` would both be the constant `LOG_NOTIFICATION` of `{pd}`"
        )
    };
    assert_eq!(messages, [(23, expected("a")), (23, expected("b"))]);
}

#[test]
fn two_different_capabilities_to_one_object_are_refused() {
    let text = format!(
        "{TWO_PDS}
channel ping {{
    send a -> b badge 1
    send b -> a badge 2
}}

flow a <-> b
"
    );
    let errors = compile_errors(&text);
    assert_eq!(errors.len(), 2, "{errors:?}");
    for (error, pd) in errors.iter().zip(["b", "a"]) {
        assert_eq!(error.span.line, 20, "{error}");
        assert!(
            error.message.starts_with(&format!("`{pd}` would hold two different capabilities to `ping.endpoint`")),
            "{error}"
        );
    }
}

#[test]
fn a_time_beyond_64_bits_of_nanoseconds_is_refused() {
    // A budget and period of about 634 years: valid, but not in nanoseconds.
    let text = TWO_PDS
        .replacen("budget 1ms\n    period 10ms", "budget 20000000000000000us\n    period 20000000000000000us", 1)
        .replacen("core 0\n}\n\npd b", "core 1\n}\n\npd b", 1);
    let errors = compile_errors(&text);
    let rendered: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(errors.len(), 2, "{rendered:?}");
    assert_eq!((errors[0].span.line, errors[0].span.column), (5, 12), "{rendered:?}");
    assert_eq!(errors[0].message, "budget of 20000000000000000us does not fit 64 bits in nanoseconds");
    assert_eq!((errors[1].span.line, errors[1].span.column), (6, 12), "{rendered:?}");
}

#[test]
fn more_capabilities_than_the_largest_cnode_holds_are_refused() {
    // 65,536 channels give `a` 65,537 slots with its CNode: one too many
    // for radix 16. The manifest is validated with one channel and then
    // given the others as copies of it under new names (validating 65,536
    // channels from text takes the test tens of seconds).
    let text = format!("{TWO_PDS}\nchannel c0 {{\n    notify a -> b\n}}\n\nflow a -> b\n");
    let mut manifest = bulkhead_capdl::parse("test.capdl", &text).expect("the manifest parses");
    let graph = bulkhead_capdl::validate(&manifest).expect("the manifest validates");
    let Some(Item::Channel(channel)) = manifest.items.get(2).cloned() else { panic!("the channel") };
    for index in 1..(1 << 16) {
        let mut copy = channel.clone();
        copy.name.text = format!("c{index}");
        manifest.items.push(Item::Channel(copy));
    }
    let errors = compile(&manifest, &graph).expect_err("too many capabilities");
    let rendered: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(errors.len(), 2, "{rendered:?}");
    assert!(errors[0].message.starts_with("`a` needs 65537 capability slots"), "{rendered:?}");
    assert!(errors[1].message.starts_with("`b` needs 65537 capability slots"), "{rendered:?}");

    // One channel fewer fits radix 16 exactly.
    manifest.items.pop();
    let spec = compile(&manifest, &graph).expect("65,536 slots fit");
    let a = spec.domain("a").expect("a");
    assert_eq!(a.caps.len(), 1 << 16);
    assert_eq!(*kind(&spec, a.cnode), ObjectKind::CNode { radix: 16 });
}

#[test]
fn pds_sharing_an_image_must_have_the_same_names() {
    let pd = |name: &str| {
        format!("pd {name} {{\n    image \"worker\"\n    priority 1\n    budget 1ms\n    period 10ms\n    core 0\n}}\n")
    };
    let same = format!(
        "{}{}{}channel log {{\n    send a -> logger badge 1\n    send b -> logger badge 2\n}}\n\nflow a -> logger\nflow b -> logger\n",
        pd("a"),
        pd("b"),
        pd("logger").replace("\"worker\"", "\"logger\"")
    );
    let spec = compile_text(&same).expect("alike PDs may share an image");
    let names = bulkhead_capdl::generated_image_names(&spec, "worker").expect("the image has names");
    assert!(names.contains("run by a, b"), "{names}");
    let different = same.replace("    send b -> logger badge 2\n", "    notify b -> logger badge 2\n");
    let errors = compile_errors(&different);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].message.contains("`a` and `b` run image `worker`"), "{}", errors[0]);
    assert_eq!(errors[0].span.line, 8);
}

#[test]
fn a_guest_compiles_to_its_space_its_vcpus_and_its_vmms_view_of_its_memory() {
    let spec = compiled_example();
    let [guest] = spec.guests.as_slice() else { panic!("one guest: {:?}", spec.guests) };
    let vmm = &spec.domains[usize::try_from(guest.vmm).expect("an index")];
    assert_eq!((guest.name.as_str(), vmm.name.as_str(), guest.image.as_deref()), ("linux", "linux_vmm", None));
    assert_eq!(*kind(&spec, guest.space), ObjectKind::GuestSpace);
    assert_eq!(guest.vcpus.len(), 2);
    for (number, vcpu) in guest.vcpus.iter().enumerate() {
        assert_eq!(*kind(&spec, *vcpu), ObjectKind::VCpu);
        // The VMM holds every VCpu, in its last slots, vCPU 0 first.
        let cap = &vmm.caps[usize::try_from(guest.first_vcpu_slot).expect("a slot") + number];
        assert_eq!((cap.object, cap.slot), (*vcpu, guest.first_vcpu_slot + u64::try_from(number).expect("small")));
    }
    assert_eq!(guest.first_vcpu_slot + 2, u64::try_from(vmm.caps.len()).expect("small"));
    let [memory] = guest.memory.as_slice() else { panic!("one memory region") };
    let region = &spec.regions[usize::try_from(memory.region).expect("an index")];
    assert_eq!((region.name.as_str(), memory.guest_physical, memory.vmm_address), ("linux_ram", 0, 0x40_0000_0000));
    // Neither the VCpus nor the guest's memory are among the VMM's
    // generated names: its info page says where they are, so VMMs of
    // different guests can share one image.
    let names = generated_names(&spec, "linux_vmm").expect("names");
    assert!(!names.contains("VCPU") && !names.contains("LINUX_RAM"), "{names}");
    assert!(!generated_names(&spec, "linux_vmx").expect("names").contains("LINUX_RAM"));
}

#[test]
fn a_vmx_and_the_device_channel_are_on_the_info_pages_not_in_the_names() {
    let spec = compiled_example();
    let [guest] = spec.guests.as_slice() else { panic!("one guest") };
    let vmx = guest.vmx.expect("the example's guest has a VMX");
    let domain = |index: u32| &spec.domains[usize::try_from(index).expect("an index")];
    let (vmm, vmx_domain) = (domain(guest.vmm), domain(vmx.domain));
    assert_eq!((vmx_domain.name.as_str(), vmx.memory_address), ("linux_vmx", 0x40_0000_0000));
    let cap = |domain: &DomainSpec, slot: u64| {
        let cap = &domain.caps[usize::try_from(slot).expect("a slot")];
        (cap.name.clone(), kind(&spec, cap.object).clone(), cap.rights)
    };
    // The first channel with `call linux_vmm -> linux_vmx`: `exits`.
    assert_eq!(cap(vmm, vmx.vmm_slot), ("exits".into(), ObjectKind::Endpoint, RIGHT_WRITE | RIGHT_GRANT_REPLY));
    assert_eq!(cap(vmx_domain, vmx.vmx_slot), ("exits".into(), ObjectKind::Endpoint, RIGHT_READ));
    assert_eq!(cap(vmx_domain, vmx.reply_slot).1, ObjectKind::Reply);
    let vmm_names = generated_names(&spec, "linux_vmm").expect("names");
    assert!(!vmm_names.contains("const EXITS:") && vmm_names.contains("EXITS_NOTIFICATION"), "{vmm_names}");
    let vmx_names = generated_names(&spec, "linux_vmx").expect("names");
    assert!(!vmx_names.contains("const EXITS:") && !vmx_names.contains("REPLY"), "{vmx_names}");
    assert!(vmx_names.contains("const BLOCK:"), "its other channels keep their names: {vmx_names}");
}

#[test]
fn the_vmxs_of_two_guests_share_an_image_whatever_their_channels_are_called() {
    let pd = |name: &str, image: &str| {
        format!(
            "pd {name} {{\n    image \"{image}\"\n    priority 100\n    budget 1ms\n    period 10ms\n    core 0\n}}\n\n"
        )
    };
    let mut text = String::new();
    for (guest, base) in [("a", 0x10_u64), ("b", 0x20)] {
        text += &pd(&format!("{guest}_vmm"), "vmm-server");
        text += &pd(&format!("{guest}_vmx"), "vmx-server");
        text += &format!(
            "region {guest}_ram {{\n    size 64MiB\n    page 2MiB\n    shared\n    map {guest}_vmm at {base:#x}_0000_0000 rw\n    map {guest}_vmx at {base:#x}_0000_0000 rw\n}}\n\n\
             region {guest}_disk {{\n    size 4MiB\n    map {guest}_vmx at 0x30_0000_0000 rw\n}}\n\n\
             channel {guest}_devices {{\n    call {guest}_vmm -> {guest}_vmx\n}}\n\n\
             guest {guest} {{\n    memory {guest}_ram\n    vcpus 1\n    vmm {guest}_vmm\n    vmx {guest}_vmx\n    disk root from {guest}_disk\n}}\n\n\
             flow {guest}_vmm <-> {guest}_vmx\n\n"
        );
    }
    let spec = compile_text(&text).expect("VMMs and VMXs of two guests share their images");
    let vmx = |index: usize| spec.guests[index].vmx.expect("a VMX");
    assert_eq!((vmx(0).vmx_slot, vmx(0).reply_slot), (vmx(1).vmx_slot, vmx(1).reply_slot));
    assert_ne!(vmx(0).memory_address, vmx(1).memory_address);
    let names = bulkhead_capdl::generated_image_names(&spec, "vmx-server").expect("the image has names");
    assert!(!names.contains("DEVICES") && !names.contains("RAM") && !names.contains("DISK"), "{names}");
}

#[test]
fn guest_memory_lies_end_to_end_from_zero_each_region_aligned_to_its_pages() {
    let text = example()
        .replace("    memory linux_ram\n", "    memory linux_ram\n    memory linux_high\n")
        .replace(
            "# Requests and data",
            "region linux_high {\n    size 4MiB\n    page 2MiB\n    shared\n    map linux_vmm at 0x40_2000_0000 rw\n    map linux_vmx at 0x40_2000_0000 rw\n}\n\n# Requests and data",
        );
    let spec = compile_text(&text).expect("compiles");
    let places: Vec<(u64, u64)> =
        spec.guests[0].memory.iter().map(|memory| (memory.guest_physical, memory.vmm_address)).collect();
    assert_eq!(places, [(0, 0x40_0000_0000), (0x2000_0000, 0x40_2000_0000)]);
}

#[test]
fn a_linux_guest_compiles_with_its_kernel_initramfs_and_command_line() {
    assert_eq!(compiled_example().guests[0].kernel, None);
    let text = example().replace(
        "    disk root via block\n",
        "    disk root via block\n    kernel \"debian-cloud\"\n    initrd \"busybox-initramfs\"\n    cmdline \"console=ttyS0 panic=-1\"\n",
    );
    let spec = compile_text(&text).expect("compiles");
    let guest = &spec.guests[0];
    assert_eq!(guest.kernel.as_deref(), Some("debian-cloud"));
    assert_eq!(guest.initrd.as_deref(), Some("busybox-initramfs"));
    assert_eq!(guest.cmdline.as_deref(), Some("console=ttyS0 panic=-1"));
    assert_eq!(guest.image, None);
    // The blob carries them.
    assert_eq!(from_blob(&to_blob(&spec)).expect("round trip").guests[0], *guest);
    // A kernel alone, and the longest command line Linux takes.
    let longest = format!("{:2047}", "console=ttyS0");
    let text = example().replace(
        "    disk root via block\n",
        &format!("    disk root via block\n    kernel \"k\"\n    cmdline \"{longest}\"\n"),
    );
    let guest = &compile_text(&text).expect("compiles").guests[0];
    assert_eq!((guest.initrd.as_deref(), guest.cmdline.as_ref().map(String::len)), (None, Some(2047)));
}

/// Two Linux guests, each run by a VMM that serves its disk (no VMX): the
/// `linux_pair` test system's shape.
const TWO_GUESTS_WITH_DISKS: &str = "
pd a_vmm {
    image \"vmm-server\"
    priority 100
    budget 5ms
    period 10ms
    core 0
}

pd b_vmm {
    image \"vmm-server\"
    priority 100
    budget 5ms
    period 10ms
    core 0
}

region a_ram {
    size 128MiB
    page 2MiB
    map a_vmm at 0x10_0000_0000 rw
}

region b_ram {
    size 128MiB
    page 2MiB
    map b_vmm at 0x10_0000_0000 rw
}

region a_disk {
    size 8MiB
    page 2MiB
    contents \"busybox-disk\"
    map a_vmm at 0x20_0000_0000 rw
}

region b_disk {
    size 8MiB
    page 2MiB
    contents \"busybox-disk\"
    map b_vmm at 0x30_0000_0000 rw
}

region b_scratch {
    size 4KiB
    map b_vmm at 0x40_0000_0000 rw
}

guest a {
    memory a_ram
    vcpus 1
    vmm a_vmm
    kernel \"debian-cloud\"
    disk root from a_disk
}

guest b {
    memory b_ram
    vcpus 1
    vmm b_vmm
    kernel \"debian-cloud\"
    disk root from b_disk
    disk scratch from b_scratch
}
";

#[test]
fn a_disk_held_in_a_region_compiles_to_its_servers_mapping_and_the_regions_contents() {
    let spec = compile_text(TWO_GUESTS_WITH_DISKS).expect("compiles");
    let region = |name: &str| {
        u32::try_from(spec.regions.iter().position(|region| region.name == name).expect("a region")).expect("small")
    };
    let domain = |name: &str| {
        u32::try_from(spec.domains.iter().position(|domain| domain.name == name).expect("a PD")).expect("small")
    };
    let disks = |guest: usize| -> Vec<(&str, u32, u32, u64)> {
        spec.guests[guest]
            .disks
            .iter()
            .map(|disk| (disk.name.as_str(), disk.region, disk.server, disk.address))
            .collect()
    };
    // Without a VMX the VMM serves the disks, in the order written.
    assert_eq!(disks(0), [("root", region("a_disk"), domain("a_vmm"), 0x20_0000_0000)]);
    assert_eq!(
        disks(1),
        [
            ("root", region("b_disk"), domain("b_vmm"), 0x30_0000_0000),
            ("scratch", region("b_scratch"), domain("b_vmm"), 0x40_0000_0000)
        ]
    );
    let contents: Vec<Option<&str>> = spec.regions.iter().map(|region| region.contents.as_deref()).collect();
    assert_eq!(contents, [None, None, Some("busybox-disk"), Some("busybox-disk"), None]);
    // The disks are on the VMMs' info pages, not among their names: the two
    // VMMs share the vmm-server image although their disks differ.
    for vmm in ["a_vmm", "b_vmm"] {
        let names = generated_names(&spec, vmm).expect("names");
        assert!(!names.contains("DISK") && !names.contains("SCRATCH"), "{names}");
    }
    assert_eq!(from_blob(&to_blob(&spec)).expect("round trip"), spec);
}

#[test]
fn a_guest_with_a_vmx_has_its_disks_served_by_the_vmx() {
    let text = example()
        .replace("    disk root via block\n", "    disk root via block\n    disk boot from linux_boot_disk\n")
        .replace(
            "# Requests and data",
            "region linux_boot_disk {\n    size 4MiB\n    page 2MiB\n    contents \"busybox-disk\"\n    map linux_vmx at 0x30_0000_0000 rw\n}\n\n# Requests and data",
        );
    let spec = compile_text(&text).expect("compiles");
    let [disk] = spec.guests[0].disks.as_slice() else { panic!("one disk: {:?}", spec.guests[0].disks) };
    let server = &spec.domains[usize::try_from(disk.server).expect("an index")];
    assert_eq!((disk.name.as_str(), server.name.as_str(), disk.address), ("boot", "linux_vmx", 0x30_0000_0000));
    assert!(!generated_names(&spec, "linux_vmx").expect("names").contains("LINUX_BOOT_DISK"));
    // A disk served over a channel is not one the loader describes.
    assert_eq!(compiled_example().guests[0].disks, []);
}

#[test]
fn a_guest_s_debug_port_is_its_vmm_s_capability_named_on_the_info_page_only() {
    // Guest b's VMM also owns a serial port, its guest's debug port; both
    // VMMs still run one image.
    let text = format!("{TWO_GUESTS_WITH_DISKS}\ndevice com2 {{\n    owner b_vmm\n    ioports 0x2f8..0x2ff\n}}\n")
        .replace("    disk scratch from b_scratch\n", "    disk scratch from b_scratch\n    debug com2\n");
    let spec = compile_text(&text).expect("compiles");
    assert_eq!(spec.guests[0].debug_port, None);
    let port = spec.guests[1].debug_port.expect("guest b has a debug port");
    let vmm = spec.domain("b_vmm").expect("b_vmm");
    let cap = &vmm.caps[usize::try_from(port.slot).expect("a slot")];
    assert_eq!((cap.slot, cap.name.as_str(), port.first_port), (1, "com2_ioports", 0x2f8));
    assert_eq!(*kind(&spec, cap.object), ObjectKind::IoPorts { first: 0x2f8, last: 0x2ff });
    // Before the VCpus, which stay last.
    assert_eq!(spec.guests[1].first_vcpu_slot, 2);
    // Not among the names: the two VMMs' are the same.
    let names = |vmm: &str| {
        let text = generated_names(&spec, vmm).expect("names");
        text.lines().filter(|line| !line.trim_start().starts_with("//")).map(str::to_owned).collect::<Vec<_>>()
    };
    assert!(!names("b_vmm").iter().any(|line| line.contains("COM2")), "{:?}", names("b_vmm"));
    assert_eq!(names("a_vmm"), names("b_vmm"));
    assert_eq!(from_blob(&to_blob(&spec)).expect("round trip"), spec);
}
