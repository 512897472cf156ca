//! Dev-only exploration of head variants on cached frozen embeddings (not shipped).
use std::path::Path;

use kesu::flags::{Flag, Flagger};
use kesu::model::heads::softmax;
use kesu::model::{Classifier, LoadOptions};
use kesu::train::data::{Dataset, Split, CATEGORIES, LEVELS};
use kesu::train::fit::{fit, FitConfig, FittedHead};
use kesu::train::{baselines, embed_all, metrics};

fn cheap(text: &str, f: &Flagger) -> Vec<f32> {
    let r = f.scan(text);
    let mut v = vec![0f32; 16];
    for h in &r.hits {
        let k = Flag::ALL.iter().position(|x| *x == h.flag).unwrap();
        v[k * 2 + h.negated as usize] += 1.0;
    }
    for x in v.iter_mut() {
        *x = x.ln_1p();
    }
    v.push(r.max_severity as f32);
    v.push(r.needs_review as u8 as f32);
    let n = text.chars().count() as f32;
    v.push(n.ln_1p());
    v.push((text.matches(['!', '！']).count() as f32).ln_1p());
    v.push((text.matches(['?', '？']).count() as f32).ln_1p());
    v
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let ds = Dataset::load(Path::new("data/labels"), Path::new("data/split.tsv"), Path::new("/work/shared/corpora"))?;
    let base = Path::new(".cache/base/e5-small-kesu-base.gguf");
    let model = Classifier::load(base, &LoadOptions::default())?;
    let emb = embed_all(&model, base, &ds.texts, 32)?;
    let flagger = Flagger::load(Path::new("lexicons/legal_risk.tsv"), 2).map_err(anyhow::Error::msg)?;
    let (tr, dv) = (ds.indices(Split::Train), ds.indices(Split::Dev));
    let feats: Vec<Vec<f32>> = ds.texts.iter().map(|t| cheap(t, &flagger)).collect();
    let ycat = |idx: &[usize]| idx.iter().map(|&i| ds.rows[i].category).collect::<Vec<_>>();
    let yesc = |idx: &[usize]| idx.iter().map(|&i| ds.rows[i].escalation).collect::<Vec<_>>();
    let (tc, te, dc, de) = (ycat(&tr), yesc(&tr), ycat(&dv), yesc(&dv));
    // BoW LR logits on dev
    const DIM: usize = 1 << 18;
    let xb = |idx: &[usize]| idx.iter().map(|&i| baselines::char_ngrams(&ds.texts[i], DIM)).collect::<Vec<_>>();
    let (btr, bdv) = (xb(&tr), xb(&dv));
    let lc = baselines::SparseLogReg::train(&btr, &tc, DIM, 3, 8, 1);
    let le = baselines::SparseLogReg::train(&btr, &te, DIM, 4, 8, 1);
    let bowc: Vec<Vec<f32>> = bdv.iter().map(|x| lc.logits(x)).collect();
    let bowe: Vec<Vec<f32>> = bdv.iter().map(|x| le.logits(x)).collect();
    let row = |name: &str, pc: &[usize], pe: &[usize]| {
        let rc = metrics::report(&CATEGORIES, &dc, pc);
        let re = metrics::report(&LEVELS, &de, pe);
        println!(
            "{name:<40} cat mF1 {:.3} [{:.3} {:.3} {:.3}] | esc QWK {:.3} mF1 {:.3} acc {:.3} [{:.3} {:.3} {:.3} {:.3}]",
            rc.macro_f1, rc.per_class[0].f1, rc.per_class[1].f1, rc.per_class[2].f1, re.qwk, re.macro_f1, re.accuracy,
            re.per_class[0].f1, re.per_class[1].f1, re.per_class[2].f1, re.per_class[3].f1
        );
    };
    row("bow", &bowc.iter().map(|z| kesu::model::heads::argmax(z)).collect::<Vec<_>>(), &bowe.iter().map(|z| kesu::model::heads::argmax(z)).collect::<Vec<_>>());
    let hidden: Vec<usize> = args.get(1).map(|s| s.split(',').map(|v| v.parse().unwrap()).collect()).unwrap_or(vec![0]);
    let dropout: f64 = args.get(2).map(|s| s.parse().unwrap()).unwrap_or(0.3);
    for use_feats in [std::env::var("FEATS").is_ok()] {
        let x = |idx: &[usize]| idx.iter().map(|&i| if use_feats { [emb[i].clone(), feats[i].clone()].concat() } else { emb[i].clone() }).collect::<Vec<_>>();
        let (xtr, xdv) = (x(&tr), x(&dv));
        for &h in &hidden {
            let mut best_c: Option<(f64, FittedHead)> = None;
            let mut best_e: Option<(f64, FittedHead)> = None;
            for power in [0.0, 0.25, 0.5] {
                let cfg = FitConfig { epochs: if h > 0 { 1500 } else { 600 }, lr: if h > 0 { std::env::var("LR").map(|v| v.parse().unwrap()).unwrap_or(0.001) } else { 0.01 }, class_weight_power: power, hidden: h, dropout: if h > 0 { dropout } else { 0.0 }, weight_decay: std::env::var("WD").map(|v| v.parse().unwrap()).unwrap_or(0.01), patience: 10, ..Default::default() };
                let c = fit(&xtr, &tc, 3, &cfg, |hd| metrics::report(&CATEGORIES, &dc, &xdv.iter().map(|x| hd.predict(x)).collect::<Vec<_>>()).macro_f1)?;
                if best_c.as_ref().is_none_or(|b| c.best_dev_score > b.1.best_dev_score) {
                    best_c = Some((power, c));
                }
                let e = fit(&xtr, &te, 4, &cfg, |hd| {
                    let r = metrics::report(&LEVELS, &de, &xdv.iter().map(|x| hd.predict(x)).collect::<Vec<_>>());
                    0.5 * r.qwk + 0.5 * r.macro_f1
                })?;
                if best_e.as_ref().is_none_or(|b| e.best_dev_score > b.1.best_dev_score) {
                    best_e = Some((power, e));
                }
            }
            let (pcw, c) = best_c.unwrap();
            let (pew, e) = best_e.unwrap();
            let zc: Vec<Vec<f32>> = xdv.iter().map(|x| c.logits(x)).collect();
            let ze: Vec<Vec<f32>> = xdv.iter().map(|x| e.logits(x)).collect();
            let name = format!("h={h} feats={use_feats} p={pcw}/{pew} ep={}/{}", c.best_epoch, e.best_epoch);
            row(&name, &zc.iter().map(|z| kesu::model::heads::argmax(z)).collect::<Vec<_>>(), &ze.iter().map(|z| kesu::model::heads::argmax(z)).collect::<Vec<_>>());
            // late fusion with bow: log softmax sums
            for alpha in [0.25f32, 0.5] {
                let fuse = |a: &[Vec<f32>], b: &[Vec<f32>]| -> Vec<usize> {
                    a.iter().zip(b).map(|(x, y)| {
                        let (px, py) = (softmax(x), softmax(y));
                        let s: Vec<f32> = px.iter().zip(&py).map(|(p, q)| p.max(1e-9).ln() + alpha * q.max(1e-9).ln()).collect();
                        kesu::model::heads::argmax(&s)
                    }).collect()
                };
                row(&format!("  + bow alpha {alpha}"), &fuse(&zc, &bowc), &fuse(&ze, &bowe));
            }
        }
    }
    Ok(())
}
