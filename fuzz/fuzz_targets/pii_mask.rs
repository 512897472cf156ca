//! PII masking on any text: no panic, the same number of chars, spans in
//! bounds, sorted and disjoint, and only chars inside a span changed, each
//! to `*`.
#![no_main]

use kesu_core::text::pii::mask;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let out = mask(text);
    let (a, b): (Vec<char>, Vec<char>) = (text.chars().collect(), out.text.chars().collect());
    assert_eq!(a.len(), b.len(), "char count changed");
    let mut prev_end = 0;
    for s in &out.spans {
        assert!(s.start < s.end && s.end <= a.len(), "span out of bounds {s:?}");
        assert!(s.start >= prev_end, "spans overlap or are unsorted");
        prev_end = s.end;
    }
    for i in 0..a.len() {
        if a[i] != b[i] {
            assert_eq!(b[i], '*', "char {i} changed to something other than *");
            assert!(out.spans.iter().any(|s| (s.start..s.end).contains(&i)), "char {i} changed outside every span");
        }
    }
    // Masking its own output keeps the length too.
    assert_eq!(mask(&out.text).text.chars().count(), b.len());
});
