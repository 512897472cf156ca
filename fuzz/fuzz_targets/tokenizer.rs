//! The shipped model's tokenizer on any text: tokenising never fails or
//! panics and yields content, and the windows over it are `<s> … </s>`
//! within the token budget and hold exactly the content in order.
#![no_main]

use std::sync::OnceLock;

use kesu_core::model::format::{ModelFile, KEY_PREFIX, KEY_TOKENIZER};
use kesu_core::model::tokenize::{windows, TextTokenizer};
use libfuzzer_sys::fuzz_target;

fn tokenizer() -> &'static TextTokenizer {
    static T: OnceLock<TextTokenizer> = OnceLock::new();
    T.get_or_init(|| {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/kesu.gguf");
        let f = ModelFile::read(&path).expect("the shipped model");
        TextTokenizer::from_json(f.get_str(KEY_TOKENIZER).unwrap(), f.get_str(KEY_PREFIX).unwrap()).unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&budget, rest)) = data.split_first() else { return };
    let Ok(text) = std::str::from_utf8(rest) else { return };
    let t = tokenizer();
    let ids = t.content_ids(text).expect("tokenising never fails");
    assert!(!ids.is_empty(), "no content ids for {text:?}");
    let max_tokens = 3 + usize::from(budget % 64);
    let max_windows = 1 + usize::from(budget / 64);
    let (w, truncated) = windows(0, &ids, t.bos, t.eos, max_tokens, max_windows);
    let mut joined = Vec::new();
    for win in &w {
        assert!(win.ids.len() >= 2 && win.ids.len() <= max_tokens);
        assert_eq!((win.ids[0], *win.ids.last().unwrap()), (t.bos, t.eos));
        joined.extend_from_slice(&win.ids[1..win.ids.len() - 1]);
    }
    assert!(w.len() <= max_windows);
    assert_eq!(truncated, joined.len() < ids.len());
    assert_eq!(&ids[..joined.len()], &joined[..]);
});
