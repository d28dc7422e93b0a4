# Attach gdb to a Bulkhead kernel waiting in QEMU (`cargo run -- --gdb`).
#
# Run it from the workspace root (the CLI prints the exact command):
#   gdb -q --cd=WORKSPACE -x tools/gdb/bulkhead.gdb
# Before sourcing, `-ex 'set $bulkhead_port = N'` picks another gdbstub port
# and `-ex 'set $bulkhead_fault_injection = 1'` loads the fault-injection
# kernel's symbols instead of the standard kernel's.

set pagination off
set confirm off
set disassembly-flavor intel

if $_isvoid($bulkhead_port)
  set $bulkhead_port = 1234
end
if $_isvoid($bulkhead_fault_injection)
  set $bulkhead_fault_injection = 0
end

if $bulkhead_fault_injection
  file target/bulkhead/kernel-fault-injection/x86_64-unknown-none/release/bulkhead-kernel
else
  file target/bulkhead/kernel/x86_64-unknown-none/release/bulkhead-kernel
end

eval "target remote 127.0.0.1:%d", $bulkhead_port

# The kernel is linked in the higher half and not mapped until the boot stub
# enables paging: software breakpoints set now could not be written, so use
# hardware ones, e.g.  hbreak kernel_entry
echo Bulkhead: attached. Try `hbreak kernel_entry`, then `continue`.\n
