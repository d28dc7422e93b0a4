//! Links the bare-metal root task with the shared ring-3 linker script.

include!("../ring3_build.rs");

fn main() {
    link_ring3_binary();
}
