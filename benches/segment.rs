//! Segmentation throughput (MB/s) on real complaint text: jieba with kesu's
//! user dictionary vs jieba's default dictionary alone, in the same run.
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kesu_core::text::Segmenter;

fn bench(c: &mut Criterion) {
    let recs =
        kesu_train::corpus::read_all(&kesu_train::corpus::default_root()).expect("corpora readable (set KESU_CORPORA)");
    let texts: Vec<String> =
        recs.into_iter().filter(|r| r.source == "stc3" || r.source == "waimai").map(|r| r.text).take(5000).collect();
    let bytes: usize = texts.iter().map(|t| t.len()).sum();
    let ours = Segmenter::load(std::path::Path::new("lexicons/user_dict.txt")).unwrap();
    let plain = Segmenter::from_user_dict("").unwrap();
    let mut g = c.benchmark_group("segment");
    g.throughput(Throughput::Bytes(bytes as u64));
    g.sample_size(10);
    g.bench_function("jieba+kesu_user_dict", |b| b.iter(|| texts.iter().map(|t| ours.segment(t).len()).sum::<usize>()));
    g.bench_function("jieba_default_dict", |b| b.iter(|| texts.iter().map(|t| plain.segment(t).len()).sum::<usize>()));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
