//! The word-list and triage-rules parsers on any bytes: no panic; an error
//! names a line that exists (or none, for whole-file problems) and has a
//! message; a parsed word list compiles or names its line.
#![no_main]

use kesu_core::flags::{Flagger, Lexicon};
use kesu_core::triage::TriageRules;
use libfuzzer_sys::fuzz_target;

fn check(raw: &str, line: Option<usize>, message: &str) {
    let lines = raw.split('\n').count();
    if let Some(l) = line {
        assert!(l >= 1 && l <= lines, "line {l} of a {lines}-line file: {message}");
    }
    assert!(!message.trim().is_empty(), "empty message");
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else { return };
    let raw = String::from_utf8_lossy(rest);
    if which % 2 == 0 {
        match TriageRules::parse(&raw) {
            Err(e) => check(&raw, e.line, &e.message),
            Ok(_) => {}
        }
    } else {
        match Lexicon::parse(&raw) {
            Err(e) => check(&raw, e.line, &e.message),
            Ok(lx) => {
                if let Err(e) = Flagger::new(&lx, 2) {
                    check(&raw, e.line, &e.message)
                }
            }
        }
    }
});
