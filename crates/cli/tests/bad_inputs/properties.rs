//! Property tests of the parsers a user's file reaches (CrowS CSV, StereoSet JSON, JSONL
//! pairs, lexicon and template TOML, GGUF header and metadata, safetensors header): arbitrary
//! and half-valid bytes never panic, and never make the parser allocate more than a small
//! factor of the file's size (a header that claims 2^60 entries must not be believed).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::{Path, PathBuf};

use proptest::prelude::*;

/// Counts the bytes this thread holds, and its peak, so that a parse can be measured while
/// other tests run on other threads.
struct CountingAlloc;

thread_local! {
    static HELD: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded to the system allocator unchanged; the counters are
// thread-local cells without destructors, which never allocate.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grow(layout.size());
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        let _ = HELD.try_with(|h| h.set(h.get().saturating_sub(layout.size())));
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            let _ = HELD.try_with(|h| h.set(h.get().saturating_sub(layout.size())));
            grow(new_size);
        }
        p
    }
}

fn grow(n: usize) {
    let _ = HELD.try_with(|h| {
        h.set(h.get() + n);
        let _ = PEAK.try_with(|p| p.set(p.get().max(h.get())));
    });
}

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// Runs `f` and returns the most bytes it held at once above what the thread held before.
fn peak_during(f: impl FnOnce()) -> usize {
    let base = HELD.with(Cell::get);
    PEAK.with(|p| p.set(base));
    f();
    PEAK.with(Cell::get).saturating_sub(base)
}

/// What a parser may hold beyond the file: tables, error strings, a tokenizer's scaffolding.
const SLACK: usize = 4 << 20;
const FACTOR: usize = 32;

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "fairlm-props-{}-{name}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn bounded(len: usize, f: impl FnOnce()) -> Result<(), TestCaseError> {
    let peak = peak_during(f);
    prop_assert!(
        peak <= FACTOR * len + SLACK,
        "held {peak} bytes for a {len}-byte file"
    );
    Ok(())
}

/// Bytes that look like text of the format: fragments of it, shuffled, and noise.
fn text_like(fragments: &'static [&'static str]) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            3 => prop::sample::select(fragments).prop_map(|s| s.as_bytes().to_vec()),
            1 => prop::collection::vec(any::<u8>(), 0..8),
        ],
        0..64,
    )
    .prop_map(|parts| parts.concat())
}

const CSV: &[&str] = &[
    ",sent_more,sent_less,stereo_antistereo,bias_type\n",
    "0,",
    "\"",
    ",",
    "\n",
    "\r\n",
    "stereo",
    "antistereo",
    "gender",
    "race-color",
    "Women are bad at driving.",
    "\u{feff}",
    "\"a, b\"",
];
const JSON: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "\"stereo\"",
    "\"anti\"",
    "\"bias_type\"",
    "\"x\"",
    "\n",
    "{\"data\": {\"intrasentence\": [",
    "\"context\": \"A BLANK.\"",
    "\"sentences\"",
    "\"gold_label\"",
    "\"stereotype\"",
    "\"unrelated\"",
    "\"anti-stereotype\"",
    "1e999",
    "NaN",
    "null",
    "\"\\u0000\"",
    "\"sentence\"",
];
const TOML: &[&str] = &[
    "[[axis]]\n",
    "name = \"x\"\n",
    "groups = [\"a\", \"b\"]\n",
    "subjects = [\"a\", \"b\"]\n",
    "terms = [[\"a\", \"b\"]]\n",
    "template = [",
    "{ text = \"The {X} was\", ",
    "category = \"c\", ",
    "split = \"eval\" }",
    "]\n",
    "pronouns = true\n",
    "nouns = [[\"a\"]]\n",
    "=",
    "\"",
    "\n",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn crows_reader_never_panics(bytes in text_like(CSV), strict in any::<bool>()) {
        let d = dir("crows");
        let p = write(&d, "c.csv", &bytes);
        bounded(bytes.len(), || {
            if let Ok((pairs, skipped)) = fairlm_bias::pairs::read_crows(&p, strict) {
                assert!(pairs.len() + skipped.len() <= bytes.len());
            }
        })?;
    }

    #[test]
    fn pairs_and_stereoset_readers_never_panic(bytes in text_like(JSON), strict in any::<bool>()) {
        let d = dir("json");
        let p = write(&d, "p.jsonl", &bytes);
        bounded(bytes.len(), || {
            let _ = fairlm_bias::pairs::read_pairs_jsonl(&p, strict);
            let _ = fairlm_bias::stereoset::read_stereoset(&p, strict);
        })?;
    }

    #[test]
    fn lexicon_and_template_parsers_never_panic(bytes in text_like(TOML)) {
        let text = String::from_utf8_lossy(&bytes).into_owned();
        bounded(bytes.len(), || {
            let _ = fairlm_bias::lexicon::Lexicon::parse(&text, Path::new("l.toml"));
            let _ = fairlm_bias::templates::parse(&text, Path::new("t.toml"));
        })?;
    }

    #[test]
    fn gguf_reader_never_panics_nor_believes_counts(
        version in prop_oneof![Just(2u32), Just(3u32), any::<u32>()],
        tensors in prop_oneof![0u64..4, any::<u64>()],
        entries in prop_oneof![0u64..4, any::<u64>()],
        key_len in prop_oneof![0u64..32, any::<u64>()],
        value_type in 0u32..16,
        rest in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        let mut bytes = b"GGUF".to_vec();
        bytes.extend(version.to_le_bytes());
        bytes.extend(tensors.to_le_bytes());
        bytes.extend(entries.to_le_bytes());
        bytes.extend(key_len.to_le_bytes());
        bytes.extend(b"general.architecture");
        bytes.extend(value_type.to_le_bytes());
        bytes.extend(&rest);
        let d = dir("gguf");
        let p = write(&d, "m.gguf", &bytes);
        bounded(bytes.len(), || {
            assert!(fairlm_model::Checkpoint::open(&p, fairlm_model::NumericPath::F32).is_err());
        })?;
    }

    #[test]
    fn safetensors_header_never_panics_nor_believes_lengths(
        header_len in prop_oneof![0u64..512, any::<u64>()],
        header in text_like(JSON),
        rest in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        let mut bytes = header_len.to_le_bytes().to_vec();
        bytes.extend(&header);
        bytes.extend(&rest);
        let d = dir("safetensors");
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/tiny-llama/config.json"),
            d.join("config.json"),
        ).unwrap();
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/tiny-llama/tokenizer.json"),
            d.join("tokenizer.json"),
        ).unwrap();
        write(&d, "model.safetensors", &bytes);
        // The tokenizer.json beside the weights is read too: it is part of the slack.
        bounded(bytes.len(), || {
            assert!(fairlm_model::Checkpoint::open(&d, fairlm_model::NumericPath::F32).is_err());
        })?;
    }
}
