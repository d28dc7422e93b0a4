//! The loop every server runs: wait for a request, hand it to the server's
//! handler, reply, wait again (one ReplyRecv per request). Servers
//! implement [`Handler`]; the loop, not the server, owns the system calls.
//! A request the handler cannot make sense of gets an error reply and the
//! server keeps serving.

use crate::cap::{Cap, kind};
use crate::error::Error;
use crate::message::Message;

/// What a server does with what arrives.
pub trait Handler {
    /// A Call from the client whose endpoint capability carries `badge`.
    /// The returned message is the reply.
    ///
    /// # Errors
    ///
    /// An error the client receives as the reply's label (its code), e.g.
    /// [`Error::InvalidArgument`] for a malformed request.
    fn called(&mut self, badge: u64, request: &Message) -> Result<Message, Error>;

    /// A signal arrived (badge bits OR-ed together). Servers that wait on
    /// notifications override this.
    fn notified(&mut self, _badges: u64) {}
}

/// What the loop receives from the kernel.
// A request carries the whole message in place: boxing it would need a heap
// in every server.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Received {
    /// A Call (or Send) with its sender's badge.
    Request {
        /// The badge of the capability it came through.
        badge: u64,
        /// The message.
        message: Message,
    },
    /// Signals, OR-ed.
    Notification {
        /// The badges.
        badges: u64,
    },
}

/// The system calls a server loop makes. The ring-3 hardware-access crate
/// implements it with SYSCALL; tests implement it with a script.
pub trait Ipc {
    /// Recv on `endpoint`, naming `reply` for the caller.
    fn recv(&mut self, endpoint: Cap<kind::Endpoint>, reply: Cap<kind::Reply>) -> Received;
    /// Reply with `message`, then Recv again.
    fn reply_recv(&mut self, endpoint: Cap<kind::Endpoint>, reply: Cap<kind::Reply>, message: &Message) -> Received;
}

/// The reply label of a successful request; errors carry their code.
pub const REPLY_OK: u64 = 0;

/// Serves `requests` requests (or forever with `None`), replying to each.
/// With a limit, the loop returns after sending the last reply (whose
/// ReplyRecv is already waiting for the next request).
pub fn serve(
    ipc: &mut impl Ipc,
    handler: &mut impl Handler,
    endpoint: Cap<kind::Endpoint>,
    reply: Cap<kind::Reply>,
    requests: Option<usize>,
) {
    let mut received = ipc.recv(endpoint, reply);
    let mut served = 0;
    while requests.is_none_or(|limit| served < limit) {
        received = match received {
            Received::Notification { badges } => {
                handler.notified(badges);
                ipc.recv(endpoint, reply)
            }
            Received::Request { badge, message } => {
                served += 1;
                let answer = match handler.called(badge, &message) {
                    Ok(answer) => Message::new(REPLY_OK, answer.words()),
                    Err(error) => Message::empty(error as u64),
                };
                ipc.reply_recv(endpoint, reply, &answer)
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A kernel stand-in that replays a script of arrivals and records replies.
    struct Script {
        arrivals: Vec<Received>,
        replies: Vec<Message>,
    }

    impl Ipc for Script {
        fn recv(&mut self, _: Cap<kind::Endpoint>, _: Cap<kind::Reply>) -> Received {
            self.arrivals.remove(0)
        }

        fn reply_recv(
            &mut self,
            endpoint: Cap<kind::Endpoint>,
            reply: Cap<kind::Reply>,
            message: &Message,
        ) -> Received {
            self.replies.push(message.clone());
            if self.arrivals.is_empty() {
                return Received::Notification { badges: 0 };
            }
            self.recv(endpoint, reply)
        }
    }

    /// Adds its two words; anything else is an invalid request.
    struct Adder {
        signals: u64,
    }

    impl Handler for Adder {
        fn called(&mut self, badge: u64, request: &Message) -> Result<Message, Error> {
            let (Some(a), Some(b)) = (request.word(0), request.word(1)) else {
                return Err(Error::TruncatedMessage);
            };
            let sum = a.checked_add(b).ok_or(Error::RangeError)?;
            Ok(Message::new(0, &[sum, badge]))
        }

        fn notified(&mut self, badges: u64) {
            self.signals |= badges;
        }
    }

    #[test]
    fn requests_get_replies_and_bad_ones_get_errors_without_stopping_the_server() {
        let request = |badge, words: &[u64]| Received::Request { badge, message: Message::new(1, words) };
        let mut script = Script {
            arrivals: vec![
                request(0xa, &[2, 3]),
                Received::Notification { badges: 0b100 },
                request(0xb, &[1]),
                request(0xc, &[u64::MAX, 1]),
                request(0xd, &[40, 2]),
            ],
            replies: Vec::new(),
        };
        let mut adder = Adder { signals: 0 };
        serve(&mut script, &mut adder, Cap::new(1), Cap::new(2), Some(4));
        let labels: Vec<u64> = script.replies.iter().map(|reply| reply.label).collect();
        assert_eq!(labels, [REPLY_OK, Error::TruncatedMessage as u64, Error::RangeError as u64, REPLY_OK]);
        assert_eq!(script.replies[0].words(), [5, 0xa]);
        assert_eq!(script.replies[3].words(), [42, 0xd]);
        assert_eq!(adder.signals, 0b100);
    }
}
