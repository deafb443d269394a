//! fairlm's HTML report: one self-contained page (inline CSS, inline SVG, a few lines of
//! vanilla JS for the flagged-sample table) rendered from audit results. Every figure is
//! recomputed from the per-sample records; this crate formats, it does not measure.
//!
//! An audit's results in, one HTML string out; here, a one-template audit of the repository's
//! tiny test model:
//!
//! ```
//! use fairlm_bias::audit::{assemble, run_part, AuditConfig};
//! use fairlm_bias::lexicon::Lexicon;
//! use fairlm_bias::probe::ProbeConfig;
//! use fairlm_bias::record::ModelRecord;
//! use fairlm_bias::shard::Shard;
//! use fairlm_bias::templates::default_templates;
//! use fairlm_model::backend::Local;
//! use fairlm_model::{Checkpoint, NumericPath};
//!
//! let ck = Checkpoint::open("../../fixtures/tiny-gpt2".as_ref(), NumericPath::F32)?;
//! let model = ck.build()?;
//! let cfg = AuditConfig {
//!     probe: ProbeConfig { samples: 1, max_tokens: 4, ..ProbeConfig::default() },
//!     axes: vec!["gender".into()],
//!     max_templates: Some(1),
//!     bootstrap_resamples: 50,
//!     profile: "example".into(),
//!     text: None,
//! };
//! let record = ModelRecord {
//!     path: "tiny-gpt2".into(),
//!     sha256: String::new(),
//!     architecture: "gpt2".into(),
//!     numeric_path: "f32".into(),
//!     served: None,
//!     debias: None,
//! };
//! let (lexicon, templates) = (Lexicon::default_lexicon()?, default_templates()?);
//! let part = run_part(
//!     &Local(model.as_ref()), &ck.tokenizer, record, &lexicon, &templates, &cfg,
//!     Shard::WHOLE, None, &fairlm_model::Unwatched,
//! )?;
//! let results = assemble(vec![part], &[])?;
//! let page = fairlm_report::render(&results, None, None);
//! assert!(page.starts_with("<!doctype html>") && page.contains("fairlm report"));
//! # Ok::<(), fairlm_bias::Error>(())
//! ```

// No unwrap/expect outside tests: a user's input or the file system must not be able to make
// fairlm panic (issue 16). Invariants that cannot fail carry an allow with the reason.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]
#![warn(missing_docs)]

use fairlm_bias::audit::AuditResults;
use fairlm_bias::compare::Comparison;
use fairlm_bias::metrics::{self, ProbeMetrics};
use fairlm_bias::pairs::pair_table;
use fairlm_bias::stats::Estimate;
use fairlm_bias::stereoset::stereo_table;

/// At most this many flagged samples are embedded; the rest stay in results.json.
pub const MAX_EMBEDDED_SAMPLES: usize = 2000;

/// Colour-blind-safe pair (Okabe–Ito blue and orange) that also differ in lightness.
const BEFORE_COLOUR: &str = "#0072B2";
const AFTER_COLOUR: &str = "#E69F00";

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn fmt_ci(e: &Estimate, d: usize) -> String {
    format!(
        "{:.d$} <span class=ci>[{:.d$}, {:.d$}]</span>",
        e.value,
        e.ci_low,
        e.ci_high,
        d = d
    )
}

/// Probe metrics recomputed from the records (the stored ones are not trusted).
fn recompute(r: &AuditResults) -> ProbeMetrics {
    metrics::compute(
        &r.records,
        r.config.probe.tau,
        r.config.bootstrap_resamples,
        r.seed,
    )
}

/// Per-axis bias scores with CI whiskers, before (and after) side by side.
fn axis_chart(before: &ProbeMetrics, after: Option<&ProbeMetrics>) -> String {
    let axes: Vec<&str> = before.axes.iter().map(|a| a.axis.as_str()).collect();
    let (w, h, left, bottom, top) = (720.0, 300.0, 50.0, 70.0, 20.0);
    let plot_h = h - bottom - top;
    let slot = (w - left - 10.0) / axes.len().max(1) as f64;
    let bar = if after.is_some() {
        slot * 0.35
    } else {
        slot * 0.6
    };
    let y = |v: f64| top + plot_h * (1.0 - v.clamp(0.0, 1.0));
    let mut s = format!("<svg viewBox='0 0 {w} {h}' width='{w}' height='{h}' role='img' aria-label='bias score per axis'>");
    for t in 0..=4 {
        let v = t as f64 / 4.0;
        s += &format!("<line x1='{left}' x2='{}' y1='{y:.1}' y2='{y:.1}' stroke='#ddd'/><text x='{}' y='{:.1}' text-anchor='end' font-size='11'>{v:.2}</text>", w - 10.0, left - 4.0, y(v) + 4.0, y = y(v));
    }
    s += &format!("<text x='12' y='{}' transform='rotate(-90 12 {})' font-size='12' text-anchor='middle'>bias score (share of pairs, 0–1)</text>", top + plot_h / 2.0, top + plot_h / 2.0);
    let mut draw = |i: usize, e: &Estimate, offset: f64, colour: &str, pattern: bool| {
        let x = left + slot * i as f64 + offset;
        let fill = if pattern { "url(#hatch)" } else { colour };
        s += &format!(
            "<rect x='{x:.1}' y='{:.1}' width='{bar:.1}' height='{:.1}' fill='{fill}' stroke='{colour}'><title>{:.3} [{:.3}, {:.3}]</title></rect>",
            y(e.value),
            (y(0.0) - y(e.value)).max(0.0),
            e.value,
            e.ci_low,
            e.ci_high
        );
        let cx = x + bar / 2.0;
        s += &format!("<line x1='{cx:.1}' x2='{cx:.1}' y1='{:.1}' y2='{:.1}' stroke='#000' stroke-width='1.5'/>", y(e.ci_low), y(e.ci_high));
    };
    for (i, a) in before.axes.iter().enumerate() {
        draw(i, &a.bias_score, slot * 0.1, BEFORE_COLOUR, false);
        if let Some(after) = after {
            if let Some(b) = after.axes.iter().find(|x| x.axis == a.axis) {
                draw(i, &b.bias_score, slot * 0.1 + bar + 2.0, AFTER_COLOUR, true);
            }
        }
    }
    for (i, a) in axes.iter().enumerate() {
        let x = left + slot * (i as f64 + 0.5);
        s += &format!("<text x='{x:.1}' y='{}' font-size='11' text-anchor='end' transform='rotate(-30 {x:.1} {})'>{}</text>", h - bottom + 16.0, h - bottom + 16.0, esc(a));
    }
    s += &format!("<defs><pattern id='hatch' width='6' height='6' patternUnits='userSpaceOnUse' patternTransform='rotate(45)'><rect width='6' height='6' fill='{AFTER_COLOUR}'/><line x1='0' y1='0' x2='0' y2='6' stroke='#000' stroke-width='1.5'/></pattern></defs>");
    s + "</svg>"
}

/// Histogram of Δ for one axis, with τ marked.
fn delta_histogram(r: &AuditResults, axis: &str) -> String {
    let deltas: Vec<f64> = r
        .records
        .iter()
        .filter(|x| x.axis == axis)
        .flat_map(|x| x.counterfactuals.iter().map(|c| c.delta))
        .collect();
    let (lo, hi) = (-6.0, 10.0);
    let bins = 32;
    let mut counts = vec![0usize; bins];
    for d in &deltas {
        let b = (((d.clamp(lo, hi - 1e-9) - lo) / (hi - lo)) * bins as f64) as usize;
        counts[b.min(bins - 1)] += 1;
    }
    let max = counts.iter().copied().max().unwrap_or(1).max(1) as f64;
    let (w, h, left, bottom) = (340.0, 150.0, 30.0, 30.0);
    let bw = (w - left - 10.0) / bins as f64;
    let x = |v: f64| left + (v - lo) / (hi - lo) * (w - left - 10.0);
    let mut s = format!("<svg viewBox='0 0 {w} {h}' width='{w}' height='{h}' role='img' aria-label='Δ histogram {}'>", esc(axis));
    for (i, c) in counts.iter().enumerate() {
        let bh = (h - bottom - 10.0) * *c as f64 / max;
        s += &format!("<rect x='{:.1}' y='{:.1}' width='{:.1}' height='{bh:.1}' fill='{BEFORE_COLOUR}'><title>{c}</title></rect>", left + bw * i as f64, h - bottom - bh, bw - 1.0);
    }
    let tau = r.config.probe.tau;
    s += &format!("<line x1='{0:.1}' x2='{0:.1}' y1='5' y2='{1}' stroke='#D55E00' stroke-width='2' stroke-dasharray='4 2'/><text x='{2:.1}' y='14' font-size='11'>τ = {tau:.2}</text>", x(tau), h - bottom, x(tau) + 3.0);
    for v in [-6.0, -3.0, 0.0, 3.0, 6.0, 9.0] {
        s += &format!(
            "<text x='{:.1}' y='{}' font-size='10' text-anchor='middle'>{v}</text>",
            x(v),
            h - bottom + 12.0
        );
    }
    s += &format!(
        "<text x='{}' y='{}' font-size='11' text-anchor='middle'>Δ (nats), {} pairs</text>",
        w / 2.0,
        h - 4.0,
        deltas.len()
    );
    s + "</svg>"
}

/// The page. `after` and `comparison` are present for a before/after report.
/// CrowS-Pairs / StereoSet tables (recomputed from their per-pair records), before and after
/// side by side when both audits ran the file.
fn benchmark_tables(before: &AuditResults, after: Option<&AuditResults>) -> String {
    let mut h = String::new();
    for b in &before.benchmarks {
        let a = after.and_then(|x| {
            x.benchmarks
                .iter()
                .find(|y| y.benchmark == b.benchmark && y.file == b.file)
        });
        let file = esc(&b.file.display().to_string());
        if let Some(recs) = &b.pairs {
            let tb = pair_table(recs);
            let ta = a.and_then(|x| x.pairs.as_ref()).map(|r| pair_table(r));
            h += &format!("<h2>{} <small>({file}; ideal 50)</small></h2><table class=bench data-bench={}><tr><th>bias type</th><th>pairs</th><th>pct_stereotype (sum) before</th>{}</tr>", esc(&b.benchmark), esc(&b.benchmark), if ta.is_some() { "<th>after</th>" } else { "" });
            for row in &tb {
                let after_cell = ta
                    .as_ref()
                    .and_then(|t| t.iter().find(|r| r.bias_type == row.bias_type))
                    .map(|r| format!("<td>{:.1}</td>", r.pct_stereotype_sum))
                    .unwrap_or_default();
                h += &format!(
                    "<tr><td>{}</td><td>{}</td><td>{:.1}</td>{after_cell}</tr>",
                    esc(&row.bias_type),
                    row.pairs,
                    row.pct_stereotype_sum
                );
            }
            h += "</table>";
        }
        if let Some(recs) = &b.entries {
            let tb = stereo_table(recs);
            let ta = a.and_then(|x| x.entries.as_ref()).map(|r| stereo_table(r));
            h += &format!("<h2>StereoSet <small>({file}; ss ideal 50, lms ideal 100)</small></h2><table class=bench data-bench=stereoset><tr><th>bias type</th><th>entries</th><th>ss before</th><th>lms before</th><th>icat before</th>{}</tr>", if ta.is_some() { "<th>ss after</th><th>lms after</th><th>icat after</th>" } else { "" });
            for row in &tb {
                let after_cells = ta
                    .as_ref()
                    .and_then(|t| t.iter().find(|r| r.bias_type == row.bias_type))
                    .map(|r| {
                        format!(
                            "<td>{:.1}</td><td>{:.1}</td><td>{:.1}</td>",
                            r.sum.ss, r.sum.lms, r.sum.icat
                        )
                    })
                    .unwrap_or_default();
                h += &format!("<tr><td>{}</td><td>{}</td><td>{:.1}</td><td>{:.1}</td><td>{:.1}</td>{after_cells}</tr>", esc(&row.bias_type), row.entries, row.sum.ss, row.sum.lms, row.sum.icat);
            }
            h += "</table>";
        }
    }
    h
}

/// The page of one audit (`before`), or of a before/after pair with their comparison: headline
/// cards, per-axis bias with CI whiskers, Δ histograms, detectors, benchmarks, the comparison's
/// table and gates, the flagged samples and the config — one HTML string with nothing
/// fetched.
pub fn render(
    before: &AuditResults,
    after: Option<&AuditResults>,
    comparison: Option<&Comparison>,
) -> String {
    let mb = recompute(before);
    let ma = after.map(recompute);
    let mut h = String::new();
    h += "<!doctype html><html lang=en><head><meta charset=utf-8><title>fairlm report</title><style>";
    h += "body{font-family:system-ui,sans-serif;margin:2em;color:#111;max-width:1100px}h1{margin-bottom:0}.cards{display:flex;gap:1em;flex-wrap:wrap}.card{border:1px solid #999;border-radius:6px;padding:.8em 1.2em;min-width:14em}.card b{font-size:1.6em}.ci{color:#555;font-size:.85em}table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #bbb;padding:.25em .5em;font-size:.9em;text-align:left}th{background:#eee;cursor:pointer}.pass{color:#006d2c;font-weight:bold}.fail{color:#b30000;font-weight:bold}.hist{display:flex;flex-wrap:wrap;gap:1em}.legend span{display:inline-block;width:1em;height:1em;vertical-align:middle;margin:0 .3em 0 1em}pre{background:#f4f4f4;padding:1em;overflow:auto;font-size:.8em}";
    h += "</style></head><body><h1>fairlm report</h1>";
    h += &format!(
        "<p>Model <code>{}</code> (sha256 <code>{}</code>, {} path), seed {}, fairlm {}.</p>",
        esc(&before.model.path),
        esc(&before.model.sha256),
        esc(&before.model.numeric_path),
        before.seed,
        esc(&before.fairlm_version)
    );
    // Headline cards.
    h += "<div class=cards>";
    let bias_card = match &ma {
        Some(a) => format!("<div class=card>bias score<br><b id=bias-before>{:.3}</b> → <b id=bias-after>{:.3}</b><br><span class=ci>before {}<br>after {}</span></div>", mb.bias_score.value, a.bias_score.value, fmt_ci(&mb.bias_score, 3), fmt_ci(&a.bias_score, 3)),
        None => format!("<div class=card>bias score<br><b id=bias-before>{:.3}</b><br>{}</div>", mb.bias_score.value, fmt_ci(&mb.bias_score, 3)),
    };
    h += &bias_card;
    let ppl_card = match after {
        Some(a) => format!("<div class=card>held-out perplexity<br><b id=ppl-before>{:.2}</b> → <b id=ppl-after>{:.2}</b></div>", before.perplexity.perplexity.value, a.perplexity.perplexity.value),
        None => format!("<div class=card>held-out perplexity<br><b id=ppl-before>{:.2}</b><br>{}</div>", before.perplexity.perplexity.value, fmt_ci(&before.perplexity.perplexity, 2)),
    };
    h += &ppl_card;
    h += &format!(
        "<div class=card>divergence (mean Δ, nats)<br><b>{:.3}</b>{}</div>",
        mb.divergence.value,
        ma.as_ref()
            .map(|a| format!(" → <b>{:.3}</b>", a.divergence.value))
            .unwrap_or_default()
    );
    if let Some(c) = comparison {
        let verdict = if c.gates.is_empty() {
            "no gates".to_string()
        } else if c.passed() {
            "<span class=pass id=verdict>all gates pass</span>".into()
        } else {
            "<span class=fail id=verdict>a gate failed</span>".into()
        };
        h += &format!("<div class=card>verdict<br><b>{verdict}</b></div>");
    }
    h += "</div>";
    // Per-axis chart.
    h += "<h2>Bias score per axis</h2><p class=legend>95% bootstrap CIs as whiskers.";
    h += &format!("<span style='background:{BEFORE_COLOUR}'></span>before");
    if ma.is_some() {
        h += &format!("<span style='background:{AFTER_COLOUR};background-image:repeating-linear-gradient(45deg,#000 0 1px,transparent 1px 4px)'></span>after (hatched)");
    }
    h += "</p>";
    h += &axis_chart(&mb, ma.as_ref());
    if let Some(c) = comparison {
        h += "<h2>Before / after</h2><table><tr><th>metric</th><th>before</th><th>after</th><th>Δ [95% paired CI]</th></tr>";
        for r in &c.rows {
            h += &format!(
                "<tr><td>{}</td><td>{:.4}</td><td>{:.4}</td><td>{:+.4} [{:+.4}, {:+.4}]</td></tr>",
                esc(&r.metric),
                r.before,
                r.after,
                r.delta.value,
                r.delta.ci_low,
                r.delta.ci_high
            );
        }
        h += "</table>";
        if !c.gates.is_empty() {
            h += "<table><tr><th>gate</th><th>result</th><th>detail</th></tr>";
            for g in &c.gates {
                h += &format!(
                    "<tr><td>{}</td><td class={}>{}</td><td>{}</td></tr>",
                    esc(&g.gate),
                    if g.passed { "pass" } else { "fail" },
                    if g.passed { "pass" } else { "FAIL" },
                    esc(&g.detail)
                );
            }
            h += "</table>";
        }
    }
    // Δ histograms.
    let shown = after.unwrap_or(before);
    h += &format!(
        "<h2>Distribution of Δ per axis{}</h2><div class=hist>",
        if after.is_some() { " (after)" } else { "" }
    );
    for a in &mb.axes {
        h += &format!(
            "<figure><figcaption>{}</figcaption>{}</figure>",
            esc(&a.axis),
            delta_histogram(shown, &a.axis)
        );
    }
    h += "</div>";
    // Detectors.
    h += "<h2>Detectors (independent of the model)</h2><table><tr><th>axis</th><th>mean VADER sentiment per group</th><th>sentiment gap (W1)</th><th>association TVD per family</th></tr>";
    for d in &shown.detectors.axes {
        let groups: Vec<String> = d
            .sentiment_by_group
            .iter()
            .map(|(g, v)| format!("{}: {v:+.3}", esc(g)))
            .collect();
        let fams: Vec<String> = d
            .association_tvd
            .iter()
            .map(|(f, v)| format!("{}: {v:.3}", esc(f)))
            .collect();
        h += &format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&d.axis),
            groups.join(", "),
            fmt_ci(&d.sentiment_gap, 3),
            fams.join(", ")
        );
    }
    h += "</table>";
    h += &benchmark_tables(before, after);
    // Flagged samples.
    let mut flagged: Vec<(f64, String, String, String, String, String)> = shown
        .records
        .iter()
        .flat_map(|r| {
            r.counterfactuals
                .iter()
                .filter(|c| c.delta >= shown.config.probe.tau)
                .map(move |c| {
                    (
                        c.delta,
                        r.axis.clone(),
                        r.group.clone(),
                        format!("{}{}", r.prompt, r.continuation),
                        format!("{}{}", c.prompt, c.text),
                        c.group.clone(),
                    )
                })
        })
        .collect();
    flagged.sort_by(|a, b| b.0.total_cmp(&a.0));
    let total = flagged.len();
    flagged.truncate(MAX_EMBEDDED_SAMPLES);
    h += &format!("<h2>Flagged samples</h2><p id=flagged-count data-total={total}>{total} flagged pairs (Δ ≥ τ){}.</p>", if total > MAX_EMBEDDED_SAMPLES { format!("; the {MAX_EMBEDDED_SAMPLES} with the largest Δ are shown, all are in results.json") } else { String::new() });
    h +=
        "<input id=filter placeholder='filter (text, axis, group)' size=40> <span id=shown></span>";
    h += "<table id=samples><thead><tr><th data-k=n>Δ (nats)</th><th>axis</th><th>group</th><th>text</th><th>counterfactual</th><th>vs group</th></tr></thead><tbody>";
    for (d, axis, group, text, cf, other) in &flagged {
        h += &format!(
            "<tr><td>{d:.3}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(axis),
            esc(group),
            esc(text),
            esc(cf),
            esc(other)
        );
    }
    h += "</tbody></table>";
    // Config.
    h += "<h2>Configuration</h2><pre>";
    h += &esc(&serde_json::to_string_pretty(&before.config).unwrap_or_default());
    h += "</pre>";
    h += r#"<script>
(function () {
  var input = document.getElementById('filter'), body = document.querySelector('#samples tbody'), shown = document.getElementById('shown');
  function apply() {
    var q = input.value.toLowerCase(), n = 0;
    Array.prototype.forEach.call(body.rows, function (r) {
      var hit = !q || r.textContent.toLowerCase().indexOf(q) >= 0;
      r.hidden = !hit; if (hit) n++;
    });
    shown.textContent = n + ' rows shown';
  }
  input.addEventListener('input', apply);
  document.querySelectorAll('#samples th').forEach(function (th, col) {
    th.addEventListener('click', function () {
      var rows = Array.prototype.slice.call(body.rows), asc = th.dataset.asc !== '1';
      rows.sort(function (a, b) {
        var x = a.cells[col].textContent, y = b.cells[col].textContent;
        var c = th.dataset.k === 'n' ? parseFloat(x) - parseFloat(y) : x.localeCompare(y);
        return asc ? c : -c;
      });
      th.dataset.asc = asc ? '1' : '0';
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
  var m = location.hash.match(/filter=([^&]*)/);
  if (m) { input.value = decodeURIComponent(m[1]); }
  apply();
})();
</script></body></html>"#;
    h
}
