//! What `cargo run` shows of a system with a Linux guest: the guest's
//! console, or the hypervisor's whole log, switched by a key (README,
//! "The guest's console"). The machine's one serial line carries both:
//! the kernel's log, and each PD's lines as `user PD: text`; the PD that
//! serves a guest's COM1 prints the guest's lines as `PD: text` (so they
//! arrive as `user PD: PD: text`). This module is the hardware-free part:
//! it splits the decoded console into lines, keeps both views' recent
//! lines, and reads the keys; `emulator::run_interactive` drives it.

use std::collections::VecDeque;

/// Which view the terminal shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    /// The guest's console: its lines without their prefixes, and the
    /// kernel's verdict.
    Guest,
    /// Everything: the kernel's log and every PD's lines.
    Log,
}

/// What a key does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyAction {
    /// Nothing (an unbound key, or part of a sequence still arriving).
    None,
    /// The view switched: show this text (a banner and the new view's
    /// recent lines).
    Switched(String),
    /// Stop the run (Ctrl-C: the terminal does not turn it into a signal
    /// while the keys are read).
    Quit,
}

/// How many of each view's lines a switch shows again.
pub const REPLAYED_LINES: usize = 20;

/// The keys that switch views: F12, Alt-F12 (the keys ESXi's console
/// gives its VMkernel log) and Ctrl-T, for terminals that keep the
/// function keys to themselves.
const SWITCH_KEYS: [&[u8]; 3] = [b"\x1b[24~", b"\x1b[24;3~", b"\x14"];
/// Ctrl-C.
const QUIT_KEY: u8 = 0x03;
/// The longest key sequence read.
const LONGEST_KEY: usize = 8;

/// The help line printed when the run starts and at each switch.
pub const HELP: &str = "F12 or Ctrl-T switches between the guest's console and the hypervisor's log; Ctrl-C stops";

/// The guest's console and the hypervisor's log, as the terminal shows them.
#[derive(Debug)]
pub struct ConsoleView {
    /// The prefix of the guest's lines: `user PD: PD: `.
    guest_prefix: String,
    view: View,
    /// Text after the last newline.
    partial: String,
    guest_tail: VecDeque<String>,
    log_tail: VecDeque<String>,
    /// Key bytes of a sequence still arriving.
    keys: Vec<u8>,
}

impl ConsoleView {
    /// A view of the guest whose COM1 PD `console_pd` serves, starting on
    /// `view`.
    #[must_use]
    pub fn new(console_pd: &str, view: View) -> Self {
        ConsoleView {
            guest_prefix: format!("user {console_pd}: {console_pd}: "),
            view,
            partial: String::new(),
            guest_tail: VecDeque::new(),
            log_tail: VecDeque::new(),
            keys: Vec::new(),
        }
    }

    /// The view shown now.
    #[must_use]
    pub const fn view(&self) -> View {
        self.view
    }

    /// Takes decoded console text; returns what to show now (whole lines
    /// of the current view; a partial line waits for its end).
    pub fn feed(&mut self, text: &str) -> String {
        self.partial.push_str(text);
        let mut shown = String::new();
        while let Some(end) = self.partial.find('\n') {
            let line: String = self.partial.drain(..=end).collect();
            self.take_line(line.trim_end_matches(['\n', '\r']), &mut shown);
        }
        shown
    }

    /// The run ended: shows a last line that had no newline.
    pub fn finish(&mut self) -> String {
        let line = std::mem::take(&mut self.partial);
        let mut shown = String::new();
        if !line.is_empty() {
            self.take_line(&line, &mut shown);
        }
        shown
    }

    fn take_line(&mut self, line: &str, shown: &mut String) {
        let guest_line = line
            .strip_prefix(self.guest_prefix.as_str())
            .or_else(|| line.starts_with(crate::emulator::FINAL_LINE_PREFIX).then_some(line));
        if let Some(guest_line) = guest_line {
            remember(&mut self.guest_tail, guest_line);
            if self.view == View::Guest {
                shown.push_str(guest_line);
                shown.push('\n');
            }
        }
        remember(&mut self.log_tail, line);
        if self.view == View::Log {
            shown.push_str(line);
            shown.push('\n');
        }
    }

    /// Takes bytes typed on the terminal.
    pub fn keys(&mut self, bytes: &[u8]) -> KeyAction {
        let mut action = KeyAction::None;
        for &byte in bytes {
            if byte == QUIT_KEY {
                self.keys.clear();
                return KeyAction::Quit;
            }
            self.keys.push(byte);
            if SWITCH_KEYS.contains(&self.keys.as_slice()) {
                self.keys.clear();
                action = KeyAction::Switched(self.switch());
            } else if !SWITCH_KEYS.iter().any(|key| key.starts_with(&self.keys)) || self.keys.len() >= LONGEST_KEY {
                // Not the start of a bound key: drop it (and start again at
                // an escape, which may begin the next sequence).
                let restart = self.keys.last() == Some(&0x1b) && self.keys.len() > 1;
                self.keys.clear();
                if restart {
                    self.keys.push(0x1b);
                }
            }
        }
        action
    }

    /// Switches to the other view; returns its banner and recent lines.
    fn switch(&mut self) -> String {
        self.view = match self.view {
            View::Guest => View::Log,
            View::Log => View::Guest,
        };
        let (title, tail) = match self.view {
            View::Guest => ("the guest's console", &self.guest_tail),
            View::Log => ("the hypervisor's log", &self.log_tail),
        };
        let mut shown = format!("\n==== {title} ({HELP}) ====\n");
        for line in tail {
            shown.push_str(line);
            shown.push('\n');
        }
        shown
    }
}

/// Keeps `line` among the last [`REPLAYED_LINES`] of a view.
fn remember(tail: &mut VecDeque<String>, line: &str) {
    if tail.len() == REPLAYED_LINES {
        tail.pop_front();
    }
    tail.push_back(line.to_owned());
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONSOLE: &str = "\
tsc=1 [INFO ] boot: kernel up
user linux_vmm: vmm: booting Linux
user linux_vmm: linux_vmm: [    0.000000] Linux version 6.1.0
user linux_vmm: linux_vmm: BULKHEAD-GUEST: userspace up
user other_vmm: other_vmm: not this guest
bulkhead: exit success
";

    #[test]
    fn the_guest_view_shows_the_guest_s_lines_and_the_verdict() {
        let mut view = ConsoleView::new("linux_vmm", View::Guest);
        let shown = view.feed(CONSOLE);
        assert_eq!(shown, "[    0.000000] Linux version 6.1.0\nBULKHEAD-GUEST: userspace up\nbulkhead: exit success\n");
    }

    #[test]
    fn the_log_view_shows_everything() {
        let mut view = ConsoleView::new("linux_vmm", View::Log);
        assert_eq!(view.feed(CONSOLE), CONSOLE);
    }

    #[test]
    fn lines_split_across_chunks_are_shown_whole_and_a_last_partial_line_at_the_end() {
        let mut view = ConsoleView::new("linux_vmm", View::Guest);
        assert_eq!(view.feed("user linux_vmm: linux_"), "");
        assert_eq!(view.feed("vmm: hello\r\nuser linux_vmm: linux_vmm: bye"), "hello\n");
        assert_eq!(view.finish(), "bye\n");
        assert_eq!(view.finish(), "");
    }

    #[test]
    fn f12_alt_f12_and_ctrl_t_switch_and_replay_the_recent_lines() {
        let mut view = ConsoleView::new("linux_vmm", View::Guest);
        view.feed(CONSOLE);
        let KeyAction::Switched(log) = view.keys(b"\x1b[24~") else { panic!("F12 switches") };
        assert_eq!(view.view(), View::Log);
        assert!(log.contains("the hypervisor's log") && log.ends_with(CONSOLE), "{log}");
        // Alt-F12, one byte at a time as a slow terminal may send it.
        let mut action = KeyAction::None;
        for byte in b"\x1b[24;3~" {
            action = view.keys(&[*byte]);
        }
        let KeyAction::Switched(guest) = action else { panic!("Alt-F12 switches") };
        assert_eq!(view.view(), View::Guest);
        assert!(guest.contains("the guest's console") && guest.ends_with("bulkhead: exit success\n"), "{guest}");
        assert!(!guest.contains("not this guest"));
        assert!(matches!(view.keys(b"\x14"), KeyAction::Switched(_)));
        assert_eq!(view.view(), View::Log);
    }

    #[test]
    fn other_keys_do_nothing_and_ctrl_c_quits() {
        let mut view = ConsoleView::new("linux_vmm", View::Guest);
        assert_eq!(view.keys(b"abc\x1b[A\x1b[23~"), KeyAction::None);
        assert_eq!(view.view(), View::Guest);
        // An escape that starts over inside a broken sequence still counts.
        assert!(matches!(view.keys(b"\x1b[2\x1b[24~"), KeyAction::Switched(_)));
        assert_eq!(view.keys(b"x\x03"), KeyAction::Quit);
    }

    #[test]
    fn a_switch_replays_at_most_the_last_lines() {
        let mut view = ConsoleView::new("g", View::Guest);
        for number in 0..50 {
            view.feed(&format!("user g: g: line {number}\n"));
        }
        let KeyAction::Switched(log) = view.keys(b"\x14") else { panic!("switches") };
        assert_eq!(log.lines().filter(|line| line.contains("line ")).count(), REPLAYED_LINES);
        assert!(log.ends_with("user g: g: line 49\n") && !log.contains("line 29\n"));
    }

    proptest::proptest! {
        /// Whatever bytes are typed, the view never panics, and what it
        /// shows of a console is the same however the console is cut.
        #[test]
        fn random_keys_and_cuts_are_safe(keys: Vec<u8>, cut in 0_usize..200) {
            let mut view = ConsoleView::new("linux_vmm", View::Guest);
            let _ = view.keys(&keys);
            let mut whole = ConsoleView::new("linux_vmm", View::Guest);
            let mut pieces = ConsoleView::new("linux_vmm", View::Guest);
            let cut = cut.min(CONSOLE.len());
            let cut = (0..=cut).rev().find(|at| CONSOLE.is_char_boundary(*at)).unwrap_or(0);
            let mut shown = pieces.feed(&CONSOLE[..cut]);
            shown.push_str(&pieces.feed(&CONSOLE[cut..]));
            proptest::prop_assert_eq!(shown, whole.feed(CONSOLE));
        }
    }
}
