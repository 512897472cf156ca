//! Training the heads on a few dozen rows with a tiny model built by the test:
//! the loss falls, and the written model file carries and serves the new heads.
use kesu_core::model::{format, Classifier, HeadWeights, LoadOptions};
use kesu_train::fit::{fit, FitConfig};

#[test]
fn training_on_a_few_dozen_rows_reduces_the_loss_and_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("tiny.gguf");
    kesu_core::model::testing::write_tiny_model(&base, 11).unwrap();
    let model = Classifier::load(&base, &LoadOptions::default()).unwrap();
    let bad = ["质量太差了坏了", "屏幕坏了不能用", "东西坏了质量差", "太差了又坏了"];
    let good = ["客服很好谢谢", "服务态度很好", "谢谢客服帮忙", "很好很满意谢谢"];
    let mut texts = Vec::new();
    let mut y = Vec::new();
    for i in 0..24 {
        texts.push(format!("{}{}", bad[i % 4], "。".repeat(i % 3)));
        y.push(0usize);
        texts.push(format!("{}{}", good[i % 4], "！".repeat(i % 3)));
        y.push(1usize);
    }
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let x = model.embed(&refs).unwrap();
    assert_eq!(x.len(), 48);
    let (xc, yc) = (x.clone(), y.clone());
    let acc = move |h: &kesu_train::fit::FittedHead| {
        xc.iter().zip(&yc).filter(|(r, &t)| h.predict(r) == t).count() as f64 / 48.0
    };
    let head =
        fit(&x, &y, 3, &FitConfig { epochs: 200, eval_every: 5, patience: 100, ..Default::default() }, acc).unwrap();
    assert!(head.loss_best < head.loss_start * 0.8, "loss {} -> {}", head.loss_start, head.loss_best);
    assert!(head.best_dev_score >= 0.9, "training accuracy {}", head.best_dev_score);

    // write a model with the trained category head and check it predicts with it
    let h = model.hidden_size();
    let mut heads = HeadWeights::zeros(h);
    heads.category_weight = head.weight.clone();
    heads.category_bias = head.bias.clone();
    let out = dir.path().join("trained.gguf");
    format::write_model_with_heads(&base, &out, &heads, "test-trained", serde_json::json!({"rows": 48})).unwrap();
    let trained = Classifier::load(&out, &LoadOptions::default()).unwrap();
    assert_eq!(trained.info().version, "test-trained");
    assert_eq!(trained.info().metadata["rows"], 48);
    let preds = trained.predict(&refs).unwrap();
    let correct = preds.iter().zip(&y).filter(|(p, &t)| p.category[t] > p.category[1 - t]).count();
    assert!(correct >= 43, "{correct}/48 correct with the stored head");
}
