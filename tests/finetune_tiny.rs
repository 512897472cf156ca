//! Fine-tuning the top encoder layer with the heads, on a TINY model built by
//! the test: the training copy of a layer computes what the served encoder
//! computes, training lowers the loss, and the written model file serves the
//! fine-tuned layer and heads under the loader's tensor names.
use kesu_core::model::format::{self, ModelFile};
use kesu_core::model::{Classifier, LoadOptions};
use kesu_train::finetune::{self, cache_states, embed_states, FinetuneConfig, Task, TopLayer};
use kesu_train::fit::{fit, standardisation, FitConfig, FittedHead};

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn texts() -> (Vec<String>, Vec<usize>, Vec<usize>) {
    let bad = ["质量太差了坏了", "屏幕坏了不能用", "东西坏了质量差", "太差了又坏了"];
    let good = ["客服很好谢谢", "服务态度很好", "谢谢客服帮忙", "很好很满意谢谢"];
    let mut t = Vec::new();
    let (mut yc, mut ye) = (Vec::new(), Vec::new());
    for i in 0..16 {
        t.push(format!("{}{}", bad[i % 4], "。".repeat(i % 3)));
        yc.push(0);
        ye.push(2);
        t.push(format!("{}{}", good[i % 4], "！".repeat(i % 3)));
        yc.push(1);
        ye.push(0);
    }
    // one long text read in several windows
    t.push("快递三天了还没到，客服也不回复，太气人了！我要投诉你们的售后服务，已经打了12315。".into());
    yc.push(1);
    ye.push(3);
    (t, yc, ye)
}

#[test]
fn the_training_copy_of_the_top_layer_matches_the_served_encoder() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("tiny.gguf");
    kesu_core::model::testing::write_tiny_model(&base, 5).unwrap();
    let (t, _, _) = texts();
    for (max_tokens, max_windows) in [(512, 4), (9, 3)] {
        let served = Classifier::load(&base, &LoadOptions { max_tokens, max_windows, ..Default::default() }).unwrap();
        let refs: Vec<&str> = t.iter().map(String::as_str).collect();
        let want = served.embed(&refs).unwrap();
        let states = cache_states(&base, &t, 1, max_tokens, max_windows, None).unwrap();
        if max_tokens == 9 {
            assert!(states.last().unwrap().windows.len() == 3, "the long text is read in 3 windows");
        }
        let f = ModelFile::read(&base).unwrap();
        let layers = vec![TopLayer::load(&f, &f.config().unwrap(), 1).unwrap()];
        let all: Vec<usize> = (0..t.len()).collect();
        let got = embed_states(&layers, &states, &all, 64).unwrap();
        for (g, w) in got.iter().zip(&want) {
            assert!(max_abs_diff(g, w) < 1e-4, "max_tokens {max_tokens}: {}", max_abs_diff(g, w));
        }
    }
    // the state cache round-trips through its file
    let cache = dir.path().join("cache");
    let a = cache_states(&base, &t, 2, 512, 4, Some(&cache)).unwrap();
    let b = cache_states(&base, &t, 2, 512, 4, Some(&cache)).unwrap();
    assert_eq!(a, b);
}

#[test]
fn fine_tuning_lowers_the_loss_and_the_written_model_serves_it() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("tiny.gguf");
    kesu_core::model::testing::write_tiny_model(&base, 9).unwrap();
    let (t, yc, ye) = texts();
    let states = cache_states(&base, &t, 1, 512, 4, None).unwrap();
    let f = ModelFile::read(&base).unwrap();
    let cfg = f.config().unwrap();
    let layers = vec![TopLayer::load(&f, &cfg, 1).unwrap()];
    let all: Vec<usize> = (0..t.len()).collect();
    let emb = embed_states(&layers, &states, &all, 64).unwrap();
    let (mean, std) = standardisation(&emb);
    let z: Vec<Vec<f32>> =
        emb.iter().map(|e| e.iter().zip(&mean).zip(&std).map(|((v, m), s)| (v - m) / s).collect()).collect();
    let head_cfg = FitConfig { epochs: 20, hidden: 8, dropout: 0.1, lr: 0.001, ..Default::default() };
    let cat0 = fit(&z, &yc, 3, &head_cfg, |_| 0.0).unwrap();
    let esc0 = fit(&z, &ye, 4, &head_cfg, |_| 0.0).unwrap();
    let ft_cfg = FinetuneConfig {
        epochs: 6,
        lr_layers: 1e-3,
        lr_heads: 1e-2,
        batch: 8,
        evals_per_epoch: 1,
        ..Default::default()
    };
    // score = - training loss proxy: accuracy on the training texts
    let score = |ls: &[TopLayer], c: &FittedHead, e: &FittedHead| -> anyhow::Result<f64> {
        let emb = embed_states(ls, &states, &all, 64)?;
        let mut ok = 0;
        for (i, x) in emb.iter().enumerate() {
            let zx: Vec<f32> = x.iter().zip(&mean).zip(&std).map(|((v, m), s)| (v - m) / s).collect();
            ok += (c.predict(&zx) == yc[i]) as usize + (e.predict(&zx) == ye[i]) as usize;
        }
        Ok(ok as f64 + 1e-3 * 0.0)
    };
    let ft = finetune::finetune(
        layers,
        &states,
        &all,
        Task { y: &yc, classes: 3, class_weight_power: 0.0, init: &cat0 },
        Task { y: &ye, classes: 4, class_weight_power: 0.0, init: &esc0 },
        &mean,
        &std,
        &ft_cfg,
        score,
    )
    .unwrap();
    let last = ft.history.last().unwrap().0;
    assert_eq!(last, 6.0);
    assert!(ft.best_step > 0, "fine-tuning improved on the warm start: {:?}", ft.history);
    let loss_first = ft.loss_first_epoch;
    // a second run from the same start reproduces the first exactly
    let layers2 = vec![TopLayer::load(&f, &cfg, 1).unwrap()];
    let ft2 = finetune::finetune(
        layers2,
        &states,
        &all,
        Task { y: &yc, classes: 3, class_weight_power: 0.0, init: &cat0 },
        Task { y: &ye, classes: 4, class_weight_power: 0.0, init: &esc0 },
        &mean,
        &std,
        &FinetuneConfig { epochs: 6, ..ft_cfg.clone() },
        |_: &[TopLayer], _: &FittedHead, _: &FittedHead| Ok(0.0),
    )
    .unwrap();
    assert_eq!(ft2.loss_first_epoch, loss_first, "deterministic");
    let final_losses: Vec<f64> = vec![ft.loss_at_best];
    assert!(final_losses[0] < loss_first, "loss {loss_first} -> {}", final_losses[0]);

    // write the fine-tuned layer + heads, load through the served path
    let cat = finetune::fold_standardisation(&ft.category, &mean, &std);
    let esc = finetune::fold_standardisation(&ft.escalation, &mean, &std);
    let heads = kesu_train::head_weights(&cat, &esc);
    let out = dir.path().join("ft.gguf");
    format::write_model_with(&base, &out, &heads, ft.layers[0].export().unwrap(), "ft-test", serde_json::json!({}))
        .unwrap();
    let stored = ModelFile::read(&out).unwrap();
    assert_eq!(
        stored.tensor("encoder.layer.1.attention.self.query.weight").unwrap().dtype(),
        candle_core::quantized::GgmlDType::F16
    );
    assert_eq!(stored.tensor("heads.category.hidden.weight").unwrap().shape().dims(), &[8, 64]);
    let served = Classifier::load(&out, &LoadOptions::default()).unwrap();
    let refs: Vec<&str> = t.iter().map(String::as_str).collect();
    let got = served.embed(&refs).unwrap();
    let want = embed_states(&ft.layers, &states, &all, 64).unwrap();
    for (g, w) in got.iter().zip(&want) {
        assert!(max_abs_diff(g, w) < 5e-3, "{}", max_abs_diff(g, w));
    }
    let preds = served.predict(&refs).unwrap();
    let agree =
        preds.iter().zip(&want).filter(|(p, e)| kesu_core::model::heads::argmax(&p.category) == cat.predict(e)).count();
    assert!(agree >= t.len() - 1, "{agree}/{}", t.len());
    // the base layer is unchanged where it was not trained
    let l0 = |m: &ModelFile| m.f32_vec("encoder.layer.0.output.dense.weight").unwrap();
    assert_eq!(l0(&stored), l0(&f));
}
