//! Flagger throughput (MB/s) on real complaint text from ../shared/corpora
//! (set KESU_CORPORA to point elsewhere), against a plain Aho–Corasick scan of
//! the same terms over the raw text as the peer in the same run.
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kesu_core::flags::{Entry, Flagger, Lexicon};

fn corpus_text() -> Vec<String> {
    let recs =
        kesu_train::corpus::read_all(&kesu_train::corpus::default_root()).expect("corpora readable (set KESU_CORPORA)");
    recs.into_iter()
        .filter(|r| r.source == "stc3" || r.source == "waimai" || r.source == "hotel")
        .map(|r| r.text)
        .take(5000)
        .collect()
}

fn bench(c: &mut Criterion) {
    let texts = corpus_text();
    let bytes: usize = texts.iter().map(|t| t.len()).sum();
    let raw = std::fs::read_to_string("lexicons/legal_risk.tsv").unwrap();
    let lex = Lexicon::parse(&raw).unwrap();
    let flagger = Flagger::new(&lex, 2).unwrap();
    let terms: Vec<&str> =
        lex.rows.iter().filter(|r| matches!(r.entry, Entry::Flag { .. })).map(|r| r.term.as_str()).collect();
    let plain = aho_corasick::AhoCorasick::new(&terms).unwrap();
    let mut g = c.benchmark_group("flagger");
    g.throughput(Throughput::Bytes(bytes as u64));
    g.sample_size(20);
    g.bench_function("kesu_scan (normalise+match+negation+offsets)", |b| {
        b.iter(|| texts.iter().map(|t| flagger.scan(t).hits.len()).sum::<usize>())
    });
    g.bench_function("plain_aho_corasick (raw text, no normalisation)", |b| {
        b.iter(|| texts.iter().map(|t| plain.find_overlapping_iter(t).count()).sum::<usize>())
    });
    g.bench_function("normalise_only", |b| {
        b.iter(|| texts.iter().map(|t| kesu_core::text::Normalized::new(t).len()).sum::<usize>())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
