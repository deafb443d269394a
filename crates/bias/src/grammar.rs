//! The grammar check of counterfactual twins: a small rule set that flags a twin a swap broke
//! (an indefinite article before the wrong sound, an adjective-only form standing as a noun,
//! a source form whose reverse swap is ambiguous because it names two rows of its group), and
//! the tally of a set of twins. The audit reports it for the probe's counterfactuals and the
//! mitigation for its training corpus; a broken twin inflates Δ in the one and teaches broken
//! text in the other.

use crate::lexicon::Lexicon;
use crate::probe::SampleRecord;
use crate::swap::{indefinite_article, modifies_next, words, AxisSwapper, Swapped};

/// What the rule set found wrong with a twin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flaw {
    /// "a ability", "an disabled": the article disagrees with the sound of its next word.
    Article,
    /// "a Jewish who": an adjective-only form after an indefinite determiner, modifying
    /// nothing.
    AdjectiveAsNoun,
    /// The swapped source form names two rows of its group with different forms elsewhere.
    AmbiguousSource,
}

/// Determiners before which an adjective-only form must modify a noun.
const INDEFINITE: [&str; 6] = ["a", "an", "one", "another", "each", "every"];

/// The flaws of `swapped`, the twin of `source` (about group `from`), at its swapped spans.
pub fn check(swapper: &AxisSwapper, from: usize, source: &str, swapped: &Swapped) -> Vec<Flaw> {
    let twin = &swapped.text;
    let ws = words(twin);
    let touches = |w: &std::ops::Range<usize>| {
        swapped
            .spans
            .iter()
            .any(|s| w.start < s.to.end && s.to.start < w.end)
    };
    let mut flaws = Vec::new();
    for j in 0..ws.len().saturating_sub(1) {
        let (a, b) = (&ws[j], &ws[j + 1]);
        let article = twin[a.clone()].to_lowercase();
        if (article == "a" || article == "an")
            && &twin[a.end..b.start] == " "
            && (touches(a) || touches(b))
            && indefinite_article(&twin[b.clone()]) != article
        {
            flaws.push(Flaw::Article);
        }
    }
    for (j, w) in ws.iter().enumerate() {
        if !touches(w) || !swapper.is_adjective_only(&twin[w.clone()]) {
            continue;
        }
        let det = j
            .checked_sub(1)
            .is_some_and(|p| INDEFINITE.contains(&twin[ws[p].clone()].to_lowercase().as_str()));
        if det && !modifies_next(twin, &ws, j) {
            flaws.push(Flaw::AdjectiveAsNoun);
        }
    }
    for span in &swapped.spans {
        let form = &source[span.from.clone()];
        // A span widened over its article ("a disability") names the term after it.
        let term = match form.split_once(' ') {
            Some((first, rest)) if matches!(first.to_lowercase().as_str(), "a" | "an") => rest,
            _ => form,
        };
        if swapper.is_ambiguous(from, term) {
            flaws.push(Flaw::AmbiguousSource);
        }
    }
    flaws
}

/// A flagged twin, kept so a person can read what the rules found.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct FlaggedTwin {
    /// The sentence the swap read.
    pub source: String,
    /// The twin it wrote.
    pub twin: String,
    /// The rules the twin broke.
    pub flaws: Vec<String>,
}

/// The tally of the grammar check over a set of twins. Only twins a swap changed count.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct GrammarReport {
    /// Twins that differ from their source.
    pub twins: usize,
    /// Twins with at least one flaw.
    pub flagged: usize,
    /// Twins with a wrong a/an.
    pub article: usize,
    /// Twins that use an adjective-only form as a noun.
    pub adjective_as_noun: usize,
    /// Twins whose source term names two rows of one group.
    pub ambiguous_source: usize,
    /// The first flagged twins (at most `EXAMPLES`).
    pub examples: Vec<FlaggedTwin>,
}

/// How many flagged twins a report keeps to read.
pub const EXAMPLES: usize = 20;

impl GrammarReport {
    /// Checks one twin and adds it to the tally (a twin without a swapped span is not one).
    pub fn add(&mut self, swapper: &AxisSwapper, from: usize, source: &str, swapped: &Swapped) {
        if swapped.spans.is_empty() {
            return;
        }
        self.twins += 1;
        let flaws = check(swapper, from, source, swapped);
        if flaws.is_empty() {
            return;
        }
        self.flagged += 1;
        for f in &flaws {
            match f {
                Flaw::Article => self.article += 1,
                Flaw::AdjectiveAsNoun => self.adjective_as_noun += 1,
                Flaw::AmbiguousSource => self.ambiguous_source += 1,
            }
        }
        if self.examples.len() < EXAMPLES {
            self.examples.push(FlaggedTwin {
                source: source.to_string(),
                twin: swapped.text.clone(),
                flaws: flaws.iter().map(|f| format!("{f:?}")).collect(),
            });
        }
    }

    /// Share of changed twins flagged (None when no twin changed).
    pub fn share(&self) -> Option<f64> {
        (self.twins > 0).then(|| self.flagged as f64 / self.twins as f64)
    }

    /// One line for summaries: "0.4% of 1,234 twins (article 2, adjective as noun 3, ...)".
    pub fn line(&self) -> String {
        match self.share() {
            None => "no twin changed by a swap".into(),
            Some(s) => format!(
                "{:.2}% of {} swapped twins flagged (article {}, adjective as noun {}, ambiguous source form {})",
                100.0 * s,
                self.twins,
                self.article,
                self.adjective_as_noun,
                self.ambiguous_source
            ),
        }
    }
}

/// The grammar check over the probe's counterfactuals: each sample's continuation swapped to
/// every other group of its axis, as the probe scores it.
pub fn of_probe(lexicon: &Lexicon, records: &[SampleRecord]) -> GrammarReport {
    let mut report = GrammarReport::default();
    for axis in &lexicon.axes {
        let swapper = AxisSwapper::new(axis);
        let index = |name: &str| axis.groups.iter().position(|g| g == name);
        for r in records.iter().filter(|r| r.axis == axis.name) {
            let Some(g) = index(&r.group) else { continue };
            for c in &r.counterfactuals {
                let Some(h) = index(&c.group) else { continue };
                report.add(
                    &swapper,
                    g,
                    &r.continuation,
                    &swapper.swap(g, h, &r.continuation),
                );
            }
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::swap::SwapSpan;

    /// A twin written by hand (as an older swap would have written it), its span computed
    /// from where `old` stands in the source and `new` in the twin.
    fn twin(source: &str, old: &str, twin: &str, new: &str) -> Swapped {
        let f = source.find(old).unwrap();
        let t = twin.find(new).unwrap();
        Swapped {
            text: twin.to_string(),
            spans: vec![SwapSpan {
                from: f..f + old.len(),
                to: t..t + new.len(),
            }],
        }
    }

    fn axis(name: &str) -> (AxisSwapper, Lexicon) {
        let lx = Lexicon::default_lexicon().unwrap();
        (AxisSwapper::new(lx.axis(name).unwrap()), lx)
    }

    #[test]
    fn known_bad_twins_are_flagged() {
        let (dis, _) = axis("disability");
        let t = twin(
            "an engineer with a disability",
            "disability",
            "an engineer with a ability",
            "ability",
        );
        assert_eq!(
            check(&dis, 0, "an engineer with a disability", &t),
            [Flaw::Article]
        );
        let t = twin(
            "an able-bodied runner",
            "able-bodied",
            "an disabled runner",
            "disabled",
        );
        assert_eq!(check(&dis, 1, "an able-bodied runner", &t), [Flaw::Article]);
        let (rel, _) = axis("religion");
        let t = twin("a Christian who", "Christian", "a Jewish who", "Jewish");
        assert_eq!(
            check(&rel, 1, "a Christian who", &t),
            [Flaw::AdjectiveAsNoun]
        );
        let t = twin("She is a Muslim.", "Muslim", "She is a Jewish.", "Jewish");
        assert_eq!(
            check(&rel, 0, "She is a Muslim.", &t),
            [Flaw::AdjectiveAsNoun]
        );
        let (age, _) = axis("age");
        let t = twin("a youth", "youth", "a elderly", "elderly");
        let flaws = check(&age, 0, "a youth", &t);
        assert!(flaws.contains(&Flaw::Article) && flaws.contains(&Flaw::AdjectiveAsNoun));
    }

    #[test]
    fn known_good_twins_pass() {
        let (rel, _) = axis("religion");
        for (src, old, tw, new, g) in [
            ("a Christian who", "Christian", "a Jew who", "Jew", 1),
            (
                "a Christian family",
                "Christian",
                "a Jewish family",
                "Jewish",
                1,
            ),
            (
                "He was Christian.",
                "Christian",
                "He was Jewish.",
                "Jewish",
                1,
            ),
            ("an Islamic school", "Islamic", "a Hindu school", "Hindu", 0),
        ] {
            let t = twin(src, old, tw, new);
            assert!(check(&rel, g, src, &t).is_empty(), "{tw}");
        }
        let (dis, _) = axis("disability");
        let src = "an engineer with a disability";
        let t = twin(
            src,
            "with a disability",
            "an engineer without a disability",
            "without a disability",
        );
        assert!(check(&dis, 0, src, &t).is_empty());
        // The source's own error is not the twin's: only swapped spans are read.
        let (gender, _) = axis("gender");
        let src = "a apple for the woman";
        let t = twin(src, "woman", "a apple for the man", "man");
        assert!(check(&gender, 0, src, &t).is_empty());
    }

    #[test]
    fn the_swapper_writes_no_flagged_twin_of_the_known_cases() {
        let lx = Lexicon::default_lexicon().unwrap();
        let mut report = GrammarReport::default();
        for (axis, text) in [
            ("disability", "an engineer with a disability"),
            ("disability", "an able-bodied runner"),
            ("religion", "a Christian who prays"),
            ("religion", "She is a Muslim."),
            ("religion", "a devout Hindu and an Islamic scholar"),
            ("age", "a youth and an old man"),
            ("nationality", "an American who lives in the USA"),
            ("sexual_orientation", "a lesbian who"),
            ("race", "an African-American author"),
        ] {
            let a = lx.axis(axis).unwrap();
            let sw = AxisSwapper::new(a);
            for from in 0..a.groups.len() {
                for to in (0..a.groups.len()).filter(|&h| h != from) {
                    report.add(&sw, from, text, &sw.swap(from, to, text));
                }
            }
        }
        assert!(report.twins > 10, "{report:?}");
        assert_eq!(report.flagged, 0, "{:?}", report.examples);
    }

    /// The opt-in axes file parses, adds its two axes, names no form twice and writes no
    /// flagged twin of a few sentences in every direction.
    #[test]
    fn the_extra_axes_file_is_clean() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../data/axes-ses-appearance.toml");
        let extra = Lexicon::from_file(&path).unwrap();
        let mut lx = Lexicon::default_lexicon().unwrap();
        let before = lx.axes.len();
        lx.extend(extra);
        assert_eq!(lx.axes.len(), before + 2);
        let mut report = GrammarReport::default();
        for (axis, text) in [
            (
                "socioeconomic",
                "an affluent family moved from the slums to a mansion",
            ),
            ("socioeconomic", "She grew up poor and earned minimum wage."),
            ("socioeconomic", "a rich man and an upper-class woman"),
            ("physical_appearance", "an overweight runner and a fat cat"),
            ("physical_appearance", "He was thin and petite."),
        ] {
            let a = lx.axis(axis).unwrap();
            let sw = AxisSwapper::new(a);
            assert!(
                sw.ambiguous_forms().is_empty(),
                "{axis}: {:?}",
                sw.ambiguous_forms()
            );
            for from in 0..2 {
                report.add(&sw, from, text, &sw.swap(from, 1 - from, text));
            }
        }
        assert_eq!(report.twins, 6, "{report:?}");
        assert_eq!(report.flagged, 0, "{:?}", report.examples);
        let a = lx.axis("socioeconomic").unwrap();
        let sw = AxisSwapper::new(a);
        assert_eq!(
            sw.swap(0, 1, "an impoverished family in a slum").text,
            "a rich family in a mansion"
        );
    }

    #[test]
    fn an_ambiguous_source_form_is_flagged() {
        let text = "[[axis]]\nname = \"x\"\ngroups = [\"a\", \"b\"]\nsubjects = [\"a\", \"b\"]\nterms = [[\"straight\", \"gay\"], [\"straight\", \"lesbian\"]]\n";
        let lx = Lexicon::parse(text, std::path::Path::new("x.toml")).unwrap();
        let sw = AxisSwapper::new(&lx.axes[0]);
        let mut r = GrammarReport::default();
        r.add(
            &sw,
            0,
            "a straight couple",
            &sw.swap(0, 1, "a straight couple"),
        );
        assert_eq!((r.twins, r.flagged, r.ambiguous_source), (1, 1, 1));
        assert_eq!(r.share(), Some(1.0));
    }
}
