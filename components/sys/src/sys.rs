//! [`Sys`]: one thread's handle on the kernel.

use bulkhead_components::Error;
use bulkhead_components::cap::{CPtr, Cap, kind};
use bulkhead_components::kernel::{
    EXIT_DETAIL_WORDS, Incoming, Kernel, MessageInfo, REGISTER_MESSAGE_WORDS, Syscall, number,
};
use bulkhead_components::message::Message;
use bulkhead_components::server::{Ipc, Received};
use bulkhead_components::vcpu::GuestRegisters;
use kernel_core::vcpu::enter;

use crate::arch;
use crate::ipc_buffer::{self, IpcBufferPage, WordBuffer};

/// A thread's system calls. It knows where the thread's IPC buffer is (if
/// it has one mapped), so it is made once per thread: by the entry point
/// for the root thread, by [`Sys::without_ipc_buffer`] or
/// [`Sys::with_ipc_buffer`] for others.
#[derive(Debug)]
pub struct Sys {
    buffer: Option<IpcBufferPage>,
}

impl Sys {
    /// A handle for a thread that passes only short messages (at most four
    /// words, no capabilities): it never touches memory.
    #[must_use]
    pub const fn without_ipc_buffer() -> Sys {
        Sys { buffer: None }
    }

    /// A handle for a thread whose IPC buffer is mapped at `address`.
    ///
    /// # Safety
    ///
    /// `address` must name the calling thread's IPC buffer under the
    /// conditions of [`IpcBufferPage::new`], and only this thread may use
    /// the handle.
    #[must_use]
    pub unsafe fn with_ipc_buffer(address: usize) -> Sys {
        // SAFETY: the caller's contract is `IpcBufferPage::new`'s.
        Sys { buffer: Some(unsafe { IpcBufferPage::new(address) }) }
    }

    /// Whether long messages and capabilities can be passed.
    #[must_use]
    pub const fn has_ipc_buffer(&self) -> bool {
        self.buffer.is_some()
    }
}

impl Kernel for Sys {
    fn syscall(&mut self, call: Syscall<'_>) -> Result<Incoming, Error> {
        let raw = ipc_buffer::pack(&call, self.buffer.as_mut().map(|buffer| buffer as &mut dyn WordBuffer))?;
        let returned = arch::syscall(&raw);
        Ok(ipc_buffer::unpack(&returned, self.buffer.as_ref().map(|buffer| buffer as &dyn WordBuffer)))
    }

    fn vm_enter_call(
        &mut self,
        registers: &mut GuestRegisters,
        controls: [u64; 2],
        exit: &mut [u64; EXIT_DETAIL_WORDS],
    ) -> Result<(MessageInfo, u64), Error> {
        // Words 0..4 travel in registers, 4..21 (and the reply's 4..31) in
        // the IPC buffer at their own indices, each copied once.
        let buffer = self.buffer.as_mut().ok_or(Error::NoIpcBuffer)?;
        buffer.write_words(REGISTER_MESSAGE_WORDS, &registers.general[REGISTER_MESSAGE_WORDS..]);
        let [deadline, control] = controls;
        buffer.write_words(enter::RIP, &[registers.rip, registers.rflags, registers.event, deadline, control]);
        let general = &registers.general;
        let info = MessageInfo { label: 0, length: enter::MESSAGE_LENGTH, caps: 0 };
        let raw = arch::RawCall {
            number: number::VM_ENTER,
            cptr: 0,
            info: info.to_word(),
            reply: 0,
            words: [general[0], general[1], general[2], general[3]],
        };
        let returned = arch::syscall(&raw);
        let info = MessageInfo::from_word(returned.info);
        let length = usize::from(info.length);
        if length >= enter::STATE_WORDS {
            registers.general[..REGISTER_MESSAGE_WORDS].copy_from_slice(&returned.words);
            buffer.read_words(REGISTER_MESSAGE_WORDS, &mut registers.general[REGISTER_MESSAGE_WORDS..]);
            let mut tail = [0; 3];
            buffer.read_words(enter::RIP, &mut tail);
            [registers.rip, registers.rflags, registers.event] = tail;
        }
        if length >= enter::EXIT_WORDS {
            buffer.read_words(enter::STATE_WORDS, exit);
        }
        Ok((info, returned.badge))
    }

    fn debug_putchar(&mut self, byte: u8) {
        arch::debug_putchar(byte);
    }

    fn name_thread(&mut self, tcb: CPtr, name: [u64; 4]) -> Result<(), Error> {
        arch::name_thread_words(tcb.0, name)
    }
}

impl Ipc for Sys {
    fn recv(&mut self, endpoint: Cap<kind::Endpoint>, reply: Cap<kind::Reply>) -> Received {
        // An empty Recv never needs the buffer: it cannot be refused locally.
        match endpoint.recv(self, Some(reply)) {
            Ok(incoming) => Received::Request { badge: incoming.badge, message: incoming.message },
            Err(error) => Received::Request { badge: 0, message: Message::empty(error as u64) },
        }
    }

    fn reply_recv(&mut self, endpoint: Cap<kind::Endpoint>, reply: Cap<kind::Reply>, message: &Message) -> Received {
        let incoming = match endpoint.reply_recv(self, reply, message) {
            Ok(incoming) => Ok(incoming),
            // A reply too long for this thread: the caller gets the error.
            Err(error) => endpoint.reply_recv(self, reply, &Message::empty(error as u64)),
        };
        match incoming {
            Ok(incoming) => Received::Request { badge: incoming.badge, message: incoming.message },
            Err(error) => Received::Request { badge: 0, message: Message::empty(error as u64) },
        }
    }
}
