//! The flagger over the shipped lexicon on any text: no panic; every hit's
//! span lies in the text and its `text` is exactly that slice of the
//! original; and a soft hyphen (U+00AD) or zero-width
//! space inserted inside a hit's span hides nothing: the same flag is found
//! again over the widened span.
#![no_main]

use std::sync::OnceLock;

use kesu_core::flags::{Flagger, Lexicon};
use kesu_core::text::char_slice;
use libfuzzer_sys::fuzz_target;

fn flagger() -> &'static Flagger {
    static F: OnceLock<Flagger> = OnceLock::new();
    F.get_or_init(|| {
        let lx = Lexicon::parse(include_str!("../../lexicons/legal_risk.tsv")).expect("shipped lexicon");
        Flagger::new(&lx, 2).expect("shipped lexicon compiles")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let f = flagger();
    let n = text.chars().count();
    let report = f.scan(text);
    for h in &report.hits {
        assert!(h.start < h.end && h.end <= n, "span {}..{} of a {n}-char text", h.start, h.end);
        assert_eq!(char_slice(text, h.start, h.end), h.text, "hit text is not its slice");
    }
    // Insert an invisible char after the first char of the first hit (inside the term).
    if let Some(h) = report.hits.iter().find(|h| h.end - h.start >= 2) {
        for gap in ['\u{00AD}', '\u{200B}'] {
            let mut obf = String::with_capacity(text.len() + 3);
            for (i, c) in text.chars().enumerate() {
                obf.push(c);
                if i == h.start {
                    obf.push(gap);
                }
            }
            let again = f.scan(&obf);
            assert!(
                again.hits.iter().any(|g| g.flag == h.flag && g.start <= h.start && g.end >= h.end + 1),
                "{:?} hidden by U+{:04X} inside {:?}",
                h.term,
                gap as u32,
                h.text
            );
            for g in &again.hits {
                assert_eq!(char_slice(&obf, g.start, g.end), g.text);
            }
        }
    }
});
