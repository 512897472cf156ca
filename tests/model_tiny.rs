//! The model code on a TINY random model (no downloaded weights needed).

use kesu_core::model::format::write_model_with_heads;
use kesu_core::model::format::ModelFile;
use kesu_core::model::testing::write_tiny_model;
use kesu_core::model::{Classifier, HeadWeights, LoadOptions, WeightFormat};

fn tiny(dir: &tempfile::TempDir, seed: u64) -> std::path::PathBuf {
    let p = dir.path().join(format!("tiny-{seed}.gguf"));
    write_tiny_model(&p, seed).unwrap();
    p
}

fn cos(a: &[f32], b: &[f32]) -> f32 {
    let d: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    d / (na * nb)
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

const TEXTS: [&str; 5] = [
    "快递三天了还没到，客服也不回复，太气人了！",
    "退款",
    "我要投诉你们的售后服务，已经打了12315。",
    "the order was wrong",
    "商品质量还可以，就是包装有点破损。物流速度一般般吧，下次不会再买了，希望商家改进。",
];

#[test]
fn tiny_model_round_trips_through_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = tiny(&dir, 7);
    let size = std::fs::metadata(&p).unwrap().len();
    assert!(size < 4_000_000, "tiny model is {size} bytes");
    let f = ModelFile::read(&p).unwrap();
    let c = f.config().unwrap();
    assert_eq!((c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.intermediate_size), (64, 2, 2, 128));
    assert!(f.tensors.contains_key("encoder.layer.1.attention.self.query.weight"));
    assert!(f.tensors.contains_key("embeddings.LayerNorm.bias"));
    assert_eq!(f.tensor("heads.escalation.weight").unwrap().shape().dims(), &[4, 64]);

    let m = Classifier::load(&p, &LoadOptions::default()).unwrap();
    let info = m.info();
    assert_eq!(info.version, "tiny-7");
    assert_eq!(info.category_labels, ["product", "service", "information_security"]);
    assert_eq!(info.escalation_labels, ["calm", "dissatisfied", "angry", "escalating"]);
    assert_eq!(info.metadata["seed"], 7);
    assert_eq!((info.max_tokens, info.max_windows), (512, 4));

    // Same seed, same file, same outputs; other seed, other outputs.
    let p2 = dir.path().join("again.gguf");
    write_tiny_model(&p2, 7).unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), std::fs::read(&p2).unwrap());
    let other = Classifier::load(&tiny(&dir, 8), &LoadOptions::default()).unwrap();
    let a = m.predict(&TEXTS).unwrap();
    let b = other.predict(&TEXTS).unwrap();
    assert!(max_abs_diff(&a[0].category, &b[0].category) > 1e-4);

    // Rewriting with new heads keeps the encoder and changes the outputs.
    let heads = HeadWeights {
        category_weight: vec![0.0; 3 * 64],
        category_bias: vec![0.0, 0.0, 5.0],
        escalation_weight: vec![0.0; 4 * 64],
        escalation_bias: vec![0.0; 4],
        category_hidden: None,
        escalation_hidden: None,
        category_ngram: None,
        escalation_ngram: None,
        escalation_flags: false,
    };
    let p3 = dir.path().join("heads.gguf");
    write_model_with_heads(&p, &p3, &heads, "trained-1", serde_json::json!({"dev": {"f1": 0.5}})).unwrap();
    let m3 = Classifier::load(&p3, &LoadOptions::default()).unwrap();
    assert_eq!(m3.info().version, "trained-1");
    assert_eq!(m3.info().metadata["dev"]["f1"], 0.5);
    let pr = m3.predict(&TEXTS[..1]).unwrap();
    assert!(pr[0].category[2] > 0.98);
    assert!(pr[0].escalation.iter().all(|&p| (p - 0.25).abs() < 1e-6));
    assert_eq!(m3.embed(&TEXTS).unwrap(), m.embed(&TEXTS).unwrap());
}

#[test]
fn probabilities_sum_to_one_and_embeddings_are_unit() {
    let dir = tempfile::tempdir().unwrap();
    let m = Classifier::load(&tiny(&dir, 1), &LoadOptions::default()).unwrap();
    let preds = m.predict(&TEXTS).unwrap();
    assert_eq!(preds.len(), TEXTS.len());
    for p in &preds {
        assert_eq!(p.category.len(), 3);
        assert_eq!(p.escalation.len(), 4);
        for v in [&p.category, &p.escalation] {
            assert!((v.iter().sum::<f32>() - 1.0).abs() < 1e-5);
            assert!(v.iter().all(|x| x.is_finite() && *x >= 0.0));
        }
        assert_eq!((p.windows, p.truncated), (1, false));
    }
    for e in m.embed(&TEXTS).unwrap() {
        assert_eq!(e.len(), 64);
        assert!((e.iter().map(|x| x * x).sum::<f32>() - 1.0).abs() < 1e-4);
    }
    // "退款" → ▁query : ▁退款 → 3 content tokens (+2 specials).
    assert_eq!(preds[1].tokens, m.tokenizer().content_ids("退款").unwrap().len() + 2);
    assert!(m.predict(&[]).unwrap().is_empty());
    let empty = m.predict(&[""]).unwrap();
    assert!((empty[0].category.iter().sum::<f32>() - 1.0).abs() < 1e-5);
}

#[test]
fn batch_equals_single_padding_is_masked() {
    let dir = tempfile::tempdir().unwrap();
    for fmt in [WeightFormat::F32, WeightFormat::F32Candle, WeightFormat::Stored, WeightFormat::F16, WeightFormat::Q8_0]
    {
        let m = Classifier::load(&tiny(&dir, 3), &LoadOptions { weights: fmt, ..Default::default() }).unwrap();
        let batch = m.embed(&TEXTS).unwrap();
        let preds = m.predict(&TEXTS).unwrap();
        for (i, t) in TEXTS.iter().enumerate() {
            let single = m.embed(&[t]).unwrap();
            let c = cos(&single[0], &batch[i]);
            assert!(c > 0.99999, "{fmt:?} text {i}: cos {c}");
            let sp = m.predict(&[t]).unwrap();
            assert!(max_abs_diff(&sp[0].category, &preds[i].category) < 1e-4, "{fmt:?} text {i}");
            assert!(max_abs_diff(&sp[0].escalation, &preds[i].escalation) < 1e-4, "{fmt:?} text {i}");
        }
        // Input order is kept whatever the internal (length-sorted) order.
        let rev: Vec<&str> = TEXTS.iter().rev().cloned().collect();
        let rb = m.embed(&rev).unwrap();
        for i in 0..TEXTS.len() {
            assert!(cos(&rb[TEXTS.len() - 1 - i], &batch[i]) > 0.99999);
        }
    }
}

#[test]
fn weight_formats_agree() {
    let dir = tempfile::tempdir().unwrap();
    let p = tiny(&dir, 5);
    let base = Classifier::load(&p, &LoadOptions { weights: WeightFormat::F32, ..Default::default() }).unwrap();
    let e0 = base.embed(&TEXTS).unwrap();
    for (fmt, min) in [
        (WeightFormat::F32Candle, 0.99999),
        (WeightFormat::Stored, 0.995),
        (WeightFormat::F16, 0.9999),
        (WeightFormat::Q8_0, 0.995),
    ] {
        let m = Classifier::load(&p, &LoadOptions { weights: fmt, ..Default::default() }).unwrap();
        for (a, b) in m.embed(&TEXTS).unwrap().iter().zip(&e0) {
            let c = cos(a, b);
            assert!(c > min, "{fmt:?}: cos {c}");
        }
    }
}

/// The packed encoder (kesu's kernels, the default) computes what the candle
/// path computes, at every kernel level this CPU has, for packed batches of
/// mixed lengths and for windowed long texts.
#[test]
fn packed_encoder_matches_candle_at_every_kernel_level() {
    use kesu_core::model::kernels::{detected, Level};
    let dir = tempfile::tempdir().unwrap();
    let p = tiny(&dir, 9);
    let opts = |weights| LoadOptions { weights, max_tokens: 24, max_windows: 4 };
    let long: String = "我的包裹到底什么时候能到呢？客服说明天".chars().cycle().take(70).collect();
    let texts: Vec<&str> = TEXTS.iter().copied().chain([long.as_str(), ""]).collect();
    let candle = Classifier::load(&p, &opts(WeightFormat::F32Candle)).unwrap();
    let (want, want_e) = (candle.predict(&texts).unwrap(), candle.embed(&texts).unwrap());
    for lvl in [Level::Portable, Level::Avx2, Level::Avx512].into_iter().filter(|&l| l <= detected()) {
        let m = Classifier::load(&p, &opts(WeightFormat::F32)).unwrap().with_kernel_level(lvl);
        let (got, got_e) = (m.predict(&texts).unwrap(), m.embed(&texts).unwrap());
        assert!(want[5].windows >= 3, "the long text spans several windows");
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!((g.tokens, g.windows, g.truncated), (w.tokens, w.windows, w.truncated));
            let c = cos(&got_e[i], &want_e[i]);
            assert!(c > 0.99999, "{lvl:?} text {i}: cos {c}");
            assert!(max_abs_diff(&g.category, &w.category) < 1e-4, "{lvl:?} text {i}");
        }
    }
}

#[test]
fn long_texts_are_windowed_and_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let p = tiny(&dir, 11);
    let m = Classifier::load(&p, &LoadOptions { max_tokens: 16, max_windows: 3, ..Default::default() }).unwrap();
    // Each CJK char is one token here; "query:" prefix gives ▁query + ":" + ▁.
    let prefix = m.tokenizer().content_ids("").unwrap().len();
    let n_chars = 14 * 2 - prefix; // exactly two windows of 14 content tokens
    let two: String = "我的包裹到底什么时候能到呢".chars().cycle().take(n_chars).collect();
    let long: String = "我的包裹到底什么时候能到呢".chars().cycle().take(200).collect();
    assert_eq!(m.tokenizer().content_ids(&two).unwrap().len(), 28);
    let preds = m.predict(&[&two, "退款", &long]).unwrap();
    assert_eq!((preds[0].tokens, preds[0].windows, preds[0].truncated), (30, 2, false));
    assert_eq!((preds[1].windows, preds[1].truncated), (1, false));
    assert_eq!(preds[2].tokens, 200 + prefix + 2);
    assert_eq!((preds[2].windows, preds[2].truncated), (3, true));
    let three: String = long.chars().take(14 * 3 - prefix).collect();
    let e = m.embed(&[&long, &three, &two]).unwrap();
    // Truncation drops everything past the third window.
    assert!(cos(&e[0], &e[1]) > 0.99999);
    // Windowed single vs batch agree too.
    let single = m.embed(&[&long]).unwrap();
    assert!(cos(&single[0], &e[0]) > 0.99999);
    // A bigger window size sees the whole text in fewer windows: different output.
    let big = Classifier::load(&p, &LoadOptions { max_tokens: 64, max_windows: 3, ..Default::default() }).unwrap();
    let pb = big.predict(&[&two]).unwrap();
    assert_eq!(pb[0].windows, 1);
    // Bad options are refused.
    assert!(Classifier::load(&p, &LoadOptions { max_tokens: 600, ..Default::default() }).is_err());
    assert!(Classifier::load(&p, &LoadOptions { max_windows: 0, ..Default::default() }).is_err());
}

#[test]
fn windowed_pooling_is_the_mean_over_all_window_tokens() {
    use kesu_core::model::tokenize::windows;
    let (w, t) = windows(0, &[10, 11, 12, 13, 14], 0, 2, 4, 10);
    assert!(!t);
    assert_eq!(
        w.iter().map(|w| w.ids.clone()).collect::<Vec<_>>(),
        vec![vec![0, 10, 11, 2], vec![0, 12, 13, 2], vec![0, 14, 2]]
    );
    let (w, t) = windows(0, &[10, 11, 12, 13, 14], 0, 2, 4, 2);
    assert!(t);
    assert_eq!(w.len(), 2);
    let (w, t) = windows(0, &[], 0, 2, 4, 2);
    assert_eq!((w.len(), w[0].ids.clone(), t), (1, vec![0, 2], false));
}

#[test]
fn bad_files_are_load_errors() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("junk.gguf");
    std::fs::write(&p, b"not a model").unwrap();
    match Classifier::load(&p, &LoadOptions::default()) {
        Err(kesu_core::model::ModelError::Load { path, .. }) => assert!(path.ends_with("junk.gguf")),
        _ => panic!("expected a load error"),
    }
    assert!(Classifier::load(&dir.path().join("missing.gguf"), &LoadOptions::default()).is_err());
}

#[test]
fn ngram_parts_are_stored_and_fused_with_the_heads() {
    use kesu_core::model::ngrams::{char_ngrams, fuse, NgramWeights};
    let dir = tempfile::tempdir().unwrap();
    let p = tiny(&dir, 5);
    let base = Classifier::load(&p, &LoadOptions::default()).unwrap();
    let mut heads = ModelFile::read(&p).unwrap().heads().unwrap();
    // The category n-gram part votes information_security for every bucket of
    // "退款" (F16-exact values), nothing else.
    let dim = 1 << 10;
    let mut weight = vec![0.0f32; 3 * dim];
    for (k, _) in char_ngrams("退款", dim) {
        weight[2 * dim + k] = 4.0;
    }
    let ng = NgramWeights { dim, weight, bias: vec![0.0, 0.5, -0.5], alpha: 0.75 };
    heads.category_ngram = Some(ng.clone());
    let p2 = dir.path().join("ngram.gguf");
    write_model_with_heads(&p, &p2, &heads, "ngram-1", serde_json::json!({})).unwrap();
    let back = ModelFile::read(&p2).unwrap().heads().unwrap();
    assert_eq!(back.category_ngram.as_ref(), Some(&ng));
    assert_eq!(back.escalation_ngram, None);
    let m = Classifier::load(&p2, &LoadOptions::default()).unwrap();
    let (a, b) = (base.predict(&TEXTS).unwrap(), m.predict(&TEXTS).unwrap());
    for (t, (pa, pb)) in TEXTS.iter().zip(a.iter().zip(&b)) {
        // fused = softmax(log p_head + alpha * log_softmax(ngram logits))
        let lp: Vec<f32> = pa.category.iter().map(|v| v.ln()).collect();
        let want = kesu_core::model::heads::softmax(&fuse(&lp, &ng.logits(&char_ngrams(t, dim)), ng.alpha));
        assert!(max_abs_diff(&pb.category, &want) < 1e-4, "{t}");
        assert_eq!(pa.escalation, pb.escalation, "no escalation part: unchanged");
    }
    assert!(b[1].category[2] > a[1].category[2], "退款 moves towards information_security");
}

/// An escalation head that reads the flagger: the flag features are part of
/// its input, stored in the file, and an outside threat moves the level.
#[test]
fn escalation_head_reads_the_flag_features() {
    use kesu_core::flags::features::{features, FLAG_FEATURES};
    use kesu_core::flags::{Flag, FlagHit, FlagReport};
    let dir = tempfile::tempdir().unwrap();
    let p = tiny(&dir, 3);
    let inputs = 64 + FLAG_FEATURES;
    // Level 0 by bias; the litigation "hit" feature adds 10 to level 3.
    let lit = 3 * Flag::ALL.iter().position(|&f| f == Flag::Litigation).unwrap();
    let mut w = vec![0.0; 4 * inputs];
    w[3 * inputs + 64 + lit] = 10.0;
    let heads = HeadWeights {
        escalation_weight: w,
        escalation_bias: vec![2.0, 0.0, 0.0, 0.0],
        escalation_flags: true,
        ..HeadWeights::zeros(64)
    };
    let p2 = dir.path().join("flags.gguf");
    write_model_with_heads(&p, &p2, &heads, "flags-1", serde_json::json!({})).unwrap();
    let f = ModelFile::read(&p2).unwrap();
    assert_eq!(f.tensor("heads.escalation.weight").unwrap().shape().dims(), &[4, inputs]);
    assert!(f.heads().unwrap().escalation_flags);
    // A file whose head has the wrong width for its declared inputs is refused.
    let bad = HeadWeights { escalation_flags: false, ..heads.clone() };
    assert!(write_model_with_heads(&p, &dir.path().join("bad.gguf"), &bad, "bad", serde_json::json!({})).is_err());

    let m = Classifier::load(&p2, &LoadOptions::default()).unwrap();
    assert!(m.info().escalation_uses_flags);
    let threat = FlagReport {
        hits: vec![FlagHit {
            term: "起诉".into(),
            flag: Flag::Litigation,
            severity: 2,
            text: "起诉".into(),
            start: 0,
            end: 2,
            negated: false,
        }],
        ..Default::default()
    };
    let negated = FlagReport { hits: vec![FlagHit { negated: true, ..threat.hits[0].clone() }], ..Default::default() };
    assert_eq!(features(&threat)[lit], 1.0);
    let none = FlagReport::default();
    let texts = ["我要起诉你们", "我要起诉你们", "我要起诉你们"];
    let pr = m.predict_with_flags(&texts, Some(&[&threat, &none, &negated])).unwrap();
    let level = |v: &[f32]| kesu_core::model::heads::argmax(v);
    assert_eq!(level(&pr[0].escalation), 3, "the litigation hit: {:?}", pr[0].escalation);
    assert_eq!(level(&pr[1].escalation), 0, "no hits");
    assert_eq!(level(&pr[2].escalation), 0, "a negated hit is not the live-hit feature");
    assert_eq!(m.predict(&texts[..1]).unwrap()[0].escalation, pr[1].escalation, "predict = no hits");
    assert!(m.predict_with_flags(&texts, Some(&[&threat])).is_err(), "one report per text");
    // The category head is unchanged by flags.
    assert_eq!(pr[0].category, pr[1].category);
}
