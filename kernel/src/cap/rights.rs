//! Access rights carried by capabilities.

bitflags::bitflags! {
    /// What a capability lets its holder do with the object. Derived
    /// capabilities can only have fewer rights than their source.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct Rights: u8 {
        /// Receive on an endpoint or wait on a notification; read a frame.
        const READ = 1 << 0;
        /// Send on an endpoint or signal a notification; write a frame.
        const WRITE = 1 << 1;
        /// Transfer capabilities in a message sent with this capability.
        const GRANT = 1 << 2;
        /// Transfer capabilities in a reply to a call made with this capability.
        const GRANT_REPLY = 1 << 3;
    }
}

impl Rights {
    /// All rights: what a capability created by retype carries.
    pub const ALL: Rights = Rights::all();

    /// Decodes rights from a message word, ignoring bits that name no right.
    #[must_use]
    pub const fn from_word(word: u64) -> Rights {
        // Only the low four bits carry rights; truncation is the point.
        Rights::from_bits_truncate((word & 0xf) as u8)
    }
}
