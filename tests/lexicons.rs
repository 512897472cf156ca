//! The shipped word lists: they load, cover every flag, and do what they claim.
use kesu_core::flags::{Entry, Flag, Flagger, Lexicon};
use kesu_core::text::Segmenter;

fn lexicon() -> Lexicon {
    Lexicon::parse(&std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/lexicons/legal_risk.tsv")).unwrap())
        .unwrap()
}

#[test]
fn legal_risk_list_covers_every_flag() {
    let lx = lexicon();
    assert!(lx.term_count() >= 400, "{} terms", lx.term_count());
    assert_ne!(lx.version, "unversioned");
    for f in Flag::ALL {
        let n = lx.rows.iter().filter(|r| matches!(r.entry, Entry::Flag { flag, .. } if flag == f)).count();
        assert!(n >= 25, "{f}: {n} terms");
    }
}

#[test]
fn every_term_matches_itself_and_every_exclusion_silences_its_terms() {
    let lx = lexicon();
    let f = Flagger::new(&lx, 2).unwrap();
    for r in &lx.rows {
        let hits = f.scan(&r.term);
        match r.entry {
            Entry::Flag { flag, .. } => {
                // a term can be silenced only by an exclusion phrase equal to it
                let excluded = lx.rows.iter().any(|x| x.entry == Entry::Exclude && x.term == r.term);
                assert!(excluded || hits.flags.contains(&flag), "line {}: {} does not raise {flag}", r.line, r.term);
            }
            Entry::Exclude => {
                assert!(hits.hits.is_empty(), "line {}: exclusion {} still raises {:?}", r.line, r.term, hits.flags)
            }
        }
    }
}

#[test]
fn real_complaint_phrasings_are_flagged() {
    let f = Flagger::new(&lexicon(), 2).unwrap();
    for (text, flag) in [
        ("再不处理我就投诉到工信部", Flag::Regulator),
        ("已经打了１２３１５", Flag::Regulator),
        ("我要去微博曝光你们", Flag::Media),
        ("等着收律师函吧", Flag::Litigation),
        ("我已经报警了", Flag::PoliceCrime),
        ("你们泄露了我的个人信息", Flag::PrivacyBreach),
        ("遭遇暴力催收，还爆通讯录", Flag::CollectionAbuse),
        ("大家一起维权，建了维权群", Flag::CollectiveAction),
        ("再不退钱我就跳楼", Flag::SelfHarmViolence),
        ("銀保監會投訴", Flag::Regulator),
    ] {
        assert!(f.scan(text).flags.contains(&flag), "{text} should raise {flag}");
    }
    assert!(f.scan("就在公安局旁边的营业厅").hits.is_empty());
}

#[test]
fn phrasing_classes_added_from_train_dev_review() {
    let f = Flagger::new(&lexicon(), 2).unwrap();
    for (text, flag) in [
        // any 骗 aimed at the company is a fraud accusation (guide section 4, convention 1)
        ("拖不住了就骗你", Flag::PoliceCrime),
        ("这不是骗取用户的钱吗", Flag::PoliceCrime),
        ("大家别上当了", Flag::PoliceCrime),
        ("打了110", Flag::PoliceCrime),
        // 泄漏 is a common spelling of 泄露; identity misuse and 'how do they know me'
        ("又是谁泄漏了我的信息", Flag::PrivacyBreach),
        ("有人冒用我的信息开卡", Flag::PrivacyBreach),
        ("他怎么知道我买了洗发水", Flag::PrivacyBreach),
        ("我的号码被别人补卡了", Flag::PrivacyBreach),
        // @-mentioned complaint platforms and local news accounts
        ("@315在线投诉 请帮忙", Flag::Media),
        ("@厦门身边事 @某某晚报", Flag::Media),
        ("就要让社会知道你们的态度", Flag::Media),
        // 3.15 as a complaint channel, and unnamed authorities
        ("本人将向315热线反映问题", Flag::Regulator),
        ("这次不投诉315已经很不错了", Flag::Regulator),
        ("请有关部门管一管", Flag::Regulator),
        ("@消费者权益保护 请关注", Flag::Regulator),
        // sarcastic or casual violence (guide section 3.5)
        ("你们会派杀手来杀我灭口吗", Flag::SelfHarmViolence),
        ("你就等着受死吧", Flag::SelfHarmViolence),
        ("有本事告我", Flag::Litigation),
    ] {
        assert!(f.scan(text).flags.contains(&flag), "{text} should raise {flag}");
    }
    for text in [
        "欺骗我的感情要你陪",
        "运输过程有泄露，瓶子泄露严重",
        "卫生间门是透明的，没有任何隐私",
        "晚上骚扰电话不断",
        "媒体炒作得太厉害了",
        "在京东仲裁下发货",
        "一共110元",
        "等了110分钟还没人接",
        "买的110V电压的版本",
        "体重110斤穿L码",
        "不要追债似的找我",
    ] {
        assert!(f.scan(text).flags.is_empty(), "{text} should raise nothing: {:?}", f.scan(text).hits);
    }
}

#[test]
fn user_dictionary_keeps_its_entries_whole() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/lexicons/user_dict.txt");
    let s = Segmenter::load(std::path::Path::new(path)).unwrap();
    assert!(s.user_words() >= 300);
    let raw = std::fs::read_to_string(path).unwrap();
    let mut split = Vec::new();
    for w in raw
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split_whitespace().next().unwrap())
    {
        let seg = s.segment(&format!("我们{w}了"));
        if !seg.iter().any(|x| x.word == w) {
            split.push(w.to_string());
        }
    }
    // context can legitimately glue a longer entry (不想活 → 不想活了); allow a handful
    assert!(split.len() <= 5, "entries split by jieba in context: {split:?}");
    for w in ["集体诉讼", "暴力催收", "虚假宣传", "银保监会", "律师函", "退费难", "盗刷"] {
        assert!(s.segment(&format!("关于{w}的问题")).iter().any(|x| x.word == w), "{w}");
    }
}
