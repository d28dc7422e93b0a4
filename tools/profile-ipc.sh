#!/bin/bash
# Per-function and per-line instruction profile of the IPC benchmark
# (docs/PERFORMANCE.md, "IPC round trip"). Build the fault-injection kernel
# first: cargo run -- --kernel-boot --fault-injection --count-instructions --append inject=user-ipc-bench
# QEMU logs the address of every kernel instruction it executes (one
# instruction per translation block); the counts are mapped to functions
# (nm) and source lines (addr2line) and divided by the benchmark's 20,000
# round trips (two passes of 10,000). Takes about 1.5 minutes.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
FIFO=$(mktemp -u)
ELF="$ROOT"/target/bulkhead/kernel-fault-injection/x86_64-unknown-none/release/bulkhead-kernel
mkfifo "$FIFO"; trap 'rm -f "$FIFO" /tmp/bulkhead-pc-counts.txt /tmp/bulkhead-syms.txt' EXIT
FIFO="$FIFO" python3 - > /tmp/bulkhead-pc-counts.txt <<'PY' &
import collections,re
c=collections.Counter()
pat=re.compile(rb'/([0-9a-f]{16})/')
import os
with open(os.environ['FIFO'],'rb') as f:
    for line in f:
        m=pat.search(line)
        if m: c[int(m.group(1),16)]+=1
for pc,n in c.items(): print(f"{pc:x} {n}")
PY
sleep 0.5
timeout 900 qemu-system-x86_64 -machine q35 -cpu qemu64,+svm,+npt -m 256 -display none -serial null -no-reboot -device isa-debug-exit,iobase=0xf4,iosize=0x04 -kernel $ELF -append "exit=emulator inject=user-ipc-bench" -icount shift=0 -singlestep -d exec,nochain -D "$FIFO" -dfilter 0xffffffff80000000..0xffffffffffffffff >/dev/null 2>&1 || true
wait
nm -C -n --defined-only $ELF | grep -iE " [tTwW] " > /tmp/bulkhead-syms.txt
ELF="$ELF" ROOT="$ROOT" python3 - <<'PY'
import bisect,os,collections,subprocess
syms=[]
for l in open('/tmp/bulkhead-syms.txt'):
    p=l.split(' ',2); syms.append((int(p[0],16),p[2].strip()))
syms.sort(); addrs=[a for a,_ in syms]
c=collections.Counter(); total=0; pcs=[]
for l in open('/tmp/bulkhead-pc-counts.txt'):
    pc,n=l.split(); pc=int(pc,16); n=int(n); pcs.append((pc,n))
    i=bisect.bisect_right(addrs,pc)-1
    c[syms[i][1][:100] if i>=0 else '?']+=n; total+=n
R=20000
print("total per round trip", round(total/R,1))
for name,n in c.most_common(25): print(f"{n/R:8.1f} {name}")
hot=[(pc,n) for pc,n in pcs if n>=R*0.9]
out=subprocess.run(['addr2line','-e',os.environ['ELF']]+[hex(pc) for pc,_ in hot],capture_output=True,text=True).stdout.split('\n')
lines=collections.Counter()
for (pc,n),loc in zip(hot,out):
    loc=loc.split(os.environ.get('ROOT','/')+'/')[-1].split(' (')[0]
    if '/rustc/' in loc or '.cargo' in loc: loc=loc.split('/library/')[-1] if '/library/' in loc else loc.split('/')[-1]
    lines[loc]+=n
print("--- by source line")
for loc,n in lines.most_common(45): print(f"{n/R:7.1f} {loc}")
PY
